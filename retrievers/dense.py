"""Text corpora: dense dual-encoder search, or two-stage late interaction.

A corpus built with a dense encoder holds one ``dense`` vector per item: the query embedding's
nearest neighbours (HNSW) are the hits. A corpus built with a late-interaction encoder also
holds the item's ``tokens`` (a multivector): the pooled ``dense`` vectors fetch ``prefetch``
candidates, and ColBERT MaxSim over the token vectors ranks them (Qdrant's prefetch + query,
in one store call).

A query image is searched in a text corpus when an image encoder shares the text encoder's
space (``ragmm-clipart`` is trained into all-MiniLM-L6-v2's): image to text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.encoders.shared import Encoders, QueryEmbeddings
from ragmm.errors import EncoderMismatchError
from ragmm.protocols import DENSE, TOKENS, CollectionSpec, Encoder, Prefetch, SearchRequest, Store, Where
from ragmm.types import Hit, Item, Query


class DenseRetriever:
    """Searches text corpora with the query embedding of the encoder that built them.

    Args:
        store: where the corpora live.
        encoder: the query encoder; must be the one each searched corpus was built with.
        encoders: every configured encoder (to find one that embeds a query image into
            ``encoder``'s space); ``None``: text queries only.
        embeddings: the pipeline's shared memo of query embeddings.
        prefetch: candidates fetched by the pooled vector before MaxSim rescoring
            (late-interaction corpora); at least ``k`` are always fetched.
        hnsw_ef: HNSW search breadth (``None``: the store's default).

    Example:
        >>> hits = DenseRetriever(store, encoder).retrieve(Query("lighthouse"), "paragraph", 5)  # doctest: +SKIP
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        prefetch: int = Field(100, gt=0, description="late-interaction corpora: candidates the pooled vector fetches for MaxSim rescoring")

    def __init__(
        self,
        store: Store,
        encoder: Encoder,
        encoders: Mapping[str, Encoder] | None = None,
        embeddings: QueryEmbeddings | None = None,
        prefetch: int = 100,
        hnsw_ef: int | None = None,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.encoders = encoders
        self.embeddings = embeddings or QueryEmbeddings()
        self.prefetch = prefetch
        self.hnsw_ef = hnsw_ef

    @classmethod
    def from_config(cls, config: Config, *, store: Store, encoders: Encoders, embeddings: QueryEmbeddings, hnsw_ef: int | None = None, **_: Any) -> DenseRetriever:
        return cls(store, encoders["text"], encoders, embeddings, prefetch=config.prefetch, hnsw_ef=hnsw_ef)

    @property
    def multivector(self) -> bool:
        return bool(getattr(self.encoder, "multivector", False))

    def query_vectors(self, query: Query) -> dict[str, Any]:
        """``{"dense": (D,)}``, plus ``{"tokens": (T, D)}`` for a late-interaction encoder; a
        query image gives its embedding by an encoder of this space, or ``{}``."""
        from ragmm.scores import mean_pool

        if query.image is not None:
            shared = self.encoders.sharing_space(self.encoder) if isinstance(self.encoders, Encoders) else []
            if not shared or self.multivector:
                return {}  # no encoder puts images into this corpus's space
            return {DENSE: self.embeddings.image(shared[0], query.image)}
        vec = self.embeddings.text(self.encoder, query.text)
        if self.multivector:
            return {DENSE: mean_pool(vec), TOKENS: vec}
        return {DENSE: vec}

    def check(self, spec: CollectionSpec) -> None:
        """Refuse a corpus built with another encoder than the configured one."""
        if spec.encoder != self.encoder.name:
            raise EncoderMismatchError(
                f"corpus '{spec.name}' was built with encoder {spec.encoder}, but the configured query encoder is "
                f"{self.encoder.name}; configure that encoder again, or re-index into a new store path"
            )

    def request(self, spec: CollectionSpec, vectors: Mapping[str, Any], k: int, where: Where | None = None) -> SearchRequest | None:
        """The store request for ``vectors`` in the corpus ``spec``: two-stage when the corpus
        and the query both have token vectors."""
        if TOKENS in vectors and TOKENS in spec.vectors:
            first = Prefetch(vectors[DENSE], using=DENSE, limit=max(self.prefetch, k), where=where)
            return SearchRequest(vectors[TOKENS], using=TOKENS, limit=k, where=where, prefetch=first, hnsw_ef=self.hnsw_ef)
        if DENSE not in vectors:
            return None
        return SearchRequest(vectors[DENSE], using=DENSE, limit=k, where=where, hnsw_ef=self.hnsw_ef)

    def retrieve(self, query: Query, corpus: str, k: int, where: Where | None = None) -> list[Hit]:
        """The best ``k`` items of ``corpus`` for ``query``."""
        spec = self.store.get_spec(corpus)
        if spec is None:
            return []
        self.check(spec)
        request = self.request(spec, self.query_vectors(query), k, where)
        if request is None:
            return []
        stage = request.using
        return [Hit(item=Item.from_payload(p.payload), score=p.score, scores={stage: p.score}) for p in self.store.query(corpus, request)]
