"""Text dual encoder: a sentence-transformers model, both towers shared."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragmm.training.config import TrainConfig

    from ragmm.protocols import Encoder


class TextDualEncoder:
    """Loads any sentence-transformers checkpoint (packaged alias, folder or hub id)."""

    def load(self, cfg: TrainConfig) -> Any:
        from sentence_transformers import SentenceTransformer

        from ragmm.encoders.sentence_transformer import resolve_model

        load_from, _ = resolve_model(cfg.model.base)
        model = SentenceTransformer(load_from)
        if cfg.model.max_seq_length:
            model.max_seq_length = cfg.model.max_seq_length
        return model

    def trainer(self, model: Any, args: dict[str, Any], train_dataset: Any, loss: Any, callbacks: list[Any]) -> Any:
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        return SentenceTransformerTrainer(model=model, args=SentenceTransformerTrainingArguments(**args), train_dataset=train_dataset, loss=loss, callbacks=callbacks)

    def eval_encoder(self, path: str | Path) -> Encoder:
        from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder

        return SentenceTransformerEncoder(SentenceTransformerEncoder.Config(model=str(path), precision="fp32"))
