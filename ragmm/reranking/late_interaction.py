"""The ``late-interaction`` reranker: MaxSim between query and item token vectors, normalised.

MaxSim sums, over the query's tokens, the best cosine among the item's tokens (Khattab and
Zaharia 2020); dividing by the number of query tokens puts it in [-1, 1] whatever the query's
length, before calibration maps it to a relevancy. Token vectors come from the configured text
encoder's own model (all-MiniLM-L6-v2 by default: no second model to load), or from a trained
multi-vector checkpoint (``model``).

A calibration with :attr:`~ragmm.reranking.calibration.Calibration.features` (a ``logistic``
one) is given a row per item instead of one score: MaxSim, the dense cosine of the same run of
the model (its pooled vector), and each one's distance to the best of the candidates of the
same corpus in this call (:data:`FEATURES`). The distances say what a fixed threshold on a raw
score cannot: whether an item is as good as this query's best, or far behind it.
"""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError
from ragmm.reranking.base import CalibratedReranker, item_text, load_calibration
from ragmm.reranking.calibration import Calibration
from ragmm.types import Item, Query

SHIPPED_CALIBRATION = Path(__file__).parent / "weights" / "late-interaction-minilm"
# What a logistic calibration may name: scores of the pair, and their distance to the best one
# among the candidates of the same corpus (<= 0).
FEATURES = ("maxsim", "cosine", "maxsim_to_best", "cosine_to_best")


@dataclass(slots=True)
class TextVectors:
    """One text's vectors from one run of the model.

    Args:
        tokens: (T, D) L2-normalised token vectors, special and padding tokens left out.
        dense: (D,) L2-normalised pooled vector; ``None``: the mean of the tokens serves.
    """

    tokens: Any
    dense: Any = None

    def pooled(self) -> Any:
        import numpy as np

        if self.dense is not None:
            return self.dense
        mean = np.asarray(self.tokens, dtype=np.float32).mean(axis=0) if len(self.tokens) else np.zeros(1, dtype=np.float32)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)


def _as_vectors(x: Any) -> TextVectors:
    return x if isinstance(x, TextVectors) else TextVectors(x)


_BLAS: Any = None


def one_blas_thread() -> Any:
    """A context in which numpy's BLAS runs on one thread.

    MaxSim's products are small ((T_q, D) x (D, T_i)); handed to a multi-threaded BLAS on a busy
    machine, each waits for its worker threads: measured here, 20-30 ms a product instead of
    0.1 ms, a question's rerank 330 ms p50 instead of 3 ms. The limit is process-wide while it
    holds (threadpoolctl, which scikit-learn installs); without threadpoolctl nothing changes.
    """
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        except ImportError:
            _BLAS = False
    return _BLAS.limit(limits=1, user_api="blas") if _BLAS else contextlib.nullcontext()


def maxsim(query: Any, item: Any) -> float:
    """Normalised MaxSim of L2-normalised token vectors: mean over query tokens of their best
    cosine among the item's tokens, in [-1, 1].

    Args:
        query: (Tq, D) token vectors.
        item: (Ti, D) token vectors.

    Example:
        >>> import numpy as np
        >>> round(maxsim(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32)), 3)
        1.0
    """
    import numpy as np

    if len(query) == 0 or len(item) == 0:
        return 0.0
    sim = np.asarray(query) @ np.asarray(item).T  # (Tq, Ti)
    return float(sim.max(axis=1).mean())


def token_vectors(st_model: Any, texts: Sequence[str], batch_size: int = 32) -> list[Any]:
    """(T_i, D) L2-normalised token vectors of a sentence-transformers model, special and
    padding tokens left out."""
    return [v.tokens for v in text_vectors(st_model, texts, batch_size)]


def text_vectors(st_model: Any, texts: Sequence[str], batch_size: int = 32) -> list[TextVectors]:
    """Token vectors and the model's own sentence embedding per text, from one forward pass."""
    import numpy as np
    import torch

    out: list[TextVectors] = []
    tok = st_model.tokenizer
    for i in range(0, len(texts), batch_size):
        batch = list(texts[i : i + batch_size])
        prepare = getattr(st_model, "preprocess", None) or st_model.tokenize
        features = {k: v.to(st_model.device) if hasattr(v, "to") else v for k, v in prepare(batch).items()}
        with torch.inference_mode():
            result = st_model.forward(features)
        emb = torch.nn.functional.normalize(result["token_embeddings"].float(), dim=-1).cpu().numpy()  # (B, T, D)
        dense = result.get("sentence_embedding")
        dense = None if dense is None else torch.nn.functional.normalize(dense.float(), dim=-1).cpu().numpy()  # (B, D)
        ids = features["input_ids"].cpu().numpy()
        mask = features["attention_mask"].cpu().numpy().astype(bool)
        special = np.isin(ids, list(tok.all_special_ids))
        for b, (row, keep) in enumerate(zip(emb, mask & ~special, strict=True)):
            out.append(TextVectors(np.ascontiguousarray(row[keep]), None if dense is None else dense[b]))
    return out


