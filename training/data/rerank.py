"""Reranker pairs: (query, item text, relevant?) with hard negatives mined by the dense retriever.

Kinds of items, each calibrated on its own:

``paragraph``  WordNet usage example -> its gloss (the training side of
               :mod:`ragmm.training.data.wordnet`'s synset split; its test side is never used);
``image``      an openclipart caption ("A full moon.") -> the text view an indexed image gets,
               its file-name title (``full_moon_dan_gerhards_01.png`` -> "full moon dan gerhards");
``clip``       a question about a video of the video benchmark's train split (words said, text
               on screen, its title or description) -> the text view of each indexed clip that
               holds the answer (title, ASR transcript, OCR, description), from the
               split's store that ``python -m ragmm.training.data.videobench eval`` indexes.

For each query the positive is one pair (a clip query: every clip holding the answer); the negatives are three items the packaged
all-MiniLM-L6-v2 ranks among the query's top ten (hard negatives: close, wrong) and one at
random. Rows are split by query (crc32): one in five goes to ``dev.jsonl``, for calibration and
the threshold; the rest to ``train.jsonl``.

Also writes the held-out rerank evaluations (``ragmm eval rerank``):

``wordnet/``   the WordNet test split (queries, glosses, qrels), as :mod:`ragmm.training.data.wordnet` writes it;
``tuxpaint/``  Tux Paint captions against every stamp's text view (evaluation only: never trained on);
``video/``     the video benchmark's test queries against every test clip's text view; a clip is
               relevant when it is of the query's video and covers the answer's time span.

and, from the dev rows, one set per kind in the same format (``dev/paragraph``, ``dev/image``,
``dev/clip``: the dev queries against every item of that kind), on which a threshold is chosen
(``ragmm eval rerank --dev``) without looking at the evaluations.

Example:
    python -m ragmm.training.data.rerank --out data/rerank --per-kind 1500
"""

from __future__ import annotations

import argparse
import json
import random
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path


VIDEOBENCH = Path("data/videobench")
# Where `python -m ragmm.training.data.videobench eval` indexes each split (store-train, store-test).
VIDEO_STORES = Path("eval/videobench")
SCENE_SECONDS = 6.0  # the benchmark's scene length (training.data.videobench)
_STOPWORDS = ("the", "is", "a", "an", "of")


@dataclass(frozen=True, slots=True)
class Pair:
    query: str
    text: str
    label: int
    kind: str


@dataclass(frozen=True, slots=True)
class Clip:
    """One indexed clip: its text view and the time span it covers."""

    id: str  # "video_003.mp4#1": the video and the clip's number in it
    text: str
    video: str
    t_start: float
    t_end: float


@dataclass(frozen=True, slots=True)
class ClipQuery:
    text: str
    video: str
    t_start: float  # the answer's time span
    t_end: float


def covers(clip: Clip, q: ClipQuery) -> bool:
    """The clip is of the query's video and covers at least half of the answer's span (or half
    of the clip lies in it: a 6 s scene split across two clips counts for the larger part).

    Example:
        >>> covers(Clip("v#1", "", "v", 4.8, 11.3), ClipQuery("", "v", 6.0, 12.0))
        True
        >>> covers(Clip("v#2", "", "v", 11.3, 18.0), ClipQuery("", "v", 6.0, 12.0))
        False
    """
    overlap = min(clip.t_end, q.t_end) - max(clip.t_start, q.t_start)
    return clip.video == q.video and overlap >= 0.5 * min(clip.t_end - clip.t_start, q.t_end - q.t_start)


