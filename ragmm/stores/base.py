"""The store facade: what every Qdrant backend shares, written once (qdrant-client's design:
one class owns validation and the shared logic, ``QdrantLocal``/``QdrantRemote`` supply the
calls that differ).

:class:`QdrantStore` checks collection names, specs and vectors, keeps the spec cache,
turns :class:`~ragmm.protocols.Where` into filters, converts points, splits large upserts
into batches and resolves search settings (HNSW ``ef``, quantisation rescoring). A backend
(:class:`~ragmm.stores.edge.EdgeStore`, :class:`~ragmm.stores.server.ServerStore`)
implements the ``_``-prefixed methods below, each a thin call into its Qdrant library.

Two-stage queries: a :class:`~ragmm.protocols.SearchRequest` with a ``prefetch`` becomes
Qdrant's ``prefetch`` + ``query``; the main ``where`` applies to the prefetch too, so that
both backends return the same candidates.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError
from ragmm.protocols import CollectionSpec, Prefetch, SearchRequest, StoredPoint, Where
from ragmm.stores.common import check_name, check_same_spec, check_vector, missing_collection, to_list, unrecorded_mixed_in, valid_name

log = logging.getLogger(__name__)

Quantization = Literal["none", "int8"]

# HNSW settings chosen with bench/store_scale.py: recall@10 >= 0.95 on each of three
# independent 100k builds, with a notch of margin (figures in docs/scaling.md).
DEFAULT_HNSW_M = 32
DEFAULT_HNSW_EF_CONSTRUCT = 128
DEFAULT_HNSW_EF = 256
# int8 scores pick ``oversampling x limit`` candidates that the original vectors rescore.
DEFAULT_OVERSAMPLING = 2.0
# Points per backend write: large enough that per-call overhead vanishes, small enough for a
# server's request size limit (32 MB) with 32 x 128-d multivectors as JSON.
UPSERT_BATCH = 512


class IndexSettings(BaseModel):
    """The ``[store]`` settings every backend shares (each backend's ``Config`` adds its own)."""

    model_config = ConfigDict(extra="forbid")

    hnsw_m: int | None = Field(None, gt=3, le=128, description=f"HNSW edges per node for new collections (None: {DEFAULT_HNSW_M})")
    hnsw_ef_construct: int | None = Field(
        None, gt=3, le=4096, description=f"HNSW build breadth for new collections (None: {DEFAULT_HNSW_EF_CONSTRUCT})"
    )
    hnsw_ef: int | None = Field(None, gt=0, le=4096, description=f"search breadth when [retrieve] sets none (None: {DEFAULT_HNSW_EF})")
    # int8 by default: on 3 independent 100k builds the same recall@10 as float32 (min 0.996 at
    # ef 256), a faster HNSW build (graph built on the int8 copies) and a 5x lower search p50
    # (bench/store_scale.py, docs/scaling.md section 3).
    quantization: Quantization = Field(
        "int8", description='"int8": 4x smaller copies of the vectors searched first, rescored with the originals; "none": float32 only (new collections)'
    )
    oversampling: float | None = Field(None, ge=1, le=16, description=f"with int8, candidates per result to rescore (None: {DEFAULT_OVERSAMPLING})")
    multivector_hnsw: bool = Field(False, description="HNSW graphs for multivectors too (they normally only rescore prefetched candidates)")


@dataclasses.dataclass(frozen=True, slots=True)
class StageParams:
    """Search settings of one HNSW stage, resolved from a request and the store's defaults."""

    hnsw_ef: int
    quantized: bool
    oversampling: float


class QdrantStore(ABC):
    """A :class:`~ragmm.protocols.Store` over one Qdrant backend.

    Args:
        hnsw_m: HNSW edges per node for new collections.
        hnsw_ef_construct: HNSW build breadth for new collections.
        hnsw_ef: search breadth when a request gives none.
        quantization: ``"int8"`` (default) stores a scalar-quantised copy of every vector (4x
            smaller, searched first) and rescores with the original vectors; ``"none"`` does not.
        oversampling: with int8, candidates per result that the original vectors rescore.
        multivector_hnsw: build an HNSW graph for multivectors too. Off by default: they
            rescore prefetched candidates (Qdrant's advice for ColBERT-style vectors), and a
            query by a multivector alone is then exact.
    """

    def __init__(
        self,
        *,
        hnsw_m: int | None = None,
        hnsw_ef_construct: int | None = None,
        hnsw_ef: int | None = None,
        quantization: Quantization = "int8",
        oversampling: float | None = None,
        multivector_hnsw: bool = False,
    ) -> None:
        if quantization not in ("none", "int8"):
            raise ConfigError(f"store quantization {quantization!r} is not known; use \"int8\" or \"none\"")
        self.hnsw_m = hnsw_m or DEFAULT_HNSW_M
        self.hnsw_ef_construct = hnsw_ef_construct or DEFAULT_HNSW_EF_CONSTRUCT
        self.hnsw_ef = hnsw_ef or DEFAULT_HNSW_EF
        self.quantization = quantization
        self.oversampling = oversampling or DEFAULT_OVERSAMPLING
        self.multivector_hnsw = multivector_hnsw
        self._specs: dict[str, CollectionSpec] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_config(cls, cfg: BaseModel) -> Self:
        """Build the store from its validated ``[store]`` section (its ``Config``)."""
        return cls(**cfg.model_dump())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what each backend supplies --------------------------------------------------------

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the store is, for messages (a folder or a server URL)."""

    @abstractmethod
    def _read_spec(self, name: str) -> CollectionSpec | None:
        """The stored spec of a valid collection name, or ``None``."""

    @abstractmethod
    def _create(self, spec: CollectionSpec) -> None:
        """Create a new collection with its payload indexes and remember ``spec`` with it."""

    @abstractmethod
    def _add_payload_indexes(self, spec: CollectionSpec, fields: Sequence[str], respec: bool = False) -> None:
        """Index ``fields`` of an existing collection and, with ``respec``, store ``spec`` (which
        lists them, and records what else changed)."""

    @abstractmethod
    def _names(self) -> list[str]:
        """Names of the ragmm collections."""

    @abstractmethod
    def _drop(self, name: str) -> None:
        """Delete an existing collection."""

    @abstractmethod
    def _upsert(self, name: str, points: list[StoredPoint]) -> None:
        """Write points whose vectors are checked plain lists."""

    @abstractmethod
    def _query(self, name: str, requests: list[SearchRequest]) -> list[list[Any]] | None:
        """Scored records per request (vectors are checked plain lists); ``None`` if the
        collection vanished meanwhile."""

    @abstractmethod
    def _retrieve(self, name: str, ids: list[str], with_vectors: bool) -> list[Any]:
        """Records by id, in any order."""

    @abstractmethod
    def _scroll(self, name: str, flt: Any, offset: Any, limit: int, with_vectors: bool) -> tuple[list[Any], Any] | None:
        """One page of records and the next offset (``None`` at the end)."""

    @abstractmethod
    def _count(self, name: str, flt: Any) -> int:
        """Exact number of points matching the backend filter ``flt``."""

    @abstractmethod
    def _delete(self, name: str, flt: Any) -> None:
        """Delete the points matching ``flt`` (``None``: every point)."""

    @abstractmethod
    def _match(self, key: str, value: Any) -> Any:
        """A condition: field ``key`` equals ``value`` (or any of them for a list)."""

    @abstractmethod
    def _filter_of(self, must: list[Any], must_not: list[Any]) -> Any:
        """A backend filter from conditions (either list may be empty)."""

    @abstractmethod
    def flush(self) -> None:
        """Make every write durable."""

    @abstractmethod
    def optimize(self, name: str | None = None) -> dict[str, bool]:
        """Build search indexes now where the backend does not do it in the background."""

    @abstractmethod
    def close(self) -> None:
        """Release files and connections."""

    # -- collections -------------------------------------------------------------------------

    def create_collection(self, spec: CollectionSpec) -> None:
        """Create the collection, or check that the existing one has the same spec.

        Payload indexes named in ``spec`` but missing from an existing collection are added.

        Raises:
            EncoderMismatchError: the collection exists with another encoder or vectors.
            ConfigError: the name is not a valid collection name, or a distance is unknown.
        """
        name = check_name(spec.name)
        for vname, vs in spec.vectors.items():
            if vs.distance not in ("cosine", "dot", "euclid"):
                raise ConfigError(f"collection {name!r}: vector {vname!r} has unknown distance {vs.distance!r}; use cosine, dot or euclid")
        with self._lock:
            stored = self.get_spec(name)
            if stored is None:
                self._create(spec)
                self._specs[name] = spec
                return
            check_same_spec(stored, spec, self.location)
            unrecorded = unrecorded_mixed_in(stored, spec, self.location)
            if unrecorded:
                log.warning(
                    "collection %r in %s does not record which %s it mixes into its vectors (built before ragmm recorded it); "
                    "recording the configured one now: if it was built with another, re-index it",
                    name, self.location, ", ".join(f"{section.split('.')[-1]} encoder ({n})" for section, n in unrecorded.items()),
                )  # fmt: skip
            missing = tuple(f for f in spec.payload_indexes if f not in stored.payload_indexes)
            if missing or unrecorded:
                stored = CollectionSpec.from_dict(
                    {**stored.to_dict(), "payload_indexes": [*stored.payload_indexes, *missing], "mixed_in": {**stored.mixed_in, **unrecorded}}
                )
            self._add_payload_indexes(stored, missing, respec=bool(missing or unrecorded))
            self._specs[name] = stored

    def get_spec(self, name: str) -> CollectionSpec | None:
        """The spec the collection was created with, or ``None`` if it does not exist."""
        spec = self._specs.get(name)
        if spec is not None or not valid_name(name):  # a name like "../x" never reaches a path or URL
            return spec
        spec = self._read_spec(name)
        if spec is not None:
            self._specs[name] = spec
        return spec

    def collections(self) -> list[str]:
        """Names of the existing collections, sorted."""
        return sorted(self._names())

    def drop_collection(self, name: str) -> None:
        """Delete a collection and everything in it (no error if it does not exist)."""
        with self._lock:
            self._specs.pop(name, None)
            if valid_name(name):
                self._drop(name)

    # -- points ------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        """Insert or replace points by id (vectors may be numpy arrays or lists).

        Raises:
            RagmmError: the collection does not exist.
            EncoderMismatchError: a vector has another name or dimension than the spec.
        """
        if not points:
            return
        spec = self.get_spec(name)
        if spec is None:
            raise missing_collection(name, self.location)
        for start in range(0, len(points), UPSERT_BATCH):
            batch = []
            for p in points[start : start + UPSERT_BATCH]:
                vectors = {k: to_list(v) for k, v in p.vectors.items()}
                for k, v in vectors.items():
                    check_vector(spec, k, v, self.location)
                batch.append(StoredPoint(id=str(p.id), payload=p.payload, vectors=vectors))
            self._upsert(name, batch)

    def query(self, name: str, request: SearchRequest) -> list[StoredPoint]:
        """One query, optionally two-stage; best first, with payloads and ``score`` set.

        With ``request.prefetch``, the prefetch's ``limit`` nearest points by its vector
        (among those matching both its ``where`` and the request's) are the only candidates
        that ``request.vector`` scores.

        Returns:
            ``[]`` for a missing collection or a ``limit`` under 1.

        Raises:
            EncoderMismatchError: a vector name the collection lacks, or another dimension.
        """
        return self.query_batch(name, [request])[0]

    def query_batch(self, name: str, requests: Sequence[SearchRequest]) -> list[list[StoredPoint]]:
        """Several queries in one backend call; one result list per request, in order."""
        spec = self.get_spec(name)
        results: list[list[StoredPoint]] = [[] for _ in requests]
        live = [i for i, r in enumerate(requests) if r.limit > 0 and (r.prefetch is None or r.prefetch.limit > 0)]
        if spec is None or not live:
            return results
        checked = [self._checked(spec, requests[i]) for i in live]
        found = self._query(name, checked) or [[] for _ in live]
        for i, records in zip(live, found, strict=True):
            results[i] = [_point(r, score=r.score) for r in records]
        return results

    def search(
        self, name: str, vector: Any, *, using: str, limit: int, where: Where | None = None, hnsw_ef: int | None = None
    ) -> list[StoredPoint]:
        """Nearest points to ``vector`` by the named vector ``using`` (a one-stage :meth:`query`)."""
        return self.query(name, SearchRequest(vector=vector, using=using, limit=limit, where=where, hnsw_ef=hnsw_ef))

    def retrieve(self, name: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        """Points by id, in the order asked (missing ids are left out)."""
        if not ids or self.get_spec(name) is None:
            return []
        found = {str(r.id): _point(r) for r in self._retrieve(name, [str(i) for i in ids], with_vectors) or []}
        return [found[i] for i in map(str, ids) if i in found]

    def scroll(self, name: str, where: Where | None = None, *, with_vectors: bool = False, batch: int = 256) -> Iterator[StoredPoint]:
        """Every point matching ``where``, in id order, ``batch`` at a time."""
        if self.get_spec(name) is None:
            return
        flt, offset = self.filter(where), None
        while True:
            page = self._scroll(name, flt, offset, batch, with_vectors)
            if page is None:
                return
            records, offset = page
            yield from (_point(r) for r in records)
            if offset is None:
                return

    def count(self, name: str, where: Where | None = None) -> int:
        """Number of points matching ``where`` (0 for a missing collection)."""
        return 0 if self.get_spec(name) is None else self._count(name, self.filter(where))

    def delete(self, name: str, where: Where) -> None:
        """Delete the points matching ``where`` (an empty ``Where`` matches every point)."""
        if self.get_spec(name) is not None:
            self._delete(name, self.filter(where))

    # -- shared helpers for backends ---------------------------------------------------------

    def filter(self, *wheres: Where | None) -> Any:
        """Every condition of ``wheres`` as one backend filter (``None`` when there is none)."""
        must = [self._match(k, v) for w in wheres if w is not None for k, v in w.must.items()]
        must_not = [self._match(k, v) for w in wheres if w is not None for k, v in w.must_not.items()]
        return self._filter_of(must, must_not) if must or must_not else None

    def stage(self, request: SearchRequest, limit: int, *, prefetch: bool = False) -> StageParams:
        """Settings of the HNSW stage that returns ``limit`` points (never a breadth below it).

        A prefetch searches only as broadly as its ``limit`` unless the request sets
        ``hnsw_ef``: its limit already over-fetches for the rescoring stage, and a wider
        search buys nothing there (bench/late_interaction.py, 20k x 32 tokens: recall@10
        0.975 with ef = limit = 100 and 0.974 with ef 256, at a third of the latency).
        """
        ef = request.hnsw_ef or (limit if prefetch else self.hnsw_ef)
        return StageParams(hnsw_ef=max(ef, limit), quantized=self.quantization != "none", oversampling=self.oversampling)

    def _checked(self, spec: CollectionSpec, request: SearchRequest) -> SearchRequest:
        """``request`` with its vectors as checked plain lists."""
        vector = to_list(request.vector)
        check_vector(spec, request.using, vector, self.location)
        prefetch = request.prefetch
        if prefetch is not None:
            pvec = to_list(prefetch.vector)
            check_vector(spec, prefetch.using, pvec, self.location)
            prefetch = Prefetch(vector=pvec, using=prefetch.using, limit=prefetch.limit, where=prefetch.where)
        return dataclasses.replace(request, vector=vector, prefetch=prefetch)


def _point(record: Any, score: float = 0.0) -> StoredPoint:
    """A Qdrant record or scored point (both libraries name the fields alike) as a StoredPoint."""
    vectors = record.vector if isinstance(record.vector, dict) else {}
    return StoredPoint(id=str(record.id), payload=record.payload or {}, vectors=dict(vectors), score=score)
