"""Two image encoders timed in turn: ``make demo``'s commands, or ``ragmm index`` of numbered images.

Each run is the real command line in a fresh store whose config sets only ``[encoders.image] type``
(and ``[index] ocr``), timed as whole processes, model loading included. On a shared machine the
speed drifts within minutes, so the encoders alternate (A B, B A, A B...) after one warm-up run
each, and the figure to quote is the median of the per-round ratios A/B with each side's median.

- ``demo``: ``ragmm index examples/docs examples/videos`` and ``make demo``'s four ``ragmm ask``
  (the answers depend on the evidence found, so they time the generator too);
- ``stamps``: ``ragmm index`` of ``--images`` Tux Paint stamps (every n-th of
  ``/usr/share/tuxpaint/stamps``, sorted) copied as ``0001.png``... so that no file name helps;
  images/s is images over the index report's seconds (after start-up, model loading included).

Usage:
    .venv/bin/python bench/image_encoder_ab.py demo --rounds 3
    .venv/bin/python bench/image_encoder_ab.py stamps --rounds 3 --images 100 [--no-ocr]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAGMM = str(Path(sys.executable).parent / "ragmm")
STAMPS = Path("/usr/share/tuxpaint/stamps")
DEMO_ASKS = [
    ["How does a lighthouse tell ships which light they are looking at?"],
    ["--generator", "extractive", "When can visitors come to the apiary?"],
    ["-k", "3", "--image", "examples/queries/bee.png", "What is this, and what do the documents say about it?"],
    ["-k", "3", "--generator", "extractive", "When will the garden club's water pump be repaired?"],
]
REPORT_SECONDS = re.compile(r"; ([0-9.]+)s\s*$", re.MULTILINE)  # the index report's last line (on stderr)


def run(encoder: str, task: str, images: Path | None, ocr: bool) -> dict[str, float]:
    """One run in a fresh store: whole wall seconds and the index report's seconds."""
    with tempfile.TemporaryDirectory(prefix="ragmm-ab-") as tmp:
        config = Path(tmp) / "ragmm.toml"
        config.write_text(f'[encoders.image]\ntype = "{encoder}"\n[index]\nocr = {str(ocr).lower()}\n')
        common = ["-c", str(config), "--store", str(Path(tmp) / "store")]
        env = {**os.environ, "RAGMM_SERVER": "off"}
        sources = ["examples/docs", "examples/videos", "--corpus-root", "examples"] if task == "demo" else [str(images)]
        commands = [[RAGMM, "index", *sources, *common, "-q"]]
        if task == "demo":
            commands += [[RAGMM, "ask", *common, *args] for args in DEMO_ASKS]
        t0 = time.perf_counter()
        outputs = [subprocess.run(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True).stdout for c in commands]
        wall = time.perf_counter() - t0
    found = REPORT_SECONDS.search(outputs[0])
    return {"wall": wall, "index": float(found.group(1)) if found else float("nan")}


def numbered_stamps(folder: Path, n: int) -> Path:
    """Every k-th stamp of the sorted Tux Paint set, ``n`` of them, as ``0001.png``..."""
    stamps = sorted(STAMPS.rglob("*.png"))
    if not stamps:
        raise SystemExit(f"no stamps under {STAMPS}: apt-get install tuxpaint-stamps-default")
    step = max(1, len(stamps) // n)
    for i, src in enumerate(stamps[::step][:n], 1):
        shutil.copyfile(src, folder / f"{i:04d}.png")
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["demo", "stamps"])
    p.add_argument("--a", default="ragmm-lite0", help="image encoder A (the ratio's numerator)")
    p.add_argument("--b", default="ragmm-clipart", help="image encoder B")
    p.add_argument("--rounds", type=int, default=3, help="counted runs of each, after one warm-up of each")
    p.add_argument("--images", type=int, default=100, help="stamps: how many")
    p.add_argument("--no-ocr", action="store_true", help="[index] ocr = false")
    p.add_argument("--out", default=None, help="results json (default bench/results/image_encoder_ab_<task>[_no_ocr].json)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="ragmm-ab-images-") as tmp:
        images = numbered_stamps(Path(tmp), args.images) if args.task == "stamps" else None
        n_images = len(list(images.iterdir())) if images else 4
        runs: dict[str, list[dict[str, float]]] = {args.a: [], args.b: []}
        load = [os.getloadavg()[0]]
        for r in range(args.rounds + 1):
            order = (args.a, args.b) if r % 2 == 0 else (args.b, args.a)
            for enc in order:
                result = run(enc, args.task, images, not args.no_ocr)
                if r > 0:  # round 0 is the warm-up
                    runs[enc].append(result)
                print(f"round {r}{' (warm-up)' if r == 0 else ''} {enc}: {result['wall']:.1f} s wall, index {result['index']:.1f} s", flush=True)
            load.append(os.getloadavg()[0])

    def median(enc: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[enc])

    ratios = {key: statistics.median(a[key] / b[key] for a, b in zip(runs[args.a], runs[args.b], strict=True)) for key in ("wall", "index")}
    summary = {
        "task": args.task,
        "ocr": not args.no_ocr,
        "images": n_images,
        "rounds": args.rounds,
        "median_wall_s": {enc: median(enc, "wall") for enc in runs},
        "median_index_s": {enc: median(enc, "index") for enc in runs},
        "images_per_s": {enc: n_images / median(enc, "index") for enc in runs},
        "ratio_a_over_b": ratios,
        "load_1min": load,
        "runs": runs,
    }
    out = Path(args.out or ROOT / "bench" / "results" / f"image_encoder_ab_{args.task}{'_no_ocr' if args.no_ocr else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    for enc in runs:
        print(f"{enc}: median {summary['median_wall_s'][enc]:.1f} s wall, index {summary['median_index_s'][enc]:.1f} s ({summary['images_per_s'][enc]:.2f} images/s)")
    print(f"{args.a} / {args.b}: wall {ratios['wall']:.3f}, index {ratios['index']:.3f} (median of {args.rounds} rounds); load {min(load):.1f}-{max(load):.1f}; {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
