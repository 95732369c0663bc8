"""Retrieval from the ``clip`` and ``video`` corpora with modality-aware late interaction (CLaMR).

A point is a multivector of rows, each tagged with its modality (see
:mod:`ragmm.ingest.video`). The store's two-stage query fetches candidates by the pooled dense
vector and ranks them by MaxSim over all rows; their rows then come back with them, and each
candidate is scored per modality, ``s_m = sum_q max_{rows r of m} q . r`` (MaxSim restricted
to the rows of modality ``m``), and the strategy combines those:

- ``maxsim``: plain ColBERT MaxSim over every row (each query token takes its best row of any
  modality);
- ``modality-max``: ``max_m s_m``, the best single modality (CLaMR's item score; equal to
  ``maxsim`` when the query is one vector, as with a dense text encoder);
- ``modality-aware``: ``max_m (a_m s_m + b_m + g_m(q))``: per-modality scales and offsets put
  the modalities' scores on one scale (image-text cosines run lower than text-text ones), and an
  optional linear head ``g(q) = W q + c`` lets the query pick modalities; both are fitted with
  CLaMR's loss (:func:`ragmm.training.losses.clamr.clamr_loss`) by
  :func:`ragmm.training.data.videobench.fit_head`;
- ``average``: the mean of ``s_m`` over the modalities a point has (CLaMR's naive baseline);
- ``speech``, ``ocr``, ``frame``, ``metadata``: one modality only (ablations).

Each hit carries every ``s_m`` in ``Hit.scores`` and, in ``item.metadata["matched"]``, the
modality that decided its score with the time span of the row that matched.

The default is ``modality-max``: on the video benchmark (``make video-data``) it ranks as well as
``modality-aware`` (nDCG@10 0.808 vs 0.807) and needs no fitted numbers, which hold only for the
encoders they were fitted with. ``modality-aware`` with that benchmark's head
(``head = "eval/videobench/modality-aware.npz"``) names the modality that answered far more often
(selection precision 1.0 for every modality vs 0.59-0.87, and 0 for frames).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError, EncoderMismatchError
from ragmm.ingest.video import MODALITIES, POOLED, ROWS
from ragmm.protocols import Encoder, Prefetch, SearchRequest, Store, Where
from ragmm.types import Hit, Item, Query

if TYPE_CHECKING:
    import numpy as np

Strategy = Literal["maxsim", "modality-max", "modality-aware", "average", "speech", "ocr", "frame", "metadata"]
STRATEGIES: tuple[str, ...] = ("maxsim", "modality-max", "modality-aware", "average", *MODALITIES)


def modality_scores(q: np.ndarray, rows: np.ndarray, tags: Sequence[str]) -> dict[str, tuple[float, int]]:
    """Per modality, MaxSim of the query over that modality's rows, and the best row.

    Args:
        q: (Tq, D) query vectors (one row for a dense query).
        rows: (R, D) a point's rows.
        tags: R modality tags.

    Returns:
        ``{modality: (score, index of the row that matched the most query tokens best)}`` for
        the modalities present.

    Example:
        >>> import numpy as np
        >>> s = modality_scores(np.array([[1.0, 0.0]]), np.array([[0.6, 0.8], [1.0, 0.0]]), ["speech", "frame"])
        >>> {m: round(v, 2) for m, (v, _) in s.items()}
        {'speech': 0.6, 'frame': 1.0}
    """
    import numpy as np

    sims = q @ rows.T  # (Tq, R)
    tags_arr = np.asarray(tags)
    out = {}
    for m in dict.fromkeys(tags):
        cols = np.flatnonzero(tags_arr == m)
        sub = sims[:, cols]  # (Tq, Rm)
        best = sub.argmax(axis=1)  # (Tq,)
        row = int(cols[np.bincount(best).argmax()])
        out[m] = (float(sub.max(axis=1).sum()), row)
    return out


def combine(strategy: str, per: Mapping[str, float], overall: float, scale: Mapping[str, float] | None = None, offset: Mapping[str, float] | None = None) -> tuple[float, str | None]:
    """The final score of a point and the modality that decided it.

    Args:
        strategy: one of :data:`STRATEGIES`.
        per: ``{modality: s_m}`` for the modalities the point has.
        overall: plain MaxSim over all rows.
        scale, offset: ``a_m`` and ``b_m (+ g_m(q))`` of ``modality-aware`` (missing: 1 and 0).

    Returns:
        ``(score, modality)``; a point lacking the one modality asked for scores ``-inf``.
    """
    if not per:
        return -math.inf, None
    if strategy in ("maxsim", "modality-max"):
        best = max(per, key=per.__getitem__)
        return (overall if strategy == "maxsim" else per[best]), best
    if strategy == "modality-aware":
        adjusted = {m: (scale or {}).get(m, 1.0) * s + (offset or {}).get(m, 0.0) for m, s in per.items()}
        best = max(adjusted, key=adjusted.__getitem__)
        return adjusted[best], best
    if strategy == "average":
        return sum(per.values()) / len(per), max(per, key=per.__getitem__)
    if strategy in MODALITIES:
        return (per[strategy], strategy) if strategy in per else (-math.inf, None)
    raise ConfigError(f"unknown video scoring strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


class VideoRetriever:
    """Searches the ``clip`` and ``video`` corpora (see the module docstring).

    Args:
        config: :class:`VideoRetriever.Config`.
        store: where the corpora live.
        encoders: modality -> encoder (``text``; ``image`` for query images in the text space).
        embeddings: the shared query-embedding memo (``text(encoder, text)``, ``image(encoder, path)``).
        hnsw_ef: HNSW search breadth of the prefetch (``None``: the store's default).
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        strategy: Strategy = Field("modality-max", description="how per-modality scores combine: " + ", ".join(STRATEGIES))
        prefetch: int = Field(200, ge=1, description="candidates fetched by the pooled vector before MaxSim")
        candidates: int = Field(50, ge=1, description="candidates ranked by MaxSim that the strategy rescores (at least k)")
        scale: dict[str, float] = Field(default_factory=dict, description="modality-aware: a_m per modality (default 1)")
        offset: dict[str, float] = Field(default_factory=dict, description="modality-aware: b_m per modality (default 0)")
        head: str | None = Field(None, description="modality-aware: a .npz from videobench's fit_head (scale, offset, W, c), instead of scale/offset")

    def __init__(self, config: VideoRetriever.Config | None = None, store: Store | None = None, encoders: Mapping[str, Encoder] | None = None, embeddings: Any = None, hnsw_ef: int | None = None) -> None:
        if store is None:
            raise ConfigError("VideoRetriever needs a store")
        self.config = config or VideoRetriever.Config()
        self.store = store
        self.encoders = encoders or {}
        self.embeddings = embeddings
        self.hnsw_ef = hnsw_ef
        self.head = load_head(self.config.head) if self.config.head else None

    @classmethod
    def from_config(cls, config: VideoRetriever.Config, *, store: Store, encoders: Mapping[str, Encoder], embeddings: Any = None, hnsw_ef: int | None = None, **_: Any) -> VideoRetriever:
        return cls(config, store, encoders, embeddings, hnsw_ef)

    @property
    def text_encoder(self) -> Encoder:
        return self.encoders["text"]

    def query_vectors(self, query: Query) -> dict[str, Any]:
        """``{"rows": (Tq, D) query vectors, "pooled": (D,)}``; ``{}`` for a query image whose
        encoder does not embed into the text encoder's space."""
        import numpy as np

        from ragmm.scores import mean_pool

        enc = self.text_encoder
        if query.image is not None:
            image_enc = self.encoders["image"] if "image" in self.encoders else None
            if image_enc is None or getattr(image_enc, "text_space", None) != enc.name:
                return {}
            vec = self.embeddings.image(image_enc, query.image) if self.embeddings is not None else image_enc.encode_document([query.image])[0]
        else:
            vec = self.embeddings.text(enc, query.text) if self.embeddings is not None else enc.encode_query([query.text])[0]
        q = np.asarray(vec, np.float32)
        q = q[None] if q.ndim == 1 else q  # (Tq, D)
        return {ROWS: q, POOLED: mean_pool(q)}

    def retrieve(self, query: Query, corpus: str, k: int, where: Where | None = None, strategy: str | None = None) -> list[Hit]:
        """The best ``k`` clips (or videos) of ``corpus``; ``strategy`` overrides the configured one."""
        import numpy as np

        spec = self.store.get_spec(corpus)
        if spec is None:
            return []
        if ROWS not in spec.vectors or POOLED not in spec.vectors:
            raise EncoderMismatchError(f"corpus '{spec.name}' has no '{ROWS}'/'{POOLED}' vectors; it is not a video corpus built by ragmm")
        if spec.encoder != self.text_encoder.name:
            raise EncoderMismatchError(
                f"corpus '{spec.name}' was built with text encoder {spec.encoder}, but the configured one is {self.text_encoder.name}; "
                "configure that encoder again ([encoders.text]), or re-index into a new store path"
            )
        built = spec.mixed_in.get("encoders.image")
        if query.image is not None and built and "image" in self.encoders and self.encoders["image"].name != built:
            # a query image embedded by another image encoder than the frames were
            from ragmm.stores.common import mixed_in_mismatch

            raise mixed_in_mismatch(spec, "encoders.image", self.encoders["image"].name, getattr(self.store, "location", "the store"))
        vectors = self.query_vectors(query)
        if not vectors:
            return []
        q = vectors[ROWS]
        request = SearchRequest(
            vector=q,
            using=ROWS,
            limit=max(k, self.config.candidates),
            where=where,
            prefetch=Prefetch(vector=vectors[POOLED], using=POOLED, limit=max(k, self.config.prefetch), where=where),
            hnsw_ef=self.hnsw_ef,
            with_vectors=True,
        )
        strategy = strategy or self.config.strategy
        scale, offset = self._calibration(q)
        hits = []
        for p in self.store.query(corpus, request):
            rows = np.asarray(p.vectors[ROWS], np.float32)
            meta = p.payload.get("metadata") or {}
            tags, spans = meta.get("rows") or [], meta.get("row_times") or []
            per = modality_scores(q, rows, tags) if len(tags) == len(rows) else {}
            score, matched = combine(strategy, {m: s for m, (s, _) in per.items()}, float(p.score), scale, offset)
            if score == -math.inf:
                continue
            item = Item.from_payload(p.payload)
            for heavy in ("rows", "row_times"):
                item.metadata.pop(heavy, None)
            if matched is not None:
                row = per[matched][1]
                t0, t1 = spans[row] if row < len(spans) else (item.locator.t_start, item.locator.t_end)
                item.metadata["matched"] = {"modality": matched, "t_start": t0, "t_end": t1}
            hits.append(Hit(item=item, score=score, scores={"maxsim": float(p.score), **{m: s for m, (s, _) in per.items()}}))
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:k]

    def _calibration(self, q: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
        """``(a_m, b_m + g_m(q))`` of the modality-aware strategy for this query."""
        if self.head is None:
            return dict(self.config.scale), dict(self.config.offset)
        return self.head.scale, self.head.offsets(q)


class ModalityHead:
    """The fitted part of ``modality-aware``: ``a_m``, ``b_m`` and the query head ``W q + c``.

    Args:
        scale: (M,) ``a_m``, in :data:`~ragmm.ingest.video.MODALITIES` order.
        offset: (M,) ``b_m``.
        weight: (M, D) ``W`` (zeros: no query dependence).
        bias: (M,) ``c``.
    """

    def __init__(self, scale: Any, offset: Any, weight: Any, bias: Any) -> None:
        import numpy as np

        self.scale = dict(zip(MODALITIES, np.asarray(scale, float).tolist(), strict=True))
        self._offset = np.asarray(offset, np.float32)
        self.weight = np.asarray(weight, np.float32)  # (M, D)
        self.bias = np.asarray(bias, np.float32)  # (M,)

    def offsets(self, q: np.ndarray) -> dict[str, float]:
        """``b_m + g_m(q)`` for a (Tq, D) query (its tokens' mean feeds the head)."""
        g = self.weight @ q.mean(axis=0) + self.bias  # (M,)
        return dict(zip(MODALITIES, (self._offset + g).tolist(), strict=True))

    def save(self, path: str | Path) -> None:
        import numpy as np

        np.savez(path, scale=np.array([self.scale[m] for m in MODALITIES]), offset=self._offset, weight=self.weight, bias=self.bias)


def load_head(path: str | Path) -> ModalityHead:
    """Read a head written by :meth:`ModalityHead.save`.

    Raises:
        ConfigError: missing or malformed file.
    """
    import numpy as np

    try:
        data = np.load(path)
        return ModalityHead(data["scale"], data["offset"], data["weight"], data["bias"])
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"[retrievers.video] head = {str(path)!r}: cannot read it ({exc}); fit one with `python -m ragmm.training.data.videobench fit` or remove the setting") from None
