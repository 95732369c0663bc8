"""Retrieval from the image corpus: by what an image shows and by what is written in or about it.

Each point of the ``image`` corpus has two vectors (see :mod:`ragmm.ingest.indexer`):

- ``image``: the image encoder's embedding of the pixels (``ragmm-lite0``, ``ragmm-clipart``, CLIP...);
- ``text``: the text encoder's embedding of the file name, EXIF/PNG description, OCR text and
  the image encoder's labels (``ragmm-lite0``: "picture of: ...").

A text query searches both: the ``image`` view with the image encoder's text embedding of the
query, the ``text`` view with the text encoder's. Candidates found by either view get the exact
score of the other as well (their stored vectors are fetched), so every hit carries both scores,
and the final score fuses them. The two cosines live on different scales (an image-text cosine
runs lower than a text-text one), which ``calibrated`` fusion takes into account:

- ``calibrated``: what an image's text view holds decides. Text of its own (a file name, a
  description, OCR) says what the image is: such an image matches when it says the query or
  looks like it, the ``max`` of the two cosines. Text that is only the image encoder's labels
  ("picture of: koala") is a second look at the pixels, weaker and complementary: both views'
  cosines become z-scores, with means and spreads fitted on a development split
  (:class:`Calibration`), and the labels add ``text_weight`` of theirs to the image view's,
  ``z_image + text_weight * z_text``, written back in the image view's cosine units
  (``mean_image + std_image * z``). An image with no text at all keeps its image cosine, as
  under ``max``, so in a collection of named files the few numbered ones compete as before. An
  image encoder ships its fitted calibration as ``fusion.json`` beside its weights
  (``ragmm-lite0`` does).
- ``max`` / ``mean`` of the raw cosines (``text_weight`` scales the text view's).
- ``auto`` (the default): ``calibrated`` when the image encoder ships a calibration for the
  configured text encoder, else ``max``.

Hubness correction: some images sit close to very many captions (hubs) and crowd every text
query's top 10. An image encoder may ship a bank of caption embeddings beside its weights
(:mod:`ragmm.encoders.hubness`; ``ragmm-lite0`` does); each image then records at index time its
mean cosine to its 10 nearest bank captions (its ``hub`` metadata), and ``calibrated`` fusion
subtracts ``hub_weight * (hub - hub_mean)`` from its image cosine for text queries (CSLS, Conneau
et al. 2018, "Word Translation Without Parallel Data"), re-sorting a candidate list a little
longer than ``k``. Images indexed without a ``hub`` count as the mean: no change.

An image query searches the ``image`` view with the query image's embedding (image-to-image).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragmm.encoders.shared import Encoders, QueryEmbeddings
from ragmm.errors import ConfigError, EncoderMismatchError
from ragmm.protocols import CollectionSpec, Encoder, SearchRequest, Store, Where
from ragmm.stores.common import encoder_mismatch
from ragmm.types import Hit, Item, Query

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

IMAGE_VECTOR = "image"
TEXT_VECTOR = "text"
FUSION_FILE = "fusion.json"  # an image encoder's fitted Calibration, beside its weights
HUB_EXTRA_CANDIDATES = 20  # with the correction, the image view is searched this much deeper than k
Fusion = Literal["auto", "max", "mean", "calibrated"]


class ViewStats(BaseModel):
    """Mean and standard deviation of one view's query-item cosines (all pairs of a dev split)."""

    model_config = ConfigDict(extra="forbid")

    mean: float
    std: float = Field(gt=0)


class Calibration(BaseModel):
    """What ``calibrated`` fusion needs: both views' cosine statistics and the labels' weight.

    Fitted by ``python -m ragmm.training.data.clipart --fit-fusion`` on the development split
    of the training sources, numbered (so the text view holds only the encoder's labels): the
    statistics over every query-image pair (the text view's over the images that have text),
    the weight by Recall@10, among those that keep the recall of ``max`` on the same images under
    their original file names.
    """

    model_config = ConfigDict(extra="forbid")

    image: ViewStats
    text: ViewStats
    text_weight: float = Field(ge=0, description="share of the text view's z-score added to the image view's")
    text_encoder: str | None = Field(None, description="the text encoder the text statistics hold for (None: any)")
    hub_weight: float = Field(0.0, ge=0, description="share of an image's hubness subtracted from its image cosine for text queries (0: no correction)")
    hub_mean: float = Field(0.0, description="the dev split's mean hubness (images indexed without one count as it)")
    fitted_on: str = Field("", description="where the figures come from, for the record")


def own_text(metadata: Mapping[str, Any]) -> bool:
    """Whether an image item's text says something of its own (file name words, a description,
    OCR text), rather than only its encoder's labels. An item that records no labels counts as
    having its own text (whatever made its text vector)."""
    if not metadata.get("labels"):
        return True
    return any(metadata.get(key) for key in ("title", "description", "ocr_text"))


