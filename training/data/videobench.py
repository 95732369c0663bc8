"""A small deterministic video benchmark from real parts, and its evaluation per scoring strategy.

Each video has three scenes of 6 s. Every scene shows a public-domain openclipart picture (its
caption is known, see :mod:`ragmm.training.data.clipart`), writes a short phrase on screen
(ffmpeg ``drawtext``; a two-word WordNet lemma and a number) and says a sentence: real human
speech from Debian ``pocketsphinx-testdata`` (LibriVox readings of *Sense and Sensibility*, with
transcripts; BSD-2 per its copyright file) or a WordNet gloss read by ``espeak-ng``. The
container's title and description (metadata) name another WordNet lemma and its gloss.

For each video, four queries each target exactly one modality, whose fact appears nowhere else:
what was said (some words of one scene's sentence), what was written (one scene's on-screen
phrase), what was shown (one scene's picture caption) and the title. Relevance is by video
(``qrels.tsv``), and each query carries the answer's time span (the scene; the whole video for
the title), so the cited clip can be checked: the time-span hit rate is the share of queries
whose top hit is a clip of the right video overlapping the answer's span.

Videos are split by index into ``train`` (fitting the modality-aware head with CLaMR's loss) and
``test`` (every figure). Writes, under ``--out``::

    {train,test}/videos/*.mp4           the videos (regenerated identically from the seed)
    {train,test}/queries.jsonl          {"id", "text", "modality", "video", "t_start", "t_end"}
    {train,test}/qrels.tsv              TREC qrels: query_id 0 video 1

Example:
    python -m ragmm.training.data.videobench build --out data/videobench
    python -m ragmm.training.data.videobench eval --data data/videobench --out eval/videobench
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
PACKAGES = ["ffmpeg", "espeak-ng", "fonts-dejavu-core", "pocketsphinx-testdata", "wordnet-base", "openclipart-png", "wamerican"]
SCENE_SECONDS = 6.0
COLOURS = ("navy", "darkgreen", "maroon", "indigo", "darkslategray", "saddlebrown")
TARGETS = ("speech", "ocr", "frame", "metadata")


@dataclass(frozen=True, slots=True)
class SceneSpec:
    speech: str  # the sentence said
    speech_wav: str  # a LibriVox recording, or "" for espeak-ng
    screen: str
    picture: str  # an openclipart PNG
    caption: str


@dataclass(frozen=True, slots=True)
class VideoSpec:
    name: str
    title: str
    description: str
    scenes: tuple[SceneSpec, ...]


@dataclass(frozen=True, slots=True)
class BenchQuery:
    id: str
    text: str
    modality: str
    video: str
    t_start: float
    t_end: float


def ensure_packages() -> None:
    """Install the Debian packages whose files are missing (a fresh machine or CI)."""
    from ragmm.training.data.clipart import OPENCLIPART, WORDS

    ready = shutil.which("ffmpeg") and shutil.which("espeak-ng") and FONT.exists() and LIBRIVOX.exists() and WORDNET_NOUNS.exists() and OPENCLIPART.exists() and WORDS.exists()
    if ready:
        return
    if shutil.which("apt-get") is None:
        raise SystemExit(f"missing data and no apt-get; install the Debian packages {' '.join(PACKAGES)}")
    subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True)


def librivox() -> list[tuple[Path, str]]:
    """(recording, transcript) of the LibriVox utterances."""
    text = (LIBRIVOX / "transcription").read_text()
    return [(LIBRIVOX / f"{fid}.wav", words) for words, fid in re.findall(r"<s> (.*?) </s> \((.*?)\)", text)]


def wordnet_entries(limit: int = 4000) -> list[tuple[str, str]]:
    """(two-word lemma, first gloss sentence) of WordNet nouns, in file order."""
    out = []
    for line in WORDNET_NOUNS.read_text(encoding="utf-8", errors="ignore").splitlines():
        if line.startswith("  ") or "|" not in line:
            continue
        lemma = line.split()[4]
        gloss = line.split("|", 1)[1].split(";")[0].strip()
        if lemma.count("_") == 1 and lemma.replace("_", "").isalpha() and lemma.islower() and 25 <= len(gloss) <= 70 and '"' not in gloss:
            out.append((lemma.replace("_", " "), gloss))
            if len(out) >= limit:
                break
    return out


def plan(videos: int, seed: int) -> list[VideoSpec]:
    """The benchmark's content: distinct facts per video, drawn with ``seed``."""
    from ragmm.training.data.clipart import openclipart_pairs

    rng = random.Random(seed)
    entries = wordnet_entries()
    rng.shuffle(entries)
    pictures = [(p, c) for p, c in openclipart_pairs() if p.stat().st_size < 400_000]
    rng.shuffle(pictures)
    captions_used: set[str] = set()
    recordings = librivox()
    specs = []
    for v in range(videos):
        scenes = []
        for s in range(3):
            if v < len(recordings) and s == 0:  # real recorded speech in the first videos
                wav, said = str(recordings[v][0]), recordings[v][1]
            else:
                lemma, gloss = entries.pop()
                wav, said = "", f"The {lemma} is {gloss}."
            screen_lemma, _ = entries.pop()
            screen = f"{screen_lemma.title()} {rng.randint(10, 99)}"
            while True:
                picture, caption = pictures.pop()
                if caption not in captions_used:
                    captions_used.add(caption)
                    break
            scenes.append(SceneSpec(said, wav, screen, str(picture), caption))
        title_lemma, title_gloss = entries.pop()
        specs.append(VideoSpec(f"video_{v:03d}.mp4", f"The {title_lemma} show", title_gloss[0].upper() + title_gloss[1:], tuple(scenes)))
    return specs


