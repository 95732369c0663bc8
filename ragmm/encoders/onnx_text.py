"""The query side of a sentence-transformers text model on onnxruntime, without torch.

A question is one short text: encoding it takes milliseconds, but importing
sentence-transformers (and through it scikit-learn, transformers and torch) takes seconds.
This module runs the same weights exported once to ONNX, with the model folder's own
``tokenizer.json`` (``tokenizers``) and the pooling sentence-transformers would apply:
mean (or CLS) pooling over the attention mask, then L2 normalisation.

Only models whose sentence-transformers pipeline is ``Transformer -> Pooling (mean | cls)
[-> Normalize]`` qualify (MiniLM, MPNet, BGE, E5...); anything else (Dense layers, routers,
image towers) stays on sentence-transformers.

The export is cached under ``$RAGMM_CACHE`` (default ``~/.cache/ragmm``) in
``onnx/<key>/``, the key hashing the model folder's path and its files' sizes and
modification times: a changed model gets a new export.

Example:
    >>> folder = packaged_minilm_path()                      # doctest: +SKIP
    >>> enc = OnnxTextEncoder.load(folder)                   # doctest: +SKIP
    >>> enc.encode(["who designed the lighthouse lens?"]).shape   # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ragmm.errors import ModelNotFoundError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

# Bumped when the exported graph or the manifest changes meaning: old exports are not reused.
EXPORT_FORMAT = 1
ONNX_FILE = "model.onnx"
MANIFEST_FILE = "export.json"
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Files whose change means the exported graph or the tokenization would differ.
_KEY_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json", "modules.json", "sentence_bert_config.json")
# Single-text runs remembered (a question's tokens serve its vector and a reranker's MaxSim).
RECENT_RUNS = 8


def cache_root() -> Path:
    """ragmm's cache folder: ``$RAGMM_CACHE``, else ``~/.cache/ragmm``."""
    return Path(os.environ.get("RAGMM_CACHE") or Path.home() / ".cache" / "ragmm").expanduser()


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """What sentence-transformers does to a text, read from a model folder's files.

    Args:
        transformer: the folder of the Hugging Face transformer (weights, config, tokenizer).
        pooling: ``mean`` or ``cls``.
        max_seq_length: tokens kept per text (sentence-transformers truncates there).
        do_lower_case: sentence-transformers lowercases texts before tokenizing.
        dim: the embedding dimension.
    """

    transformer: Path
    pooling: Literal["mean", "cls"]
    max_seq_length: int
    do_lower_case: bool
    dim: int

    @classmethod
    def read(cls, folder: str | Path) -> QueryPlan | None:
        """The plan of a sentence-transformers folder, or ``None`` when its pipeline is not
        ``Transformer -> Pooling (mean | cls) [-> Normalize]`` or a file it needs is missing."""
        folder = Path(folder)
        try:
            modules = json.loads((folder / "modules.json").read_text())
        except (OSError, ValueError):
            return None
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return None
        transformer = folder / modules[0].get("path", "")
        if not (transformer / "tokenizer.json").is_file() or not (transformer / "config.json").is_file():
            return None
        try:
            pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text())
            st_config = _read_json(transformer / "sentence_bert_config.json")
            hf_config = json.loads((transformer / "config.json").read_text())
        except (OSError, ValueError, KeyError):
            return None
        # sentence-transformers 6 writes `pooling_mode: "mean"`; earlier versions one flag per mode.
        modes = [pooling["pooling_mode"]] if "pooling_mode" in pooling else [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
        names = {"mean": "mean", "cls": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
        mode = names.get(modes[0]) if len(modes) == 1 else None
        if mode is None or pooling.get("include_prompt", True) is False:
            return None
        # A default prompt would be prepended by sentence-transformers to every query.
        if _read_json(folder / "config_sentence_transformers.json").get("default_prompt_name"):
            return None
        # The truncation sentence-transformers applies: sentence_bert_config's max_seq_length
        # (older folders) or the tokenizer's model_max_length, capped by the position embeddings.
        limit = st_config.get("max_seq_length") or _read_json(transformer / "tokenizer_config.json").get("model_max_length")
        positions = hf_config.get("max_position_embeddings")
        limits = [int(n) for n in (limit, positions) if isinstance(n, int | float) and 0 < n < 1_000_000]
        dim = pooling.get("word_embedding_dimension") or pooling.get("embedding_dimension") or hf_config.get("hidden_size")
        if not limits or not dim:
            return None
        return cls(
            transformer=transformer,
            pooling=mode,
            max_seq_length=min(limits),
            do_lower_case=bool(st_config.get("do_lower_case", False)),
            dim=int(dim),
        )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def export_key(folder: str | Path) -> str:
    """A short hash naming the export of ``folder``: its resolved path, and the size and
    modification time of each file that shapes the graph or the tokenization (a stat per
    file, so looking an export up costs microseconds, not a read of the weights)."""
    folder = Path(folder).resolve()
    h = hashlib.sha256(f"ragmm-onnx-{EXPORT_FORMAT}\0{folder}".encode())
    for sub in sorted({folder, *(p.parent for p in folder.glob("*/config.json"))}):
        for name in _KEY_FILES:
            path = sub / name
            if path.is_file():
                st = path.stat()
                h.update(f"\0{path.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def export_dir(folder: str | Path) -> Path:
    """Where the export of ``folder`` lives (whether or not it exists yet)."""
    return cache_root() / "onnx" / export_key(folder)


def find_export(folder: str | Path) -> Path | None:
    """The finished export of ``folder``, or ``None``."""
    out = export_dir(folder)
    return out if (out / ONNX_FILE).is_file() and (out / MANIFEST_FILE).is_file() else None


def export_onnx(folder: str | Path, out: str | Path | None = None) -> Path:
    """Export the transformer of a sentence-transformers ``folder`` to ONNX (fp32, dynamic
    batch and length), once; returns the export folder.

    The graph outputs the token embeddings (B, T, D); pooling runs in numpy. Needs torch,
    transformers and the ``onnx`` package. The folder is written under a temporary name and
    renamed, so a concurrent reader never sees half an export.

    Raises:
        ModelNotFoundError: ``folder`` is not a model whose queries can run on ONNX.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    plan = QueryPlan.read(folder)
    if plan is None:
        raise ModelNotFoundError(f"{folder}: not a Transformer -> Pooling sentence-transformers folder; its queries cannot run on ONNX")
    out = Path(out) if out is not None else export_dir(folder)
    if (out / ONNX_FILE).is_file():
        return out
    tokenizer = AutoTokenizer.from_pretrained(str(plan.transformer))
    # Eager attention traces to plain matmuls and softmax; SDPA's traced branch depends on
    # whether a mask was given, which a trace cannot keep.
    model = AutoModel.from_pretrained(str(plan.transformer), attn_implementation="eager", dtype=torch.float32).eval()
    names = [n for n in _INPUT_NAMES if n in tokenizer.model_input_names]
    sample = tokenizer(["a short question", "a longer sample sentence to trace with"], padding=True, return_tensors="pt")

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state  # (B, T, D)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "token_embeddings"]}
        # The tracer warns about Python branches on shapes in transformers' mask code; the
        # export is checked against sentence-transformers at several lengths (tests).
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                TokenEmbeddings(),
                tuple(sample[n] for n in names),
                str(tmp / ONNX_FILE),
                input_names=names,
                output_names=["token_embeddings"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        manifest = {"format": EXPORT_FORMAT, "source": str(Path(folder).resolve()), "inputs": names, **asdict(plan)}
        manifest["transformer"] = str(plan.transformer)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        try:
            tmp.rename(out)
        except OSError:
            if not (out / ONNX_FILE).is_file():
                raise
            # Another process finished the same export first; theirs is as good.
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to %s for torch-free queries", folder, out)
    return out


def prune_exports() -> list[Path]:
    """Delete exports whose source model folder is gone (a trained checkpoint since removed,
    a test's temporary model), so the cache does not grow with every model ever seen.

    Returns:
        The export folders removed.
    """
    removed = []
    root = cache_root() / "onnx"
    for manifest in root.glob(f"*/{MANIFEST_FILE}"):
        try:
            source = Path(json.loads(manifest.read_text())["source"])
        except (OSError, ValueError, KeyError):
            continue
        if not source.exists():
            shutil.rmtree(manifest.parent, ignore_errors=True)
            removed.append(manifest.parent)
    return removed


class OnnxTextEncoder:
    """Sentence embeddings of a sentence-transformers model run by onnxruntime.

    Args:
        plan: what the model folder says about pooling, truncation and casing.
        export: the export folder (``model.onnx`` + ``export.json``).
        max_seq_length: tokens kept per text; ``None`` keeps the model's own limit.
        threads: onnxruntime intra-op threads; ``None`` lets it use every core.
    """

    def __init__(self, plan: QueryPlan, export: Path, max_seq_length: int | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.plan = plan
        self.dim = plan.dim
        self.tokenizer = Tokenizer.from_file(str(plan.transformer / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=min(max_seq_length or plan.max_seq_length, plan.max_seq_length))
        padding = self.tokenizer.padding or {}
        # Pad to the longest text of the batch, as transformers' tokenizer(padding=True) does
        # (tokenizer.json files often carry a fixed padding length).
        self.tokenizer.enable_padding(pad_id=padding.get("pad_id", 0), pad_token=padding.get("pad_token", "[PAD]"), pad_type_id=padding.get("pad_type_id", 0))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Between queries the worker threads sleep instead of spinning: a question every few
        # seconds gains nothing from busy-waiting, and the cores are shared.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(export / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self.session.get_inputs()]
        self._recent: dict[str, tuple[Any, Any, Any]] = {}
        self._recent_lock = threading.Lock()

    @classmethod
    def load(cls, folder: str | Path, max_seq_length: int | None = None, export: bool = True) -> OnnxTextEncoder:
        """The ONNX query encoder of a sentence-transformers ``folder``, exporting it first
        when ``export`` and no export exists.

        Raises:
            ModelNotFoundError: the folder's pipeline cannot run on ONNX, or it has no export
                and ``export`` is false.
        """
        plan = QueryPlan.read(folder)
        if plan is None:
            raise ModelNotFoundError(f"{folder}: not a Transformer -> Pooling sentence-transformers folder; its queries cannot run on ONNX")
        found = find_export(folder)
        if found is None:
            if not export:
                raise ModelNotFoundError(f"{folder}: no ONNX export in {export_dir(folder)}; index once, or load with export=True")
            found = export_onnx(folder)
        return cls(plan, found, max_seq_length)

    def _run(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray], list[Any]]:
        """The transformer's token embeddings (N, T, D), its inputs, and the encodings.

        The last few single texts are remembered: a question's dense vector and its token
        vectors (a late-interaction reranker's) then come from one run of the model.
        """
        if len(texts) == 1:
            with self._recent_lock:
                hit = self._recent.get(texts[0])
            if hit is None:
                hit = self._run_batch(texts)
                with self._recent_lock:
                    self._recent[texts[0]] = hit
                    while len(self._recent) > RECENT_RUNS:
                        self._recent.pop(next(iter(self._recent)))
            return hit
        return self._run_batch(texts)

    def _run_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray], list[Any]]:
        import numpy as np

        texts = [t.lower() for t in texts] if self.plan.do_lower_case else list(texts)
        encodings = self.tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),  # (N, T)
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),  # (N, T)
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),  # (N, T)
        }
        return self.session.run(None, {n: feeds[n] for n in self._inputs})[0], feeds, encodings

    def token_vectors(self, texts: Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        """(T_i, D) float32 L2-normalised token vectors per text, special and padding tokens
        left out: what :func:`ragmm.reranking.late_interaction.token_vectors` gives on torch."""
        return self.tokens_and_embeddings(texts, batch_size)[0]

    def tokens_and_embeddings(self, texts: Sequence[str], batch_size: int = 32) -> tuple[list[np.ndarray], np.ndarray]:
        """Both from one run of the model: the token vectors of :meth:`token_vectors` and the
        ``(N, dim)`` embeddings of :meth:`encode`."""
        import numpy as np

        out: list[np.ndarray] = []
        dense: list[np.ndarray] = []
        for i in range(0, len(texts), batch_size):
            tokens, feeds, encodings = self._run(texts[i : i + batch_size])
            dense.append(self._pool(tokens, feeds))
            norms = np.linalg.norm(tokens, axis=-1, keepdims=True)
            tokens = tokens / np.clip(norms, 1e-12, None)
            for row, enc in zip(tokens, encodings, strict=True):
                keep = np.array(enc.attention_mask, dtype=bool) & ~np.array(enc.special_tokens_mask, dtype=bool)
                out.append(np.ascontiguousarray(row[keep], dtype=np.float32))
        return out, (np.concatenate(dense) if dense else np.zeros((0, self.dim), dtype=np.float32))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32 L2-normalised embeddings, as sentence-transformers' ``encode``
        with ``normalize_embeddings=True`` gives them."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens, feeds, _ = self._run(texts)  # (N, T, D)
        return self._pool(tokens, feeds)

    def _pool(self, tokens: np.ndarray, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The model's pooling of raw ``(N, T, D)`` token embeddings, L2-normalised."""
        import numpy as np

        if self.plan.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            mask = feeds["attention_mask"][:, :, None].astype(np.float32)  # (N, T, 1)
            pooled = (tokens * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)  # (N, D)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.ascontiguousarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)
