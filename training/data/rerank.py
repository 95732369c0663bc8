"""Reranker pairs: (query, item text, relevant?) with hard negatives mined by the dense retriever.

Kinds of items, each calibrated on its own:

``paragraph``  WordNet usage example -> its gloss (the training side of
               :mod:`ragmm.training.data.wordnet`'s synset split; its test side is never used);
``image``      an openclipart caption ("A full moon.") -> the text view an indexed image gets,
               its file-name title (``full_moon_dan_gerhards_01.png`` -> "full moon dan gerhards").

For each query the positive is one pair; the negatives are three items the packaged
all-MiniLM-L6-v2 ranks among the query's top ten (hard negatives: close, wrong) and one at
random. Rows are split by query (crc32): one in five goes to ``dev.jsonl``, for calibration and
the threshold; the rest to ``train.jsonl``.

Also writes the held-out rerank evaluations (``ragmm eval rerank``):

``wordnet/``   the WordNet test split (queries, glosses, qrels), as :mod:`ragmm.training.data.wordnet` writes it;
``tuxpaint/``  Tux Paint captions against every stamp's text view (evaluation only: never trained on).

Example:
    python -m ragmm.training.data.rerank --out data/rerank --per-kind 1500
"""

from __future__ import annotations

import argparse
import json
import random
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Pair:
    query: str
    text: str
    label: int
    kind: str


def wordnet_pairs(n: int, rng: random.Random) -> list[tuple[str, str]]:
    from ragmm.training.data.wordnet import WORDNET, ensure_wordnet, parse

    pairs = [(p.query, p.positive) for p in parse(ensure_wordnet(WORDNET)) if not p.held_out]
    rng.shuffle(pairs)
    return pairs[:n]


def clipart_pairs(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """(caption, text view) of openclipart images whose title kept at least one word."""
    from ragmm.training.data.clipart import OPENCLIPART, ensure_packages, openclipart_pairs

    from ragmm.ingest.images import file_title

    ensure_packages(["openclipart"])
    seen: set[str] = set()
    pairs = []
    for path, caption in openclipart_pairs(OPENCLIPART):
        view = file_title(path)
        if view and caption not in seen:
            seen.add(caption)
            pairs.append((caption, view))
    rng.shuffle(pairs)
    return pairs[:n]


def mine(pairs: list[tuple[str, str]], kind: str, encoder: object, rng: random.Random, depth: int = 10, hard: int = 3) -> list[Pair]:
    """Positive, ``hard`` hard negatives from the dense top ``depth``, one random negative, per query.

    Mostly hard negatives, because a reranker sees the retriever's candidates: items close to
    the query, most of them wrong. Calibrated on such rows, its probabilities hold for them.
    """
    import numpy as np

    queries = [q for q, _ in pairs]
    texts = [t for _, t in pairs]
    q = encoder.encode_query(queries)  # (N, D)
    d = encoder.encode_document(texts)  # (N, D)
    sims = q @ d.T  # (N, N)
    out: list[Pair] = []
    for i, (query, text) in enumerate(pairs):
        order = [int(j) for j in np.argsort(-sims[i])[: depth + 1] if j != i and texts[j] != text]
        out.append(Pair(query, text, 1, kind))
        for j in rng.sample(order[:depth], min(hard, len(order[:depth]))):
            out.append(Pair(query, texts[j], 0, kind))
        j = rng.randrange(len(texts))
        if texts[j] != text:
            out.append(Pair(query, texts[j], 0, kind))
    return out


def tuxpaint_eval(out: Path) -> dict[str, int]:
    """Tux Paint captions -> stamps' text views: queries.jsonl, corpus.jsonl, qrels.tsv."""
    from ragmm.training.data.tuxpaint import STAMPS, ensure_stamps, read_caption

    from ragmm.ingest.images import file_title

    root = ensure_stamps(STAMPS)
    by_caption: dict[str, list[str]] = {}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for png in sorted(root.rglob("*.png")):
            doc = str(png.relative_to(root))
            corpus.write(json.dumps({"id": doc, "text": file_title(png) or png.name, "corpus": "image", "modality": "image"}) + "\n")
            caption = read_caption(png)
            if caption:
                by_caption.setdefault(caption, []).append(doc)
    with open(out / "queries.jsonl", "w", encoding="utf-8") as qf, open(out / "qrels.tsv", "w", encoding="utf-8") as rf:
        for n, (caption, docs) in enumerate(sorted(by_caption.items())):
            qf.write(json.dumps({"id": f"q{n}", "text": caption}) + "\n")
            for doc in docs:
                rf.write(f"q{n}\t0\t{doc}\t1\n")
    return {"tuxpaint_queries": len(by_caption)}


def write(out: Path, per_kind: int = 1500, seed: int = 0) -> dict[str, int]:
    from ragmm.training.data import wordnet

    from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder

    rng = random.Random(seed)
    encoder = SentenceTransformerEncoder()
    rows = mine(wordnet_pairs(per_kind, rng), "paragraph", encoder, rng) + mine(clipart_pairs(per_kind, rng), "image", encoder, rng)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "dev": 0}
    with open(out / "train.jsonl", "w", encoding="utf-8") as tr, open(out / "dev.jsonl", "w", encoding="utf-8") as dv:
        for p in rows:
            split = "dev" if zlib.crc32(p.query.encode()) % 5 == 0 else "train"
            (dv if split == "dev" else tr).write(json.dumps(asdict(p)) + "\n")
            counts[split] += 1
    counts |= {f"wordnet_{k}": v for k, v in wordnet.write(out / "wordnet").items()}
    counts |= tuxpaint_eval(out / "tuxpaint")
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/rerank"))
    ap.add_argument("--per-kind", type=int, default=1500, help="queries per kind of item (five pairs each)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(write(args.out, args.per_kind, args.seed)))


if __name__ == "__main__":
    main()
