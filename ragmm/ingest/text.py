"""The text modality's reader: documents -> the ``paragraph`` and ``document`` corpora.

Each source is read into pages (txt, md, rst, html, pdf: :mod:`ragmm.ingest.readers`), split
into paragraphs sized in the encoder's tokens (:mod:`ragmm.ingest.chunking`), and embedded in
batches that span files, so the encoder fills its batches.

- A dense encoder gives each paragraph one ``dense`` vector; a document section's is the
  normalised mean of its paragraphs' (a 256-token encoder would read only its first page).
- A late-interaction encoder also gives the ``tokens`` multivector: a paragraph's token vectors,
  a section's those of its paragraphs, reduced by hierarchical token pooling where configured
  (``token_pooling``; sections always to at most ``MAX_SECTION_TOKENS`` vectors). The ``dense``
  vector is then the pooled token vectors' mean: the prefetch of the two-stage search.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.encoders.shared import Encoders
from ragmm.ingest.chunking import DOCUMENT, PARAGRAPH, ChunkedSource, Chunker
from ragmm.ingest.readers import HTML_SUFFIXES, PDF_SUFFIXES, parse_source
from ragmm.protocols import DENSE, TOKENS, CollectionSpec, Encoded, Encoder, SourceFile, StoredPoint, VectorSpec
from ragmm.types import Item

if TYPE_CHECKING:
    import numpy as np

    from ragmm.config import IndexSettings

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst", *HTML_SUFFIXES, *PDF_SUFFIXES})
# A document section's token vectors are pooled to at most this many (a 4,096-token section
# would otherwise weigh 4,096 x dim floats in the store and in every MaxSim).
MAX_SECTION_TOKENS = 512


def text_spec(corpus: str, encoder: Encoder) -> CollectionSpec:
    """The collection spec of a text corpus built with ``encoder``: ``dense``, plus the
    ``tokens`` multivector for a late-interaction encoder."""
    vectors = {DENSE: VectorSpec(size=encoder.dim, distance="cosine")}
    if getattr(encoder, "multivector", False):
        # Token vectors are unit length: MaxSim of dot products sums cosines.
        vectors[TOKENS] = VectorSpec(size=encoder.dim, distance="dot", multivector=True)
    return CollectionSpec(name=corpus, vectors=vectors, encoder=encoder.name, modality="text")


def item_points(items: Sequence[Item], vectors: Sequence[Any], multivector: bool, pool_factor: int = 1, max_tokens: int | None = None) -> list[StoredPoint]:
    """Points of ``items``: dense rows of an (N, D) array, or one (T, D) token array per item
    (pooled by ``pool_factor``, and to at most ``max_tokens``) with their mean as ``dense``."""
    from ragmm.scores import mean_pool, pool_tokens

    points = []
    for item, vec in zip(items, vectors, strict=True):
        if multivector:
            factor = max(pool_factor, math.ceil(len(vec) / max_tokens)) if max_tokens else pool_factor
            tokens = pool_tokens(vec, factor)
            vectors_of = {DENSE: mean_pool(tokens), TOKENS: tokens}
        else:
            vectors_of = {DENSE: vec}
        points.append(StoredPoint(id=item.id, payload=item.to_payload(), vectors=vectors_of))
    return points


class TextReader:
    """Reads documents into paragraph and document items (see the module docstring).

    Args:
        encoders: the configured encoders; this reader uses ``encoders["text"]``.
        settings: ``[index]``: chunk sizes, batch size.
        token_pooling: late-interaction encoders: keep about 1/n of each paragraph's token
            vectors (hierarchical clustering, PyLate's ``pool_factor``); 1 keeps them all.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        token_pooling: int = Field(1, ge=1, le=16, description="late-interaction encoders: store about 1/n of each paragraph's token vectors (1 keeps all)")

    modality = "text"
    suffixes = TEXT_SUFFIXES
    streams = False

    def __init__(self, encoders: Encoders, settings: IndexSettings, token_pooling: int = 1) -> None:
        self.encoders = encoders
        self.settings = settings
        self.token_pooling = token_pooling
        self.buffer = max(settings.batch_size * 8, 256)
        self._chunker: Chunker | None = None

    @classmethod
    def from_config(cls, config: Config, *, encoders: Encoders, settings: IndexSettings, **_: Any) -> TextReader:
        return cls(encoders, settings, token_pooling=config.token_pooling)

    @property
    def encoder(self) -> Encoder:
        return self.encoders["text"]

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            tok = self.encoder.tokenizer  # type: ignore[attr-defined]

            def count(text: str) -> int:
                return len(tok(text, add_special_tokens=False, truncation=False, return_attention_mask=False)["input_ids"])

            s = self.settings
            self._chunker = Chunker(count, s.chunk_size, s.chunk_overlap, s.document_max_tokens)
        return self._chunker

    def collections(self) -> list[CollectionSpec]:
        return [text_spec(PARAGRAPH, self.encoder), text_spec(DOCUMENT, self.encoder)]

    def read(self, source: SourceFile) -> ChunkedSource:
        assert source.data is not None
        return self.chunker.chunk(parse_source(source.path, source.key, source.data, source.digest))

    def size(self, parsed: ChunkedSource) -> int:
        return len(parsed.paragraphs)

    def encode(self, batch: Sequence[ChunkedSource]) -> list[Encoded]:
        """One encode call for every paragraph of the batch."""
        texts = [p.text for c in batch for p in c.paragraphs]
        vectors = self.encoder.encode_document(texts)  # (N, D) unit rows, or N arrays of (T, D)
        multivector = bool(getattr(self.encoder, "multivector", False))
        out, offset = [], 0
        for c in batch:
            n = len(c.paragraphs)
            para = vectors[offset : offset + n]
            offset += n
            if multivector:
                import numpy as np

                docs: Any = [np.concatenate([para[i] for i in members]) for members in c.sections]
            else:
                docs = section_vectors(para, c.sections)
            points = {
                PARAGRAPH: item_points(c.paragraphs, para, multivector, self.token_pooling),
                DOCUMENT: item_points(c.documents, docs, multivector, self.token_pooling, MAX_SECTION_TOKENS),
            }
            out.append(Encoded(c.source.key, c.source.source_hash, points))
        return out


def section_vectors(para_vecs: np.ndarray, sections: Sequence[Sequence[int]]) -> np.ndarray:
    """(S, D) normalised mean of each section's paragraph vectors."""
    import numpy as np

    out = np.stack([para_vecs[list(members)].mean(axis=0) for members in sections]) if sections else np.zeros((0, para_vecs.shape[1]), np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norms, 1e-12)).astype(np.float32)
