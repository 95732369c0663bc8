"""A Qdrant server (or Qdrant Cloud) as the store, through qdrant-client.

Each ragmm collection is the Qdrant collection ``<collection_prefix><name>``; its
:class:`~ragmm.protocols.CollectionSpec` lives in the collection's own ``metadata``
(under ``"ragmm_spec"``), so the spec travels with the data and a server shared by
several ragmm installs needs nothing else. Collection metadata needs Qdrant server 1.16
or newer; qdrant-client's ``:memory:`` mode keeps it too (checked with qdrant-client 1.20).

``location=":memory:"`` is an in-process, throw-away store for tests. qdrant-client's
on-disk local mode (``path=``) is refused: it is a brute-force fallback without HNSW;
``type = "edge"`` is the embedded store. ``:memory:`` mode searches exactly: HNSW and
quantisation settings take effect on a real server only.

Example ``ragmm.toml``::

    [store]
    type = "server"
    url = "http://localhost:6333"
    api_key = "..."            # Qdrant Cloud
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, model_validator

from ragmm.errors import ConfigError, RagmmError
from ragmm.protocols import CollectionSpec, SearchRequest, StoredPoint
from ragmm.stores.base import IndexSettings, QdrantStore

SPEC_KEY = "ragmm_spec"
MEMORY = ":memory:"




class ServerStore(QdrantStore):
    """A :class:`~ragmm.protocols.Store` over a Qdrant server.

    Args:
        url: the server, e.g. ``http://localhost:6333``.
        location: ``":memory:"`` for an in-process store (tests); exclusive with ``url``.
        api_key: Qdrant Cloud key.
        prefer_grpc: talk gRPC (port 6334) instead of REST.
        timeout: request timeout in seconds.
        shard_number: shards of new collections (a cluster setting).
        replication_factor: replicas of new collections (a cluster setting).
        write_consistency_factor: replicas that confirm a write.
        collection_prefix: prepended to collection names on the server.
        **settings: index settings (``hnsw_m``, ``hnsw_ef_construct``, ``hnsw_ef``,
            ``quantization``, ``oversampling``, ``multivector_hnsw``), as for
            :class:`~ragmm.stores.base.QdrantStore`.

    Raises:
        ConfigError: neither or both of ``url`` and ``location``.
    """

    class Config(IndexSettings):
        """``[store]`` settings of ``type = "server"``."""

        url: str | None = Field(None, description="Qdrant server URL, e.g. http://localhost:6333")
        api_key: str | None = Field(None, description="Qdrant Cloud API key")
        location: str | None = Field(None, description='":memory:" for a throw-away in-process store (tests)')
        prefer_grpc: bool = False
        timeout: int | None = Field(None, gt=0, description="request timeout, seconds")
        shard_number: int | None = Field(None, gt=0)
        replication_factor: int | None = Field(None, gt=0)
        write_consistency_factor: int | None = Field(None, gt=0)
        collection_prefix: str = Field("ragmm_", pattern=r"^[A-Za-z0-9_.-]*$", description="prepended to collection names on the server")

        @model_validator(mode="before")
        @classmethod
        def _no_local_path(cls, data: Any) -> Any:
            if isinstance(data, dict) and "path" in data:
                raise ValueError(
                    "the server store takes no 'path': qdrant-client's local mode searches by brute force; "
                    'use type = "edge" with path = ... for an embedded store, or url = ... for a server'
                )
            return data

        @model_validator(mode="after")
        def _one_target(self) -> ServerStore.Config:
            if (self.url is None) == (self.location is None):
                raise ValueError("set exactly one of url (a Qdrant server, e.g. http://localhost:6333) or location (\":memory:\")")
            return self

    def __init__(
        self,
        url: str | None = None,
        *,
        location: str | None = None,
        api_key: str | None = None,
        prefer_grpc: bool = False,
        timeout: int | None = None,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
        collection_prefix: str = "ragmm_",
        **settings: Any,
    ) -> None:
        if (url is None) == (location is None):
            raise ConfigError(
                f"server store: set exactly one of url (a Qdrant server, e.g. http://localhost:6333) or location (\":memory:\"); "
                f"got url={url!r}, location={location!r}"
            )
        super().__init__(**settings)
        self.url, self.memory = url, location == MEMORY
        self._client_args = {"url": url, "location": location, "api_key": api_key, "prefer_grpc": prefer_grpc, "timeout": timeout}
        self._create_args = {
            "shard_number": shard_number,
            "replication_factor": replication_factor,
            "write_consistency_factor": write_consistency_factor,
        }
        self.prefix = collection_prefix
        self._client: Any = None

    def __repr__(self) -> str:
        return f"ServerStore({self.location!r})"

    @property
    def location(self) -> str:
        return self.url or f"qdrant-client location {self._client_args['location']}"

    @property
    def client(self) -> Any:
        """The ``QdrantClient``, connected on first use (so building a store is instant)."""
        if self._client is None:
            from qdrant_client import QdrantClient

            self._client = QdrantClient(**{k: v for k, v in self._client_args.items() if v is not None})
        return self._client

    # -- collections -------------------------------------------------------------------------

    def _read_spec(self, name: str) -> CollectionSpec | None:
        qname = self._qname(name)
        if not self.client.collection_exists(qname):
            return None
        metadata = self.client.get_collection(qname).config.metadata or {}
        if SPEC_KEY not in metadata:
            return None  # a collection with our prefix that ragmm did not create
        return CollectionSpec.from_dict(metadata[SPEC_KEY])

    def _create(self, spec: CollectionSpec) -> None:
        from qdrant_client import models

        qname = self._qname(spec.name)
        if self.client.collection_exists(qname):
            raise RagmmError(
                f"collection {qname!r} on {self.location} exists but holds no ragmm spec in its metadata (not made by ragmm, "
                f"or a Qdrant server older than 1.16, which drops collection metadata); set another collection_prefix, "
                f"delete that collection, or upgrade the server"
            )
        distances = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}
        vectors = {}
        for vname, vs in spec.vectors.items():
            multi = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM) if vs.multivector else None
            # m=0: no graph for a multivector that only rescores prefetched candidates
            hnsw = models.HnswConfigDiff(m=0) if vs.multivector and not self.multivector_hnsw and not self.memory else None
            vectors[vname] = models.VectorParams(size=vs.size, distance=distances[vs.distance], multivector_config=multi, hnsw_config=hnsw)
        index: dict[str, Any] = {}
        if not self.memory:  # qdrant-client's :memory: mode is exact and warns about index settings
            index["hnsw_config"] = models.HnswConfigDiff(m=self.hnsw_m, ef_construct=self.hnsw_ef_construct)
            if self.quantization == "int8":
                # quantile 0.99: int8 range from the central 99% of values, outliers clipped
                index["quantization_config"] = models.ScalarQuantization(
                    scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
                )
        # The spec goes in with the collection itself: there is no half-created state.
        self.client.create_collection(
            qname,
            vectors_config=vectors,
            metadata={SPEC_KEY: spec.to_dict()},
            **index,
            **{k: v for k, v in self._create_args.items() if v is not None},
        )
        self._index(spec.name, list(spec.payload_indexes))

    def _add_payload_indexes(self, spec: CollectionSpec, fields: Sequence[str], respec: bool = False) -> None:
        qname = self._qname(spec.name)
        if fields or respec:
            self.client.update_collection(qname, metadata={SPEC_KEY: spec.to_dict()})
        if not self.memory:
            # also those a create_collection cut short after creating the collection left out
            schema = self.client.get_collection(qname).payload_schema or {}
            self._index(spec.name, [f for f in spec.payload_indexes if f not in schema])

    def _names(self) -> list[str]:
        names = [c.name[len(self.prefix) :] for c in self.client.get_collections().collections if c.name.startswith(self.prefix)]
        return [n for n in names if self.get_spec(n) is not None]

    def _drop(self, name: str) -> None:
        qname = self._qname(name)
        if self.client.collection_exists(qname):
            self.client.delete_collection(qname)

    def optimize(self, name: str | None = None) -> dict[str, bool]:
        """Nothing to do: a server builds its indexes in the background. Returns ``{}``."""
        return {}

    # -- points ------------------------------------------------------------------------------

    def _upsert(self, name: str, points: list[StoredPoint]) -> None:
        from qdrant_client import models

        batch = [models.PointStruct(id=p.id, vector=p.vectors, payload=p.payload) for p in points]
        self.client.upsert(self._qname(name), points=batch, wait=True)

    def _query(self, name: str, requests: list[SearchRequest]) -> list[list[Any]] | None:
        built = [self._request(r) for r in requests]
        responses = self._call(name, lambda q: self.client.query_batch_points(q, requests=built))
        return None if responses is None else [r.points for r in responses]

    def _request(self, r: SearchRequest) -> Any:
        from qdrant_client import models

        prefetch = None
        if r.prefetch is not None:
            pf = r.prefetch
            prefetch = models.Prefetch(
                query=pf.vector, using=pf.using, limit=pf.limit, filter=self.filter(r.where, pf.where), params=self._params(r, pf.limit, prefetch=True)
            )
        return models.QueryRequest(
            query=r.vector,
            using=r.using,
            prefetch=prefetch,
            filter=self.filter(r.where),
            # a two-stage query's main stage only rescores candidates: no HNSW breadth to set
            params=self._params(r, r.limit) if prefetch is None else None,
            limit=r.limit,
            with_payload=True,
            with_vector=r.with_vectors,
        )

    def _params(self, r: SearchRequest, limit: int, prefetch: bool = False) -> Any:
        if self.memory:
            return None  # qdrant-client's :memory: mode is exact and warns about any search_params
        from qdrant_client import models

        stage = self.stage(r, limit, prefetch=prefetch)
        quant = models.QuantizationSearchParams(rescore=True, oversampling=stage.oversampling) if stage.quantized else None
        return models.SearchParams(hnsw_ef=stage.hnsw_ef, quantization=quant)

    def _retrieve(self, name: str, ids: list[str], with_vectors: bool) -> list[Any]:
        return self._call(name, lambda q: self.client.retrieve(q, ids=ids, with_payload=True, with_vectors=with_vectors)) or []

    def _scroll(self, name: str, flt: Any, offset: Any, limit: int, with_vectors: bool) -> tuple[list[Any], Any] | None:
        return self._call(
            name, lambda q: self.client.scroll(q, scroll_filter=flt, limit=limit, offset=offset, with_payload=True, with_vectors=with_vectors)
        )

    def _count(self, name: str, flt: Any) -> int:
        result = self._call(name, lambda q: self.client.count(q, count_filter=flt, exact=True))
        return 0 if result is None else int(result.count)

    def _delete(self, name: str, flt: Any) -> None:
        from qdrant_client import models

        selector = models.FilterSelector(filter=flt or models.Filter())
        self._call(name, lambda q: self.client.delete(q, points_selector=selector, wait=True))

    def _match(self, key: str, value: Any) -> Any:
        from qdrant_client import models

        if isinstance(value, (list, tuple, set, frozenset)):
            return models.FieldCondition(key=key, match=models.MatchAny(any=list(value)))
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))

    def _filter_of(self, must: list[Any], must_not: list[Any]) -> Any:
        from qdrant_client import models

        return models.Filter(must=must or None, must_not=must_not or None)

    def flush(self) -> None:
        """Nothing to do: every write waits until the server applied it."""

    def close(self) -> None:
        """Close the connection (a ``:memory:`` store loses its data)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._specs.clear()

    # -- internals ---------------------------------------------------------------------------

    def _qname(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _index(self, name: str, fields: list[str]) -> None:
        if self.memory:
            return  # qdrant-client's local mode ignores payload indexes (and warns about each)
        from qdrant_client import models

        for field in fields:
            self.client.create_payload_index(self._qname(name), field, field_schema=models.PayloadSchemaType.KEYWORD, wait=True)

    def _call(self, name: str, fn: Any) -> Any:
        """Run ``fn(qdrant_name)``; ``None`` if the collection vanished (dropped elsewhere) meanwhile."""
        qname = self._qname(name)
        try:
            return fn(qname)
        except Exception:
            if self.client.collection_exists(qname):
                raise
            self._specs.pop(name, None)
            return None
