"""The embedded default store: Qdrant Edge shards in a local folder, no server.

Layout of a store folder (``Config.path``)::

    <path>/collections/<name>/shard/       one EdgeShard (segments + WAL)
    <path>/collections/<name>/spec.json    the CollectionSpec it was created with

The spec is written (atomically) only after the shard exists, so a folder without
``spec.json`` is a collection whose creation was cut short: it is not listed and
``create_collection`` replaces it. Shards open lazily on first use, so opening a store
reads nothing but folder names.

Example:
    >>> from ragmm.protocols import CollectionSpec, VectorSpec
    >>> store = EdgeStore(".ragmm")                                   # doctest: +SKIP
    >>> store.create_collection(CollectionSpec("paragraph", {"dense": VectorSpec(384)}, encoder="all-MiniLM-L6-v2"))
    >>> store.upsert("paragraph", points); store.optimize()           # build HNSW after a big write
    >>> store.search("paragraph", qvec, using="dense", limit=5)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError, RagmmError
from ragmm.protocols import CollectionSpec, StoredPoint, Where
from ragmm.stores.common import (
    check_name,
    check_same_spec,
    check_vector,
    missing_collection,
    to_list,
    valid_name,
)

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
SHARD_DIR = "shard"

# What we measured (qdrant-edge-py 0.9.0, 2 shared cores, 100k x 384 cosine vectors that
# mimic sentence embeddings: 48 latent dimensions + noise, so harder for HNSW than real text;
# 200 held-out queries, recall@10 against numpy brute force, max_search_threads=1):
# - Edge has no background optimizer. Upserts land in one appendable segment that is searched
#   by brute force (12-15 ms per query at 100k) until ``optimize()`` runs the optimizers
#   in-process. It builds HNSW only for segments above ``indexing_threshold`` (Qdrant's
#   default 10,000 KB, about 6,500 vectors of 384 floats; below that brute force is under
#   1 ms). Points added later stay in the small appendable segment (brute-forced next to the
#   HNSW segment) and optimize() leaves them there until they pass the threshold.
# - Search breadth vs recall@10 / p50 latency after optimize():
#       m=16, ef_construct=100 (Qdrant's default; build 42-114 s): ef=100 0.83 / 0.7 ms,
#           ef=128 0.88 / 0.95 ms, ef=256 0.95 / 1.6 ms
#       m=32, ef_construct=128 (build 175 s):  ef=64 0.91 / 0.9 ms, ef=100 0.96 / 1.2 ms,
#           ef=128 0.975 / 1.45 ms, ef=200 0.99 / 2.2 ms
#   (latencies measured while other jobs loaded the 2 cores, load 3-5). m=32 buys more recall
#   per millisecond than a wider search on m=16; its longer build is small next to encoding
#   100k chunks on a CPU. A filter on an indexed keyword field matching 1% of the points is
#   exact and 0.35 ms; the same filter on an unindexed field costs 3 ms.
DEFAULT_HNSW_M = 32
DEFAULT_HNSW_EF_CONSTRUCT = 128
# 256: on bench/retrieve_latency.py's store (real MiniLM vectors plus noisy copies, 100k) ef=128
# gave recall@10 0.924, under the 0.95 goal.
DEFAULT_HNSW_EF = 256


class EdgeStore:
    """A :class:`~ragmm.protocols.Store` over Qdrant Edge shards in a folder.

    Args:
        path: the store folder; created on the first ``create_collection``. A missing
            folder is a store with no collections.
        hnsw_m: HNSW edges per node for new collections.
        hnsw_ef_construct: HNSW build breadth for new collections.
        hnsw_ef: search breadth when the caller gives none.
        max_search_threads: threads of each shard's search pool.
        indexing_threshold_kb: segments larger than this get an HNSW index on ``optimize()``.
    """

    class Config(BaseModel):
        """``[store]`` settings of ``type = "edge"``."""

        model_config = ConfigDict(extra="forbid")

        path: str = Field(".ragmm", description="store folder; one subfolder per collection")
        hnsw_m: int | None = Field(None, gt=3, le=128, description=f"HNSW edges per node for new collections (None: {DEFAULT_HNSW_M})")
        hnsw_ef_construct: int | None = Field(
            None, gt=3, le=4096, description=f"HNSW build breadth for new collections (None: {DEFAULT_HNSW_EF_CONSTRUCT})"
        )
        hnsw_ef: int | None = Field(None, gt=0, le=4096, description=f"search breadth when [retrieve] sets none (None: {DEFAULT_HNSW_EF})")
        # 1 by default: on a 2-core machine the query encoder (torch) already uses the cores,
        # and a multi-threaded search pool only fights it for them; one HNSW search of a
        # single segment is sub-millisecond and cannot use more threads anyway.
        max_search_threads: int | None = Field(1, gt=0, description="search threads per collection (None: one per CPU)")
        indexing_threshold_kb: int | None = Field(
            None, gt=0, description="segments above this size (KB of vectors) get an HNSW index on optimize (None: Qdrant's 10000)"
        )

    def __init__(
        self,
        path: str | os.PathLike[str] = ".ragmm",
        *,
        hnsw_m: int | None = None,
        hnsw_ef_construct: int | None = None,
        hnsw_ef: int | None = None,
        max_search_threads: int | None = 1,
        indexing_threshold_kb: int | None = None,
    ) -> None:
        self.root = Path(path)
        self.hnsw_m = hnsw_m or DEFAULT_HNSW_M
        self.hnsw_ef_construct = hnsw_ef_construct or DEFAULT_HNSW_EF_CONSTRUCT
        self.hnsw_ef = hnsw_ef or DEFAULT_HNSW_EF
        self.max_search_threads = max_search_threads
        self.indexing_threshold_kb = indexing_threshold_kb
        self._shards: dict[str, Any] = {}
        self._specs: dict[str, CollectionSpec] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_config(cls, cfg: EdgeStore.Config) -> EdgeStore:
        """Build the store from its validated ``[store]`` section."""
        return cls(
            cfg.path,
            hnsw_m=cfg.hnsw_m,
            hnsw_ef_construct=cfg.hnsw_ef_construct,
            hnsw_ef=cfg.hnsw_ef,
            max_search_threads=cfg.max_search_threads,
            indexing_threshold_kb=cfg.indexing_threshold_kb,
        )

    def __repr__(self) -> str:
        return f"EdgeStore({str(self.root)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collections ---------------------------------------------------------------------

    def create_collection(self, spec: CollectionSpec) -> None:
        """Create the collection, or check that the existing one has the same spec.

        Payload indexes named in ``spec`` but missing from an existing collection are added.

        Raises:
            EncoderMismatchError: the collection exists with another encoder or vectors.
            ConfigError: the name cannot be a folder name.
        """
        from qdrant_edge import EdgeShard, PayloadSchemaType, UpdateOperation

        name = check_name(spec.name)
        with self._lock:
            stored = self.get_spec(name)
            if stored is not None:
                check_same_spec(stored, spec, str(self.root))
                missing = tuple(f for f in spec.payload_indexes if f not in stored.payload_indexes)
                if missing:
                    shard = self._shard(name)
                    for field in missing:
                        shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
                    self._write_spec(CollectionSpec.from_dict({**stored.to_dict(), "payload_indexes": [*stored.payload_indexes, *missing]}))
                return
            folder = self._folder(name)
            if folder.exists():
                # No spec.json: an earlier create_collection died between shard and spec.
                log.warning("%s: removing a half-created collection (no %s) before creating it again", folder, SPEC_FILE)
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            shard = EdgeShard.create(str(folder / SHARD_DIR), self._edge_config(spec))
            for field in spec.payload_indexes:
                shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
            shard.flush()
            self._shards[name] = shard
            self._write_spec(spec)

    def get_spec(self, name: str) -> CollectionSpec | None:
        """The spec the collection was created with, or ``None`` if it does not exist."""
        spec = self._specs.get(name)
        if spec is not None or not valid_name(name):  # a name like "../x" must never reach the file system
            return spec
        path = self._folder(name) / SPEC_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            spec = CollectionSpec.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise RagmmError(f"{path}: unreadable collection spec ({exc}); restore it, or delete the folder {path.parent} and re-index") from None
        self._specs[name] = spec
        return spec

    def collections(self) -> list[str]:
        """Names of the existing collections (folders with a ``spec.json``)."""
        base = self.root / "collections"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if not p.name.startswith(".") and (p / SPEC_FILE).is_file())

    def drop_collection(self, name: str) -> None:
        """Delete a collection and everything in it (no error if it does not exist)."""
        with self._lock:
            shard = self._shards.pop(name, None)
            self._specs.pop(name, None)
            if shard is not None:
                shard.close()
            folder = self._folder(name)
            if not valid_name(name) or not folder.exists():
                return
            # Rename first: a crash during rmtree leaves a hidden folder, never half a collection.
            trash = folder.with_name(f".drop-{name}-{uuid.uuid4().hex[:8]}")
            folder.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)

    def optimize(self, name: str | None = None) -> dict[str, bool]:
        """Run Edge's optimizers (HNSW build, merges, vacuum) now; call it after a big write.

        Edge has no background optimizer: without this, new points are searched by brute force.

        Args:
            name: one collection, or ``None`` for all.

        Returns:
            For each collection, whether any segment was rebuilt.
        """
        names = [name] if name is not None else self.collections()
        done = {}
        for n in names:
            shard = self._shard(n)
            if shard is not None:
                done[n] = bool(shard.optimize())
        return done

    # -- points --------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        """Insert or replace points by id.

        Raises:
            RagmmError: the collection does not exist.
            EncoderMismatchError: a vector has another name or dimension than the spec.
        """
        from qdrant_edge import Point, UpdateOperation

        if not points:
            return
        spec, shard = self.get_spec(name), self._shard(name)
        if spec is None or shard is None:
            raise missing_collection(name, str(self.root))
        batch = []
        for p in points:
            vectors = {k: to_list(v) for k, v in p.vectors.items()}
            for k, v in vectors.items():
                check_vector(spec, k, v, str(self.root))
            batch.append(Point(p.id, vectors, p.payload))
        shard.update(UpdateOperation.upsert_points(batch))

    def search(
        self, name: str, vector: Any, *, using: str, limit: int, where: Where | None = None, hnsw_ef: int | None = None
    ) -> list[StoredPoint]:
        """Nearest points to ``vector``, best first, with payloads and scores ([] if no collection).

        Raises:
            EncoderMismatchError: ``using`` is not a vector of the collection, or ``vector``
                has another dimension.
        """
        from qdrant_edge import Query, QueryRequest, SearchParams

        spec = self.get_spec(name)
        if spec is None or limit <= 0:
            return []
        vec = to_list(vector)
        check_vector(spec, using, vec, str(self.root))
        request = QueryRequest(
            limit=limit,
            query=Query.Nearest(vec, using=using),
            filter=_filter(where),
            with_payload=True,
            with_vector=False,
            params=SearchParams(hnsw_ef=max(hnsw_ef or self.hnsw_ef, limit)),
        )
        return [StoredPoint(id=str(p.id), payload=p.payload or {}, score=p.score) for p in self._shard(name).query(request)]

    def retrieve(self, name: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        """Points by id, in the order asked (missing ids are left out)."""
        shard = self._shard(name)
        if shard is None or not ids:
            return []
        found = {str(r.id): _point(r) for r in shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)}
        return [found[i] for i in map(str, ids) if i in found]

    def scroll(self, name: str, where: Where | None = None, *, with_vectors: bool = False, batch: int = 256) -> Iterator[StoredPoint]:
        """Every point matching ``where``, in id order, ``batch`` at a time."""
        from qdrant_edge import ScrollRequest

        shard = self._shard(name)
        if shard is None:
            return
        flt, offset = _filter(where), None
        while True:
            records, offset = shard.scroll(ScrollRequest(offset=offset, limit=batch, filter=flt, with_payload=True, with_vector=with_vectors))
            yield from (_point(r) for r in records)
            if offset is None:
                return

    def count(self, name: str, where: Where | None = None) -> int:
        """Number of points matching ``where`` (0 for a missing collection)."""
        from qdrant_edge import CountRequest

        shard = self._shard(name)
        return 0 if shard is None else int(shard.count(CountRequest(exact=True, filter=_filter(where))))

    def delete(self, name: str, where: Where) -> None:
        """Delete the points matching ``where`` (an empty ``Where`` matches every point)."""
        from qdrant_edge import Filter, UpdateOperation

        shard = self._shard(name)
        if shard is not None:
            shard.update(UpdateOperation.delete_points_by_filter(_filter(where) or Filter()))

    def flush(self) -> None:
        """Make every write durable."""
        with self._lock:
            for shard in self._shards.values():
                shard.flush()

    def close(self) -> None:
        """Flush and close every open shard; the store can be used again (shards reopen)."""
        with self._lock:
            shards, self._shards = self._shards, {}
            self._specs.clear()
            for shard in shards.values():
                shard.flush()
                shard.close()

    # -- internals -----------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        return self.root / "collections" / name

    def _shard(self, name: str) -> Any:
        """The open shard of ``name`` (opened on first use), or ``None`` if there is no collection."""
        shard = self._shards.get(name)
        if shard is not None:
            return shard
        with self._lock:
            if name in self._shards:
                return self._shards[name]
            spec = self.get_spec(name)
            if spec is None:
                return None
            from qdrant_edge import EdgeConfig, EdgeShard

            path = self._folder(name) / SHARD_DIR
            # Edge refuses a load config without vectors; the spec's vectors are checked against
            # the shard's. HNSW and optimizer settings are left None: they stay as created.
            config = EdgeConfig(vectors=self._edge_vectors(spec), max_search_threads=self.max_search_threads)
            try:
                shard = EdgeShard.load(str(path), config)
            except Exception as exc:  # noqa: BLE001 - qdrant_edge raises plain Exception
                raise RagmmError(
                    f"{path}: cannot open the collection shard ({exc}); if another ragmm process uses {self.root}, "
                    f"stop it, else drop the collection with `ragmm remove` and re-index"
                ) from None
            self._shards[name] = shard
            return shard

    def _edge_config(self, spec: CollectionSpec) -> Any:
        """The EdgeConfig of a new shard for ``spec``."""
        from qdrant_edge import EdgeConfig, EdgeOptimizersConfig, HnswIndexConfig

        optimizers = None
        if self.indexing_threshold_kb is not None:
            optimizers = EdgeOptimizersConfig(indexing_threshold=self.indexing_threshold_kb)
        return EdgeConfig(
            vectors=self._edge_vectors(spec),
            hnsw_config=HnswIndexConfig(m=self.hnsw_m, ef_construct=self.hnsw_ef_construct, full_scan_threshold=10_000),
            optimizers=optimizers,
            max_search_threads=self.max_search_threads,
        )

    @staticmethod
    def _edge_vectors(spec: CollectionSpec) -> dict[str, Any]:
        from qdrant_edge import (
            Distance,
            EdgeVectorParams,
            MultiVectorComparator,
            MultiVectorConfig,
        )

        distances = {"cosine": Distance.Cosine, "dot": Distance.Dot, "euclid": Distance.Euclid}
        vectors = {}
        for vname, vs in spec.vectors.items():
            if vs.distance not in distances:
                raise ConfigError(f"collection {spec.name!r}: vector {vname!r} has unknown distance {vs.distance!r}; use cosine, dot or euclid")
            multi = MultiVectorConfig(MultiVectorComparator.MaxSim) if vs.multivector else None
            vectors[vname] = EdgeVectorParams(size=vs.size, distance=distances[vs.distance], multivector_config=multi)
        return vectors

    def _write_spec(self, spec: CollectionSpec) -> None:
        """Write ``spec.json`` atomically (tmp file + rename) and cache it."""
        path = self._folder(spec.name) / SPEC_FILE
        tmp = path.with_name(f".{SPEC_FILE}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(spec.to_dict(), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._specs[spec.name] = spec


def _filter(where: Where | None) -> Any:
    """``Where`` as a Qdrant Edge ``Filter`` (``None`` when it has no condition)."""
    if where is None or (not where.must and not where.must_not):
        return None
    from qdrant_edge import FieldCondition, Filter, MatchAny, MatchValue

    def cond(key: str, value: Any) -> Any:
        if isinstance(value, (list, tuple, set, frozenset)):
            return FieldCondition(key, match=MatchAny(any=list(value)))
        return FieldCondition(key, match=MatchValue(value))

    return Filter(
        must=[cond(k, v) for k, v in where.must.items()] or None,
        must_not=[cond(k, v) for k, v in where.must_not.items()] or None,
    )


def _point(record: Any) -> StoredPoint:
    vectors = record.vector if isinstance(record.vector, dict) else {}
    return StoredPoint(id=str(record.id), payload=record.payload or {}, vectors=dict(vectors))