def fuse_calibrated(image: float, text: float | None, calibration: Calibration, text_weight: float | None = None, *, labels_only: bool = True) -> float:
    """One score for an image from its two views' cosines (the ``calibrated`` fusion).

    Args:
        image: the image view's cosine.
        text: the text view's cosine; ``None`` for an image with no text at all (no name, no
            labels, no OCR), which keeps its image cosine.
        calibration: both views' statistics (and ``w`` unless ``text_weight`` is given).
        text_weight: ``w``, overriding the calibration's.
        labels_only: whether the text view holds only the image encoder's labels; if not, the
            image has text of its own and the score is ``max(image, text)``.

    Returns:
        ``mean_image + std_image * (z_image + w * z_text)``, the z-scores' sum in the image
        view's cosine units, which is the image cosine plus ``w * std_image * z_text``; or
        ``max(image, text)`` for an image with text of its own.

    Example:
        >>> cal = Calibration(image=ViewStats(mean=0.05, std=0.1), text=ViewStats(mean=0.15, std=0.05), text_weight=0.5)
        >>> round(fuse_calibrated(0.35, 0.25, cal), 3)  # z_text 2: 0.35 + 0.5 * 0.1 * 2
        0.45
        >>> round(fuse_calibrated(0.35, None, cal), 3)  # no text: the image cosine
        0.35
        >>> round(fuse_calibrated(0.35, 0.5, cal, labels_only=False), 3)  # a name, OCR...: max
        0.5
    """
    if text is None:
        return image
    if not labels_only:
        return max(image, text)
    w = calibration.text_weight if text_weight is None else text_weight
    return image + w * calibration.image.std * (text - calibration.text.mean) / calibration.text.std


def hub_corrected(image: Any, hub: Any, hub_weight: float, hub_mean: float) -> Any:
    """The image cosine(s) less ``hub_weight * (hub - hub_mean)``: the hubness correction
    (floats or numpy arrays).

    Example:
        >>> round(hub_corrected(0.35, 0.5, 0.25, 0.4), 3)
        0.325
    """
    return image - hub_weight * (hub - hub_mean)


def encoder_calibration(image_encoder: Encoder, text_encoder: Encoder) -> Calibration | None:
    """The calibration shipped beside ``image_encoder``'s weights for ``text_encoder``, if any.

    Looks for :data:`FUSION_FILE` in the folder of a shipped tower (``ragmm-lite0``) or of a
    trained one (whose name is its folder).

    Raises:
        ConfigError: the file exists but is not a valid calibration.
    """
    from ragmm.encoders.image_text import encoder_folder

    folder = encoder_folder(image_encoder)
    path = folder / FUSION_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        calibration = Calibration.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path}: not a fusion calibration ({exc}); fit it again with python -m ragmm.training.data.clipart --fit-fusion") from exc
    if calibration.text_encoder is not None and calibration.text_encoder != text_encoder.name:
        log.warning("%s: fitted for text encoder %s, not %s; the image corpus fuses its views by max", path, calibration.text_encoder, text_encoder.name)
        return None
    return calibration


