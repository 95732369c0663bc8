"""Records on the wire: the JSON the server sends and the records the client rebuilds.

An evidence entry is :meth:`Hit.to_dict` plus what a client needs to rebuild the hit exactly
(the item's metadata and hashes) and ``media``, the server URL of its image or video (or
``None``). Only :mod:`ragmm.types` is imported: the client path must stay light.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ragmm.types import Answer, Candidate, Citation, Hit, Item, Locator, Step, Trace

MediaUrl = Callable[[Hit], str | None]


def hit_to_wire(hit: Hit, media: MediaUrl | None = None) -> dict[str, Any]:
    """One evidence entry."""
    item = hit.item
    return {
        **hit.to_dict(),
        "metadata": _jsonable(item.metadata),
        "source_hash": item.source_hash,
        "content_hash": item.content_hash,
        "media": media(hit) if media is not None else None,
    }


def hit_from_wire(data: dict[str, Any]) -> Hit:
    """The :class:`Hit` an evidence entry describes."""
    item = Item(
        corpus=data.get("corpus", ""),
        source=data.get("source", ""),
        text=data.get("text", ""),
        locator=Locator.from_dict(data.get("locator")),
        modality=data.get("modality", "text"),
        source_hash=data.get("source_hash", ""),
        metadata=dict(data.get("metadata") or {}),
        content_hash=data.get("content_hash", ""),
    )
    return Hit(item=item, score=float(data.get("score", 0.0)), scores={k: float(v) for k, v in (data.get("scores") or {}).items()})


def trace_from_wire(data: dict[str, Any] | None) -> Trace | None:
    """The :class:`Trace` of :meth:`Trace.to_dict`."""
    if data is None:
        return None
    steps = []
    for s in data.get("steps", []):
        candidates = [Candidate(**c) for c in s.get("candidates", [])]
        routes = [(str(c), float(p)) for c, p in s.get("routes", [])]
        steps.append(Step(kind=s["kind"], query=s.get("query", ""), routes=routes, corpora=list(s.get("corpora", [])), candidates=candidates, note=s.get("note", "")))
    return Trace(steps)


def answer_to_wire(answer: Answer, media: MediaUrl | None = None) -> dict[str, Any]:
    """:meth:`Answer.to_dict` with evidence and citations as :func:`hit_to_wire` entries."""
    data = answer.to_dict()
    data["evidence"] = [hit_to_wire(h, media) for h in answer.evidence]
    data["citations"] = [{"n": c.n, **hit_to_wire(c.hit, media)} for c in answer.citations]
    return data


def answer_from_wire(data: dict[str, Any]) -> Answer:
    """The :class:`Answer` of :func:`answer_to_wire`; a cited hit is the same object as its
    evidence entry, as in an answer made in process."""
    evidence = [hit_from_wire(h) for h in data.get("evidence", [])]
    citations = []
    for c in data.get("citations", []):
        n = int(c["n"])
        hit = evidence[n - 1] if 0 < n <= len(evidence) else hit_from_wire(c)
        citations.append(Citation(n=n, hit=hit))
    return Answer(
        text=data.get("answer", ""),
        citations=citations,
        evidence=evidence,
        timings={k: float(v) for k, v in (data.get("timings") or {}).items()},
        generator=data.get("generator", ""),
        trace=trace_from_wire(data.get("trace")),
    )


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (metadata written by a plugin may hold paths or tuples)."""
    return json.loads(json.dumps(value, default=str))
