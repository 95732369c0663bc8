"""Retrieve latency and recall over 100,000 stored paragraphs.

Stored vectors: ``--real`` seeded synthetic paragraphs (topical, 40-80 words) encoded with
the real packaged encoder, plus synthetic neighbours up to ``--points``: each is a real
vector moved by noise drawn from the data itself (a random combination of differences of
real vectors, so it stays in the subspace real embeddings occupy) and re-normalised. With
``--noise auto`` the noise is sized so a synthetic point sits about as far from its origin
as a real paragraph sits from its nearest real neighbour. Every point carries the payload of
a real item (``Item.to_payload()``). Queries are real: question-like strings over the
corpus topics, encoded by the same encoder.

The vectors are written through ragmm's Store API into a fresh Qdrant Edge store (then
``optimize()``), and into qdrant-client local mode: in memory with every point (its search
code is the same on disk), and on disk with ``--local-path-points`` points only, since it
commits to SQLite once per point. Measured warm over ``--queries`` distinct queries, one
block of all queries per variant, p50/p95:

(a) ``Pipeline.retrieve(q, k=10, corpora=["paragraph"])`` as configured (includes query
    encoding; the retriever's embedding cache is off so no variant reuses another's work),
    with torch held at one thread, and its body without the per-call ``threadpool_limits``;
(b) the Edge store's ``search`` alone (limit 10, and 20 = what the pipeline asks for);
(c) numpy brute force (matrix-vector product + argpartition) over the same vectors;
(d) qdrant-client local mode ``query_points``;
(e) query encoding alone (bf16 as configured, one torch thread, fp32 at one thread), and
    encoding followed by numpy brute force (where torch and BLAS meet);

(b)-(e) with BLAS left alone and with one BLAS thread (threadpoolctl); recall@10 against the
exact numpy top-10; the fixed costs inside ``Pipeline.retrieve``; and the time to open the
store in a fresh process (open + first query), apart from the Python start and imports.
Goals: (a) p50 <= 15 ms with recall@10 >= 0.95; open <= 0.5 s.

The machine's load and the processes using its CPU are written with the figures: on 2
cores another busy process changes torch's multi-threaded latency by an order of magnitude.

Usage:
    .venv/bin/python bench/retrieve_latency.py           # full run
    .venv/bin/python bench/retrieve_latency.py --small   # smoke run
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import busy_processes, machine, percentiles, recall, run_variants, save, time_each, write_config
from synthetic import TextFactory, nn_cosine, synthesise

GOAL_P50_MS = 15.0
GOAL_RECALL = 0.95
GOAL_OPEN_S = 0.5
K = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=100_000, help="points stored")
    p.add_argument("--real", type=int, default=10_000, help="of which encoded from real text; the rest are synthetic neighbours")
    p.add_argument("--per-topic", type=int, default=50, help="paragraphs per topic (per source file)")
    p.add_argument("--noise", default="auto", help="synthetic noise norm, or 'auto' (match the real nearest-neighbour distance)")
    p.add_argument("--queries", type=int, default=300, help="measured queries (distinct; none repeats a warm-up query)")
    p.add_argument("--warmup", type=int, default=30, help="warm-up queries per path")
    p.add_argument("--passes", type=int, default=2, help="passes over the queries per variant; the order of variants reverses each pass")
    p.add_argument(
        "--local-path-budget-s",
        type=float,
        default=120.0,
        help="seconds allowed for writing qdrant-client local mode on disk (path=...), which commits to SQLite once per point "
        "(1-11 ms each here); it stops after the batch that crosses the budget. Queries run on in-memory local mode with every "
        "point (the same search code; only persistence differs)",
    )
    p.add_argument("--ef", default="32,64,128,256,512", help="HNSW search breadths of the Edge recall/latency sweep")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the cProfile of Pipeline.retrieve")
    p.add_argument("--open-repeats", type=int, default=5, help="fresh processes per open measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small", action="store_true", help="smoke run: 5,000 points (1,000 real), 60 queries")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (store and local-mode folder)")
    p.add_argument("--out", default=None, help="results file (default bench/results/retrieve_latency[_small].json)")
    args = p.parse_args(argv)
    if args.small:
        args.points, args.real, args.queries, args.warmup, args.open_repeats, args.local_path_budget_s = 5_000, 1_000, 60, 10, 2, 10.0
    args.real = min(args.real, args.points)
    return args


# -- data ---------------------------------------------------------------------------------


def real_items(n: int, per_topic: int, seed: int) -> tuple[list[Any], list[Any], TextFactory]:
    """``n`` paragraph items in files of ``per_topic`` paragraphs, and each file's topic."""
    from ragmm.ingest.chunking import PARAGRAPH
    from ragmm.types import Item, Locator, content_hash

    f = TextFactory(seed)
    items, topics = [], []
    while len(items) < n:
        topic = f.topic()
        topics.append(topic)
        source = f"synthetic/doc{len(topics) - 1:05d}.txt"
        # document() gives the whole text (title, blank line, paragraphs) and the paragraphs
        whole, paras = f.document(topic, min(per_topic, n - len(items)))
        title = whole.split("\n\n", 1)[0]
        text = title + "\n\n" + "\n\n".join(paras)
        digest, cursor = content_hash(text), len(title) + 2
        for para in paras:
            items.append(
                Item(
                    corpus=PARAGRAPH,
                    source=source,
                    text=para,
                    locator=Locator(char_start=cursor, char_end=cursor + len(para)),
                    source_hash=digest,
                    metadata={"title": title.strip()},
                )
            )
            cursor += len(para) + 2
    return items, topics, f


