"""The source ledger: which sources are fully indexed, and at which content hash.

It lives in the store itself (collection ``sources``) so it travels with the corpora to a
server on ``ragmm sync``. A source is marked complete only after all its items of every
corpus are written, so a run killed half-way redoes the unfinished sources on resume; point
ids are deterministic, so redoing them adds no duplicates.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ragmm.protocols import CollectionSpec, Store, StoredPoint, VectorSpec, Where
from ragmm.types import ID_NAMESPACE

LEDGER = "sources"
# Qdrant collections need a vector; the ledger's is a constant placeholder.
_SPEC = CollectionSpec(name=LEDGER, vectors={"none": VectorSpec(size=1, distance="dot")}, encoder="none", modality="none", payload_indexes=("source",))


@dataclass(slots=True)
class SourceRecord:
    """One indexed source."""

    source: str
    source_hash: str
    items: dict[str, int] = field(default_factory=dict)
    indexed_at: float = 0.0

    @property
    def id(self) -> str:
        return str(uuid.uuid5(ID_NAMESPACE, f"source\x00{self.source}"))


class Ledger:
    """Reads and writes :class:`SourceRecord` s in a store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            self.store.create_collection(_SPEC)
            self._ready = True

    def get(self, source: str) -> SourceRecord | None:
        if LEDGER not in self.store.collections():
            return None
        found = self.store.retrieve(LEDGER, [SourceRecord(source, "").id])
        return _record(found[0].payload) if found else None

    def get_many(self, sources: list[str], batch: int = 512) -> dict[str, SourceRecord]:
        """The records of ``sources`` that exist, in one store request per ``batch`` (a run over
        millions of files against a server would otherwise pay one round trip per file)."""
        if not sources or LEDGER not in self.store.collections():
            return {}
        out: dict[str, SourceRecord] = {}
        for i in range(0, len(sources), batch):
            ids = [SourceRecord(s, "").id for s in sources[i : i + batch]]
            for point in self.store.retrieve(LEDGER, ids):
                record = _record(point.payload)
                out[record.source] = record
        return out

    def mark_complete(self, record: SourceRecord) -> None:
        self._ensure()
        record.indexed_at = time.time()
        payload: dict[str, Any] = {"source": record.source, "source_hash": record.source_hash, "items": record.items, "indexed_at": record.indexed_at}
        self.store.upsert(LEDGER, [StoredPoint(id=record.id, payload=payload, vectors={"none": [1.0]})])

    def forget(self, source: str) -> None:
        if LEDGER in self.store.collections():
            self.store.delete(LEDGER, Where(must={"source": source}))

    def records(self) -> Iterator[SourceRecord]:
        if LEDGER not in self.store.collections():
            return
        for point in self.store.scroll(LEDGER):
            yield _record(point.payload)


def _record(payload: dict[str, Any]) -> SourceRecord:
    return SourceRecord(
        source=payload["source"], source_hash=payload["source_hash"], items=dict(payload.get("items") or {}), indexed_at=float(payload.get("indexed_at", 0.0))
    )
