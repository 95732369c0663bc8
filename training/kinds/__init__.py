"""Model kinds ``ragmm train retriever`` can train, by ``[model] kind``.

A kind says how to load the starting model, which sentence-transformers trainer and
arguments class train it, and which ragmm encoder evaluates a saved checkpoint. Kinds load
lazily, like the registry's entries.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ragmm.errors import ConfigError

if TYPE_CHECKING:
    from ragmm.training.config import TrainConfig

    from ragmm.protocols import Encoder

KINDS: dict[str, str] = {
    "text": "ragmm.training.kinds.text:TextDualEncoder",
    "image-text": "ragmm.training.kinds.image_text:ImageTextDualEncoder",
    "late-interaction": "ragmm.training.kinds.late_interaction:LateInteraction",
}


class ModelKind(Protocol):
    """How one kind of retriever is trained."""

    def load(self, cfg: TrainConfig) -> Any:
        """The starting model (a sentence-transformers model object)."""

    def trainer(self, model: Any, args: dict[str, Any], train_dataset: Any, loss: Any, callbacks: list[Any]) -> Any:
        """A sentence-transformers trainer for ``model`` with these training arguments."""

    def eval_encoder(self, path: str | Path) -> Encoder:
        """A ragmm encoder over a checkpoint of this kind (for ``[eval]``)."""


def get_kind(name: str) -> ModelKind:
    if name not in KINDS:
        raise ConfigError(f"unknown model kind {name!r}; known: {', '.join(sorted(KINDS))}")
    module, _, attr = KINDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)()