def exact_topk(vectors: Any, q: Any, k: int) -> Any:
    """Indices of the ``k`` best rows for query ``q``, best first (the numpy baseline)."""
    import numpy as np

    scores = vectors @ q  # (N,)
    idx = np.argpartition(-scores, k)[:k]
    return idx[np.argsort(-scores[idx])]


# -- measuring ----------------------------------------------------------------------------


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """``torch.set_num_threads(n)`` for the block (a bench-side setting ragmm does not make)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """One ``threadpool_limits`` held around the whole block (not entered per call)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


OPEN_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from ragmm.stores.edge import EdgeStore
import qdrant_edge
t1 = time.perf_counter()
store = EdgeStore(sys.argv[1])
n = store.count("paragraph")
t2 = time.perf_counter()
hits = store.search("paragraph", json.loads(sys.argv[2]), using="dense", limit=10)
t3 = time.perf_counter()
store.close()
print(json.dumps({"import_s": t1 - t0, "open_count_s": t2 - t1, "first_search_s": t3 - t2, "open_and_first_query_s": t3 - t1, "count": n, "hits": len(hits)}))
"""

RETRIEVE_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from ragmm.pipeline import Pipeline
t1 = time.perf_counter()
pipe = Pipeline.from_config(sys.argv[1])
hits = pipe.retrieve(sys.argv[2], k=10, corpora=["paragraph"])
t2 = time.perf_counter()
hits = pipe.retrieve(sys.argv[3], k=10, corpora=["paragraph"])
t3 = time.perf_counter()
pipe.close()
print(json.dumps({"import_s": t1 - t0, "first_retrieve_s": t2 - t1, "second_retrieve_s": t3 - t2, "hits": len(hits)}))
"""


def run_child(args: list[str], repeats: int) -> tuple[list[float], list[dict[str, Any]]]:
    """Wall seconds of ``repeats`` fresh Python processes, and what each printed (JSON)."""
    walls, outs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, check=False)
        walls.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
        outs.append(json.loads(last) if last.startswith("{") else {})
    return walls, outs


