"""Finding source files and reading text out of them.

PDF and HTML go through llama-index's file readers (``llama-index-readers-file``); plain
text formats are read directly so that character spans point into the file as it is on
disk. Every failure is an :class:`~ragmm.errors.InputError` with a one-line reason and what
to do: the indexer skips the file, counts it, and goes on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ragmm.errors import InputError

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}


@dataclass(slots=True)
class Page:
    """A run of extracted text; ``number`` is the 1-based page for paged sources."""

    text: str
    number: int | None = None


@dataclass(slots=True)
class ParsedSource:
    """A source file read into pages of text."""

    path: Path
    key: str
    source_hash: str
    pages: list[Page] = field(default_factory=list)
    title: str = ""


@dataclass(slots=True)
class FoundFile:
    """A file found by :func:`walk`, or a path that could not be used (``error`` set)."""

    path: Path
    error: str | None = None


def walk(paths: Iterable[str | os.PathLike[str]], suffixes: Iterable[str]) -> Iterator[FoundFile]:
    """Yield the files under ``paths`` (recursively, sorted, hidden entries skipped).

    Files with a suffix outside ``suffixes`` and paths that do not exist come back with an
    ``error`` so the caller can count them.
    """
    allowed = {s.lower() for s in suffixes}
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            yield FoundFile(p, "path not found; check the spelling")
            continue
        if p.is_file():
            yield _check_suffix(p, allowed)
            continue
        if not os.access(p, os.R_OK | os.X_OK):
            yield FoundFile(p, "folder not readable (permission denied); fix its permissions")
            continue
        for root, dirs, files in os.walk(p, onerror=None):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    yield _check_suffix(Path(root) / name, allowed)


def _check_suffix(p: Path, allowed: set[str]) -> FoundFile:
    suffix = p.suffix.lower()
    if suffix not in allowed:
        what = f"'{suffix}'" if suffix else "no extension"
        return FoundFile(p, f"unsupported file type ({what}); supported: {', '.join(sorted(allowed))}")
    return FoundFile(p)


def source_key(path: Path, corpus_root: Path | None) -> str:
    """How a source is named in the store: relative to ``corpus_root`` when given (portable
    stores), else the absolute path."""
    resolved = path.resolve()
    if corpus_root is not None:
        # Symbolic links inside the root keep their names under it (a folder of links to files
        # elsewhere is still that folder), so the path is made absolute before it is resolved.
        for candidate, root in ((Path(os.path.abspath(path)), Path(os.path.abspath(corpus_root))), (resolved, corpus_root.resolve())):
            try:
                return candidate.relative_to(root).as_posix()
            except ValueError:
                pass
    return resolved.as_posix()


def read_bytes(path: Path, max_bytes: int, shrink: str) -> bytes:
    """The whole file, refusing one over ``max_bytes`` (``shrink`` says how to make it smaller).

    Raises:
        InputError: too large, unreadable (permission, I/O error).
    """
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(str(path), f"file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit; raise [index] max_file_mb or {shrink}")
        return path.read_bytes()
    except PermissionError:
        raise InputError(str(path), "not readable (permission denied); fix its permissions") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({exc.strerror or exc}); check the file") from None


def read_source(path: Path, key: str, max_bytes: int) -> ParsedSource:
    """Read one file into pages of text.

    Raises:
        InputError: unreadable, empty, too large, binary, corrupt or text-less file.
    """
    data = read_bytes(path, max_bytes, "split it")
    return parse_source(path, key, data, hashlib.sha256(data).hexdigest())


def parse_source(path: Path, key: str, data: bytes, digest: str) -> ParsedSource:
    """Parse the bytes of one file (already read and hashed) into pages of text.

    Raises:
        InputError: empty, binary, corrupt or text-less file.
    """
    if not data.strip():
        raise InputError(str(path), "empty file; nothing to index")
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        pages = _read_pdf(path, data)
    elif suffix in HTML_SUFFIXES:
        pages = [Page(_read_html(path, data))]
    else:
        pages = [Page(_decode_text(path, data))]
    pages = [p for p in pages if p.text.strip()]
    if not pages:
        raise InputError(str(path), "no text could be extracted (a scanned PDF or an empty page?); nothing to index")
    return ParsedSource(path=path, key=key, source_hash=digest, pages=pages, title=path.stem)


def _decode_text(path: Path, data: bytes) -> str:
    head = data[:8192]
    if b"\x00" in head:
        raise InputError(str(path), f"binary data in a '{path.suffix}' file; it is not text: convert it or move it out of the indexed folder")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Not UTF-8: accept legacy 8-bit text, refuse what looks like binary.
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    if controls > len(head) * 0.05:
        raise InputError(str(path), f"binary data in a '{path.suffix}' file; it is not text: convert it or move it out of the indexed folder")
    return data.decode("cp1252", errors="replace")


def _read_pdf(path: Path, data: bytes) -> list[Page]:
    if not data.startswith(b"%PDF"):
        raise InputError(str(path), "not a PDF (no %PDF header); rename or repair it")
    from llama_index.readers.file import PDFReader

    try:
        docs = PDFReader(return_full_document=False).load_data(path)
    except Exception as exc:  # pypdf raises many types on damaged files
        raise InputError(str(path), f"damaged PDF ({exc.__class__.__name__}: {str(exc)[:80]}); repair or re-export it") from None
    pages = []
    for i, doc in enumerate(docs, start=1):
        label = doc.metadata.get("page_label")
        number = int(label) if isinstance(label, str) and label.isdigit() else i
        pages.append(Page(doc.text, number))
    return pages


def _read_html(path: Path, data: bytes) -> str:
    from bs4 import BeautifulSoup

    # The same binary check as plain text: a parser would turn any bytes into "text".
    # llama-index's HTMLTagReader keeps only one tag kind; the whole visible text is wanted here.
    soup = BeautifulSoup(_decode_text(path, data), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    body = soup.body or soup
    blocks = [b.get_text(" ", strip=True) for b in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "td", "figcaption"])]
    text = "\n\n".join(b for b in blocks if b)
    return text or body.get_text("\n", strip=True)