def queries_for(spec: VideoSpec, rng: random.Random) -> list[BenchQuery]:
    """One query per target modality; each asks for a fact only that modality of one scene holds."""
    picks = rng.sample(range(3), 3)  # the scenes asked about for speech, on-screen text, picture
    out = []
    stem = spec.name.removesuffix(".mp4")
    for target, scene_ix in zip(TARGETS[:3], picks, strict=True):
        scene = spec.scenes[scene_ix]
        if target == "speech":
            words = re.sub(r"[^\w\s']", "", scene.speech).lower().split()
            words = [w for w in words if w not in ("the", "is", "a", "an", "of")]
            text = " ".join(words[: min(len(words), 7)])
        elif target == "ocr":
            text = scene.screen.lower()
        else:
            text = scene.caption.rstrip(".")
        out.append(BenchQuery(f"{stem}-{target}", text, target, spec.name, scene_ix * SCENE_SECONDS, (scene_ix + 1) * SCENE_SECONDS))
    out.append(BenchQuery(f"{stem}-metadata", spec.title.lower().removeprefix("the "), "metadata", spec.name, 0.0, 3 * SCENE_SECONDS))
    return out


def render(spec: VideoSpec, out: Path) -> None:
    """Write one video with ffmpeg (scenes, then concatenated with the metadata)."""
    work = out.parent / f".{out.stem}"
    work.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, scene in enumerate(spec.scenes):
        wav = Path(scene.speech_wav) if scene.speech_wav else work / f"{i}.wav"
        if not scene.speech_wav:
            subprocess.run(["espeak-ng", "-s", "160", "-w", str(wav), scene.speech], check=True, stdout=subprocess.DEVNULL)
        text = scene.screen.replace(":", "\\:").replace("'", "")
        graph = (
            f"color=c={COLOURS[i % len(COLOURS)]}:s=640x360:r=10:d={SCENE_SECONDS}[bg];"
            f"color=c=white:s=280x280:r=10:d={SCENE_SECONDS}[card];"
            "[0:v]scale=260:260:force_original_aspect_ratio=decrease[p];[card][p]overlay=(W-w)/2:(H-h)/2[pic];"
            f"[bg][pic]overlay=(W-w)/2:14,drawtext=fontfile={FONT}:text='{text}':fontcolor=white:fontsize=34:x=(w-text_w)/2:y=h-58[v];"
            f"[1:a]aresample=16000,adelay=300|300,apad,atrim=0:{SCENE_SECONDS}[a]"
        )
        part = work / f"{i}.mkv"
        subprocess.run(
            ["ffmpeg", "-y", "-v", "error", "-loop", "1", "-i", scene.picture, "-i", str(wav),
             "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-t", str(SCENE_SECONDS), "-c:v", "ffv1", "-c:a", "pcm_s16le", "-ac", "1", str(part)],
            check=True,
        )  # fmt: skip
        parts.append(part)
    (work / "list.txt").write_text("".join(f"file '{p.name}'\n" for p in parts))
    subprocess.run(
        ["ffmpeg", "-y", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(work / "list.txt"), "-c:v", "libx264", "-preset", "veryfast", "-crf", "28",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "48k", "-metadata", f"title={spec.title}", "-metadata", f"comment={spec.description}", str(out)],
        check=True,
    )  # fmt: skip
    shutil.rmtree(work)


