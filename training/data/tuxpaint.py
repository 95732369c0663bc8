"""Held-out text-to-image evaluation set from Debian ``tuxpaint-stamps-default``.

Tux Paint's stamps are photos and clipart, each PNG with a ``.txt`` beside it whose first line is
a human caption ("A red apple."). The caption is the query and its stamp the relevant image;
stamps with the very same caption are all relevant to it. This source is for evaluation only:
ragmm never trains on it (see :mod:`ragmm.training.data.clipart`).

About a dozen stamps are near-identical to an openclipart training image. They are found by the
cosine of 16x16 thumbnails (letterboxed on white, mean-centred) above ``--dup-threshold``
against every training image, and a second set of queries and qrels leaves them out, so recall
can be reported with and without them.

Writes, under ``--out``:
    stamps/...                   symlinks to the stamp PNGs only (the folder to index; without
                                 the caption files, which would otherwise be indexed as text)
    corpus.jsonl                 {"id", "image"}: every stamp, for `ragmm eval --corpus-file`
    queries.jsonl                {"id", "text"}: one per distinct caption
    qrels.tsv                    TREC qrels; doc ids are the stamp paths relative to stamps/
    queries-no-near-dups.jsonl   the same without captions of near-duplicate stamps
    qrels-no-near-dups.tsv
    near_duplicates.tsv          stamp, openclipart training image, thumbnail cosine
    ragmm.toml                   a config with its own store under store/, for the commands below

Example (from the repository root; ``make eval-images`` runs all of it):
    python -m ragmm.training.data.tuxpaint --out data/tuxpaint --train data/clipart/train.jsonl
    ragmm index data/tuxpaint/stamps --corpus-root data/tuxpaint/stamps --config data/tuxpaint/ragmm.toml
    ragmm eval retrieval --corpus image --queries data/tuxpaint/queries.jsonl \\
        --qrels data/tuxpaint/qrels.tsv --config data/tuxpaint/ragmm.toml --out eval/tuxpaint
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

STAMPS = Path("/usr/share/tuxpaint/stamps")


def ensure_stamps(root: Path = STAMPS) -> Path:
    if not root.is_dir():
        if shutil.which("apt-get") is None:
            raise SystemExit(f"{root}: Tux Paint stamps missing and no apt-get; install the Debian package tuxpaint-stamps-default")
        subprocess.run(["apt-get", "install", "-y", "-qq", "tuxpaint-stamps-default"], check=True)
    return root


def read_caption(png: Path) -> str:
    """First line of the ``.txt`` beside ``png`` (empty when there is none)."""
    txt = png.with_suffix(".txt")
    if not txt.is_file():
        return ""
    lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    return " ".join(lines[0].split()) if lines else ""


def thumbnails(paths: list[Any], side: int = 16) -> Any:
    """(N, side*side*3) unit-norm, mean-centred thumbnails (letterboxed on white)."""
    import numpy as np

    from ragmm.encoders.image_tower import load_image

    rows = []
    for p in paths:
        a = np.asarray(load_image(p, side), dtype=np.float32).ravel()
        a -= a.mean()
        rows.append(a / max(float(np.linalg.norm(a)), 1e-6))
    return np.stack(rows)


def near_duplicates(stamps: list[Path], train_images: list[str], threshold: float) -> list[tuple[Path, str, float]]:
    """Stamps whose thumbnail cosine to some training image exceeds ``threshold``."""
    sims = thumbnails(stamps) @ thumbnails(train_images).T  # (S, T)
    best = sims.argmax(axis=1)
    return [(s, train_images[int(j)], float(sims[i, j])) for i, (s, j) in enumerate(zip(stamps, best, strict=True)) if sims[i, j] > threshold]


def write(out: Path, train_jsonl: Path | None, root: Path = STAMPS, threshold: float = 0.95) -> dict[str, int]:
    ensure_stamps(root)
    pngs = sorted(p for p in root.rglob("*.png") if read_caption(p))
    link_root = out / "stamps"
    if link_root.exists():
        shutil.rmtree(link_root)
    by_caption: dict[str, list[str]] = {}
    for p in pngs:
        rel = p.relative_to(root)
        (link_root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(p, link_root / rel)
        by_caption.setdefault(read_caption(p), []).append(rel.as_posix())
    dups: list[tuple[Path, str, float]] = []
    if train_jsonl is not None:
        train = [json.loads(line)["image"] for line in train_jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
        dups = near_duplicates(pngs, train, threshold)
    dup_ids = {s.relative_to(root).as_posix() for s, _, _ in dups}
    with open(out / "near_duplicates.tsv", "w", encoding="utf-8") as fh:
        for s, t, c in dups:
            fh.write(f"{s.relative_to(root).as_posix()}\t{t}\t{c:.3f}\n")
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for p in pngs:
            fh.write(json.dumps({"id": p.relative_to(root).as_posix(), "image": str(p)}) + "\n")
    counts = {"stamps": len(pngs), "captions": len(by_caption), "near_duplicates": len(dups)}
    for suffix, skip in (("", set()), ("-no-near-dups", dup_ids)):
        with open(out / f"queries{suffix}.jsonl", "w", encoding="utf-8") as q, open(out / f"qrels{suffix}.tsv", "w", encoding="utf-8") as r:
            n = 0
            for i, (caption, docs) in enumerate(sorted(by_caption.items())):
                if any(d in skip for d in docs):
                    continue
                q.write(json.dumps({"id": f"q{i:04d}", "text": caption}, ensure_ascii=False) + "\n")
                for d in docs:
                    r.write(f"q{i:04d}\t0\t{d}\t1\n")
                n += 1
        counts[f"queries{suffix}"] = n
    (out / "ragmm.toml").write_text(
        "# Tux Paint stamps as the image corpus (written by ragmm.training.data.tuxpaint).\n"
        f'[store]\ntype = "edge"\npath = "{(out / "store").resolve()}"\n\n[retrieve]\ncorpora = ["image"]\n',
        encoding="utf-8",
    )
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/tuxpaint"))
    ap.add_argument("--train", type=Path, default=Path("data/clipart/train.jsonl"), help="training pairs to find near-duplicates against")
    ap.add_argument("--dup-threshold", type=float, default=0.95)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(write(args.out, args.train if args.train.is_file() else None, threshold=args.dup_threshold)))


if __name__ == "__main__":
    main()
