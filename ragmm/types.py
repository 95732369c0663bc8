"""Records that flow through ragmm: items, hits, answers and reports.

They are plain dataclasses (no torch, no numpy) so that ``import ragmm`` stays light and
results serialise to JSON with :func:`dataclasses.asdict`.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

# Point ids are UUIDv5 under this namespace, so the same (source, locator, content) always
# maps to the same id: re-indexing upserts in place instead of adding duplicates.
ID_NAMESPACE = uuid.UUID("6f1c7d52-1d0b-4a43-9a57-52a1ad7c0e11")

MODALITIES = ("text", "image", "video")


def content_hash(data: str | bytes) -> str:
    """Return the SHA-256 hex digest of ``data`` (text is UTF-8 encoded)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def clock(seconds: float) -> str:
    """A time in a video as people cite it: ``75.2`` -> ``01:15``, ``3725`` -> ``1:02:05``."""
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


@dataclass(frozen=True, slots=True)
class Locator:
    """Where inside its source an item lives.

    Text uses ``page`` (1-based, PDFs) and a ``[char_start, char_end)`` span of the text
    ragmm extracted from the source (of that page, for a paged source); media use seconds.
    """

    page: int | None = None
    char_start: int | None = None
    char_end: int | None = None
    t_start: float | None = None
    t_end: float | None = None
    section: int | None = None

    def key(self) -> str:
        """A stable string form, part of the point id."""
        return "|".join("" if v is None else str(v) for v in (self.page, self.char_start, self.char_end, self.t_start, self.t_end, self.section))

    def __str__(self) -> str:
        parts = []
        if self.page is not None:
            parts.append(f"p.{self.page}")
        if self.section is not None:
            parts.append(f"section {self.section}")
        if self.char_start is not None and self.char_end is not None:
            parts.append(f"chars {self.char_start}-{self.char_end}")
        if self.t_start is not None and self.t_end is not None:
            parts.append(f"@ {clock(self.t_start)}-{clock(self.t_end)}")
        return ", ".join(parts) or "whole"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Locator:
        return cls(**(data or {}))


@dataclass(slots=True)
class Item:
    """One retrievable unit of a corpus: a paragraph, a document section, an image, a clip.

    Args:
        corpus: name of the corpus (one Qdrant collection), e.g. ``"paragraph"``.
        source: the source file as stored (absolute, or relative to ``--corpus-root``).
        text: the item's text (for media: OCR text, transcript, caption-like metadata).
        locator: where in the source the item lives.
        modality: ``"text"``, ``"image"`` or ``"video"``.
        source_hash: SHA-256 of the whole source file when it was indexed.
        metadata: extra payload (file name, title, ...), JSON-serialisable.
    """

    corpus: str
    source: str
    text: str
    locator: Locator = field(default_factory=Locator)
    modality: str = "text"
    source_hash: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""

    def __post_init__(self) -> None:
        if not self.content_hash:
            self.content_hash = content_hash(self.text)

    @property
    def image_path(self) -> str | None:
        """The image file of an image item (absolute, for apps and vision-language generators)."""
        path = self.metadata.get("path")
        return str(path) if path and self.modality == "image" else None

    @property
    def id(self) -> str:
        """Deterministic point id from source + locator + content hash."""
        return str(uuid.uuid5(ID_NAMESPACE, f"{self.source}\x00{self.locator.key()}\x00{self.content_hash}"))

    def to_payload(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus,
            "source": self.source,
            "text": self.text,
            "locator": self.locator.to_dict(),
            "modality": self.modality,
            "source_hash": self.source_hash,
            "content_hash": self.content_hash,
            "metadata": self.metadata,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Item:
        return cls(
            corpus=payload.get("corpus", ""),
            source=payload.get("source", ""),
            text=payload.get("text", ""),
            locator=Locator.from_dict(payload.get("locator")),
            modality=payload.get("modality", "text"),
            source_hash=payload.get("source_hash", ""),
            metadata=dict(payload.get("metadata") or {}),
            content_hash=payload.get("content_hash", ""),
        )


@dataclass(slots=True)
class Query:
    """A question, optionally about an image, and per-query options.

    Args:
        text: the question.
        k: evidence items wanted (default: ``[retrieve] k``).
        corpora: search only these corpora (default: the router's choice).
        image: a query image (file path): retrieval is then by the image (image-to-image, and
            image-to-text where the image encoder shares the text encoder's space); the text is
            the question the generator answers about it.
    """

    text: str
    k: int | None = None
    corpora: tuple[str, ...] | None = None
    image: str | None = None


@dataclass(slots=True)
class Hit:
    """A retrieved item with its final relevancy score and the score of each stage."""

    item: Item
    score: float
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "corpus": self.item.corpus,
            "source": self.item.source,
            "locator": self.item.locator.to_dict(),
            "locator_text": str(self.item.locator),
            "modality": self.item.modality,
            "text": self.item.text,
            "path": self.item.image_path,
            "score": self.score,
            "scores": self.scores,
            "id": self.item.id,
        }


