"""Video indexing speed by stage, and peak memory on a one-hour 720p video.

Speed: a talk-style 720p video (25 fps, a slide with a new title every 30 s, continuous
espeak-ng speech of WordNet glosses; ``--minutes`` long, 3 by default) is generated with ffmpeg,
then read and encoded by :class:`~ragmm.ingest.video.VideoReader` with the default settings and
upserted into a fresh Edge store. Models are loaded (and run once) before timing. Stages:
ASR (Whisper calls), OCR (rapidocr calls), decode (the rest of ``read``: demuxing, decoding,
resampling, frame sampling, clip cutting), encode (text and image encoders), store (upsert).
The figure is seconds of video per wall second (goal >= 5 on 2 cores), with the process's CPU
seconds beside it: on a shared machine wall time measures the neighbours; video seconds per CPU
second bounds what 2 free cores give from below (as if nothing ran in parallel), and per CPU
second over 2 cores from above.

Memory (``--hour``): a one-hour 720p video of the same kind (10 fps, the speech looped) is
generated, then read and encoded in a child process whose peak resident memory (``ru_maxrss``)
is reported (goal < 2 GB). Neither video is kept.

Usage:
    .venv/bin/python bench/video_index.py                 # speed, 3-minute talk (~2 min)
    .venv/bin/python bench/video_index.py --hour          # plus peak memory on one hour (~25 min)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import busy_processes, machine, save  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def make_talk(path: Path, minutes: float, fps: int = 25) -> Path:
    """A 1280x720 talk: slides titled by the minute-and-half, and speech all along."""
    from ragmm.training.data.videobench import wordnet_entries

    seconds = minutes * 60
    glosses = [f"The {lemma} is {gloss}." for lemma, gloss in wordnet_entries(400)]
    wav = path.with_suffix(".wav")
    # about 2.6 words a second at espeak-ng's 160 words a minute: enough sentences for 3 minutes,
    # looped for longer videos
    subprocess.run(["espeak-ng", "-s", "160", "-w", str(wav), " ".join(glosses[:60])], check=True, stdout=subprocess.DEVNULL)
    slide = f"drawtext=fontfile={FONT}:text='Slide %{{eif\\:floor(t/30)+1\\:d}}\\: quarterly review':fontcolor=white:fontsize=56:x=80:y=120"
    bullet = f"drawtext=fontfile={FONT}:text='Item %{{eif\\:mod(floor(t/30)*7,97)\\:d}} of the plan':fontcolor=white:fontsize=40:x=80:y=260"
    subprocess.run(
        ["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", f"color=c=navy:s=1280x720:r={fps}:d={seconds}", "-stream_loop", "-1", "-i", str(wav),
         "-vf", f"{slide},{bullet}", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "stillimage", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "64k", "-ac", "1", str(path)],
        check=True,
    )  # fmt: skip
    wav.unlink()
    return path


class Timer:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def index_video(path: Path, store_dir: Path, warm: bool = True, asr: bool = True) -> dict[str, Any]:
    """Read, encode and store one video with default settings (``asr=False``: no speech
    recognition); seconds per stage."""
    from ragmm.encoders.image_text import ImageTextEncoder
    from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder
    from ragmm.ingest.video import VideoReader
    from ragmm.protocols import SourceFile
    from ragmm.stores.edge import EdgeStore

    encoders: dict[str, Any] = {"text": SentenceTransformerEncoder(), "image": ImageTextEncoder(ImageTextEncoder.Config())}
    reader = VideoReader(VideoReader.Config(asr=asr), encoders)
    store = EdgeStore(store_dir)
    for spec in reader.collections():
        store.create_collection(spec)
    if warm:  # load Whisper, the VAD, OCR and both encoders outside the timing
        import numpy as np
        from PIL import Image

        if reader.transcriber is not None:
            reader.transcriber(np.zeros(16000, np.float32) + 0.01 * np.sin(np.arange(16000, dtype=np.float32)))
        reader.ocr(Image.new("RGB", (64, 32), "white"))
        encoders["text"].encode_document(["warm up"])
        encoders["image"].encode_document([Image.new("RGB", (64, 64))])
    asr_timer, ocr = Timer(reader.transcriber), Timer(reader.ocr)
    reader.transcriber, reader.ocr = (asr_timer if asr else None), ocr
    text_enc, image_enc = Timer(encoders["text"].encode_document), Timer(encoders["image"].encode_document)
    encoders["text"].encode_document, encoders["image"].encode_document = text_enc, image_enc
    source = SourceFile(path, path.name, hashlib.sha256(path.read_bytes()).hexdigest())
    cpu0, w0 = time.process_time(), time.perf_counter()
    parsed = reader.read(source)
    w1 = time.perf_counter()
    (encoded,) = reader.encode([parsed])
    w2 = time.perf_counter()
    for corpus, points in encoded.points.items():
        store.upsert(corpus, points)
    store.flush()
    w3 = time.perf_counter()
    cpu = time.process_time() - cpu0
    store.close()
    wall = w3 - w0
    return {
        "video_seconds": parsed.duration,
        "clips": len(parsed.clips),
        "segments": len(parsed.segments),
        "ocr_lines": len(parsed.ocr),
        "frames_kept": len(parsed.frames),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "x_real_time": parsed.duration / wall,
        "x_real_time_cpu_over_2_cores": parsed.duration / (cpu / 2),
        "x_real_time_cpu_serial": parsed.duration / cpu,  # as if no two stages ever overlapped
        "stages": {
            "decode": w1 - w0 - asr_timer.seconds - ocr.seconds,
            "asr": asr_timer.seconds,
            "ocr": ocr.seconds,
            "encode": w2 - w1,
            "encode_text": text_enc.seconds,
            "encode_image": image_enc.seconds,
            "store": w3 - w2,
        },
        "ocr_calls": ocr.calls,
        "asr_calls": asr_timer.calls,
        "asr": asr,
    }


def child(path: str, store_dir: str, asr: bool) -> None:
    """Run in a fresh process: index, then print the stages and the peak RSS as JSON."""
    result = index_video(Path(path), Path(store_dir), warm=False, asr=asr)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the talk-style video for the speed figure")
    parser.add_argument("--hour", action="store_true", help="also measure peak memory on a one-hour 720p video")
    parser.add_argument("--hour-minutes", type=float, default=60.0, help="length of the long video of --hour (shorter only to check the bench)")
    parser.add_argument("--hour-no-asr", action="store_true", help="index the long video without speech recognition (memory of decoding, OCR, encoding)")
    parser.add_argument("--skip-talk", action="store_true", help="only the --hour measurement")
    parser.add_argument("--child", nargs=2, metavar=("VIDEO", "STORE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help="results JSON (default bench/results/video_index.json)")
    args = parser.parse_args()
    if args.child:
        child(*args.child, asr=not args.hour_no_asr)
        return
    results: dict[str, Any] = {"machine": machine(), "busy_at_start": busy_processes()}
    with tempfile.TemporaryDirectory(prefix="ragmm-video-bench-") as tmp:
        if not args.skip_talk:
            t0 = time.perf_counter()
            talk = make_talk(Path(tmp) / "talk.mp4", args.minutes)
            results["talk_generation_seconds"] = time.perf_counter() - t0
            results["talk"] = index_video(talk, Path(tmp) / "store")
            r = results["talk"]
            print(f"talk {r['video_seconds']:.0f} s: {r['x_real_time']:.2f}x real time (wall), {r['x_real_time_cpu_over_2_cores']:.2f}x (CPU over 2 cores); stages (s): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items()))  # fmt: skip
        if args.hour:
            t0 = time.perf_counter()
            hour = make_talk(Path(tmp) / "hour.mp4", args.hour_minutes, fps=10)
            results["hour_generation_seconds"] = time.perf_counter() - t0
            cmd = [sys.executable, __file__, "--child", str(hour), str(Path(tmp) / "store-hour"), *(["--hour-no-asr"] if args.hour_no_asr else [])]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results["hour"] = json.loads(out.strip().splitlines()[-1])
            h = results["hour"]
            print(f"{h['video_seconds'] / 60:.0f} min 720p (asr {h['asr']}): peak RSS {h['peak_rss_mb']:.0f} MB, {h['x_real_time']:.2f}x real time (wall), {h['x_real_time_cpu_over_2_cores']:.2f}x (CPU over 2 cores)")
    results["busy_at_end"] = busy_processes()
    print(save("video_index", results, args.out))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
