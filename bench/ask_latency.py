"""``Pipeline.ask`` latency split by stage (encode, route, retrieve, rerank, generate), on the demo
corpus and on a 100,000-paragraph corpus, for each router/reranker variant.

The baseline is the same pipeline with the ``all`` router and the ``none`` reranker (score
order), run in the same process over the same questions: what routing and reranking add is
the difference of the ``route`` and ``rerank`` stages (and of the totals) against it. The
question's encode, shared by the trained router and the retrievers, is its own stage
(``encode``), whichever of them asks for it first. The
generator is ``extractive`` throughout, so the figures are about retrieval, not an LM.

Corpora:

- ``demo``: ``examples/docs`` and ``examples/videos`` indexed as ``make demo`` does (OCR on),
  asked 40 questions written about them (and some about nothing in them);
- ``100k``: ``--real`` seeded synthetic paragraphs encoded by the packaged encoder, plus
  synthetic neighbours up to ``--points`` (the method of ``bench/retrieve_latency.py``),
  asked question-like strings over their topics.

Each variant runs its questions as one block after a warm-up, two passes in reversed
variant order (``bench/common.py`` ``run_variants``). Goal: routing and reranking together
add at most 20 ms p50 at k = 5.

Usage:
    .venv/bin/python bench/ask_latency.py                       # demo + 100k, default variants
    .venv/bin/python bench/ask_latency.py --small               # demo + 5k points
    .venv/bin/python bench/ask_latency.py --variants all:none,trained:none,trained:cross-encoder:models/reranker
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import busy_processes, machine, percentiles, run_variants, save
from retrieve_latency import real_items, synthesise

ROOT = Path(__file__).resolve().parents[1]
GOAL_ADDED_P50_MS = 20.0
K = 5
STAGES = ("encode", "route", "retrieve", "rerank", "generate", "total")

DEMO_QUESTIONS = [
    "How does a lighthouse tell ships which light they are looking at?",
    "Who designed the lighthouse lens?",
    "What is a Fresnel lens?",
    "How far can a lighthouse be seen?",
    "How do honeybees tell each other where flowers are?",
    "What does the waggle dance mean?",
    "How many workers live in a bee colony?",
    "What does the queen bee do?",
    "When can visitors come to the apiary?",
    "Who walked on the Moon first?",
    "When did Apollo 11 land?",
    "What did the astronauts bring back from the Moon?",
    "Why do volcanoes erupt?",
    "What is magma made of?",
    "Which volcano erupted in 1815?",
    "What was the year without a summer?",
    "When will the garden club's water pump be repaired?",
    "How much will the garden club spend on seeds?",
    "When is the harvest fair?",
    "a picture of a rocket",
    "a drawing of a bee",
    "an image of a lighthouse on a rock",
    "What is written on the apiary notice?",
    "Show me the honeybee picture",
    "Which documents talk about ships?",
    "Summarise the document about volcanoes",
    "What happened on the Moon landing day?",
    "Is there a video about gardening?",
    "what did the speaker say about the budget?",
    "what titles appear on screen in the garden video?",
    "hello, how are you?",
    "what is two plus two?",
    "tell me a joke",
    "thanks, that is all",
    "How tall is the Eiffel Tower?",
    "What is the capital of Australia?",
    "How do I bake sourdough bread?",
    "Which programming language is fastest?",
    "What colour is a ripe banana?",
    "Who wrote Sense and Sensibility?",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="all:none,trained:none", help="router:reranker[:reranker model] pairs, comma-separated; the first is the baseline")
    p.add_argument("--points", type=int, default=100_000, help="points of the large corpus (0 skips it)")
    p.add_argument("--real", type=int, default=10_000, help="of which encoded from real text")
    p.add_argument("--questions", type=int, default=60, help="questions asked of the large corpus")
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small", action="store_true", help="smoke run: 5,000 points (1,000 real), 20 questions")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.small:
        args.points, args.real, args.questions = 5_000, 1_000, 20
    return args


def variant_sections(variant: str) -> tuple[str, dict[str, Any]]:
    """``"trained:cross-encoder:models/x"`` -> a name and the config sections it sets."""
    router, _, rest = variant.partition(":")
    reranker, _, model = (rest or "none").partition(":")
    sections: dict[str, Any] = {"router": {"type": router}, "reranker": {"type": reranker, **({"model": model} if model else {})}}
    return variant, sections


def pipeline(store: Path, extra: dict[str, Any], like: Any = None) -> Any:
    """A pipeline on the Edge store at ``store``; with ``like``, sharing its open store and
    encoders (a store's files open once per process)."""
    from ragmm.config import load_config
    from ragmm.pipeline import Pipeline

    sections = {"store": {"type": "edge", "path": str(store)}, "generator": {"type": "extractive"}, **extra}
    pipe = Pipeline(load_config(None, sections), store=None if like is None else like.store)
    if like is not None:
        for modality in like.config.encoders:
            if like.encoders.built(modality):
                pipe.encoders.use(modality, like.encoders[modality])
    return pipe


def build_demo(store: Path) -> int:
    with pipeline(store, {}) as pipe:
        report = pipe.index([ROOT / "examples" / "docs", ROOT / "examples" / "videos"], corpus_root=ROOT / "examples", progress=False)
    return sum(report.items.values())


def build_large(store: Path, points: int, real: int, seed: int) -> tuple[int, list[str]]:
    """The 100k corpus through the Store API; returns its size and the questions to ask."""
    import numpy as np

    from ragmm.ingest.chunking import PARAGRAPH
    from ragmm.ingest.text import text_spec
    from ragmm.protocols import DENSE, StoredPoint

    items, topics, factory = real_items(real, 50, seed)
    with pipeline(store, {}) as pipe:
        enc = pipe.encoder("text")
        vectors = enc.encode_document([it.text for it in items])
        rng = np.random.default_rng(seed)
        nn = (vectors[:500] @ vectors.T)
        nn[np.arange(500), np.arange(500)] = -1
        noise = float(np.sqrt(max(2 - 2 * float(np.median(nn.max(axis=1))), 1e-4)))
        allv, origin = synthesise(vectors, points, noise, rng)
        pipe.store.create_collection(text_spec(PARAGRAPH, enc))
        for start in range(0, points, 2048):
            batch = [
                StoredPoint(id=f"00000000-0000-4000-8000-{i:012d}", payload=items[origin[i]].to_payload(), vectors={DENSE: allv[i]})
                for i in range(start, min(points, start + 2048))
            ]
            pipe.store.upsert(PARAGRAPH, batch)
        pipe.store.flush()
        pipe.store.optimize()
    questions = [factory.query(topics[int(rng.integers(len(topics)))]) for _ in range(10_000)]
    return points, list(dict.fromkeys(questions))


def measure(store: Path, variants: Sequence[str], questions: Sequence[str], passes: int, warmup: int) -> dict[str, Any]:
    """Per variant: p50/p95 of each stage, and what routing + reranking add to the baseline."""
    pipes: dict[str, Any] = {}
    for name, sections in map(variant_sections, variants):
        first = next(iter(pipes.values()), None)
        pipes[name] = pipeline(store, sections, like=first)
        if first is None:
            pipes[name].ask(questions[0], k=K)  # builds the encoders the others then share
    stage_times: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STAGES} for name in pipes}

    def asker(name: str) -> Any:
        pipe = pipes[name]

        def ask(q: str) -> Any:
            pipe.embeddings.clear()  # every ask pays its query encode, as a fresh question does
            answer = pipe.ask(q, k=K)
            for s in STAGES:
                stage_times[name][s].append(answer.timings.get(s, 0.0))
            return [h.item.id for h in answer.evidence]

        return ask

    totals, _ = run_variants([(name, asker(name), nullcontext) for name in pipes], questions, questions[:n_warm_of(questions, warmup)], passes)
    # Each pass ran a variant's warm-up questions, then the measured ones: keep the measured.
    n_warm = n_warm_of(questions, warmup)
    block = n_warm + len(questions)
    for times in stage_times.values():
        for s, t in times.items():
            times[s] = [x for i, x in enumerate(t) if i % block >= n_warm]
    base = variants[0]
    out: dict[str, Any] = {}
    for name in pipes:
        st = {s: percentiles(t) for s, t in stage_times[name].items()}
        added = st["route"]["p50_ms"] + st["rerank"]["p50_ms"] - stage_times_p50(stage_times[base], ("route", "rerank"))
        out[name] = {
            "stages": st,
            "ask": totals[name],
            "route_plus_rerank_p50_ms": round(st["route"]["p50_ms"] + st["rerank"]["p50_ms"], 3),
            # route + rerank stages against the baseline's; the query encode the router and
            # the retrievers share is its own stage ("encode"), whichever asks first.
            "added_vs_baseline_p50_ms": round(added, 3),
            "total_added_vs_baseline_p50_ms": round(totals[name]["p50_ms"] - totals[base]["p50_ms"], 3),
            "total_ratio_to_baseline_p50": round(totals[name]["p50_ms"] / max(totals[base]["p50_ms"], 1e-9), 3),
        }
    next(iter(pipes.values())).close()  # the shared store
    return out