def build(out: Path, videos: int = 24, seed: int = 0, test_share: float = 0.5) -> dict[str, int]:
    """Write both splits under ``out``; returns videos per split."""
    ensure_packages()
    specs = plan(videos, seed)
    rng = random.Random(seed + 1)
    n_test = round(videos * test_share)
    counts = {}
    for split, chunk in (("test", specs[:n_test]), ("train", specs[n_test:])):
        folder = out / split
        (folder / "videos").mkdir(parents=True, exist_ok=True)
        queries = []
        for spec in chunk:
            render(spec, folder / "videos" / spec.name)
            queries += queries_for(spec, rng)
        (folder / "queries.jsonl").write_text("".join(json.dumps(asdict(q)) + "\n" for q in queries))
        (folder / "qrels.tsv").write_text("".join(f"{q.id}\t0\t{q.video}\t1\n" for q in queries))
        (folder / "specs.json").write_text(json.dumps([asdict(s) for s in chunk], indent=1))
        counts[split] = len(chunk)
    return counts


def load_queries(folder: Path) -> list[BenchQuery]:
    return [BenchQuery(**json.loads(line)) for line in (folder / "queries.jsonl").read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Evaluation


def index_split(folder: Path, store_path: Path, encoders: dict[str, Any], clip_seconds: float = SCENE_SECONDS) -> dict[str, float]:
    """Read every video of a split into a fresh Edge store; returns seconds per stage."""
    import hashlib

    from ragmm.ingest.video import VideoReader
    from ragmm.protocols import SourceFile
    from ragmm.stores.edge import EdgeStore

    if store_path.exists():
        shutil.rmtree(store_path)
    store = EdgeStore(store_path)
    reader = VideoReader(VideoReader.Config(clip_seconds=clip_seconds), encoders)
    for spec in reader.collections():
        store.create_collection(spec)
    t_read = t_encode = 0.0
    for path in sorted((folder / "videos").glob("*.mp4")):
        t0 = time.perf_counter()
        parsed = reader.read(SourceFile(path, path.name, hashlib.sha256(path.read_bytes()).hexdigest()))
        t1 = time.perf_counter()
        (encoded,) = reader.encode([parsed])
        for corpus, points in encoded.points.items():
            store.upsert(corpus, points)
        t_read, t_encode = t_read + t1 - t0, t_encode + time.perf_counter() - t1
    store.flush()
    store.close()
    return {"read_s": t_read, "encode_s": t_encode}


def _positive_clip(points: list[Any], q: BenchQuery) -> Any:
    """The clip of the query's video that overlaps its answer span most."""
    def overlap(p: Any) -> float:
        loc = p.payload["locator"]
        return min(loc["t_end"], q.t_end) - max(loc["t_start"], q.t_start)

    return max((p for p in points if p.payload["source"] == q.video), key=overlap)


def fit_head(store_path: Path, queries: list[BenchQuery], text_encoder: Any, query_head: bool, steps: int = 300, seed: int = 0) -> Any:
    """Fit ``modality-aware``'s scales and offsets (and, with ``query_head``, ``W q + c``) with
    CLaMR's loss on the train split.

    Each step takes one query per video (so the in-batch negatives are other videos' clips),
    its answering clip as the positive and its target modality as the modality label. The
    affine map is written into the embeddings so that :func:`clamr_loss` itself scores it: rows
    of modality ``m`` become ``[a_m r, b_m, e_m]`` and the query ``[q, 1, g(q)]``, whose dot
    product is ``a_m q.r + b_m + g_m(q)`` (``normalize=False``).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ragmm.ingest.video import CLIP, MODALITIES, ROWS
    from ragmm.retrievers.video import ModalityHead
    from ragmm.stores.edge import EdgeStore
    from ragmm.training.losses.clamr import clamr_loss

    torch.manual_seed(seed)
    rng = random.Random(seed)
    store = EdgeStore(store_path)
    points = list(store.scroll(CLIP, with_vectors=True))
    store.close()
    M, D = len(MODALITIES), text_encoder.dim
    L = max(max(p.payload["metadata"]["rows"].count(m) for m in MODALITIES) for p in points)
    items = torch.zeros(len(points), M, L, D)  # (N, M, L, D) rows per modality, padded
    mask = torch.zeros(len(points), M, L, dtype=torch.bool)
    for n, p in enumerate(points):
        rows, tags = np.asarray(p.vectors[ROWS], np.float32), p.payload["metadata"]["rows"]
        for m, name in enumerate(MODALITIES):
            idx = [i for i, t in enumerate(tags) if t == name]
            items[n, m, : len(idx)] = torch.from_numpy(rows[idx])
            mask[n, m, : len(idx)] = True
    index = {p.id: n for n, p in enumerate(points)}
    positives = torch.tensor([index[_positive_clip(points, q).id] for q in queries])
    labels = torch.tensor([MODALITIES.index(q.modality) for q in queries])
    qv = torch.from_numpy(np.asarray(text_encoder.encode_query([q.text for q in queries]), np.float32))  # (Q, D)
    by_video: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_video.setdefault(q.video, []).append(i)
    alpha, offset = torch.zeros(M, requires_grad=True), torch.zeros(M, requires_grad=True)
    weight, bias = torch.zeros(M, D, requires_grad=query_head), torch.zeros(M, requires_grad=query_head)
    opt = torch.optim.Adam([alpha, offset] + ([weight, bias] if query_head else []), lr=0.05)
    extra_ids = torch.eye(M)

    def scales() -> torch.Tensor:
        return F.softplus(alpha) / F.softplus(torch.zeros(()))  # a_m > 0, 1 at the start

    for _ in range(steps):
        batch = torch.tensor([rng.choice(ids) for ids in by_video.values()])  # (B,) one query per video
        pos = positives[batch]
        extra = torch.cat([offset[:, None], extra_ids], dim=1)  # (M, 1 + M)
        rows = torch.cat([items[pos] * scales()[None, :, None, None], extra[None, :, None, :].expand(len(batch), M, L, 1 + M)], dim=-1)  # (B, M, L, D')
        g = qv[batch] @ weight.T + bias  # (B, M)
        query = torch.cat([qv[batch], torch.ones(len(batch), 1), g], dim=1)[:, None, :]  # (B, 1, D')
        loss = clamr_loss(
            query, rows, labels[batch], query_mask=torch.ones(len(batch), 1, dtype=torch.bool), item_mask=mask[pos], scale=20.0, normalize=False
        )
        if query_head:
            loss = loss + 1e-3 * weight.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ModalityHead(scales().detach().numpy(), offset.detach().numpy(), weight.detach().numpy(), bias.detach().numpy())


def evaluate_strategies(store_path: Path, queries: list[BenchQuery], encoders: dict[str, Any], heads: dict[str, Any]) -> dict[str, Any]:
    """Metrics per strategy: nDCG@10, Recall@1/5 overall and per target modality, time-span hit
    rate, and modality-selection precision/recall (the modality that matched the top right clip)."""
    from ragmm.evaluation.retrieval import EvalQuery, evaluate
    from ragmm.ingest.video import CLIP
    from ragmm.retrievers.video import STRATEGIES, VideoRetriever
    from ragmm.stores.edge import EdgeStore
    from ragmm.types import Query

    store = EdgeStore(store_path)
    by_id = {q.id: q for q in queries}
    eval_queries = [EvalQuery(q.id, q.text, q.modality) for q in queries]
    qrels = {q.id: {q.video: 1} for q in queries}
    variants = {s: (s, None) for s in STRATEGIES if s != "modality-aware"}
    variants.update({name: ("modality-aware", head) for name, head in heads.items()})
    report: dict[str, Any] = {}
    for name, (strategy, head) in variants.items():
        retriever = VideoRetriever(VideoRetriever.Config(strategy=strategy, candidates=100), store, encoders)
        retriever.head = head
        top: dict[str, Any] = {}

        def search(q: EvalQuery, k: int, retriever: Any = retriever, top: dict[str, Any] = top) -> list[tuple[str, float]]:
            hits = retriever.retrieve(Query(q.text), CLIP, k=k)
            top[q.id] = hits
            return [(h.item.source, h.score) for h in hits]

        overall, per_modality, _ = evaluate(eval_queries, qrels, search, depth=50, progress=False)
        span_hits, chosen = 0, {}
        for qid, hits in top.items():
            q = by_id[qid]
            if hits and hits[0].item.source == q.video:
                loc = hits[0].item.locator
                span_hits += (loc.t_start or 0) < q.t_end and (loc.t_end or 0) > q.t_start
            right = next((h for h in hits if h.item.source == q.video), None)
            chosen[qid] = (right.item.metadata.get("matched") or {}).get("modality") if right else None
        selection = {}
        for m in sorted({q.modality for q in queries}):
            picked = [qid for qid, c in chosen.items() if c == m]
            wanted = [q.id for q in queries if q.modality == m]
            selection[m] = {
                "precision": sum(by_id[qid].modality == m for qid in picked) / len(picked) if picked else 0.0,
                "recall": sum(chosen[qid] == m for qid in wanted) / len(wanted),
            }
        report[name] = {"overall": overall, "by_modality": per_modality, "span_hit_rate": span_hits / len(queries), "modality_selection": selection}
    store.close()
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    """nDCG@10 per strategy, overall and per target modality (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(report)
    groups = ["overall", *TARGETS]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        r = report[name]
        values = [r["overall"]["ndcg@10"], *(r["by_modality"].get(m, {}).get("ndcg@10", 0.0) for m in TARGETS)]
        ax.bar(np.arange(len(groups)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups)
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, 1.02)
    ax.set_title("Video benchmark (test split): scoring strategies by target modality")
    ax.legend(fontsize=7, ncols=5, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_eval(data: Path, out: Path, reuse: bool = False) -> dict[str, Any]:
    from ragmm.encoders.image_text import ImageTextEncoder
    from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder

    out.mkdir(parents=True, exist_ok=True)
    encoders = {"text": SentenceTransformerEncoder(), "image": ImageTextEncoder(ImageTextEncoder.Config())}
    timings = {}
    for split in ("train", "test"):
        done = out / f"index-{split}.json"  # written last: a store without it is incomplete
        if reuse and done.exists():
            timings[split] = json.loads(done.read_text())
            continue
        timings[split] = index_split(data / split, out / f"store-{split}", encoders)
        done.write_text(json.dumps(timings[split]))
        print(f"indexed {split}: {timings[split]}", file=sys.stderr)
    train_queries = load_queries(data / "train")
    heads = {
        "modality-aware": fit_head(out / "store-train", train_queries, encoders["text"], query_head=False),
        "modality-aware+head": fit_head(out / "store-train", train_queries, encoders["text"], query_head=True),
    }
    heads["modality-aware"].save(out / "modality-aware.npz")
    heads["modality-aware+head"].save(out / "modality-aware-head.npz")
    test_queries = load_queries(data / "test")
    report = {
        "queries": len(test_queries),
        "train_queries": len(train_queries),
        "calibration": {name: {"scale": h.scale, "offset": dict(zip(h.scale, h._offset.tolist(), strict=True))} for name, h in heads.items()},
        "index_seconds": timings,
        "strategies": evaluate_strategies(out / "store-test", test_queries, encoders, heads),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot(report["strategies"], out / "strategies.png")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="generate the videos, queries and qrels")
    b.add_argument("--out", type=Path, default=Path("data/videobench"))
    b.add_argument("--videos", type=int, default=24)
    b.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("eval", help="index both splits, fit the modality-aware head on train, evaluate every strategy on test")
    e.add_argument("--data", type=Path, default=Path("data/videobench"))
    e.add_argument("--out", type=Path, default=Path("eval/videobench"))
    e.add_argument("--reuse", action="store_true", help="keep the stores a finished earlier run indexed")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(json.dumps(build(args.out, args.videos, args.seed)))
        return
    report = run_eval(args.data, args.out, args.reuse)
    for name, r in report["strategies"].items():
        o = r["overall"]
        print(f"{name:22s} nDCG@10 {o['ndcg@10']:.3f}  R@1 {o['recall@1']:.3f}  R@5 {o['recall@5']:.3f}  span {r['span_hit_rate']:.3f}  "
              + "  ".join(f"{m} {r['by_modality'].get(m, {}).get('ndcg@10', 0):.2f}" for m in TARGETS))  # fmt: skip


if __name__ == "__main__":
    main()
