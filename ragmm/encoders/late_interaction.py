"""Late-interaction (ColBERT-style) text encoder through sentence-transformers' ``MultiVectorEncoder``.

A late-interaction model keeps one vector per token instead of pooling them: a query is scored
against a document by MaxSim, the sum over query tokens of their best match among the document
tokens (Khattab and Zaharia 2020). The stores index such bags of vectors as a multivector
collection (``VectorSpec(size=encoder.dim, multivector=True)``) and score them with MaxSim.

Checkpoints come from ``ragmm train retriever`` with ``[model] kind = "late-interaction"``, or any
``MultiVectorEncoder`` / PyLate / Stanford ColBERT folder or hub id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder
from ragmm.errors import ModelNotFoundError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

# What sentence-transformers writes as ``model_type`` for multi-vector saves ("ColBERT": PyLate v3).
_MULTIVECTOR_MODEL_TYPES = {"MultiVectorEncoder", "ColBERT"}


class LateInteractionEncoder(SentenceTransformerEncoder):
    """A multi-vector model as a ragmm encoder: each text becomes ``(n_tokens, dim)`` vectors.

    Token vectors are L2-normalised, so MaxSim over them sums cosine similarities (a store's
    ``"dot"`` and ``"cosine"`` distances then agree). Query and document sides differ: each runs
    under its own task (prefix, length and, for documents, the model's skiplist).

    Example:
        >>> enc = LateInteractionEncoder(LateInteractionEncoder.Config(model="models/colbert"))  # doctest: +SKIP
        >>> [v.shape for v in enc.encode_query(["what is a lighthouse?"])]  # doctest: +SKIP
        [(7, 128)]
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        model: str = Field(..., description="a multi-vector checkpoint: local folder or hub id")
        precision: Literal["fp32", "bf16", "auto"] = Field("auto", description="bf16 autocast where fast (as the dense encoder); fp32 for exact comparisons")
        device: str = Field("auto", description="'auto' picks cuda when present, else cpu")
        batch_size: int = Field(32, gt=0)

    modality = "text"
    multivector = True

    # __init__, from_config, device, dim, tokenizer, uses_bf16 and precision_context come from
    # SentenceTransformerEncoder; loading and encoding differ.

    @property
    def model(self) -> Any:
        """The loaded ``MultiVectorEncoder`` (loaded on first use)."""
        if self._model is None:
            from sentence_transformers import MultiVectorEncoder

            _warn_if_not_multivector(self._load_from)
            log.info("loading late-interaction encoder %s on %s", self._load_from, self.device)
            try:
                self._model = MultiVectorEncoder(self._load_from, device=self.device)
            except OSError as exc:
                raise ModelNotFoundError(
                    f"{self._load_from}: cannot load the late-interaction encoder ({exc.__class__.__name__}); "
                    "give a local multi-vector folder (e.g. one trained with `ragmm train retriever`, "
                    '[model] kind = "late-interaction"); there are no hub downloads here'
                ) from None
            self._model.eval()
        return self._model

    def _encode(self, texts: Sequence[str], task: Literal["query", "document"], batch_size: int | None) -> list[np.ndarray]:
        import numpy as np
        import torch

        if not texts:
            return []
        encode = self.model.encode_query if task == "query" else self.model.encode_document
        with torch.inference_mode(), self.precision_context():
            # A list of (n_tokens_i, dim) tensors, masked to the tokens MaxSim scores.
            out = encode(
                list(texts),
                batch_size=batch_size or self.config.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return [np.ascontiguousarray(t.float().cpu().numpy(), dtype=np.float32) for t in out]

    def encode_query(self, inputs: Sequence[str], batch_size: int | None = None) -> list[np.ndarray]:
        """One ``(n_tokens, dim)`` float32 array of L2-normalised token vectors per query."""
        return self._encode(inputs, "query", batch_size)

    def encode_document(self, inputs: Sequence[str], batch_size: int | None = None) -> list[np.ndarray]:
        """One ``(n_tokens, dim)`` float32 array of L2-normalised token vectors per document."""
        return self._encode(inputs, "document", batch_size)


def is_multivector_folder(path: str | Path) -> bool:
    """Whether ``path`` is a saved multi-vector (late-interaction) sentence-transformers model."""
    folder = Path(path)
    return folder.is_dir() and _read_json(folder / "config_sentence_transformers.json").get("model_type") in _MULTIVECTOR_MODEL_TYPES


def _warn_if_not_multivector(load_from: str) -> None:
    """A local folder that is not a multi-vector save (a dense or bare Hugging Face checkpoint)
    loads with a freshly initialised projection: say so, as its scores mean nothing yet."""
    folder = Path(load_from)
    if not folder.is_dir():
        return
    model_type = _read_json(folder / "config_sentence_transformers.json").get("model_type")
    if model_type in _MULTIVECTOR_MODEL_TYPES:
        return
    architectures = _read_json(folder / "config.json").get("architectures") or []
    # Stanford ColBERT and transformers' *ForRetrieval models carry their own projection.
    if model_type is None and any(a == "HF_ColBERT" or a.endswith("ForRetrieval") for a in architectures):
        return
    log.warning(
        "%s is not a multi-vector checkpoint (model_type %r): sentence-transformers adds an untrained "
        "projection, so its token vectors are random until trained with `ragmm train retriever` "
        '([model] kind = "late-interaction")',
        folder,
        model_type,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