def median(xs: Sequence[float]) -> float:
    import numpy as np

    return round(float(np.median(xs)), 4)


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    from ragmm.ingest.indexer import DENSE, text_spec
    from ragmm.pipeline import Pipeline
    from ragmm.protocols import StoredPoint
    from ragmm.types import Item, Locator

    results: dict[str, Any] = {"benchmark": "retrieve_latency", "args": vars(args), "machine": machine(), "busy_at_start": busy_processes()}
    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="ragmm-bench-retrieve-"))
    try:
        # cache_size = 0: every measured query is new anyway, but several variants run the
        # same query, and a cached embedding would skip the encoder.
        cfg = write_config(tmp, tmp / "store", '[retriever]\ntype = "dense"\ncache_size = 0\n')
        pipe = Pipeline.from_config(cfg)
        enc = pipe.encoder("text")
        enc.encode_document(["warm up the model"] * 8)
        from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder

        enc32 = SentenceTransformerEncoder(SentenceTransformerEncoder.Config(precision="fp32"))  # diagnostic variants
        enc32.encode_query(["warm"])
        import copy

        import torch

        # bf16 weights cast once (no autocast): what encoding costs without autocast's
        # per-call fp32 -> bf16 weight casts.
        bf16_model = copy.deepcopy(enc32.model).to(torch.bfloat16)

        def encode_bf16_weights(q: str) -> Any:
            with torch.inference_mode():
                return bf16_model.encode([q], normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False).float().numpy()
        results["machine"]["threadpools"] = [{k: i.get(k) for k in ("user_api", "internal_api", "num_threads", "filepath")} for i in threadpool_info()]

        # Real paragraphs, encoded with the real encoder.
        items, topics, factory = real_items(args.real, args.per_topic, args.seed)
        t0 = time.perf_counter()
        real = enc.encode_document([it.text for it in items])  # (R, D)
        encode_s = time.perf_counter() - t0
        print(f"encoded {len(items)} real paragraphs ({len(topics)} files) in {encode_s:.1f} s ({len(items) / encode_s:.1f}/s)")

        # Synthetic neighbours, sized against the real nearest-neighbour distance.
        sample = rng.choice(len(real), size=min(1000, len(real)), replace=False)
        real_nn = nn_cosine(real, sample)
        if args.noise == "auto":
            c = float(np.median(real_nn))
            noise = float(np.sqrt(max(1.0 / c**2 - 1.0, 1e-4)))
        else:
            noise = float(args.noise)
        vectors, origin = synthesise(real, args.points, noise, rng)  # (N, D)
        syn = np.arange(len(real), args.points)
        syn_sample = rng.choice(syn, size=min(1000, len(syn)), replace=False) if len(syn) else np.array([], dtype=np.int64)
        structure = {
            "real": len(real),
            "synthetic": len(syn),
            "noise": round(noise, 4),
            "real_nn_cosine_median_among_real": round(float(np.median(real_nn)), 4),
        }
        if len(syn_sample):
            structure["synthetic_cosine_to_origin_median"] = round(float(np.median(np.sum(vectors[syn_sample] * vectors[origin[syn_sample]], axis=1))), 4)
            structure["synthetic_nn_cosine_median_among_all"] = round(float(np.median(nn_cosine(vectors, syn_sample))), 4)
            structure["real_nn_cosine_median_among_all"] = round(float(np.median(nn_cosine(vectors, sample))), 4)
        print(f"synthesised {len(syn)} neighbours: " + ", ".join(f"{k} {v}" for k, v in structure.items()))

        # Payloads of real items: a synthetic point is a paragraph of another (virtual) copy of its source.
        def item_of(i: int) -> Item:
            it = items[origin[i]]
            if i < len(items):
                return it
            return Item(
                corpus=it.corpus,
                source=f"synthetic/extra/{i:07d}-{it.source.rsplit('/', 1)[-1]}",
                text=it.text,
                locator=Locator(char_start=it.locator.char_start, char_end=it.locator.char_end),
                source_hash=it.source_hash,
                metadata=dict(it.metadata),
            )

        all_items = [item_of(i) for i in range(args.points)]
        ids = [it.id for it in all_items]
        if len(set(ids)) != len(ids):  # every synthetic point has its own source: cannot happen, but say so
            raise RuntimeError("duplicate point ids in the synthetic set")
        payloads = [it.to_payload() for it in all_items]
        id_index = {pid: i for i, pid in enumerate(ids)}

        # Queries: real, question-like, over the corpus topics; none repeats another.
        wanted = args.queries + args.warmup
        queries: list[str] = []
        seen: set[str] = set()
        while len(queries) < wanted:
            q = factory.query(topics[int(rng.integers(len(topics)))])
            if q not in seen:
                seen.add(q)
                queries.append(q)
        warm_q, meas_q = queries[: args.warmup], queries[args.warmup :]

        # Query vectors of the store-only paths (one thread: the same vectors, computed faster).
        with torch_threads(1):
            qvec = {q: enc.encode_query([q])[0] for q in queries}

        # Edge store through ragmm's Store API.
        store = pipe.store
        t0 = time.perf_counter()
        store.create_collection(text_spec("paragraph", enc))
        for s in range(0, args.points, 1024):
            store.upsert("paragraph", [StoredPoint(id=ids[i], payload=payloads[i], vectors={DENSE: vectors[i]}) for i in range(s, min(s + 1024, args.points))])
        store.flush()
        upsert_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        optimized = store.optimize()
        optimize_s = time.perf_counter() - t0
        results["build"] = {
            "encode_real_s": round(encode_s, 2),
            "edge_upsert_s": round(upsert_s, 2),
            "edge_optimize_s": round(optimize_s, 2),
            "edge_optimized": optimized,
            "edge_count": store.count("paragraph"),
        }
        print(f"edge: upsert {args.points} in {upsert_s:.1f} s, optimize {optimize_s:.1f} s ({optimized}), count {store.count('paragraph')}")

        # qdrant-client local mode: on disk for a few points (its upsert rate), in memory for all
        # (the same LocalCollection search code; only persistence differs).
        from qdrant_client import QdrantClient, models

        def fill(client: Any, n: int, budget: float | None = None) -> tuple[int, float]:
            t0 = time.perf_counter()
            client.create_collection("paragraph", vectors_config={DENSE: models.VectorParams(size=vectors.shape[1], distance=models.Distance.COSINE)})
            done = 0
            for s in range(0, n, 1024):
                batch = range(s, min(s + 1024, n))
                client.upsert("paragraph", points=[models.PointStruct(id=ids[i], vector={DENSE: vectors[i].tolist()}, payload=payloads[i]) for i in batch])
                done = batch.stop
                if budget is not None and time.perf_counter() - t0 > budget:
                    break
            return done, time.perf_counter() - t0

        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Local mode is not recommended")
            on_disk = QdrantClient(path=str(tmp / "local"))
            disk_n, disk_s = fill(on_disk, args.points, args.local_path_budget_s)
            on_disk.close()
            local = QdrantClient(":memory:")
            _, mem_s = fill(local, args.points)
        results["build"]["local_path_points"] = disk_n
        results["build"]["local_path_upsert_s"] = round(disk_s, 2)
        results["build"]["local_path_points_per_s"] = round(disk_n / disk_s, 1)
        results["build"]["local_path_estimated_s_for_all"] = round(args.points * disk_s / max(disk_n, 1), 0)
        results["build"]["local_memory_points"] = args.points
        results["build"]["local_memory_upsert_s"] = round(mem_s, 2)
        print(
            f"qdrant-client local mode: on disk {disk_n} points in {disk_s:.1f} s "
            f"({disk_n / disk_s:.0f}/s: ~{args.points * disk_s / max(disk_n, 1) / 60:.1f} min for {args.points}); "
            f"in memory {args.points} points in {mem_s:.1f} s (queries run here)"
        )

        # Exact top-10 (numpy, float32) of every query, over all points and over local mode's subset.
        truth = {q: [ids[i] for i in exact_topk(vectors, qvec[q], K)] for q in meas_q}
        exact_top1 = [float(vectors[id_index[truth[q][0]]] @ qvec[q]) for q in meas_q]
        exact_top10 = [float(vectors[id_index[truth[q][-1]]] @ qvec[q]) for q in meas_q]
        same_origin = np.mean([np.mean([origin[id_index[t]] == origin[id_index[truth[q][0]]] for t in truth[q]]) for q in meas_q])
        structure.update(
            {
                "query_top1_cosine_median": round(float(np.median(exact_top1)), 4),
                "query_top10_cosine_median": round(float(np.median(exact_top10)), 4),
                "query_top10_share_from_top1_origin": round(float(same_origin), 3),
            }
        )
        results["structure"] = structure

        # The paths.
        from ragmm.types import Query

        def pipeline_retrieve(q: str) -> list[str]:
            return [h.item.id for h in pipe.retrieve(q, k=K, corpora=["paragraph"])]

        def pipeline_body(q: str) -> list[str]:
            """What Pipeline.retrieve does, through the same public parts, minus threadpool_limits."""
            query = Query(text=q, k=K, corpora=("paragraph",))
            targets = pipe.router.route(query, pipe.available_corpora())
            per_corpus = max(K, pipe.config.retrieve.candidates)
            hits = [h for c in targets for h in pipe.retriever.retrieve(query, c, per_corpus)]
            return [h.item.id for h in pipe.reranker.rerank(query, hits, K)]

        def edge_search(limit: int) -> Callable[[str], list[str]]:
            return lambda q: [p.id for p in store.search("paragraph", qvec[q], using=DENSE, limit=limit)]

        def numpy_search(q: str) -> list[str]:
            return [ids[i] for i in exact_topk(vectors, qvec[q], K)]

        def encode_numpy(q: str) -> list[str]:
            return [ids[i] for i in exact_topk(vectors, enc.encode_query([q])[0], K)]

        def local_search(q: str) -> list[str]:
            return [str(p.id) for p in local.query_points("paragraph", query=qvec[q].tolist(), using=DENSE, limit=K, with_payload=True).points]

        none, t1, b1 = nullcontext, lambda: torch_threads(1), lambda: blas_threads(1)
        variants = [
            ("pipeline_retrieve", pipeline_retrieve, none),  # (a), as configured
            ("pipeline_retrieve_torch1", pipeline_retrieve, t1),
            ("pipeline_body_without_blas_limit", pipeline_body, none),
            ("encode_query", lambda q: enc.encode_query([q]), none),
            ("encode_query_torch1", lambda q: enc.encode_query([q]), t1),
            ("encode_query_fp32", lambda q: enc32.encode_query([q]), none),
            ("encode_query_fp32_torch1", lambda q: enc32.encode_query([q]), t1),
            ("encode_query_bf16_weights", encode_bf16_weights, none),
            ("encode_plus_numpy", encode_numpy, none),
            ("encode_plus_numpy_blas1", encode_numpy, b1),
            ("edge_search_k10", edge_search(K), none),  # (b)
            ("edge_search_k10_blas1", edge_search(K), b1),
            ("edge_search_k20", edge_search(20), none),
            ("numpy_bruteforce", numpy_search, none),  # (c)
            ("numpy_bruteforce_blas1", numpy_search, b1),
            ("qdrant_local_query_points", local_search, none),  # (d)
            ("qdrant_local_query_points_blas1", local_search, b1),
        ]
        print("latency, warm, per variant:")
        lat, found = run_variants(variants, meas_q, warm_q, args.passes)

        # Fixed costs inside Pipeline.retrieve, per call.
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()

        def enter_limits(_: Any) -> None:
            with threadpool_limits(limits=1, user_api="blas"):
                pass

        def enter_controller(_: Any) -> None:
            with controller.limit(limits=1, user_api="blas"):
                pass

        lat["threadpool_limits_enter_exit"] = percentiles(time_each(enter_limits, meas_q)[0])
        lat["controller_limit_enter_exit"] = percentiles(time_each(enter_controller, meas_q)[0])
        lat["available_corpora"] = percentiles(time_each(lambda _: pipe.available_corpora(), meas_q)[0])
        lat["store_count"] = percentiles(time_each(lambda _: store.count("paragraph"), meas_q)[0])
        lat["store_collections"] = percentiles(time_each(lambda _: store.collections(), meas_q)[0])
        results["latency"] = lat
        print(
            f"per call: threadpool_limits {lat['threadpool_limits_enter_exit']['p50_ms']} ms "
            f"(a ThreadpoolController made once: {lat['controller_limit_enter_exit']['p50_ms']} ms), "
            f"available_corpora {lat['available_corpora']['p50_ms']} ms (count {lat['store_count']['p50_ms']}, collections {lat['store_collections']['p50_ms']})"
        )

        # Recall@10 against the exact top-10.
        gold = [truth[q] for q in meas_q]
        edge20 = [r[:K] for r in found["edge_search_k20"]]
        results["recall_at_10"] = {
            "pipeline_retrieve": round(recall(found["pipeline_retrieve"], gold), 4),
            "pipeline_retrieve_torch1": round(recall(found["pipeline_retrieve_torch1"], gold), 4),
            "edge_search_k10": round(recall(found["edge_search_k10"], gold), 4),
            "edge_search_k20_top10": round(recall(edge20, gold), 4),
            "qdrant_local": round(recall(found["qdrant_local_query_points"], gold), 4),
            "numpy_bruteforce": round(recall(found["numpy_bruteforce"], gold), 4),
        }

        # How close the diagnostic encoders stay to the configured one (cosine, per query).
        ref = np.stack([qvec[q] for q in meas_q[:50]])
        fp32 = enc32.encode_query(meas_q[:50])
        bw = np.concatenate([encode_bf16_weights(q) for q in meas_q[:50]])
        results["encoder_variants_cosine_to_configured"] = {
            "fp32_min": round(float(np.min(np.sum(ref * fp32, axis=1))), 5),
            "bf16_weights_min": round(float(np.min(np.sum(ref * bw, axis=1))), 5),
        }

        # Edge recall and latency against the HNSW search breadth.
        sweep = {}
        for ef in [int(x) for x in str(args.ef).split(",") if x]:
            search = lambda q, ef=ef: [p.id for p in store.search("paragraph", qvec[q], using=DENSE, limit=K, hnsw_ef=ef)]
            for x in warm_q:
                search(x)
            t, r = time_each(search, meas_q)
            sweep[str(ef)] = {"recall_at_10": round(recall(r, gold), 4), **percentiles(t)}
            print(f"  edge hnsw_ef={ef}: recall@10 {sweep[str(ef)]['recall_at_10']}, p50 {sweep[str(ef)]['p50_ms']} ms, p95 {sweep[str(ef)]['p95_ms']} ms")
        results["edge_ef_sweep"] = sweep

        if args.profile:
            import cProfile
            import io
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            for q in meas_q[:100]:
                pipeline_retrieve(q)
            prof.disable()
            prof_out = {}
            for key in ("tottime", "cumulative"):
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(30)
                prof_out[f"top_by_{key}"] = [line for line in buf.getvalue().splitlines() if line.strip()][-31:]
            results["profile_pipeline_retrieve_100_calls"] = prof_out
        print("recall@10: " + ", ".join(f"{k} {v}" for k, v in results["recall_at_10"].items()))
        local.close()

        # Fresh processes: Python start, imports, and open + first query of the store.
        store.close()
        qjson = json.dumps(qvec[meas_q[0]].tolist())
        py_walls, _ = run_child(["-c", "pass"], args.open_repeats)
        imp_walls, _ = run_child(["-c", "import ragmm.stores.edge, qdrant_edge"], args.open_repeats)
        open_walls, open_outs = run_child(["-c", OPEN_SCRIPT, str(tmp / "store"), qjson], args.open_repeats)
        ret_walls, ret_outs = run_child(["-c", RETRIEVE_SCRIPT, str(cfg), meas_q[1], meas_q[2]], max(1, args.open_repeats // 2))
        open_s = median([o["open_and_first_query_s"] for o in open_outs])
        results["fresh_process"] = {
            "python_start_wall_s": median(py_walls),
            "python_start_plus_import_edge_wall_s": median(imp_walls),
            "open_script_wall_s": median(open_walls),
            "import_in_child_s": median([o["import_s"] for o in open_outs]),
            "open_and_count_s": median([o["open_count_s"] for o in open_outs]),
            "first_search_s": median([o["first_search_s"] for o in open_outs]),
            "open_and_first_query_s": open_s,
            "pipeline_import_s": median([o["import_s"] for o in ret_outs]),
            "pipeline_first_retrieve_s": median([o["first_retrieve_s"] for o in ret_outs]),
            "pipeline_second_retrieve_s": median([o["second_retrieve_s"] for o in ret_outs]),
            "pipeline_script_wall_s": median(ret_walls),
            "page_cache": "warm (the store was just written)",
        }
        fp = results["fresh_process"]
        print(
            f"fresh process: python {fp['python_start_wall_s']} s, +imports {fp['python_start_plus_import_edge_wall_s']} s; "
            f"open+count {fp['open_and_count_s']} s, first search {fp['first_search_s']} s => open+first query {open_s} s"
        )
        print(f"fresh process Pipeline: import {fp['pipeline_import_s']} s, first retrieve {fp['pipeline_first_retrieve_s']} s (model load), second {fp['pipeline_second_retrieve_s']} s")

        p50 = lat["pipeline_retrieve"]["p50_ms"]
        rec = results["recall_at_10"]["pipeline_retrieve"]
        results["goals"] = {
            "pipeline_p50_ms": {"value": p50, "goal": GOAL_P50_MS, "met": p50 <= GOAL_P50_MS},
            "pipeline_recall_at_10": {"value": rec, "goal": GOAL_RECALL, "met": rec >= GOAL_RECALL},
            "open_and_first_query_s": {"value": open_s, "goal": GOAL_OPEN_S, "met": open_s <= GOAL_OPEN_S},
        }
        results["busy_at_end"] = busy_processes()
        print("\ngoals: " + "; ".join(f"{k} {v['value']} (goal {v['goal']}: {'met' if v['met'] else 'MISSED'})" for k, v in results["goals"].items()))
        pipe.close()
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    path = save("retrieve_latency_small" if args.small and not args.out else "retrieve_latency", results, args.out)
    print(f"\nwrote {path}")
    return results


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` removes the temp folder
    main()