def video_clips(split: Path, store: Path) -> list[Clip]:
    """Every clip of a video benchmark split as ragmm indexed it (its ``text`` is the clip's
    text view), read from ``store``; the split is indexed into ``store`` first when missing
    (speech recognition on every video: minutes)."""
    from ragmm.ingest.video import CLIP
    from ragmm.stores.edge import EdgeStore

    if not (store / "collections" / CLIP).is_dir():
        from ragmm.training.data.videobench import index_split

        from ragmm.encoders.image_text import ImageTextEncoder
        from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder

        index_split(split, store, {"text": SentenceTransformerEncoder(), "image": ImageTextEncoder(ImageTextEncoder.Config())})
    db = EdgeStore(store)
    try:
        points = list(db.scroll(CLIP))
    finally:
        db.close()
    clips = [
        Clip(f"{p.payload['source']}#{p.payload['metadata']['clip']}", p.payload["text"], p.payload["source"], float(p.payload["locator"]["t_start"]), float(p.payload["locator"]["t_end"]))
        for p in points
    ]
    return sorted(clips, key=lambda c: (c.video, c.t_start))


def video_train_queries(split: Path) -> list[ClipQuery]:
    """Questions about each video of a split, built as the benchmark builds its queries but for
    every scene: the first words said, the text on screen; and the title and the description.

    No picture-caption questions: a clip's text view holds no caption, so a text reranker would
    learn from pairs it cannot tell apart.
    """
    out = []
    for spec in json.loads((split / "specs.json").read_text(encoding="utf-8")):
        for n, scene in enumerate(spec["scenes"]):
            span = (n * SCENE_SECONDS, (n + 1) * SCENE_SECONDS)
            words = [w for w in re.sub(r"[^\w\s']", "", scene["speech"]).lower().split() if w not in _STOPWORDS]
            out.append(ClipQuery(" ".join(words[:7]), spec["name"], *span))
            out.append(ClipQuery(scene["screen"].lower(), spec["name"], *span))
        whole = (0.0, len(spec["scenes"]) * SCENE_SECONDS)
        out.append(ClipQuery(spec["title"].lower().removeprefix("the "), spec["name"], *whole))
        out.append(ClipQuery(spec["description"], spec["name"], *whole))
    return out


def mine_clips(queries: list[ClipQuery], clips: list[Clip], encoder: object, rng: random.Random, depth: int = 10, hard: int = 3) -> list[Pair]:
    """As :func:`mine`, with every clip covering the answer a positive."""
    import numpy as np

    q = encoder.encode_query([c.text for c in queries])  # (Q, D)
    d = encoder.encode_document([c.text for c in clips])  # (N, D)
    sims = q @ d.T  # (Q, N)
    out: list[Pair] = []
    for i, query in enumerate(queries):
        positive = {j for j, c in enumerate(clips) if covers(c, query)}
        order = [int(j) for j in np.argsort(-sims[i]) if int(j) not in positive]
        out.extend(Pair(query.text, clips[j].text, 1, "clip") for j in sorted(positive))
        for j in rng.sample(order[:depth], min(hard, len(order[:depth]))):
            out.append(Pair(query.text, clips[j].text, 0, "clip"))
        if order[depth:]:
            out.append(Pair(query.text, clips[rng.choice(order[depth:])].text, 0, "clip"))
    return out


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


