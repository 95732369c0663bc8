"""Retrieval from the image corpus: by what an image shows and by what is written in or about it.

Each point of the ``image`` corpus has two vectors (see :mod:`ragmm.ingest.indexer`):

- ``image``: the image encoder's embedding of the pixels (``ragmm-clipart``, CLIP, SigLIP...);
- ``text``: the text encoder's embedding of the file name, EXIF/PNG description and OCR text.

A text query searches both: the ``image`` view with the image encoder's text embedding of the
query, the ``text`` view with the text encoder's. Candidates found by either view get the exact
score of the other as well (their stored vectors are fetched), so every hit carries both scores,
and the final score fuses them (``max`` by default: an image matches when it looks like the
query or says it; ``mean`` and weighted variants are available). An image query searches the
``image`` view with the query image's embedding (image-to-image).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragmm.encoders.shared import Encoders, QueryEmbeddings
from ragmm.errors import EncoderMismatchError
from ragmm.protocols import CollectionSpec, Encoder, SearchRequest, Store, Where
from ragmm.types import Hit, Item, Query

if TYPE_CHECKING:
    import numpy as np

IMAGE_VECTOR = "image"
TEXT_VECTOR = "text"


class ImageCorpusRetriever:
    """Searches collections whose points hold an ``image`` and a ``text`` vector.

    Args:
        store: where the corpora live.
        text_encoder: the encoder of the ``text`` vectors (ragmm's text encoder).
        image_encoder: the encoder of the ``image`` vectors; ``text_space`` (when set) names a
            text encoder whose vectors live in its space, so a query is encoded only once.
        embeddings: the pipeline's shared memo of query embeddings.
        fusion: ``max`` or ``mean`` of the two views' cosine scores.
        text_weight: weight of the text view in the fusion (1 = as much as the image view).
        views: the views a text query searches (both by default; one for ablations).
        hnsw_ef: HNSW search breadth (``None``: the store's default).
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        fusion: Literal["max", "mean"] = Field("max", description="how the image and text views' scores combine")
        text_weight: float = Field(1.0, ge=0, description="the text view's score is multiplied by this before fusing")
        views: list[Literal["image", "text"]] = Field(
            default_factory=lambda: ["image", "text"], min_length=1, description="views searched by a text query: image (pixels), text (file name, description, OCR)"
        )

    def __init__(
        self,
        store: Store,
        text_encoder: Encoder,
        image_encoder: Encoder,
        embeddings: QueryEmbeddings | None = None,
        fusion: str = "max",
        text_weight: float = 1.0,
        views: tuple[str, ...] | list[str] = (IMAGE_VECTOR, TEXT_VECTOR),
        hnsw_ef: int | None = None,
    ) -> None:
        self.store = store
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.embeddings = embeddings or QueryEmbeddings()
        self.fusion = fusion
        self.text_weight = text_weight
        self.views = tuple(views)
        self.hnsw_ef = hnsw_ef

    @classmethod
    def from_config(cls, config: Config, *, store: Store, encoders: Encoders, embeddings: QueryEmbeddings, hnsw_ef: int | None = None, **_: Any) -> ImageCorpusRetriever:
        return cls(store, encoders["text"], encoders["image"], embeddings, hnsw_ef=hnsw_ef, **config.model_dump())

    @property
    def shared_space(self) -> bool:
        """Whether the image encoder's text embeddings are the text encoder's own."""
        return getattr(self.image_encoder, "text_space", None) == self.text_encoder.name

    def query_vectors(self, query: Query) -> dict[str, np.ndarray]:
        """The vector to search each view with: ``{view: (D,) array}``."""
        if query.image is not None:
            return {IMAGE_VECTOR: self.embeddings.image(self.image_encoder, query.image)}
        views: dict[str, np.ndarray] = {}
        if IMAGE_VECTOR in self.views:
            # A tower trained into the text encoder's space reads queries with that encoder.
            encoder = self.text_encoder if self.shared_space else self.image_encoder
            views[IMAGE_VECTOR] = self.embeddings.text(encoder, query.text)
        if TEXT_VECTOR in self.views:
            views[TEXT_VECTOR] = self.embeddings.text(self.text_encoder, query.text)
        if getattr(self.text_encoder, "multivector", False):
            from ragmm.scores import mean_pool

            # An image's text view is one pooled vector, whatever the text encoder.
            views = {view: mean_pool(vec) if vec.ndim == 2 else vec for view, vec in views.items()}
        return views

    def check(self, spec: CollectionSpec) -> None:
        """Refuse a collection built with other encoders than the configured ones."""
        for view, encoder in ((IMAGE_VECTOR, self.image_encoder), (TEXT_VECTOR, self.text_encoder)):
            if view not in spec.vectors:
                raise EncoderMismatchError(f"corpus '{spec.name}' has no '{view}' vector; it is not an image corpus built by ragmm")
            built = spec.encoder_of(view)
            if built != encoder.name:
                raise EncoderMismatchError(
                    f"corpus '{spec.name}' was built with {view} encoder {built}, but the configured one is {encoder.name}; "
                    f"configure that encoder again ([encoders.{'image' if view == IMAGE_VECTOR else 'text'}]), or re-index into a new store path"
                )

    def retrieve(self, query: Query, corpus: str, k: int, where: Where | None = None) -> list[Hit]:
        """The best ``k`` items of ``corpus``, each with both views' scores in ``Hit.scores``."""
        import numpy as np

        spec = self.store.get_spec(corpus)
        if spec is None:
            return []
        self.check(spec)
        views = self.query_vectors(query)
        found: dict[str, Any] = {}
        scores: dict[str, dict[str, float]] = {}
        requests = [SearchRequest(vec, using=view, limit=k, where=where, hnsw_ef=self.hnsw_ef) for view, vec in views.items()]
        for view, points in zip(views, self.store.query_batch(corpus, requests), strict=True):
            for p in points:
                found.setdefault(p.id, p)
                scores.setdefault(p.id, {})[view] = float(p.score)
        # Exact scores of the views that did not find a candidate, from its stored vectors.
        missing = [pid for pid, s in scores.items() if len(s) < len(views)]
        if missing:
            for p in self.store.retrieve(corpus, missing, with_vectors=True):
                for view, vec in views.items():
                    if view not in scores[p.id] and view in p.vectors:
                        stored = np.asarray(p.vectors[view], dtype=np.float32)
                        scores[p.id][view] = float(stored @ vec / max(float(np.linalg.norm(stored) * np.linalg.norm(vec)), 1e-12))
        hits = [Hit(item=Item.from_payload(found[pid].payload), score=self._fuse(s), scores=s) for pid, s in scores.items()]
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:k]

    def _fuse(self, s: dict[str, float]) -> float:
        values = [s[IMAGE_VECTOR]] if IMAGE_VECTOR in s else []
        if TEXT_VECTOR in s:
            values.append(self.text_weight * s[TEXT_VECTOR])
        return max(values) if self.fusion == "max" else sum(values) / len(values)