def n_warm_of(questions: Sequence[str], warmup: int) -> int:
    return min(warmup, len(questions))


def stage_times_p50(times: dict[str, list[float]], stages: Sequence[str]) -> float:
    return sum(percentiles(times[s])["p50_ms"] for s in stages)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="ragmm-ask-bench-"))
    results: dict[str, Any] = {"machine": machine(), "busy_at_start": busy_processes(), "k": K, "variants": variants, "goal_added_p50_ms": GOAL_ADDED_P50_MS}
    try:
        print("indexing the demo corpus ...", flush=True)
        n = build_demo(tmp / "demo")
        print(f"demo: {n} items; asking {len(DEMO_QUESTIONS)} questions per variant", flush=True)
        results["demo"] = {"items": n, **measure(tmp / "demo", variants, DEMO_QUESTIONS, args.passes, args.warmup)}
        if args.points:
            print(f"building the {args.points:,}-point corpus ...", flush=True)
            n, questions = build_large(tmp / "large", args.points, args.real, args.seed)
            results["large"] = {"items": n, **measure(tmp / "large", variants, questions[: args.questions], args.passes, args.warmup)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for corpus in ("demo", "large"):
        for name in variants:
            r = results.get(corpus, {}).get(name)
            if r:
                st = r["stages"]
                print(
                    f"{corpus:5s} {name:28s} ask p50 {r['ask']['p50_ms']:8.1f} ms p95 {r['ask']['p95_ms']:8.1f} | encode {st['encode']['p50_ms']:.1f} route {st['route']['p50_ms']:.2f} "
                    f"retrieve {st['retrieve']['p50_ms']:.1f} rerank {st['rerank']['p50_ms']:.2f} generate {st['generate']['p50_ms']:.1f} | "
                    f"route+rerank added {r['added_vs_baseline_p50_ms']:+.2f} ms, total {r['total_added_vs_baseline_p50_ms']:+.1f} ms (goal <= {GOAL_ADDED_P50_MS})"
                )
    print(f"results: {save('ask_latency' + ('_small' if args.small else ''), results, args.out)}")
    return results


if __name__ == "__main__":
    main()
