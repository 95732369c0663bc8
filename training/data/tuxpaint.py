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
    stamps-anonymous/NNNN.png    the same stamps under numbers, as a camera names photos: what
    qrels-anonymous.tsv          the image tower is for when file names say nothing
    ragmm.toml                   a config with its own store under store/, for the commands below

Example (from the repository root):
    python -m ragmm.training.data.tuxpaint --out data/tuxpaint --train data/clipart/train.jsonl
    ragmm index data/tuxpaint/stamps --corpus-root data/tuxpaint/stamps --config data/tuxpaint/ragmm.toml
    ragmm eval retrieval --corpus image --queries data/tuxpaint/queries.jsonl \\
        --qrels data/tuxpaint/qrels.tsv --config data/tuxpaint/ragmm.toml --out eval/tuxpaint

or all of it, every view and both query sets, with chance and a summary table and plot
(``make eval-images``):
    python -m ragmm.training.data.tuxpaint --out data/tuxpaint --evaluate eval/tuxpaint
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
    anon_root = out / "stamps-anonymous"
    if anon_root.exists():
        shutil.rmtree(anon_root)
    anon_root.mkdir(parents=True)
    by_caption: dict[str, list[str]] = {}
    anonymous: dict[str, str] = {}
    for i, p in enumerate(pngs):
        rel = p.relative_to(root)
        (link_root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(p, link_root / rel)
        anonymous[rel.as_posix()] = f"{i:04d}.png"
        os.symlink(p, anon_root / anonymous[rel.as_posix()])
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
    with open(out / "qrels-anonymous.tsv", "w", encoding="utf-8") as r:
        for i, (_caption, docs) in enumerate(sorted(by_caption.items())):
            for d in docs:
                r.write(f"q{i:04d}\t0\t{anonymous[d]}\t1\n")
    (out / "ragmm.toml").write_text(
        "# Tux Paint stamps as the image corpus (written by ragmm.training.data.tuxpaint).\n"
        f'[store]\ntype = "edge"\npath = "{(out / "store").resolve()}"\n\n[retrieve]\ncorpora = ["image"]\n',
        encoding="utf-8",
    )
    return counts


# run -> (views a text query searches, fusion). "fused" is the retriever `ragmm ask` builds (its
# default fusion: calibrated where the image encoder ships a calibration, else max).
VIEWS = {"fused": (["image", "text"], "auto"), "fused-max": (["image", "text"], "max"), "image": (["image"], "max"), "text": (["text"], "max")}
VIEW_NAMES = {
    "fused": "image tower + text view (fused)",
    "fused-max": "image tower + text view (max of raw cosines)",
    "image": "image tower only",
    "text": "text view: file name + OCR + labels",
}
SETS = ("all", "no-near-dups", "anonymous-names")


def chance(qrels: dict[str, dict[str, int]], n_items: int, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Expected metrics of a random ranking: Recall@k = k/N; nDCG@10 = (R/N) DCG(10 ones) / IDCG."""
    import math

    discounts = [1 / math.log2(i + 2) for i in range(10)]
    out = {f"recall@{k}": min(k, n_items) / n_items for k in ks}
    ndcg = [(len(rel) / n_items) * sum(discounts) / sum(discounts[: min(len(rel), 10)]) for rel in qrels.values()]
    out["ndcg@10"] = sum(ndcg) / len(ndcg)
    return out


def evaluate(data: Path, out: Path, image_model: str = "ragmm-clipart", ocr: bool = True, progress: bool = True, sets: tuple[str, ...] = SETS) -> dict[str, Any]:
    """Index the stamps with ``image_model`` (OCR on) and evaluate every view on the query ``sets``.

    The text view holds what the item's text says: the file name as words, OCR text, and the
    labels of an encoder that gives them (``ragmm-lite0``: "picture of: ...").

    Writes ``out/summary.json``, ``out/summary.md``, ``out/recall_at_k.png`` (all curves and
    chance) and each run's own report and plots under ``out/<queries>/<view>/``.
    """
    from ragmm.retrievers.image import ImageCorpusRetriever

    from ragmm.config import load_config
    from ragmm.evaluation.plots import plot_recall_curve
    from ragmm.evaluation.retrieval import CURVE_KS, evaluate_retrieval, load_qrels
    from ragmm.pipeline import Pipeline

    from ragmm.training.data.clipart import store_slug

    slug = store_slug(image_model)
    summary: dict[str, Any] = {"image_model": image_model, "ocr": ocr, "runs": {}, "indexed": {}, "n_queries": {}}
    curves: dict[str, list[tuple[int, float]]] = {}
    # (name, folder indexed, queries, qrels, OCR): the stamps as named, without the near-duplicates
    # of training images, and under numbers (no OCR there: the stamps hold almost no text, and the
    # point is what is left when names say nothing).
    settings = [
        ("all", "stamps", "queries.jsonl", "qrels.tsv", ocr),
        ("no-near-dups", "stamps", "queries-no-near-dups.jsonl", "qrels-no-near-dups.tsv", ocr),
        ("anonymous-names", "stamps-anonymous", "queries.jsonl", "qrels-anonymous.tsv", False),
    ]
    for name, folder, queries_file, qrels_file, with_ocr in [s for s in settings if s[0] in sets]:
        sections = {
            "store": {"type": "edge", "path": str((data / f"store-{slug}-{folder}{'-no-ocr' if folder == 'stamps' and not with_ocr else ''}").resolve())},
            "encoders": {"image": {"type": "image-text", "model": image_model}},
            "index": {"ocr": with_ocr},
            "generator": {"type": "extractive"},
        }
        with Pipeline(load_config(None, sections)) as pipe:
            report = pipe.index([data / folder], corpus_root=data / folder, progress=progress)
            n_items = pipe.store.count("image")
            summary["indexed"][folder] = {"items": n_items, "ocr": with_ocr, "skipped": [f"{s.path}: {s.reason}" for s in report.skipped], "seconds": report.seconds}
            text_encoder, image_encoder = pipe.encoder("text"), pipe.encoder("image")
            qrels_path = data / qrels_file
            qrels = load_qrels(qrels_path)
            summary["n_queries"][name] = len(qrels)
            summary["runs"][f"{name}/chance"] = chance(qrels, n_items)
            for view, (views, fusion) in VIEWS.items():
                retriever = ImageCorpusRetriever(pipe.store, text_encoder, image_encoder, pipe.embeddings, fusion=fusion, views=views)  # type: ignore[arg-type]
                r = evaluate_retrieval(
                    data / queries_file,
                    qrels_path,
                    text_encoder,  # primes the text-query cache; an image encoder in another space embeds queries itself
                    store=pipe.store,
                    corpus="image",
                    out_dir=out / name / view,
                    retriever=retriever,
                    embeddings=pipe.embeddings,
                    vector="text" if view == "text" else "image",
                    label=VIEW_NAMES[view],
                    progress=progress,
                )
                summary["runs"][f"{name}/{view}"] = r.metrics
                if view == "fused":
                    summary["fusion"] = retriever.fusion  # what "auto" chose for this encoder
                if view != "fused-max" and name in ("all", "anonymous-names") and not (name == "anonymous-names" and view == "image"):
                    curves[f"{VIEW_NAMES[view]}{' (numbered files)' if name != 'all' else ''}"] = r.recall_curve
    curves["chance"] = [(k, min(k, n_items) / n_items) for k in CURVE_KS if k <= 100]
    out.mkdir(parents=True, exist_ok=True)
    plot_recall_curve(curves, out / "recall_at_k.png", f"Tux Paint stamps, caption -> image ({n_items} images)")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "summary.md").write_text(summary_table(summary), encoding="utf-8")
    return summary


def summary_table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (what the README and the model card quote)."""
    cols = ["recall@1", "recall@5", "recall@10", "ndcg@10"]
    lines = [f"| queries | retrieval | {' | '.join(cols)} |", "|---|---|" + "---|" * len(cols)]
    for key, metrics in summary["runs"].items():
        qset, view = key.split("/")
        label = VIEW_NAMES.get(view, view)
        lines.append(f"| {qset} ({summary['n_queries'].get(qset, '?')} queries) | {label} | " + " | ".join(f"{metrics[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/tuxpaint"))
    ap.add_argument("--train", type=Path, default=Path("data/clipart/train.jsonl"), help="training pairs to find near-duplicates against")
    ap.add_argument("--dup-threshold", type=float, default=0.95)
    ap.add_argument("--evaluate", type=Path, default=None, metavar="DIR", help="then index the stamps and write the evaluation to DIR")
    ap.add_argument("--image-model", default="ragmm-clipart", help="image encoder evaluated: ragmm-clipart, ragmm-lite0 or a trained folder")
    ap.add_argument("--sets", default=",".join(SETS), help=f"query sets to evaluate, comma separated ({', '.join(SETS)})")
    ap.add_argument("--no-ocr", action="store_true", help="index without OCR (faster; the text view then has file names only)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(write(args.out, args.train if args.train.is_file() else None, threshold=args.dup_threshold)))
    if args.evaluate is not None:
        sets = tuple(s.strip() for s in args.sets.split(",") if s.strip())
        unknown = sorted(set(sets) - set(SETS))
        if unknown:
            ap.error(f"--sets: unknown {', '.join(unknown)}; choose from {', '.join(SETS)}")
        summary = evaluate(args.out, args.evaluate, args.image_model, ocr=not args.no_ocr, sets=sets)
        print(summary_table(summary))


if __name__ == "__main__":
    main()
