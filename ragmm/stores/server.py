"""A Qdrant server (or Qdrant Cloud) as the store, through qdrant-client.

Each ragmm collection is the Qdrant collection ``<collection_prefix><name>``; its
:class:`~ragmm.protocols.CollectionSpec` lives in the collection's own ``metadata``
(under ``"ragmm_spec"``), so the spec travels with the data and a server shared by
several ragmm installs needs nothing else. Collection metadata needs Qdrant server 1.16
or newer; qdrant-client's ``:memory:`` mode keeps it too (checked with qdrant-client 1.20).

``location=":memory:"`` is an in-process, throw-away store for tests. qdrant-client's
on-disk local mode (``path=``) is refused: it is a brute-force fallback without HNSW;
``type = "edge"`` is the embedded store.

Example ``ragmm.toml``::

    [store]
    type = "server"
    url = "http://localhost:6333"
    api_key = "..."            # Qdrant Cloud
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

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

SPEC_KEY = "ragmm_spec"
MEMORY = ":memory:"


class ServerStore:
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
        hnsw_ef: search breadth when the caller gives none (``None``: the server's default).

    Raises:
        ConfigError: neither or both of ``url`` and ``location``.
    """

    class Config(BaseModel):
        """``[store]`` settings of ``type = "server"``."""

        model_config = ConfigDict(extra="forbid")

        url: str | None = Field(None, description="Qdrant server URL, e.g. http://localhost:6333")
        api_key: str | None = Field(None, description="Qdrant Cloud API key")
        location: str | None = Field(None, description='":memory:" for a throw-away in-process store (tests)')
        prefer_grpc: bool = False
        timeout: int | None = Field(None, gt=0, description="request timeout, seconds")
        shard_number: int | None = Field(None, gt=0)
        replication_factor: int | None = Field(None, gt=0)
        write_consistency_factor: int | None = Field(None, gt=0)
        collection_prefix: str = Field("ragmm_", pattern=r"^[A-Za-z0-9_.-]*$", description="prepended to collection names on the server")
        hnsw_ef: int | None = Field(None, gt=0, description="search breadth when [retrieve] sets none (None: the server's)")

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
        hnsw_ef: int | None = None,
    ) -> None:
        if (url is None) == (location is None):
            raise ConfigError(
                f"server store: set exactly one of url (a Qdrant server, e.g. http://localhost:6333) or location (\":memory:\"); "
                f"got url={url!r}, location={location!r}"
            )
        self.url, self.location = url, location
        self._client_args = {"url": url, "location": location, "api_key": api_key, "prefer_grpc": prefer_grpc, "timeout": timeout}
        self._create_args = {
            "shard_number": shard_number,
            "replication_factor": replication_factor,
            "write_consistency_factor": write_consistency_factor,
        }
        self.prefix = collection_prefix
        self.hnsw_ef = hnsw_ef
        self._client: Any = None
        self._specs: dict[str, CollectionSpec] = {}

    @classmethod
    def from_config(cls, cfg: ServerStore.Config) -> ServerStore:
        """Build the store from its validated ``[store]`` section."""
        return cls(
            cfg.url,
            location=cfg.location,
            api_key=cfg.api_key,
            prefer_grpc=cfg.prefer_grpc,
            timeout=cfg.timeout,
            shard_number=cfg.shard_number,
            replication_factor=cfg.replication_factor,
            write_consistency_factor=cfg.write_consistency_factor,
            collection_prefix=cfg.collection_prefix,
            hnsw_ef=cfg.hnsw_ef,
        )

    def __repr__(self) -> str:
        return f"ServerStore({self._where!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> Any:
        """The ``QdrantClient``, connected on first use (so building a store is instant)."""
        if self._client is None:
            from qdrant_client import QdrantClient

            self._client = QdrantClient(**{k: v for k, v in self._client_args.items() if v is not None})
        return self._client

    # -- collections ---------------------------------------------------------------------

    def create_collection(self, spec: CollectionSpec) -> None:
        """Create the collection, or check that the existing one has the same spec.

        Raises:
            EncoderMismatchError: the collection exists with another encoder or vectors.
            ConfigError: the name is not a valid collection name.
        """
        from qdrant_client import models

        name = check_name(spec.name)
        stored = self.get_spec(name)
        qname = self._qname(name)
        if stored is not None:
            check_same_spec(stored, spec, self._where)
            missing = [f for f in spec.payload_indexes if f not in stored.payload_indexes]
            if missing:
                merged = CollectionSpec.from_dict({**stored.to_dict(), "payload_indexes": [*stored.payload_indexes, *missing]})
                self.client.update_collection(qname, metadata={SPEC_KEY: merged.to_dict()})
                self._specs[name] = stored = merged
            if self.location != MEMORY:
                # also those a create_collection cut short after creating the collection left out
                schema = self.client.get_collection(qname).payload_schema or {}
                self._index(name, [f for f in stored.payload_indexes if f not in schema])
            return
        if self.client.collection_exists(qname):
            raise RagmmError(
                f"collection {qname!r} on {self._where} exists but holds no ragmm spec in its metadata (not made by ragmm, "
                f"or a Qdrant server older than 1.16, which drops collection metadata); set another collection_prefix, "
                f"delete that collection, or upgrade the server"
            )
        distances = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}
        vectors = {}
        for vname, vs in spec.vectors.items():
            if vs.distance not in distances:
                raise ConfigError(f"collection {spec.name!r}: vector {vname!r} has unknown distance {vs.distance!r}; use cosine, dot or euclid")
            multi = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM) if vs.multivector else None
            vectors[vname] = models.VectorParams(size=vs.size, distance=distances[vs.distance], multivector_config=multi)
        # The spec goes in with the collection itself: there is no half-created state.
        self.client.create_collection(
            qname,
            vectors_config=vectors,
            metadata={SPEC_KEY: spec.to_dict()},
            **{k: v for k, v in self._create_args.items() if v is not None},
        )
        self._index(name, list(spec.payload_indexes))
        self._specs[name] = spec

    def get_spec(self, name: str) -> CollectionSpec | None:
        """The spec the collection was created with, or ``None`` if it does not exist."""
        if name in self._specs:
            return self._specs[name]
        if not valid_name(name):  # never put a name like "../x" into a request URL
            return None
        qname = self._qname(name)
        if not self.client.collection_exists(qname):
            return None
        metadata = self.client.get_collection(qname).config.metadata or {}
        if SPEC_KEY not in metadata:
            return None  # a collection with our prefix that ragmm did not create
        spec = CollectionSpec.from_dict(metadata[SPEC_KEY])
        self._specs[name] = spec
        return spec

    def collections(self) -> list[str]:
        """Names of the ragmm collections on the server (prefix stripped)."""
        names = [c.name[len(self.prefix) :] for c in self.client.get_collections().collections if c.name.startswith(self.prefix)]
        return sorted(n for n in names if self.get_spec(n) is not None)

    def drop_collection(self, name: str) -> None:
        """Delete a collection and everything in it (no error if it does not exist)."""
        self._specs.pop(name, None)
        qname = self._qname(name)
        if valid_name(name) and self.client.collection_exists(qname):
            self.client.delete_collection(qname)

    def optimize(self, name: str | None = None) -> dict[str, bool]:
        """Nothing to do: a server builds its indexes in the background. Returns ``{}``."""
        return {}

    # -- points --------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        """Insert or replace points by id (waits until the server applied them).

        Raises:
            RagmmError: the collection does not exist.
            EncoderMismatchError: a vector has another name or dimension than the spec.
        """
        from qdrant_client import models

        if not points:
            return
        spec = self.get_spec(name)
        if spec is None:
            raise missing_collection(name, self._where)
        batch = []
        for p in points:
            vectors = {k: to_list(v) for k, v in p.vectors.items()}
            for k, v in vectors.items():
                check_vector(spec, k, v, self._where)
            batch.append(models.PointStruct(id=p.id, vector=vectors, payload=p.payload))
        self.client.upsert(self._qname(name), points=batch, wait=True)

    def search(
        self, name: str, vector: Any, *, using: str, limit: int, where: Where | None = None, hnsw_ef: int | None = None
    ) -> list[StoredPoint]:
        """Nearest points to ``vector``, best first, with payloads and scores ([] if no collection).

        Raises:
            EncoderMismatchError: ``using`` is not a vector of the collection, or ``vector``
                has another dimension.
        """
        from qdrant_client import models

        spec = self.get_spec(name)
        if spec is None or limit <= 0:
            return []
        vec = to_list(vector)
        check_vector(spec, using, vec, self._where)
        ef = hnsw_ef or self.hnsw_ef
        response = self._call(
            name,
            lambda q: self.client.query_points(
                q,
                query=vec,
                using=using,
                query_filter=_filter(where),
                # qdrant-client's :memory: mode is exact and warns about any search_params
                search_params=models.SearchParams(hnsw_ef=max(ef, limit)) if ef and self.location != MEMORY else None,
                limit=limit,
                with_payload=True,
                with_vectors=False,
            ),
        )
        if response is None:
            return []
        return [StoredPoint(id=str(p.id), payload=p.payload or {}, score=p.score) for p in response.points]

    def retrieve(self, name: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        """Points by id, in the order asked (missing ids are left out)."""
        if not ids or self.get_spec(name) is None:
            return []
        records = self._call(name, lambda q: self.client.retrieve(q, ids=list(ids), with_payload=True, with_vectors=with_vectors)) or []
        found = {str(r.id): _point(r) for r in records}
        return [found[i] for i in map(str, ids) if i in found]

    def scroll(self, name: str, where: Where | None = None, *, with_vectors: bool = False, batch: int = 256) -> Iterator[StoredPoint]:
        """Every point matching ``where``, in id order, ``batch`` at a time."""
        if self.get_spec(name) is None:
            return
        flt, offset = _filter(where), None
        while True:
            page = self._call(
                name,
                lambda q, start=offset: self.client.scroll(
                    q, scroll_filter=flt, limit=batch, offset=start, with_payload=True, with_vectors=with_vectors
                ),
            )
            if page is None:
                return
            records, offset = page
            yield from (_point(r) for r in records)
            if offset is None:
                return

    def count(self, name: str, where: Where | None = None) -> int:
        """Number of points matching ``where`` (0 for a missing collection)."""
        if self.get_spec(name) is None:
            return 0
        result = self._call(name, lambda q: self.client.count(q, count_filter=_filter(where), exact=True))
        return 0 if result is None else int(result.count)

    def delete(self, name: str, where: Where) -> None:
        """Delete the points matching ``where`` (an empty ``Where`` matches every point)."""
        from qdrant_client import models

        if self.get_spec(name) is None:
            return
        selector = models.FilterSelector(filter=_filter(where) or models.Filter())
        self._call(name, lambda q: self.client.delete(q, points_selector=selector, wait=True))

    def flush(self) -> None:
        """Nothing to do: every write waits until the server applied it."""

    def close(self) -> None:
        """Close the connection (a ``:memory:`` store loses its data)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._specs.clear()

    # -- internals -----------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return self.url or f"qdrant-client location {self.location}"

    def _qname(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _index(self, name: str, fields: list[str]) -> None:
        if self.location == MEMORY:
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


def _filter(where: Where | None) -> Any:
    """``Where`` as a qdrant-client ``Filter`` (``None`` when it has no condition)."""
    if where is None or (not where.must and not where.must_not):
        return None
    from qdrant_client import models

    def cond(key: str, value: Any) -> models.FieldCondition:
        if isinstance(value, (list, tuple, set, frozenset)):
            return models.FieldCondition(key=key, match=models.MatchAny(any=list(value)))
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))

    return models.Filter(
        must=[cond(k, v) for k, v in where.must.items()] or None,
        must_not=[cond(k, v) for k, v in where.must_not.items()] or None,
    )


def _point(record: Any) -> StoredPoint:
    vectors = record.vector if isinstance(record.vector, dict) else {}
    return StoredPoint(id=str(record.id), payload=record.payload or {}, vectors=dict(vectors))