class ImageCorpusRetriever:
    """Searches collections whose points hold an ``image`` and a ``text`` vector.

    Args:
        store: where the corpora live.
        text_encoder: the encoder of the ``text`` vectors (ragmm's text encoder).
        image_encoder: the encoder of the ``image`` vectors; ``text_space`` (when set) names a
            text encoder whose vectors live in its space, so a query is encoded only once.
        embeddings: the pipeline's shared memo of query embeddings.
        fusion: ``auto``, ``calibrated``, ``max`` or ``mean`` (see the module docstring).
        text_weight: ``max``/``mean``: the text view's cosine is multiplied by it (default 1);
            ``calibrated``: the share of the labels' z-score added to the image view's
            (default: the calibration's).
        views: the views a text query searches (both by default; one for ablations).
        hnsw_ef: HNSW search breadth (``None``: the store's default).
        calibration: the views' statistics for ``calibrated`` (``None``: the one shipped beside
            the image encoder's weights).
        hub_weight: ``calibrated``: the hubness correction's share (default: the calibration's;
            0 turns it off).

    Raises:
        ConfigError: ``calibrated`` fusion with no calibration configured or shipped.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        fusion: Fusion = Field("auto", description="how the image and text views' scores combine: auto (calibrated where the image encoder ships a calibration, else max), calibrated, max, mean")
        text_weight: float | None = Field(None, ge=0, description="max/mean: the text view's score is multiplied by this (default 1); calibrated: the share of the labels' z-score added to the image view's (default: the calibration's)")
        views: list[Literal["image", "text"]] = Field(
            default_factory=lambda: ["image", "text"], min_length=1, description="views searched by a text query: image (pixels), text (file name, description, OCR)"
        )
        calibration: Calibration | None = Field(None, description="calibrated fusion's statistics, instead of the image encoder's fusion.json")
        hub_weight: float | None = Field(None, ge=0, description="calibrated: the share of an image's hubness subtracted from its image cosine (default: the calibration's; 0: off)")

    def __init__(
        self,
        store: Store,
        text_encoder: Encoder,
        image_encoder: Encoder,
        embeddings: QueryEmbeddings | None = None,
        fusion: Fusion = "auto",
        text_weight: float | None = None,
        views: tuple[str, ...] | list[str] = (IMAGE_VECTOR, TEXT_VECTOR),
        hnsw_ef: int | None = None,
        calibration: Calibration | None = None,
        hub_weight: float | None = None,
    ) -> None:
        if fusion not in ("auto", "max", "mean", "calibrated"):
            raise ConfigError(f"[retrievers.image] fusion = {fusion!r}: choose auto, calibrated, max or mean")
        self.store = store
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.embeddings = embeddings or QueryEmbeddings()
        if fusion in ("auto", "calibrated") and calibration is None:
            calibration = encoder_calibration(image_encoder, text_encoder)
        if fusion == "calibrated" and calibration is None:
            raise ConfigError(
                f"[retrievers.image] fusion = \"calibrated\" needs a calibration: image encoder {image_encoder.name} ships no {FUSION_FILE} "
                f"for text encoder {text_encoder.name}; set [retrievers.image.calibration], or fusion = \"max\""
            )
        self.fusion: str = ("calibrated" if calibration is not None else "max") if fusion == "auto" else fusion
        self.calibration = calibration
        self.text_weight = text_weight
        self.hub_weight = hub_weight
        self.views = tuple(views)
        self.hnsw_ef = hnsw_ef

    @classmethod
    def from_config(cls, config: Config, *, store: Store, encoders: Encoders, embeddings: QueryEmbeddings, hnsw_ef: int | None = None, **_: Any) -> ImageCorpusRetriever:
        return cls(
            store, encoders["text"], encoders["image"], embeddings,
            fusion=config.fusion, text_weight=config.text_weight, views=config.views, hnsw_ef=hnsw_ef, calibration=config.calibration,
            hub_weight=config.hub_weight,
        )

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
            if spec.encoder_of(view) != encoder.name:
                raise encoder_mismatch(spec, view, encoder.name, getattr(self.store, "location", "the store"))

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
        hub = self._hub_weight(query)
        depth = {view: k + HUB_EXTRA_CANDIDATES if hub and view == IMAGE_VECTOR else k for view in views}
        requests = [SearchRequest(vec, using=view, limit=depth[view], where=where, hnsw_ef=self.hnsw_ef) for view, vec in views.items()]
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
        hits = []
        for pid, s in scores.items():
            item = Item.from_payload(found[pid].payload)
            fused = dict(s)
            if hub and IMAGE_VECTOR in fused:
                assert self.calibration is not None  # _hub_weight says so
                fused[IMAGE_VECTOR] = hub_corrected(fused[IMAGE_VECTOR], float(item.metadata.get("hub", self.calibration.hub_mean)), hub, self.calibration.hub_mean)
            hits.append(Hit(item=item, score=self._fuse(fused, len(views), own_text(item.metadata)), scores=s))
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:k]

    def _hub_weight(self, query: Query) -> float:
        """The hubness correction's weight for this query: the calibration's for a text query
        under ``calibrated`` fusion, else 0."""
        if query.image is not None or self.fusion != "calibrated" or self.calibration is None:
            return 0.0
        return self.calibration.hub_weight if self.hub_weight is None else self.hub_weight

    def _fuse(self, s: dict[str, float], n_views: int, has_own_text: bool) -> float:
        """One score from a hit's view scores ``s``; ``n_views``: how many views were searched
        (an image without text has no text vector, so no text score)."""
        if self.fusion == "calibrated" and self.calibration is not None and n_views == 2:
            if IMAGE_VECTOR not in s:
                return s[TEXT_VECTOR]
            return fuse_calibrated(s[IMAGE_VECTOR], s.get(TEXT_VECTOR), self.calibration, self.text_weight, labels_only=not has_own_text)
        if self.fusion == "calibrated":
            return next(iter(s.values()))  # one view searched (an image query, an ablation): its cosine
        w = 1.0 if self.text_weight is None else self.text_weight
        values = [s[IMAGE_VECTOR]] if IMAGE_VECTOR in s else []
        if TEXT_VECTOR in s:
            values.append(w * s[TEXT_VECTOR])
        return max(values) if self.fusion == "max" else sum(values) / len(values)
