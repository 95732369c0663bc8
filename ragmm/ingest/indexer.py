"""The index run: walk -> read -> chunk -> encode -> upsert -> mark complete.

Chunks of several files are encoded together (one ``encode`` call per buffer, so the encoder
sorts by length and fills its batches), which keeps ``ragmm index`` close to the raw encoder's
throughput. Per source, the order of writes makes every interruption safe:

1. upsert the new items (ids derive from source + locator + content hash: a re-run
   overwrites in place, never duplicates);
2. delete the items of an older version of the source (other ``source_hash``);
3. mark the source complete in the ledger.

A run killed anywhere redoes, on resume, only the sources not yet marked complete.

Image files go to the ``image`` corpus (see :mod:`ragmm.ingest.images`): each point holds an
``image`` vector (the image encoder's embedding of the pixels) and a ``text`` vector (the text
encoder's embedding of its file name, description and OCR text), so the corpus can be searched
by what the image shows and by what is written in or about it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragmm.errors import InputError
from ragmm.ingest.chunking import DOCUMENT, PARAGRAPH, ChunkedSource, Chunker
from ragmm.ingest.images import IMAGE_SUFFIXES, OCR, ParsedImage, decode_image, read_image_bytes
from ragmm.ingest.ledger import LEDGER, Ledger, SourceRecord
from ragmm.ingest.readers import read_source, source_key, walk
from ragmm.protocols import CollectionSpec, Encoder, Store, StoredPoint, VectorSpec, Where
from ragmm.types import IndexReport, Item, Locator, SkippedFile

if TYPE_CHECKING:
    import numpy as np

    from ragmm.config import IndexSettings

log = logging.getLogger(__name__)

TEXT_CORPORA = (PARAGRAPH, DOCUMENT)
IMAGE = "image"
DENSE = "dense"
IMAGE_VECTOR = "image"
TEXT_VECTOR = "text"


def text_spec(corpus: str, encoder: Encoder) -> CollectionSpec:
    """The collection spec of a text corpus built with ``encoder``."""
    return CollectionSpec(name=corpus, vectors={DENSE: VectorSpec(size=encoder.dim, distance="cosine")}, encoder=encoder.name, modality="text")


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


@dataclass(slots=True)
class _Pending:
    chunked: ChunkedSource
    previous: SourceRecord | None


class Indexer:
    """Indexes text sources into the ``paragraph`` and ``document`` corpora of a store, and
    images into the ``image`` corpus when an image encoder is given."""

    def __init__(self, store: Store, encoder: Encoder, settings: IndexSettings, image_encoder: Encoder | Callable[[], Encoder] | None = None) -> None:
        self.store = store
        self.encoder = encoder
        # A callable is called on the first image, so indexing text never builds the image encoder.
        self._image_encoder = image_encoder
        self.settings = settings
        self.ocr = OCR(settings.ocr_min_score) if settings.ocr else None
        self._image_ready = False
        self.ledger = Ledger(store)
        self._chunker: Chunker | None = None
        # Files are buffered until this many chunks are waiting, then encoded in one call.
        self.buffer_chunks = max(settings.batch_size * 8, 256)

    @property
    def image_encoder(self) -> Encoder | None:
        enc = self._image_encoder
        if enc is not None and not hasattr(enc, "encode_document"):
            enc = self._image_encoder = enc()  # type: ignore[operator]
        return enc  # type: ignore[return-value]

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            tok = self.encoder.tokenizer  # type: ignore[attr-defined]

            def count(text: str) -> int:
                return len(tok(text, add_special_tokens=False, truncation=False, return_attention_mask=False)["input_ids"])

            s = self.settings
            self._chunker = Chunker(count, s.chunk_size, s.chunk_overlap, s.document_max_tokens)
        return self._chunker

    def index(self, paths: Iterable[str | Path], corpus_root: str | Path | None = None, progress: bool = True) -> IndexReport:
        """Index every supported file under ``paths``.

        Returns:
            An :class:`~ragmm.types.IndexReport`: counts, items per corpus, skipped files.
        """
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        root = Path(corpus_root) if corpus_root is not None else None
        report = IndexReport(items={PARAGRAPH: 0, DOCUMENT: 0})
        for corpus in TEXT_CORPORA:
            self.store.create_collection(text_spec(corpus, self.encoder))
        found = list(walk(paths, self.settings.extensions))
        bar = tqdm(total=len(found), unit="file", desc="indexing", disable=not progress, dynamic_ncols=True)
        pending: list[_Pending] = []
        images: list[tuple[ParsedImage, SourceRecord | None]] = []
        waiting = 0
        max_bytes = int(self.settings.max_file_mb * 1e6)
        try:
            for f in found:
                report.files_seen += 1
                if f.error:
                    report.skipped.append(SkippedFile(str(f.path), f.error))
                    bar.update()
                    continue
                key = source_key(f.path, root)
                if f.path.suffix.lower() in IMAGE_SUFFIXES:
                    image = self._read_image(f.path, key, max_bytes, report)
                    if image is not None:
                        images.append(image)
                        if len(images) >= self.settings.batch_size:
                            self._flush_images(images, report)
                            images = []
                    bar.update()
                    continue
                try:
                    parsed = read_source(f.path, key, max_bytes)
                except InputError as exc:
                    report.skipped.append(SkippedFile(exc.path, exc.reason))
                    bar.update()
                    continue
                previous = self.ledger.get(key)
                if previous is not None and previous.source_hash == parsed.source_hash:
                    report.files_unchanged += 1
                    bar.update()
                    continue
                pending.append(_Pending(self.chunker.chunk(parsed), previous))
                waiting += len(pending[-1].chunked.paragraphs)
                if waiting >= self.buffer_chunks:
                    self._flush(pending, report, bar)
                    pending, waiting = [], 0
            self._flush(pending, report, bar)
            self._flush_images(images, report)
        finally:
            bar.close()
            self.store.flush()
        if report.files_indexed:
            self.store.optimize()
        report.seconds = time.perf_counter() - t0
        return report

    def _flush(self, pending: Sequence[_Pending], report: IndexReport, bar: object) -> None:
        if not pending:
            return
        texts = [p.text for pend in pending for p in pend.chunked.paragraphs]
        vectors = self.encoder.encode_document(texts)  # (N, D), L2-normalised
        offset = 0
        for pend in pending:
            c = pend.chunked
            n = len(c.paragraphs)
            para_vecs = vectors[offset : offset + n]
            offset += n
            doc_vecs = _section_vectors(para_vecs, c.sections)
            self._write(PARAGRAPH, c.paragraphs, para_vecs)
            self._write(DOCUMENT, c.documents, doc_vecs)
            key, digest = c.source.key, c.source.source_hash
            if pend.previous is not None:
                for corpus in TEXT_CORPORA:
                    self.store.delete(corpus, Where(must={"source": key}, must_not={"source_hash": digest}))
                report.files_replaced += 1
            self.ledger.mark_complete(SourceRecord(key, digest, {PARAGRAPH: n, DOCUMENT: len(c.documents)}))
            report.files_indexed += 1
            report.items[PARAGRAPH] += n
            report.items[DOCUMENT] += len(c.documents)
            bar.update()  # type: ignore[attr-defined]

    def _read_image(self, path: Path, key: str, max_bytes: int, report: IndexReport) -> tuple[ParsedImage, SourceRecord | None] | None:
        """Read one image file unless it is unchanged; ``None`` when skipped (and counted)."""
        if self._image_encoder is None:
            report.skipped.append(SkippedFile(str(path), "an image, but no image encoder is configured; add an [encoders.image] section"))
            return None
        if not self._image_ready:  # checks the encoders against an existing image corpus first
            self.store.create_collection(image_spec(self.image_encoder, self.encoder))  # type: ignore[arg-type]
            self._image_ready = True
        try:
            data, digest = read_image_bytes(path, max_bytes)
            previous = self.ledger.get(key)
            if previous is not None and previous.source_hash == digest:
                report.files_unchanged += 1  # known by its hash: never decoded again
                return None
            parsed = decode_image(path, key, data, digest, self.settings.image_max_side)
        except InputError as exc:
            report.skipped.append(SkippedFile(exc.path, exc.reason))
            return None
        if self.ocr is not None:
            try:
                parsed.ocr_text = self.ocr(parsed.image)
            except Exception as exc:  # OCR is an extra: an engine failure must not cost the image
                log.warning("%s: OCR failed (%s); indexed without OCR text", path, exc)
        return parsed, previous

    def _flush_images(self, pending: Sequence[tuple[ParsedImage, SourceRecord | None]], report: IndexReport) -> None:
        if not pending:
            return
        assert self.image_encoder is not None and self._image_ready
        items = [
            Item(corpus=IMAGE, source=p.key, text=p.item_text(), locator=Locator(), modality="image", source_hash=p.source_hash, metadata=p.metadata())
            for p, _ in pending
        ]
        image_vecs = self.image_encoder.encode_document([p.image for p, _ in pending])  # (N, Di)
        # Only images something names or describes get a text vector (see ParsedImage.has_text).
        texted = [i for i, (p, _) in enumerate(pending) if p.has_text]
        text_vecs = dict(zip(texted, self.encoder.encode_document([items[i].text for i in texted]), strict=True))  # i -> (Dt,)
        points = []
        for i, (item, iv) in enumerate(zip(items, image_vecs, strict=True)):
            vectors = {IMAGE_VECTOR: iv, **({TEXT_VECTOR: text_vecs[i]} if i in text_vecs else {})}
            points.append(StoredPoint(id=item.id, payload=item.to_payload(), vectors=vectors))
        self.store.upsert(IMAGE, points)
        for parsed, previous in pending:
            if previous is not None:
                self.store.delete(IMAGE, Where(must={"source": parsed.key}, must_not={"source_hash": parsed.source_hash}))
                report.files_replaced += 1
            self.ledger.mark_complete(SourceRecord(parsed.key, parsed.source_hash, {IMAGE: 1}))
            report.files_indexed += 1
            report.items[IMAGE] = report.items.get(IMAGE, 0) + 1

    def _write(self, corpus: str, items: Sequence, vectors: np.ndarray) -> None:
        points = [StoredPoint(id=item.id, payload=item.to_payload(), vectors={DENSE: vec}) for item, vec in zip(items, vectors, strict=True)]
        for i in range(0, len(points), 1024):
            self.store.upsert(corpus, points[i : i + 1024])


def remove_sources(store: Store, path: str | Path, corpus_root: str | Path | None = None) -> list[str]:
    """Drop every item of the source ``path`` (a file, or every source under a folder).

    ``path`` may also be a source key exactly as stored (see ``ragmm corpora``).

    Returns:
        The source keys removed.
    """
    ledger = Ledger(store)
    root = Path(corpus_root) if corpus_root is not None else None
    wanted = {source_key(Path(path), root), Path(path).as_posix()}
    keys = [r.source for r in ledger.records() if r.source in wanted or any(r.source.startswith(w.rstrip("/") + "/") for w in wanted)]
    for key in keys:
        for corpus in store.collections():
            if corpus != LEDGER:
                store.delete(corpus, Where(must={"source": key}))
        ledger.forget(key)
    store.flush()
    return keys


def _section_vectors(para_vecs: np.ndarray, sections: Sequence[Sequence[int]]) -> np.ndarray:
    """(S, D) normalised mean of each section's paragraph vectors."""
    import numpy as np

    out = np.stack([para_vecs[list(members)].mean(axis=0) for members in sections]) if sections else np.zeros((0, para_vecs.shape[1]), np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norms, 1e-12)).astype(np.float32)