def encoder_text_vectors(text_encoder: Any) -> Callable[[Sequence[str]], list[TextVectors]]:
    """``texts -> TextVectors`` of a text encoder's own model.

    Its ONNX export (the query path) gives the same vectors as torch, without torch: tens of
    milliseconds instead of hundreds on CPU; sentence-transformers serves when there is none.
    """
    runtime = getattr(text_encoder, "query_runtime", lambda: None)()
    if runtime is None or not hasattr(runtime, "tokens_and_embeddings"):
        return functools.partial(text_vectors, text_encoder.model)

    def onnx_vectors(texts: Sequence[str]) -> list[TextVectors]:
        tokens, dense = runtime.tokens_and_embeddings(list(texts))
        return [TextVectors(t, d) for t, d in zip(tokens, dense, strict=True)]

    return onnx_vectors


class LateInteractionReranker(CalibratedReranker):
    """Relevancy from normalised MaxSim, calibrated per kind of item.

    Args:
        encode: ``(texts, is_query) -> list of (T, D) token vectors`` (or of
            :class:`TextVectors`, which also carry the dense vector).
        calibration: the curves fitted for this scorer.
        threshold: least relevancy kept (``None``: the calibration's).

    Example:
        >>> rr = LateInteractionReranker.from_config(LateInteractionReranker.Config(), encoders=pipe_encoders)  # doctest: +SKIP
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        model: str | None = Field(None, description="a multi-vector checkpoint; None = token vectors of [encoders.text]'s model")
        calibration: str | None = Field(None, description="calibration.json; None = the model folder's, or the shipped one for all-MiniLM-L6-v2 tokens")
        threshold: float | None = Field(None, ge=0, le=1, description="least calibrated relevancy kept; None = the one chosen on the dev split")

    def __init__(
        self, encode: Callable[[Sequence[str], bool], list[Any]], calibration: Calibration, threshold: float | None = None, scorer: str = "", cache_size: int = 4096
    ) -> None:
        super().__init__(calibration, threshold)
        self._encode = encode
        self.scorer = scorer
        # The same items come back across queries (and across the agent loop's retries): their
        # token vectors are kept, most recently used last.
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self.cache_size = cache_size

    def item_vectors(self, texts: Sequence[str]) -> list[Any]:
        """:class:`TextVectors` per item text, from the cache when seen recently."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for text, vecs in zip(missing, self._encode(missing, False) if missing else [], strict=True):
            self._cache[text] = _as_vectors(vecs)
        out = []
        for t in texts:
            self._cache.move_to_end(t)
            out.append(self._cache[t])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    @classmethod
    def from_config(cls, config: Config, encoders: Mapping[str, Any] | None = None, **_: Any) -> LateInteractionReranker:
        if config.model:
            from ragmm.encoders.late_interaction import LateInteractionEncoder

            enc = LateInteractionEncoder(LateInteractionEncoder.Config(model=config.model))
            folder = Path(config.model).expanduser()
            calibration = load_calibration(config.calibration, folder if folder.is_dir() else None, None)

            def encode(texts: Sequence[str], is_query: bool) -> list[Any]:
                return enc.encode_query(texts) if is_query else enc.encode_document(texts)

            return cls(encode, calibration, config.threshold, scorer=enc.name)
        if encoders is None:
            raise ConfigError("[reranker] type = 'late-interaction' without `model` reads the text encoder's tokens; build it through ragmm.Pipeline")
        calibration = load_calibration(config.calibration, None, SHIPPED_CALIBRATION)
        state: dict[str, Any] = {}

        def encode_tokens(texts: Sequence[str], is_query: bool) -> list[Any]:
            if "tokens" not in state:
                text_encoder = encoders["text"]
                scorer = f"{text_encoder.name}:tokens"
                if calibration.scorer and calibration.scorer != scorer:
                    raise ConfigError(
                        f"[reranker] the calibration was fitted on {calibration.scorer} scores but the text encoder gives {scorer}; "
                        "fit one with `ragmm train reranker --config training/configs/reranker-late.toml`"
                    )
                state["tokens"] = encoder_text_vectors(text_encoder)
            return state["tokens"](list(texts))

        return cls(encode_tokens, calibration, config.threshold, scorer=calibration.scorer)

    def raw_scores(self, query: Query, items: Sequence[Item]) -> list[Any]:
        """MaxSim per item; with a feature calibration, a row of its ``features`` per item."""
        q = _as_vectors(self._encode([query.text], True)[0])
        docs = self.item_vectors([item_text(it) for it in items])
        with one_blas_thread():
            scores = [maxsim(q.tokens, d.tokens) for d in docs]
        names = self.calibration.features
        if not names:
            return scores
        import numpy as np

        unknown = set(names) - set(FEATURES)
        if unknown:
            raise ConfigError(f"[reranker] the calibration names features {sorted(unknown)}; the late-interaction reranker gives {list(FEATURES)}")
        qv = np.asarray(q.pooled(), dtype=np.float32)
        cols = {"maxsim": np.asarray(scores, dtype=np.float64), "cosine": np.asarray([float(qv @ d.pooled()) for d in docs], dtype=np.float64)}
        # The best of the same corpus: scores of different corpora are not on one scale.
        corpora = np.asarray([it.corpus or it.modality for it in items])
        for base in ("maxsim", "cosine"):
            best = np.empty(len(items))
            for corpus in set(corpora.tolist()):
                same = corpora == corpus
                best[same] = cols[base][same].max()
            cols[f"{base}_to_best"] = cols[base] - best
        return np.stack([cols[n] for n in names], axis=1).tolist()
