"""The index run: walk -> hash -> read -> encode -> upsert -> mark complete, for every modality.

What a file becomes is its modality's business: a :class:`~ragmm.protocols.Reader` (text,
image, video, or a plugin's) parses it and embeds batches of parsed sources. Everything else
is the same for all of them and lives here once:

- each file is hashed once (streamed for readers that stream, so a long video is never held
  in memory); a file whose hash the ledger already holds is skipped before it is parsed;
- parsed sources of one reader are buffered across files and embedded together (one
  ``encode`` call per buffer fills the encoder's batches);
- per source, the order of writes makes every interruption safe:

  1. upsert the new items (ids derive from source + locator + content hash: a re-run
     overwrites in place, never duplicates);
  2. delete the items of an older version of the source (other ``source_hash``);
  3. mark the source complete in the ledger.

  A run killed anywhere redoes, on resume, only the sources not yet marked complete;
- a bad file is skipped with its reason and the batch goes on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmm.errors import InputError
from ragmm.ingest.ledger import LEDGER, Ledger, SourceRecord
from ragmm.ingest.readers import read_bytes, source_key, walk
from ragmm.protocols import Encoded, Reader, SourceFile, Store, Where
from ragmm.types import IndexReport, SkippedFile

if TYPE_CHECKING:
    from ragmm.config import IndexSettings

# Points per upsert request: large enough to amortise a request, small enough for a server.
UPSERT_BATCH = 1024


@dataclass(slots=True)
class _Pending:
    parsed: Any
    previous: SourceRecord | None


@dataclass(slots=True)
class _Buffer:
    """Parsed sources of one reader waiting to be embedded."""

    reader: Reader
    pending: list[_Pending] = field(default_factory=list)
    items: int = 0
    ready: bool = False  # its collections exist and were checked against the store


class Indexer:
    """Indexes files into the corpora of a store, each file through its modality's reader.

    Args:
        store: where the corpora and the ledger live.
        readers: one per modality; a file goes to the first reader claiming its suffix.
        settings: ``[index]``: which suffixes, size limit.
    """

    def __init__(self, store: Store, readers: Sequence[Reader], settings: IndexSettings) -> None:
        self.store = store
        self.readers = list(readers)
        self.settings = settings
        self.ledger = Ledger(store)
        self.by_suffix: dict[str, Reader] = {}
        for reader in self.readers:
            for suffix in reader.suffixes:
                self.by_suffix.setdefault(suffix.lower(), reader)

    def reader(self, modality: str) -> Reader:
        """The reader of ``modality``."""
        return next(r for r in self.readers if r.modality == modality)

    def suffixes(self) -> list[str]:
        """File types this indexer takes: the readers' suffixes, narrowed by ``[index] extensions``."""
        known = set(self.by_suffix)
        wanted = self.settings.extensions
        return sorted(known if wanted is None else known & {s.lower() for s in wanted})

    def index(self, paths: Iterable[str | Path], corpus_root: str | Path | None = None, progress: bool = True) -> IndexReport:
        """Index every supported file under ``paths``.

        Returns:
            An :class:`~ragmm.types.IndexReport`: counts, items per corpus, skipped files.
        """
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        root = Path(corpus_root) if corpus_root is not None else None
        report = IndexReport()
        found = list(walk(paths, self.suffixes()))
        buffers = {id(r): _Buffer(r) for r in self.readers}
        bar = tqdm(total=len(found), unit="file", desc="indexing", disable=not progress, dynamic_ncols=True)
        try:
            for f in found:
                report.files_seen += 1
                if f.error:
                    report.skipped.append(SkippedFile(str(f.path), f.error))
                    bar.update()
                    continue
                buf = buffers[id(self.by_suffix[f.path.suffix.lower()])]
                self._prepare(buf)
                pending = self._read(f.path, source_key(f.path, root), buf.reader, report)
                if pending is None:
                    bar.update()
                    continue
                buf.pending.append(pending)  # the bar moves when it is written
                buf.items += buf.reader.size(pending.parsed)
                if buf.items >= buf.reader.buffer:
                    self._flush(buf, report, bar)
            for buf in buffers.values():
                self._flush(buf, report, bar)
        finally:
            bar.close()
            self.store.flush()
        if report.files_indexed:
            self.store.optimize()
        report.seconds = time.perf_counter() - t0
        return report

    def _prepare(self, buf: _Buffer) -> None:
        """Create (or check) the reader's collections once per run, before its first file."""
        if not buf.ready:
            for spec in buf.reader.collections():
                self.store.create_collection(spec)
            buf.ready = True

    def _read(self, path: Path, key: str, reader: Reader, report: IndexReport) -> _Pending | None:
        """Hash and parse one file; ``None`` when it is unchanged or skipped (and counted)."""
        try:
            if reader.streams:
                data, digest = None, _file_digest(path)
            else:
                data = read_bytes(path, int(self.settings.max_file_mb * 1e6), "split or shrink it")
                if not data.strip():
                    raise InputError(str(path), "empty file; nothing to index")
                digest = hashlib.sha256(data).hexdigest()
            previous = self.ledger.get(key)
            if previous is not None and previous.source_hash == digest:
                report.files_unchanged += 1  # known by its hash: never parsed again
                return None
            parsed = reader.read(SourceFile(path, key, digest, data))
        except InputError as exc:
            report.skipped.append(SkippedFile(exc.path, exc.reason))
            return None
        return _Pending(parsed, previous)

    def _flush(self, buf: _Buffer, report: IndexReport, bar: Any) -> None:
        pending, buf.pending, buf.items = buf.pending, [], 0
        if not pending:
            return
        encoded = buf.reader.encode([p.parsed for p in pending])
        for enc, pend in zip(encoded, pending, strict=True):
            self.write(enc, pend.previous, report)
            bar.update()

    def write(self, enc: Encoded, previous: SourceRecord | None, report: IndexReport) -> None:
        """Write one encoded source in the order that makes an interruption safe (see the
        module docstring): upsert its points, delete those of its older version, mark it
        complete in the ledger. Other indexing engines (``ragmm.ingest.distributed``) write
        through here too, so the ledger's promises are kept in one place.

        Args:
            enc: the source's points per corpus.
            previous: the ledger's record of an older version, or ``None`` for a new source.
            report: counts to add to.
        """
        for corpus, points in enc.points.items():
            for i in range(0, len(points), UPSERT_BATCH):
                self.store.upsert(corpus, points[i : i + UPSERT_BATCH])
        if previous is not None:
            for corpus in {*enc.points, *previous.items}:
                self.store.delete(corpus, Where(must={"source": enc.key}, must_not={"source_hash": enc.digest}))
            report.files_replaced += 1
        counts = {corpus: len(points) for corpus, points in enc.points.items()}
        self.ledger.mark_complete(SourceRecord(enc.key, enc.digest, counts))
        report.files_indexed += 1
        for corpus, n in counts.items():
            report.items[corpus] = report.items.get(corpus, 0) + n


def _file_digest(path: Path) -> str:
    """SHA-256 of a file read in chunks (never held whole in memory).

    Raises:
        InputError: unreadable.
    """
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except PermissionError:
        raise InputError(str(path), "not readable (permission denied); fix its permissions") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({exc.strerror or exc}); check the file") from None


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