def video_eval(out: Path, split: Path, store: Path) -> dict[str, int]:
    """The video benchmark's queries -> every clip's text view: queries.jsonl, corpus.jsonl,
    qrels.tsv (the clips covering each answer)."""
    clips = video_clips(split, store)
    queries = [json.loads(line) for line in (split / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for c in clips:
            fh.write(json.dumps({"id": c.id, "text": c.text, "corpus": "clip", "modality": "video"}) + "\n")
    judged = 0
    with open(out / "queries.jsonl", "w", encoding="utf-8") as qf, open(out / "qrels.tsv", "w", encoding="utf-8") as rf:
        for q in queries:
            qf.write(json.dumps({"id": q["id"], "text": q["text"], "modality": q["modality"]}) + "\n")
            cq = ClipQuery(q["text"], q["video"], q["t_start"], q["t_end"])
            for c in clips:
                if covers(c, cq):
                    rf.write(f"{q['id']}\t0\t{c.id}\t1\n")
                    judged += 1
    return {"video_queries": len(queries), "video_clips": len(clips), "video_qrels": judged}


CORPUS_OF_KIND = {"paragraph": ("paragraph", "text"), "image": ("image", "image"), "clip": ("clip", "video")}


def dev_sets(rows: list[Pair], out: Path) -> dict[str, int]:
    """One judged set per kind from the dev rows: each dev query against every distinct item
    text of that kind (train and dev rows), relevant where the row says so."""
    counts = {}
    for kind, (corpus, modality) in CORPUS_OF_KIND.items():
        of_kind = [p for p in rows if p.kind == kind]
        ids = {text: f"{kind}-{n}" for n, text in enumerate(dict.fromkeys(p.text for p in of_kind))}
        relevant: dict[str, set[str]] = {}
        for p in of_kind:
            if is_dev(p.query) and p.label:
                relevant.setdefault(p.query, set()).add(ids[p.text])
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "corpus.jsonl", "w", encoding="utf-8") as fh:
            for text, i in ids.items():
                fh.write(json.dumps({"id": i, "text": text, "corpus": corpus, "modality": modality}) + "\n")
        with open(folder / "queries.jsonl", "w", encoding="utf-8") as qf, open(folder / "qrels.tsv", "w", encoding="utf-8") as rf:
            for n, (query, docs) in enumerate(relevant.items()):
                qf.write(json.dumps({"id": f"{kind}-q{n}", "text": query}) + "\n")
                rf.writelines(f"{kind}-q{n}\t0\t{d}\t1\n" for d in sorted(docs))
        counts[f"dev_{kind}_queries"] = len(relevant)
    return counts


def is_dev(query: str) -> bool:
    """One query in five (by crc32) is held out for calibration and the threshold."""
    return zlib.crc32(query.encode()) % 5 == 0


def write(out: Path, per_kind: int = 1500, seed: int = 0, videobench: Path = VIDEOBENCH, video_stores: Path = VIDEO_STORES) -> dict[str, int]:
    from ragmm.training.data import wordnet

    from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder

    for split in ("train", "test"):
        if not (videobench / split / "specs.json").is_file():
            raise SystemExit(f"{videobench / split}: no video benchmark split; build it with `python -m ragmm.training.data.videobench build --out {videobench}`")
    rng = random.Random(seed)
    encoder = SentenceTransformerEncoder()
    rows = mine(wordnet_pairs(per_kind, rng), "paragraph", encoder, rng) + mine(clipart_pairs(per_kind, rng), "image", encoder, rng)
    # Clips of the train split only: the test split is the video evaluation.
    rows += mine_clips(video_train_queries(videobench / "train"), video_clips(videobench / "train", video_stores / "store-train"), encoder, rng)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "dev": 0}
    with open(out / "train.jsonl", "w", encoding="utf-8") as tr, open(out / "dev.jsonl", "w", encoding="utf-8") as dv:
        for p in rows:
            split = "dev" if is_dev(p.query) else "train"
            (dv if split == "dev" else tr).write(json.dumps(asdict(p)) + "\n")
            counts[split] += 1
            counts[f"{split}_{p.kind}"] = counts.get(f"{split}_{p.kind}", 0) + 1
    counts |= dev_sets(rows, out / "dev")
    counts |= {f"wordnet_{k}": v for k, v in wordnet.write(out / "wordnet").items()}
    counts |= tuxpaint_eval(out / "tuxpaint")
    counts |= video_eval(out / "video", videobench / "test", video_stores / "store-test")
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/rerank"))
    ap.add_argument("--per-kind", type=int, default=1500, help="queries per kind of item (five pairs each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--videobench", type=Path, default=VIDEOBENCH, help="the video benchmark's splits (train: pairs; test: the evaluation)")
    ap.add_argument("--video-stores", type=Path, default=VIDEO_STORES, help="its indexed splits, store-train and store-test (indexed here when missing)")
    args = ap.parse_args()
    print(json.dumps(write(args.out, args.per_kind, args.seed, args.videobench, args.video_stores)))


if __name__ == "__main__":
    main()
