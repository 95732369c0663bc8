"""The ``cross-encoder`` reranker: a sentence-transformers ``CrossEncoder`` reads query and item
together and gives one logit, calibrated per kind of item.

Models come from ``ragmm train reranker`` (a folder holding the model and its
``calibration.json``); ragmm ships none, because a MiniLM cross-encoder is 90 MB, so the model
must be configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError, ModelNotFoundError
from ragmm.reranking.base import CalibratedReranker, item_text, load_calibration, to_list
from ragmm.reranking.calibration import Calibration
from ragmm.types import Item, Query


class CrossEncoderReranker(CalibratedReranker):
    """Relevancy from a cross-encoder's logit, calibrated.

    Args:
        model: a local ``CrossEncoder`` folder.
        calibration: its calibration.
        threshold: least relevancy kept (``None``: the calibration's).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: pairs per forward pass.
        max_length: tokens of query + item read.

    Example:
        >>> rr = CrossEncoderReranker.from_config(CrossEncoderReranker.Config(model="models/reranker"))  # doctest: +SKIP
        >>> [h.score for h in rr.rerank(Query("what is a lighthouse?"), hits, k=5)]  # doctest: +SKIP
        [0.93, 0.71]
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        model: str | None = Field(None, description="a CrossEncoder folder from `ragmm train reranker` (with its calibration.json); required")
        calibration: str | None = Field(None, description="calibration.json to use instead of the model folder's")
        threshold: float | None = Field(None, ge=0, le=1, description="least calibrated relevancy kept; None = the one chosen on the dev split")
        device: str = Field("auto", description="'auto', 'cpu' or 'cuda'")
        batch_size: int = Field(32, gt=0)
        max_length: int = Field(256, gt=8, description="tokens of query + item read by the model")

    def __init__(self, model: str | Path, calibration: Calibration, threshold: float | None = None, device: str = "auto", batch_size: int = 32, max_length: int = 256) -> None:
        super().__init__(calibration, threshold)
        self.model_path = Path(model)
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None

    @classmethod
    def from_config(cls, config: Config, **_: Any) -> CrossEncoderReranker:
        if config.model is None:
            raise ConfigError(
                "[reranker] type = 'cross-encoder' needs `model`: ragmm ships no cross-encoder; train one with "
                "`ragmm train reranker --config training/configs/reranker.toml` and set model = its folder, "
                "or use type = 'late-interaction'"
            )
        folder = Path(config.model).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"{folder}: not a CrossEncoder folder; set [reranker] model to the output of `ragmm train reranker`")
        return cls(folder, load_calibration(config.calibration, folder, None), config.threshold, config.device, config.batch_size, config.max_length)

    @property
    def model(self) -> Any:
        if self._model is None:
            from sentence_transformers import CrossEncoder

            from ragmm.encoders.sentence_transformer import resolve_device

            self._model = CrossEncoder(str(self.model_path), device=resolve_device(self.device), max_length=self.max_length, local_files_only=True)
        return self._model

    def raw_scores(self, query: Query, items: Sequence[Item]) -> list[float]:
        """The model's logits (before any activation) for (query, item text) pairs."""
        import torch

        pairs = [(query.text, item_text(it)) for it in items]
        logits = self.model.predict(pairs, batch_size=self.batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False)
        return to_list(logits)
