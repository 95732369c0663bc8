"""The joints of ragmm's data flow: index -> store -> route -> retrieve -> rerank -> generate.

Each protocol is small; implementations are registered by name in :mod:`ragmm.registry`
and each has one contract test suite run over every implementation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from ragmm.types import Answer, Hit, Query

Distance = Literal["cosine", "dot", "euclid"]

# Conventional vector names: every corpus has a pooled ``dense`` vector (searched with HNSW,
# and the prefetch of a two-stage query); a late-interaction corpus adds the ``tokens``
# multivector that MaxSim rescores.
DENSE = "dense"
TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class VectorSpec:
    """One named vector of a collection: ``size`` floats, or a bag of them (multivector).

    ``encoder`` names the encoder that made this vector when a collection holds vectors of
    several encoders (the image corpus: image embedding + text embedding of its OCR and file
    name); empty means the collection's own encoder.
    """

    size: int
    distance: Distance = "cosine"
    multivector: bool = False
    encoder: str = ""


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """What a collection holds and which encoder built it.

    A store remembers the spec; asking a collection with another encoder or dimension is an
    :class:`~ragmm.errors.EncoderMismatchError`, not garbage results.
    """

    name: str
    vectors: Mapping[str, VectorSpec]
    encoder: str
    modality: str = "text"
    payload_indexes: tuple[str, ...] = ("source", "source_hash", "content_hash", "modality")
    # Other encoders whose vectors are mixed into this collection's vectors, by config section:
    # a video corpus's rows hold the text encoder's vectors and, when it embeds frames into the
    # text space, the image encoder's ({"encoders.image": "ragmm-lite0"}).
    mixed_in: Mapping[str, str] = field(default_factory=dict)

    def encoder_of(self, vector: str) -> str:
        """The encoder identity that made ``vector``."""
        return self.vectors[vector].encoder or self.encoder

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vectors": {k: {"size": v.size, "distance": v.distance, "multivector": v.multivector, **({"encoder": v.encoder} if v.encoder else {})} for k, v in self.vectors.items()},
            "encoder": self.encoder,
            "modality": self.modality,
            "payload_indexes": list(self.payload_indexes),
            **({"mixed_in": dict(self.mixed_in)} if self.mixed_in else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CollectionSpec:
        return cls(
            name=d["name"],
            vectors={k: VectorSpec(**v) for k, v in d["vectors"].items()},
            encoder=d["encoder"],
            modality=d.get("modality", "text"),
            payload_indexes=tuple(d.get("payload_indexes", ())),
            mixed_in=dict(d.get("mixed_in", {})),
        )


@dataclass(frozen=True, slots=True)
class Where:
    """A payload filter: every ``must`` field equals its value (a list means any of them),
    no ``must_not`` field equals its value."""

    must: Mapping[str, Any] = field(default_factory=dict)
    must_not: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StoredPoint:
    """A point as written to or read from a store. ``vectors`` maps vector name to a
    list of floats (dense) or a list of lists (multivector)."""

    id: str
    payload: dict[str, Any]
    vectors: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class Prefetch:
    """The first stage of a two-stage query: the ``limit`` points nearest to ``vector`` by
    the named vector ``using`` (typically a pooled dense vector, searched with HNSW) are the
    only candidates the main query scores (typically multivector MaxSim)."""

    vector: Any
    using: str
    limit: int
    where: Where | None = None


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One query of :meth:`Store.query`.

    Args:
        vector: a dense query vector (list or array of floats), or a multivector (a list of
            them, or a (T, D) array) when ``using`` names a multivector.
        using: the named vector of the collection to score by.
        limit: how many points to return, best first.
        where: payload filter of the main query (a prefetch has its own).
        prefetch: candidates to rescore instead of searching the whole collection.
        hnsw_ef: HNSW search breadth (``None``: the store's default).
        with_vectors: return the points' stored vectors too.
    """

    vector: Any
    using: str
    limit: int
    where: Where | None = None
    prefetch: Prefetch | None = None
    hnsw_ef: int | None = None
    with_vectors: bool = False


