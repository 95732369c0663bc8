"""Points of the ``clip`` and ``video`` corpora from read videos (see :mod:`ragmm.ingest.video`).

Every row of a point's multivector has a modality tag (``payload["metadata"]["rows"]``) and a
time span (``payload["metadata"]["row_times"]``), so a retriever can score modalities apart and
cite the moment that matched, not only the clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragmm.ingest.video import CLIP, FRAME, METADATA, OCR_TEXT, POOLED, ROWS, SPEECH, VIDEO, ParsedVideo, clip_item, clip_item_text
from ragmm.protocols import Encoded, Encoder, StoredPoint

if TYPE_CHECKING:
    import numpy as np

    from ragmm.ingest.video import VideoReader


@dataclass(slots=True)
class _Row:
    modality: str
    ref: int  # index into the batch's texts (text rows) or images (frame rows)
    span: tuple[float, float]


@dataclass(slots=True)
class _Plan:
    parsed: ParsedVideo
    start: float
    end: float
    rows: list[_Row] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    speech: list[str] = field(default_factory=list)
    ocr: list[str] = field(default_factory=list)


def build_points(batch: Sequence[ParsedVideo], text_encoder: Encoder, frame_encoder: Encoder | None, c: VideoReader.Config) -> list[Encoded]:
    """One :class:`~ragmm.protocols.Encoded` per video: a ``clip`` point per clip, one ``video`` point."""
    import numpy as np

    texts: list[str] = []
    images: list[Any] = []
    text_ids: dict[str, int] = {}

    def text_ref(text: str) -> int:  # identical texts (a repeated title) are encoded once
        if text not in text_ids:
            text_ids[text] = len(texts)
            texts.append(text)
        return text_ids[text]

    clip_plans: list[list[_Plan]] = []
    for parsed in batch:
        meta_refs = [text_ref(f) for f in parsed.metadata_fields() or [parsed.path.name]]
        plans = []
        last = len(parsed.clips) - 1
        for n, (start, end) in enumerate(parsed.clips):
            plan = _Plan(parsed, start, end)
            inside = lambda t, s=start, e=end, final=(n == last): s <= t < e or (final and t >= s)  # noqa: E731
            segments = [seg for seg in parsed.segments if inside((seg.start + seg.end) / 2)]
            for seg in segments:
                plan.rows.append(_Row(SPEECH, text_ref(seg.text), (seg.start, seg.end)))
                plan.speech.append(seg.text)
            for t, line in parsed.ocr:
                if inside(t):
                    plan.rows.append(_Row(OCR_TEXT, text_ref(line), (t, min(end, t + 1.0 / c.frame_rate))))
                    plan.ocr.append(line)
            frames = _frames_of(parsed, start, end, c.max_frames_per_clip, inside) if frame_encoder is not None else []
            for f in frames:
                plan.rows.append(_Row(FRAME, len(images), (f.t, min(end, f.t + 1.0 / c.frame_rate))))
                images.append(f.image)
            plan.rows += [_Row(METADATA, r, (start, end)) for r in meta_refs]
            plan.metadata = {
                "clip": n,
                "clips": len(parsed.clips),
                "transcript": [seg.to_dict() for seg in segments],
                "ocr": [{"t": round(t, 2), "text": line} for t, line in parsed.ocr if inside(t)],
                "frames": [round(f.t, 2) for f in frames],
                "frames_embedded": frame_encoder is not None,
            }
            plans.append(plan)
        clip_plans.append(plans)

    text_vecs = _text_rows(text_encoder, texts)  # one (T_i, D) array per text
    frame_vecs = frame_encoder.encode_document(images) if frame_encoder is not None and images else np.zeros((0, text_encoder.dim), np.float32)  # (F, D)

    def vectors(rows: Sequence[_Row]) -> tuple[np.ndarray, list[str], list[list[float]]]:
        blocks, tags, spans = [], [], []
        for r in rows:
            block = frame_vecs[r.ref][None] if r.modality == FRAME else text_vecs[r.ref]  # (T, D)
            blocks.append(block)
            tags += [r.modality] * len(block)
            spans += [[round(r.span[0], 3), round(r.span[1], 3)]] * len(block)
        return np.concatenate(blocks).astype(np.float32), tags, spans

    out = []
    for parsed, plans in zip(batch, clip_plans, strict=True):
        encoded = Encoded(key=parsed.key, digest=parsed.source_hash, points={CLIP: [], VIDEO: []})
        clip_rows = []
        for plan in plans:
            rows, tags, spans = vectors(plan.rows)
            clip_rows.append((rows, tags, spans))
            text = clip_item_text(parsed, plan.start, plan.end, plan.speech, plan.ocr)
            item = clip_item(parsed, CLIP, plan.start, plan.end, text, {**plan.metadata, "rows": tags, "row_times": spans})
            encoded.points[CLIP].append(_point(item, rows))
        rows, tags, spans = _video_rows(clip_rows, c.max_video_rows)
        speech = [seg.text for seg in parsed.segments]
        ocr = [line for _, line in parsed.ocr]
        meta = {
            "clips": len(plans),
            "transcript": [seg.to_dict() for seg in parsed.segments],
            "ocr": [{"t": round(t, 2), "text": line} for t, line in parsed.ocr],
            "clip_spans": [[s, e] for s, e in parsed.clips],
            "frames_embedded": frame_encoder is not None,
            "rows": tags,
            "row_times": spans,
        }
        item = clip_item(parsed, VIDEO, 0.0, parsed.duration, clip_item_text(parsed, 0.0, parsed.duration, speech, ocr), meta)
        encoded.points[VIDEO].append(_point(item, rows))
        out.append(encoded)
    return out


def _frames_of(parsed: ParsedVideo, start: float, end: float, limit: int, inside: Any) -> list[Any]:
    """Up to ``limit`` kept frames of the clip, spread over it; a clip where nothing changed
    shows the last frame kept before it."""
    if limit == 0:
        return []
    frames = [f for f in parsed.frames if inside(f.t)]
    if not frames:
        before = [f for f in parsed.frames if f.t < start]
        return before[-1:]
    if len(frames) <= limit:
        return frames
    step = len(frames) / limit
    return [frames[int(i * step)] for i in range(limit)]


def _text_rows(encoder: Encoder, texts: Sequence[str]) -> list[np.ndarray]:
    """One (T, D) array per text: token vectors of a late-interaction encoder, else (1, D)."""
    import numpy as np

    if not texts:
        return []
    encoded = encoder.encode_document(list(texts))
    if getattr(encoder, "multivector", False):
        return [np.asarray(e, np.float32) for e in encoded]
    return [row[None] for row in np.asarray(encoded, np.float32)]


def _video_rows(clip_rows: Sequence[tuple[np.ndarray, list[str], list[list[float]]]], limit: int) -> tuple[np.ndarray, list[str], list[list[float]]]:
    """Rows of the whole video: every distinct row of its clips while they fit in ``limit``;
    past that, each clip's rows of one modality pooled into one (then evenly thinned)."""
    import numpy as np

    from ragmm.scores import mean_pool

    rows, tags, spans, seen = [], [], [], set()
    for vecs, ts, ss in clip_rows:
        for v, t, s in zip(vecs, ts, ss, strict=True):
            key = (t, v.tobytes()) if t == METADATA else (t, tuple(s), v[:4].tobytes())
            if key not in seen:  # metadata rows repeat in every clip; a held frame may too
                seen.add(key)
                rows.append(v)
                tags.append(t)
                spans.append(s)
    if len(rows) > limit:
        rows, tags, spans = [], [], []
        for vecs, ts, ss in clip_rows:
            for m in dict.fromkeys(ts):
                idx = [i for i, t in enumerate(ts) if t == m]
                if m == METADATA and METADATA in tags:
                    continue
                rows.append(mean_pool(vecs[idx]))
                tags.append(m)
                spans.append([ss[idx[0]][0], max(ss[i][1] for i in idx)])
        if len(rows) > limit:
            keep = np.linspace(0, len(rows) - 1, limit).round().astype(int)
            rows, tags, spans = [rows[i] for i in keep], [tags[i] for i in keep], [spans[i] for i in keep]
    return np.stack(rows).astype(np.float32), tags, spans


def _point(item: Any, rows: np.ndarray) -> StoredPoint:
    """A point with its (R, D) rows and their pooled (D,) vector for the prefetch stage."""
    from ragmm.scores import mean_pool

    return StoredPoint(id=item.id, payload=item.to_payload(), vectors={ROWS: rows, POOLED: mean_pool(rows)})
