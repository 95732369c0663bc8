"""Sidecar transcripts beside a video: ``talk.srt``, ``talk.vtt`` or ``talk.json`` for ``talk.mp4``.

A sidecar wins over speech recognition: it is what the author wrote, and reading it costs
nothing. The JSON form is a list of ``{"start": s, "end": s, "text": "..."}`` (Whisper's and
faster-whisper's segment dumps), or an object with ``"segments"`` and any of the metadata
fields ``"title"``, ``"description"`` and ``"tags"`` (a list or a comma-separated string).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ragmm.errors import InputError
from ragmm.ingest.asr import Segment

SIDECAR_SUFFIXES = (".srt", ".vtt", ".json")
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})"
_CUE = re.compile(_TIME + r"\s*-->\s*" + _TIME)
_TAG = re.compile(r"<[^>]+>|\{\\[^}]*\}")  # <i>, <c.yellow>, <00:01.000>, {\an8}


@dataclass(slots=True)
class Sidecar:
    """What a sidecar file says: timed text, and (JSON only) metadata fields."""

    path: Path
    segments: list[Segment] = field(default_factory=list)
    title: str = ""
    description: str = ""
    tags: list[str] = field(default_factory=list)


def find_sidecar(video: Path) -> Path | None:
    """The first of ``video``'s stem + ``.srt``/``.vtt``/``.json`` that exists."""
    for suffix in SIDECAR_SUFFIXES:
        candidate = video.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(path: Path) -> Sidecar:
    """The segments (in time order) of an SRT, WebVTT or JSON transcript, and JSON metadata.

    Raises:
        InputError: unreadable, or nothing usable in it (names the file and the expected form).
    """
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise InputError(str(path), f"cannot read the subtitle file ({exc.strerror}); fix its permissions or remove it") from None
    sidecar = _read_json(path, text) if path.suffix.lower() == ".json" else Sidecar(path, parse_cues(text))
    if not (sidecar.segments or sidecar.title or sidecar.description or sidecar.tags):
        form = 'a list of {"start", "end", "text"}' if path.suffix.lower() == ".json" else "cues like '00:00:01,000 --> 00:00:04,000' followed by text"
        raise InputError(str(path), f"no timed text found (expected {form}); fix or remove the sidecar so speech recognition runs")
    sidecar.segments.sort(key=lambda s: s.start)
    return sidecar


def parse_cues(text: str) -> list[Segment]:
    """SRT and WebVTT cues (both are a timing line, then text lines up to a blank line)."""
    out = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = block.strip().split("\n")
        for i, line in enumerate(lines):
            m = _CUE.search(line)
            if m:
                words = " ".join(_TAG.sub("", " ".join(lines[i + 1 :])).split())
                if words:
                    out.append(Segment(_seconds(m.groups()[:4]), _seconds(m.groups()[4:]), words))
                break
    return out


def _seconds(groups: tuple[str | None, ...]) -> float:
    h, m, s, frac = groups
    return int(h or 0) * 3600 + int(m or 0) * 60 + int(s or 0) + int((frac or "0").ljust(3, "0")) / 1000


def _read_json(path: Path, text: str) -> Sidecar:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(str(path), f"not valid JSON (line {exc.lineno}: {exc.msg}); fix or remove the sidecar") from None
    sidecar = Sidecar(path)
    if isinstance(data, dict):
        sidecar.title = " ".join(str(data.get("title") or "").split())
        sidecar.description = " ".join(str(data.get("description") or "").split())
        tags = data.get("tags") or []
        sidecar.tags = [t.strip() for t in (tags.split(",") if isinstance(tags, str) else map(str, tags)) if t.strip()]
        data = data.get("segments", [])
    out = sidecar.segments
    for entry in data if isinstance(data, list) else []:
        if isinstance(entry, dict) and {"start", "end", "text"} <= entry.keys():
            try:
                words = " ".join(str(entry["text"]).split())
                if words:
                    out.append(Segment(float(entry["start"]), float(entry["end"]), words))
            except (TypeError, ValueError):
                continue
    return sidecar
