"""The embedded default store: Qdrant Edge shards in a local folder, no server.

Layout of a store folder (``Config.path``)::

    <path>/collections/<name>/shard/       one EdgeShard (segments + WAL)
    <path>/collections/<name>/spec.json    the CollectionSpec it was created with

The spec is written (atomically) only after the shard exists, so a folder without
``spec.json`` is a collection whose creation was cut short: it is not listed and
``create_collection`` replaces it. Shards open lazily on first use, so opening a store
reads nothing but folder names.

Edge has no background optimizer: upserts land in an appendable segment searched by brute
force until :meth:`EdgeStore.optimize` builds HNSW (and int8 copies, with quantisation) for
segments above ``indexing_threshold_kb``; call it after a large write.

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
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from ragmm.errors import RagmmError
from ragmm.protocols import CollectionSpec, SearchRequest, StoredPoint
from ragmm.stores.base import IndexSettings, QdrantStore

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
SHARD_DIR = "shard"


class EdgeStore(QdrantStore):
    """A :class:`~ragmm.protocols.Store` over Qdrant Edge shards in a folder.

    Args:
        path: the store folder; created on the first ``create_collection``. A missing
            folder is a store with no collections.
        max_search_threads: threads of each shard's search pool.
        indexing_threshold_kb: segments larger than this get an HNSW index on ``optimize()``.
        **settings: index settings (``hnsw_m``, ``hnsw_ef_construct``, ``hnsw_ef``,
            ``quantization``, ``oversampling``, ``multivector_hnsw``), as for
            :class:`~ragmm.stores.base.QdrantStore`.
    """

    class Config(IndexSettings):
        """``[store]`` settings of ``type = "edge"``."""

        path: str = Field(".ragmm", description="store folder; one subfolder per collection")
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
        max_search_threads: int | None = 1,
        indexing_threshold_kb: int | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        self.root = Path(path)
        self.max_search_threads = max_search_threads
        self.indexing_threshold_kb = indexing_threshold_kb
        self._shards: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"EdgeStore({str(self.root)!r})"

    @property
    def location(self) -> str:
        return str(self.root)

    # -- collections -------------------------------------------------------------------------

    def _read_spec(self, name: str) -> CollectionSpec | None:
        path = self._folder(name) / SPEC_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return CollectionSpec.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise RagmmError(f"{path}: unreadable collection spec ({exc}); restore it, or delete the folder {path.parent} and re-index") from None

    def _create(self, spec: CollectionSpec) -> None:
        from qdrant_edge import EdgeShard

        folder = self._folder(spec.name)
        if folder.exists():
            # No spec.json: an earlier create_collection died between shard and spec.
            log.warning("%s: removing a half-created collection (no %s) before creating it again", folder, SPEC_FILE)
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shard = EdgeShard.create(str(folder / SHARD_DIR), self._edge_config(spec))
        self._shards[spec.name] = shard
        self._index_fields(shard, spec.payload_indexes)
        shard.flush()
        self._write_spec(spec)

    def _add_payload_indexes(self, spec: CollectionSpec, fields: Sequence[str], respec: bool = False) -> None:
        if fields:
            self._index_fields(self._shard(spec.name), fields)
        if fields or respec:
            self._write_spec(spec)

    def _names(self) -> list[str]:
        base = self.root / "collections"
        if not base.is_dir():
            return []
        return [p.name for p in base.iterdir() if not p.name.startswith(".") and (p / SPEC_FILE).is_file()]

    def _drop(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        folder = self._folder(name)
        if not folder.exists():
            return
        # Rename first: a crash during rmtree leaves a hidden folder, never half a collection.
        trash = folder.with_name(f".drop-{name}-{uuid.uuid4().hex[:8]}")
        folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def optimize(self, name: str | None = None) -> dict[str, bool]:
        """Run Edge's optimizers (HNSW build, quantisation, merges, vacuum) now; call it after
        a big write (without it, new points are searched by brute force).

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

    # -- points ------------------------------------------------------------------------------

    def _upsert(self, name: str, points: list[StoredPoint]) -> None:
        from qdrant_edge import Point, UpdateOperation

        self._shard(name).update(UpdateOperation.upsert_points([Point(p.id, p.vectors, p.payload) for p in points]))

    def _query(self, name: str, requests: list[SearchRequest]) -> list[list[Any]]:
        from qdrant_edge import QueryBatchRequest

        shard = self._shard(name)
        if len(requests) == 1:
            return [shard.query(self._request(requests[0]))]
        return shard.query_batch(QueryBatchRequest([self._request(r) for r in requests]))

    def _request(self, r: SearchRequest) -> Any:
        from qdrant_edge import Prefetch, Query, QueryRequest

        prefetches = None
        if r.prefetch is not None:
            pf = r.prefetch
            prefetches = [
                Prefetch(
                    pf.limit,
                    query=Query.Nearest(pf.vector, using=pf.using),
                    filter=self.filter(r.where, pf.where),
                    params=self._params(r, pf.limit, prefetch=True),
                )
            ]
        return QueryRequest(
            limit=r.limit,
            query=Query.Nearest(r.vector, using=r.using),
            prefetches=prefetches,
            filter=self.filter(r.where),
            with_payload=True,
            with_vector=r.with_vectors,
            # a two-stage query's main stage only rescores candidates: no HNSW breadth to set
            params=self._params(r, r.limit) if prefetches is None else None,
        )

    def _params(self, r: SearchRequest, limit: int, prefetch: bool = False) -> Any:
        from qdrant_edge import QuantizationSearchParams, SearchParams

        stage = self.stage(r, limit, prefetch=prefetch)
        quant = QuantizationSearchParams(rescore=True, oversampling=stage.oversampling) if stage.quantized else None
        return SearchParams(hnsw_ef=stage.hnsw_ef, quantization=quant)

    def _retrieve(self, name: str, ids: list[str], with_vectors: bool) -> list[Any]:
        return self._shard(name).retrieve(ids, with_payload=True, with_vector=with_vectors)

    def _scroll(self, name: str, flt: Any, offset: Any, limit: int, with_vectors: bool) -> tuple[list[Any], Any]:
        from qdrant_edge import ScrollRequest

        return self._shard(name).scroll(ScrollRequest(offset=offset, limit=limit, filter=flt, with_payload=True, with_vector=with_vectors))

    def _count(self, name: str, flt: Any) -> int:
        from qdrant_edge import CountRequest

        return int(self._shard(name).count(CountRequest(exact=True, filter=flt)))

    def _delete(self, name: str, flt: Any) -> None:
        from qdrant_edge import Filter, UpdateOperation

        self._shard(name).update(UpdateOperation.delete_points_by_filter(flt or Filter()))

    def _match(self, key: str, value: Any) -> Any:
        from qdrant_edge import FieldCondition, MatchAny, MatchValue

        if isinstance(value, (list, tuple, set, frozenset)):
            return FieldCondition(key, match=MatchAny(any=list(value)))
        return FieldCondition(key, match=MatchValue(value))

    def _filter_of(self, must: list[Any], must_not: list[Any]) -> Any:
        from qdrant_edge import Filter

        return Filter(must=must or None, must_not=must_not or None)

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

    # -- internals ---------------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        return self.root / "collections" / name

    @staticmethod
    def _index_fields(shard: Any, fields: Sequence[str]) -> None:
        from qdrant_edge import PayloadSchemaType, UpdateOperation

        for field in fields:
            shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))

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
            # the shard's. Global HNSW, quantisation and optimizer settings are left None: they
            # stay as created. Per-vector settings given here replace the stored ones, so they
            # are given as at creation (a multivector's graph).
            config = EdgeConfig(vectors=self._edge_vectors(spec), max_search_threads=self.max_search_threads)
            try:
                shard = EdgeShard.load(str(path), config)
            except Exception as exc:  # noqa: BLE001 - qdrant_edge raises plain Exception
                raise RagmmError(
                    f"{path}: cannot open the collection shard ({exc}); if another ragmm process uses {self.root}, "
                    f"stop it, else delete the store folder {self.root} and index again (its ledger would skip files it has indexed)"
                ) from None
            self._shards[name] = shard
            return shard

    def _edge_config(self, spec: CollectionSpec) -> Any:
        """The EdgeConfig of a new shard for ``spec``."""
        from qdrant_edge import EdgeConfig, EdgeOptimizersConfig, HnswIndexConfig, ScalarQuantizationConfig, ScalarType

        optimizers = None
        if self.indexing_threshold_kb is not None:
            optimizers = EdgeOptimizersConfig(indexing_threshold=self.indexing_threshold_kb)
        quantization = None
        if self.quantization == "int8":
            # quantile 0.99: int8 range from the central 99% of values, outliers clipped
            quantization = ScalarQuantizationConfig(ScalarType.Int8, quantile=0.99, always_ram=True)
        return EdgeConfig(
            vectors=self._edge_vectors(spec),
            hnsw_config=HnswIndexConfig(m=self.hnsw_m, ef_construct=self.hnsw_ef_construct, full_scan_threshold=10_000),
            quantization_config=quantization,
            optimizers=optimizers,
            max_search_threads=self.max_search_threads,
        )

    def _edge_vectors(self, spec: CollectionSpec) -> dict[str, Any]:
        from qdrant_edge import Distance, EdgeVectorParams, HnswIndexConfig, MultiVectorComparator, MultiVectorConfig

        distances = {"cosine": Distance.Cosine, "dot": Distance.Dot, "euclid": Distance.Euclid}
        vectors = {}
        for vname, vs in spec.vectors.items():
            multi = MultiVectorConfig(MultiVectorComparator.MaxSim) if vs.multivector else None
            # m=0: no graph for a multivector that only rescores prefetched candidates
            unindexed = vs.multivector and not self.multivector_hnsw
            hnsw = HnswIndexConfig(m=0, ef_construct=self.hnsw_ef_construct, full_scan_threshold=10_000) if unindexed else None
            vectors[vname] = EdgeVectorParams(size=vs.size, distance=distances[vs.distance], multivector_config=multi, hnsw_config=hnsw)
        return vectors

    def _write_spec(self, spec: CollectionSpec) -> None:
        """Write ``spec.json`` atomically (tmp file + rename)."""
        path = self._folder(spec.name) / SPEC_FILE
        tmp = path.with_name(f".{SPEC_FILE}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(spec.to_dict(), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
