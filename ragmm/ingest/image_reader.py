"""The image modality's reader: image files -> the ``image`` corpus.

Each point holds two named vectors:

- ``image``: the image encoder's embedding of the pixels;
- ``text``: the text encoder's embedding of what names or describes the image (file name,
  EXIF/PNG description, OCR text, and the names of what the image encoder sees when it can
  say so); an image nothing names or describes gets none.

Decoding, metadata and OCR live in :mod:`ragmm.ingest.images`; the file is read and hashed once
by the indexer, so an unchanged image is never decoded again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragmm.encoders.shared import Encoders
from ragmm.errors import InputError
from ragmm.ingest.images import IMAGE_SUFFIXES, OCR, ParsedImage, decode_image
from ragmm.protocols import CollectionSpec, Encoded, Encoder, SourceFile, StoredPoint, VectorSpec
from ragmm.types import Item, Locator

if TYPE_CHECKING:
    from ragmm.config import IndexSettings

log = logging.getLogger(__name__)

IMAGE = "image"
IMAGE_VECTOR = "image"
TEXT_VECTOR = "text"


def image_spec(image_encoder: Encoder, text_encoder: Encoder) -> CollectionSpec:
    """The ``image`` corpus: an image vector and a text vector (OCR, file name, description)."""
    return CollectionSpec(
        name=IMAGE,
        vectors={
            IMAGE_VECTOR: VectorSpec(size=image_encoder.dim, distance="cosine", encoder=image_encoder.name),
            TEXT_VECTOR: VectorSpec(size=text_encoder.dim, distance="cosine", encoder=text_encoder.name),
        },
        encoder=image_encoder.name,
        modality="image",
    )


class ImageReader:
    """Reads image files (png, jpg, webp, gif, bmp, tiff) into the ``image`` corpus.

    Args:
        encoders: the configured encoders: ``encoders["image"]`` for the pixels,
            ``encoders["text"]`` for the text view.
        settings: ``[index]``: OCR on or off, its threshold, decode size, batch size.
    """

    modality = "image"
    suffixes = frozenset(IMAGE_SUFFIXES)
    streams = False

    def __init__(self, encoders: Encoders, settings: IndexSettings) -> None:
        self.encoders = encoders
        self.settings = settings
        self.buffer = settings.batch_size  # decoded images wait in memory until encoded
        self.ocr = OCR(settings.ocr_min_score) if settings.ocr else None

    @classmethod
    def from_config(cls, config: Any, *, encoders: Encoders, settings: IndexSettings, **_: Any) -> ImageReader:
        return cls(encoders, settings)

    def collections(self) -> list[CollectionSpec]:
        if IMAGE not in self.encoders:
            return []
        return [image_spec(self.encoders["image"], self.encoders["text"])]

    def read(self, source: SourceFile) -> ParsedImage:
        """Decode (downscaled) and OCR one image.

        Raises:
            InputError: no image encoder configured, or a bad file (see ``decode_image``).
        """
        if IMAGE not in self.encoders:
            raise InputError(str(source.path), "an image, but no image encoder is configured; add an [encoders.image] section")
        assert source.data is not None
        parsed = decode_image(source.path, source.key, source.data, source.digest, self.settings.image_max_side)
        if self.ocr is not None:
            try:
                parsed.ocr_text = self.ocr(parsed.image)
            except Exception as exc:  # OCR is an extra: an engine failure must not cost the image
                log.warning("%s: OCR failed (%s); indexed without OCR text", source.path, exc)
        return parsed

    def size(self, parsed: ParsedImage) -> int:
        return 1

    def encode(self, batch: Sequence[ParsedImage]) -> list[Encoded]:
        image_encoder, text_encoder = self.encoders["image"], self.encoders["text"]
        pixels = [p.image for p in batch]
        labelled = getattr(image_encoder, "encode_document_with_labels", None)
        if labelled is not None:
            # Words for what the encoder sees join the item's text (and so its text vector).
            image_vecs, labels = labelled(pixels)  # (N, Di), N strings
            for p, words in zip(batch, labels, strict=True):
                p.labels = words
        else:
            image_vecs = image_encoder.encode_document(pixels)  # (N, Di)
        items = [
            Item(corpus=IMAGE, source=p.key, text=p.item_text(), locator=Locator(), modality="image", source_hash=p.source_hash, metadata=p.metadata())
            for p in batch
        ]
        from ragmm.encoders.hubness import encoder_hub_bank, hubness

        bank = encoder_hub_bank(image_encoder)
        if bank is not None:  # how much of a hub each image is, for the retriever's correction
            for item, h in zip(items, hubness(image_vecs, bank), strict=True):
                item.metadata["hub"] = round(float(h), 5)
        # Only images something names or describes get a text vector (see ParsedImage.has_text).
        texted = [i for i, p in enumerate(batch) if p.has_text]
        text_vecs = text_encoder.encode_document([items[i].text for i in texted]) if texted else []
        if getattr(text_encoder, "multivector", False):
            from ragmm.scores import mean_pool

            text_vecs = [mean_pool(v) for v in text_vecs]
        by_index = dict(zip(texted, text_vecs, strict=True))  # i -> (Dt,)
        out = []
        for i, (p, item, iv) in enumerate(zip(batch, items, image_vecs, strict=True)):
            vectors = {IMAGE_VECTOR: iv, **({TEXT_VECTOR: by_index[i]} if i in by_index else {})}
            out.append(Encoded(p.key, p.source_hash, {IMAGE: [StoredPoint(id=item.id, payload=item.to_payload(), vectors=vectors)]}))
        return out