@runtime_checkable
class Store(Protocol):
    """A vector store holding one collection per corpus."""

    def create_collection(self, spec: CollectionSpec) -> None:
        """Create the collection, or check that the existing one has the same spec.

        Raises:
            EncoderMismatchError: the collection exists with another encoder or vectors.
        """

    def get_spec(self, name: str) -> CollectionSpec | None:
        """The spec the collection was created with, or ``None`` if it does not exist."""

    def collections(self) -> list[str]:
        """Names of the existing collections."""

    def drop_collection(self, name: str) -> None:
        """Delete a collection and everything in it (no error if it does not exist)."""

    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        """Insert or replace points by id."""

    def search(
        self, name: str, vector: Any, *, using: str, limit: int, where: Where | None = None, hnsw_ef: int | None = None
    ) -> list[StoredPoint]:
        """Nearest points to ``vector`` (a list of floats, or of lists for a multivector),
        best first, with payloads and ``score`` set."""

    def query(self, name: str, request: SearchRequest) -> list[StoredPoint]:
        """One query, optionally two-stage (``request.prefetch``); best first, ``score`` set."""

    def query_batch(self, name: str, requests: Sequence[SearchRequest]) -> list[list[StoredPoint]]:
        """Several queries in one call; one result list per request, in order."""

    def retrieve(self, name: str, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        """Points by id (missing ids are left out)."""

    def scroll(self, name: str, where: Where | None = None, *, with_vectors: bool = False, batch: int = 256) -> Iterator[StoredPoint]:
        """Every point matching ``where``, in batches."""

    def count(self, name: str, where: Where | None = None) -> int:
        """Number of points matching ``where`` (0 for a missing collection)."""

    def delete(self, name: str, where: Where) -> None:
        """Delete the points matching ``where``."""

    def flush(self) -> None:
        """Make every write durable."""

    def optimize(self, name: str | None = None) -> dict[str, bool]:
        """Build search indexes (HNSW) after large writes; per collection, whether anything
        was built. A server that indexes in the background does nothing."""

    def close(self) -> None:
        """Release files and connections."""


@runtime_checkable
class Encoder(Protocol):
    """Turns inputs into L2-normalised vectors; ``name`` identifies the model for collections."""

    name: str
    dim: int
    modality: str
    # A late-interaction encoder sets ``multivector = True``: it gives one (T, dim) array of
    # token vectors per input instead of a row of an (N, dim) array.

    def encode_query(self, inputs: Sequence[Any]) -> np.ndarray:
        """(N, dim) float32 query embeddings."""

    def encode_document(self, inputs: Sequence[Any]) -> np.ndarray:
        """(N, dim) float32 document embeddings."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file handed to a :class:`Reader`: read and hashed once by the indexer.

    Args:
        path: the file on disk.
        key: the source key its items are stored under.
        digest: SHA-256 of its bytes (unchanged files are skipped before any reader runs).
        data: its bytes, or ``None`` for a reader that streams its files (``Reader.streams``).
    """

    path: Path
    key: str
    digest: str
    data: bytes | None = None


@dataclass(slots=True)
class Encoded:
    """What a reader made of one source: points per corpus, and the source's item counts."""

    key: str
    digest: str
    points: dict[str, list[StoredPoint]] = field(default_factory=dict)


@runtime_checkable
class Reader(Protocol):
    """The ingestion side of a modality: files of some types -> items -> points.

    The indexer walks paths, hashes each file once, skips unchanged ones, then calls
    ``read`` per file (cheap to parallelise, may raise :class:`~ragmm.errors.InputError`) and
    ``encode`` per batch (so encoders see full batches across files). Items of an older
    version, the ledger and resuming are the indexer's business, not the reader's.
    """

    modality: str
    suffixes: frozenset[str]
    streams: bool
    buffer: int  # items gathered (across sources) before one ``encode`` call

    def collections(self) -> list[CollectionSpec]:
        """Specs of the corpora this reader writes (checked against the store once per run)."""

    def read(self, source: SourceFile) -> Any:
        """Parse one file (raises ``InputError`` naming the file and what to do)."""

    def size(self, parsed: Any) -> int:
        """How many items ``parsed`` will give (the indexer batches by it)."""

    def encode(self, batch: Sequence[Any]) -> list[Encoded]:
        """Embed a batch of parsed sources: one :class:`Encoded` per source, in order."""


@runtime_checkable
class Retriever(Protocol):
    """Searches the corpora of one modality.

    Query vectors are asked for separately so that the pipeline (and evaluation) can encode a
    query once for several corpora; retrievers share one memo of query embeddings.
    """

    def query_vectors(self, query: Query) -> dict[str, Any]:
        """``{named vector: query vector}`` this retriever searches with; ``{}`` when it cannot
        search this kind of query (a query image whose encoder lives in another space)."""

    def retrieve(self, query: Query, corpus: str, k: int, where: Where | None = None) -> list[Hit]:
        """Up to ``k`` hits, best first; an empty or missing corpus gives ``[]``."""


@dataclass(frozen=True, slots=True)
class Route:
    """A corpus a router chose, with the probability it gave it."""

    corpus: str
    probability: float = 1.0


@runtime_checkable
class Router(Protocol):
    """Chooses which corpora a query needs (possibly none)."""

    def route(self, query: Query, available: Sequence[str]) -> list[Route]:
        """The corpora to search (a subset of ``available``), most probable first; ``[]`` means
        the query needs no retrieval."""


@runtime_checkable
class Reranker(Protocol):
    """Scores hits for relevancy and keeps only the relevant ones, up to ``k``."""

    def rerank(self, query: Query, hits: Sequence[Hit], k: int) -> list[Hit]:
        """At most ``k`` hits, best first; each hit's ``score`` is its relevancy."""


@runtime_checkable
class Generator(Protocol):
    """Writes an answer from numbered evidence; cites only evidence it was given."""

    name: str

    def generate(self, query: Query, evidence: Sequence[Hit]) -> Answer:
        """An :class:`~ragmm.types.Answer` whose citations point into ``evidence``."""

    def stream(self, query: Query, evidence: Sequence[Hit]) -> Iterator[str | Answer]:
        """Yield the answer's text as it is produced, then the finished :class:`Answer`
        (the same one :meth:`generate` returns) as the last item."""


def protocol_of(kind: str) -> type:
    """The protocol implementations of a registry ``kind`` must satisfy."""
    return {
        "store": Store,
        "encoder": Encoder,
        "reader": Reader,
        "retriever": Retriever,
        "router": Router,
        "reranker": Reranker,
        "generator": Generator,
    }[kind]


def missing_methods(kind: str, cls: type) -> list[str]:
    """The methods of ``kind``'s protocol that ``cls`` lacks (attributes set in ``__init__``
    cannot be seen on a class and are not checked here)."""
    import inspect

    protocol = protocol_of(kind)
    wanted = [name for name, member in vars(protocol).items() if inspect.isfunction(member) and not name.startswith("_")]
    return [name for name in wanted if not callable(getattr(cls, name, None))]