@dataclass(slots=True)
class Citation:
    """Evidence number ``n`` (as written ``[n]`` in the answer) and the hit it points to."""

    n: int
    hit: Hit

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, **self.hit.to_dict()}


@dataclass(slots=True)
class Candidate:
    """One hit as a search step saw it: its retrieval score, its relevancy after reranking
    (``None`` when the reranker dropped it unscored), and whether it was kept."""

    corpus: str
    source: str
    locator: str
    retrieval: float
    relevancy: float | None
    kept: bool


@dataclass(slots=True)
class Step:
    """One step of the retrieval loop.

    ``kind`` is ``route`` (the router's choice, ``routes`` as ``(corpus, probability)``),
    ``search`` (``corpora`` searched with ``query``, every candidate with its scores),
    ``rewrite`` (the query tried next) or ``stop`` (why the loop ended).
    """

    kind: str
    query: str
    routes: list[tuple[str, float]] = field(default_factory=list)
    corpora: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Trace:
    """What the pipeline did for one question (``ragmm ask --explain``)."""

    steps: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps]}

    def lines(self) -> list[str]:
        """A human-readable account, one line per fact."""
        out = []
        for n, step in enumerate(self.steps, 1):
            if step.kind == "route":
                routes = ", ".join(f"{c} {p:.2f}" for c, p in step.routes) or "none (no retrieval needed)"
                out.append(f"{n}. route: {routes}{f'  ({step.note})' if step.note else ''}")
            elif step.kind == "search":
                kept = sum(c.kept for c in step.candidates)
                out.append(f"{n}. search {', '.join(step.corpora) or '(nothing)'} for {step.query!r}: {len(step.candidates)} candidates, {kept} kept")
                for c in step.candidates:
                    rel = "  -  " if c.relevancy is None else f"{c.relevancy:.3f}"
                    out.append(f"     {'+' if c.kept else ' '} retrieval {c.retrieval:.3f}  relevancy {rel}  {c.corpus}: {c.source} ({c.locator})")
            elif step.kind == "rewrite":
                out.append(f"{n}. rewrite: {step.query!r}{f'  ({step.note})' if step.note else ''}")
            else:
                out.append(f"{n}. stop: {step.note}")
        return out


@dataclass(slots=True)
class Answer:
    """A generated answer, the evidence it cites, how long each stage took (seconds), and the
    trace of the retrieval loop that found the evidence."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    evidence: list[Hit] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    generator: str = ""
    trace: Trace | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "citations": [c.to_dict() for c in self.citations],
            "evidence": [h.to_dict() for h in self.evidence],
            "timings": self.timings,
            "generator": self.generator,
            "trace": self.trace.to_dict() if self.trace is not None else None,
        }


@dataclass(slots=True)
class SkippedFile:
    """A file the indexer could not use, and the one-line reason (with what to do)."""

    path: str
    reason: str


@dataclass(slots=True)
class IndexReport:
    """Summary of one ``index`` run."""

    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_replaced: int = 0
    items: dict[str, int] = field(default_factory=dict)
    skipped: list[SkippedFile] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class CorpusInfo:
    """What ``ragmm corpora`` lists for one corpus."""

    name: str
    modality: str
    items: int
    sources: int
    encoder: str
    dim: int
