"""Late-interaction (ColBERT) retriever: a sentence-transformers ``MultiVectorEncoder``.

Train it with a token-level loss, ``[loss] type = "maxsim"``; pooled losses (``clip`` ...) read a
``sentence_embedding`` this model does not produce.

Example ``train.toml``::

    [model]
    kind = "late-interaction"
    base = "all-MiniLM-L6-v2"     # packaged alias, local folder or hub id

    [loss]
    type = "maxsim"
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragmm.training.config import TrainConfig

    from ragmm.protocols import Encoder


class LateInteraction:
    """Loads a multi-vector checkpoint, or turns a plain one into a ColBERT model.

    sentence-transformers builds the ColBERT head itself when ``MultiVectorEncoder`` loads a
    checkpoint that is not multi-vector: a bare Hugging Face model (BERT, MiniLM ...) gets
    Transformer -> Dense(hidden, 128, no bias) on token embeddings -> MultiVectorMask ->
    token-level Normalize; a dense sentence-transformers model loses its pooling and sentence
    normalisation and gets the same projection (or keeps its own Dense head, moved to token
    level). The new projection is random, drawn from the seed ``train_retriever`` set.
    """

    def load(self, cfg: TrainConfig) -> Any:
        from sentence_transformers import MultiVectorEncoder

        from ragmm.encoders.sentence_transformer import resolve_model

        load_from, _ = resolve_model(cfg.model.base)
        model = MultiVectorEncoder(load_from)
        if cfg.model.max_seq_length:
            model.max_seq_length = cfg.model.max_seq_length
        return model

    def trainer(self, model: Any, args: dict[str, Any], train_dataset: Any, loss: Any, callbacks: list[Any]) -> Any:
        from sentence_transformers import MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments

        # Both argument classes extend sentence-transformers' BaseTrainingArguments, so the
        # SentenceTransformerTrainingArguments kwargs train.py builds map one to one. The
        # multi-vector collator stamps column 0 with the "query" task and the rest "document".
        return MultiVectorEncoderTrainer(model=model, args=MultiVectorEncoderTrainingArguments(**args), train_dataset=train_dataset, loss=loss, callbacks=callbacks)

    def eval_encoder(self, path: str | Path) -> Encoder:
        from ragmm.encoders.late_interaction import LateInteractionEncoder

        return LateInteractionEncoder(LateInteractionEncoder.Config(model=str(path), precision="fp32"))
