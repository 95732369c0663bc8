"""Dense dual-encoder retrieval: one query vector, nearest neighbours in the store."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import EncoderMismatchError
from ragmm.protocols import Encoder, Store, Where
from ragmm.types import Hit, Item, Query

if TYPE_CHECKING:
    import numpy as np


class DenseRetriever:
    """Searches a corpus with the query embedding of the encoder that built it.

    Args:
        store: where the corpora live.
        encoder: the query encoder; must be the one each searched corpus was built with.
        vector: the named vector to search.
        hnsw_ef: HNSW search breadth (``None``: the store's default).

    Example:
        >>> hits = DenseRetriever(store, encoder).retrieve(Query("lighthouse"), "paragraph", 5)  # doctest: +SKIP
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        vector: str = Field("dense", description="named vector searched in each collection")
        cache_size: int = Field(64, ge=0, description="query embeddings kept, so several corpora share one encode")

    def __init__(self, store: Store, encoder: Encoder, vector: str = "dense", hnsw_ef: int | None = None, cache_size: int = 64) -> None:
        self.store = store
        self.encoder = encoder
        self.vector = vector
        self.hnsw_ef = hnsw_ef
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_config(cls, config: Config, *, store: Store, encoder: Encoder, hnsw_ef: int | None = None) -> DenseRetriever:
        return cls(store, encoder, vector=config.vector, hnsw_ef=hnsw_ef, cache_size=config.cache_size)

    def embed(self, text: str) -> np.ndarray:
        """(D,) query embedding, memoised."""
        vec = self._cache.get(text)
        if vec is None:
            vec = self.encoder.encode_query([text])[0]
            if self._cache_size:
                self._cache[text] = vec
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return vec

    def prime(self, texts: list[str], vectors: Sequence[Any]) -> None:
        """Fill the query cache with embeddings computed in bulk (evaluation encodes all
        queries in batches first): (N, D) dense rows, or one (T, D) array per text for a
        late-interaction encoder."""
        for text, vec in zip(texts, vectors, strict=True):
            self._cache[text] = vec
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def retrieve(self, query: Query, corpus: str, k: int, where: Where | None = None, vector: Any = None) -> list[Hit]:
        """The best ``k`` items of ``corpus`` for ``query`` (or for a ready query ``vector`` in
        this encoder's space, e.g. a query image embedded by an image encoder that shares it)."""
        spec = self.store.get_spec(corpus)
        if spec is None:
            return []
        if spec.encoder != self.encoder.name:
            raise EncoderMismatchError(
                f"corpus '{corpus}' was built with encoder {spec.encoder}, but the configured query encoder is "
                f"{self.encoder.name}; configure that encoder again, or re-index into a new store path"
            )
        vec = self.embed(query.text) if vector is None else vector
        points = self.store.search(corpus, vec, using=self.vector, limit=k, where=where, hnsw_ef=self.hnsw_ef)
        return [Hit(item=Item.from_payload(p.payload), score=p.score, scores={f"{self.vector}": p.score}) for p in points]
