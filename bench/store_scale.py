"""Store recall and cost at scale: three independent HNSW builds per setting, with and without
int8 quantisation.

Vectors: ``--points`` 384-d unit vectors by retrieve_latency.py's synthetic-neighbour method
without an encoder (bench/synthetic.py ``neighbour_cloud``: 10,000 sentence-like base
vectors, each with neighbours at about the base nearest-neighbour distance: tight clusters
with close scores, the case where HNSW recall fell), a fresh draw per seed, so each build
is independent. Queries: ``--queries`` more neighbours drawn the same way, not stored.
Truth: the exact top-10 by numpy (float32 cosine).

Each build runs in its own process (so its peak RSS is its own) and writes a fresh Qdrant
Edge store on disk through ragmm's ``EdgeStore`` (upsert, then ``optimize()``): build time,
peak RSS, disk size, and, per HNSW search breadth ``--ef``, recall@10 and p50/p95 of
``Store.search`` (limit 10), beside numpy brute force over the same vectors in the same
process (the ratio baseline). The summary gives min / median / max over the seeds.

Usage:
    nice -n 10 .venv/bin/python bench/store_scale.py                          # 100k, seeds 0,1,2, none + int8
    nice -n 10 .venv/bin/python bench/store_scale.py --points 1000000 --seeds 0 --budget-s 1500
    .venv/bin/python bench/store_scale.py --small                             # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import busy_processes, machine, percentiles, recall, save, time_each
from synthetic import neighbour_cloud

GOAL_RECALL = 0.95
K = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--seeds", default="0,1,2", help="one independent build per seed")
    p.add_argument("--quantization", default="none,int8", help="store settings to build with")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--ef", default="128,256,512", help="HNSW search breadths to measure")
    p.add_argument("--hnsw-m", type=int, default=None, help="HNSW m (default: the store's)")
    p.add_argument("--hnsw-ef-construct", type=int, default=None, help="HNSW ef_construct (default: the store's)")
    p.add_argument("--budget-s", type=float, default=3600.0, help="wall seconds one build may take before it is stopped")
    p.add_argument("--small", action="store_true", help="smoke run: 10,000 points, 2 seeds, 50 queries")
    p.add_argument("--out", default=None, help="results file (default bench/results/store_scale_<points>.json)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # "<seed>:<quantization>:<result file>"
    args = p.parse_args(argv)
    if args.small:
        args.points, args.seeds, args.queries, args.warmup = 10_000, "0,1", 50, 5
    return args


def rss_mb() -> float:
    """This process's peak resident set so far, MB (Linux reports KB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def disk(path: Path) -> dict[str, int]:
    """Allocated bytes of a collection folder, and of its write-ahead log."""
    files = [f for f in path.rglob("*") if f.is_file()]
    return {
        "disk_bytes": sum(f.stat().st_blocks * 512 for f in files),
        "wal_bytes": sum(f.stat().st_blocks * 512 for f in files if "wal" in f.relative_to(path).parts),
    }


def child(args: argparse.Namespace) -> None:
    """One build: write what is done to the result file after every phase (a build stopped
    at its budget still reports how far it got)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from ragmm.protocols import CollectionSpec, StoredPoint, VectorSpec
    from ragmm.stores.edge import EdgeStore

    seed_s, quant, out = args.child.split(":", 2)
    seed = int(seed_s)
    res: dict[str, Any] = {"seed": seed, "quantization": quant, "points": args.points}

    def dump() -> None:
        res["peak_rss_mb"] = rss_mb()
        Path(out).write_text(json.dumps(res, indent=2), encoding="utf-8")

    t0 = time.perf_counter()
    data, _ = neighbour_cloud(args.points + args.queries + args.warmup, args.dim, seed=seed)  # (N + Q, D)
    # queries: the last rows, neighbours drawn like the stored ones but not stored
    vectors, queries = data[: args.points], data[args.points :]
    res["generate_s"] = round(time.perf_counter() - t0, 1)
    res["rss_after_vectors_mb"] = rss_mb()
    warm, meas = queries[: args.warmup], queries[args.warmup :]

    t0 = time.perf_counter()
    truth = []
    for s in range(0, len(meas), 50):
        scores = meas[s : s + 50] @ vectors.T  # (50, N)
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        truth += [list(row[np.argsort(-scores[i, row])]) for i, row in enumerate(top)]
    res["truth_s"] = round(time.perf_counter() - t0, 1)

    def numpy_search(q: Any) -> list[int]:
        scores = vectors @ q  # (N,)
        idx = np.argpartition(-scores, K)[:K]
        return list(idx[np.argsort(-scores[idx])])

    for x in warm[:5]:
        numpy_search(x)
    res["numpy_bruteforce"] = percentiles(time_each(numpy_search, meas)[0])
    with threadpool_limits(limits=1, user_api="blas"):
        res["numpy_bruteforce_blas1"] = percentiles(time_each(numpy_search, meas)[0])
    dump()

    folder = Path(tempfile.mkdtemp(prefix="ragmm-bench-scale-", dir=os.environ.get("RAGMM_BENCH_TMP")))
    try:
        store = EdgeStore(folder, quantization=quant, hnsw_m=args.hnsw_m, hnsw_ef_construct=args.hnsw_ef_construct)
        res["hnsw"] = {"m": store.hnsw_m, "ef_construct": store.hnsw_ef_construct}
        store.create_collection(CollectionSpec("scale", {"dense": VectorSpec(args.dim)}, encoder="synthetic", payload_indexes=("source",)))
        t0 = time.perf_counter()
        for s in range(0, args.points, 2048):
            store.upsert(
                "scale",
                [StoredPoint(id=str(uuid.UUID(int=i + 1)), payload={"source": f"s{i % 1000}"}, vectors={"dense": vectors[i]}) for i in range(s, min(s + 2048, args.points))],
            )
            if s and s % 100_000 == 0:
                res["upserted"] = s
                res["upsert_s"] = round(time.perf_counter() - t0, 1)
                dump()
        store.flush()
        res["upserted"] = args.points
        res["upsert_s"] = round(time.perf_counter() - t0, 1)
        dump()
        t0 = time.perf_counter()
        store.optimize()
        res["optimize_s"] = round(time.perf_counter() - t0, 1)
        res["build_s"] = round(res["upsert_s"] + res["optimize_s"], 1)
        store.flush()
        res.update(disk(folder / "collections" / "scale"))
        dump()

        # Point ids are UUIDs of 1 + row.
        res["search"] = {}
        for ef in [int(x) for x in args.ef.split(",") if x]:

            def search(q: Any, ef: int = ef) -> list[int]:
                return [uuid.UUID(p.id).int - 1 for p in store.search("scale", q, using="dense", limit=K, hnsw_ef=ef)]

            for x in warm:
                search(x)
            t, found = time_each(search, meas)
            row = {"recall_at_10": round(recall(found, truth), 4), **percentiles(t)}
            base = min(res["numpy_bruteforce"]["p50_ms"], res["numpy_bruteforce_blas1"]["p50_ms"])
            row["p50_ratio_to_numpy"] = round(row["p50_ms"] / base, 3)
            res["search"][str(ef)] = row
            print(f"seed {seed} {quant} ef {ef}: recall@10 {row['recall_at_10']}, p50 {row['p50_ms']} ms ({row['p50_ratio_to_numpy']}x numpy)", flush=True)
            dump()
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    dump()


def summarise(builds: list[dict[str, Any]]) -> dict[str, Any]:
    """min / median / max over the builds of one setting."""

    def spread(values: list[float]) -> dict[str, float]:
        return {"min": min(values), "median": round(statistics.median(values), 4), "max": max(values)} if values else {}

    done = [b for b in builds if "search" in b]
    out: dict[str, Any] = {"builds": len(builds), "finished": len(done)}
    for key in ("upsert_s", "optimize_s", "build_s", "peak_rss_mb", "rss_after_vectors_mb", "disk_bytes", "wal_bytes"):
        out[key] = spread([b[key] for b in done if key in b])
    out["numpy_bruteforce_p50_ms"] = spread([min(b["numpy_bruteforce"]["p50_ms"], b["numpy_bruteforce_blas1"]["p50_ms"]) for b in builds if "numpy_bruteforce" in b])
    efs = sorted({ef for b in done for ef in b["search"]}, key=int)
    out["search"] = {
        ef: {
            m: spread([b["search"][ef][m] for b in done if ef in b["search"]])
            for m in ("recall_at_10", "p50_ms", "p95_ms", "p50_ratio_to_numpy")
        }
        for ef in efs
    }
    holding = [ef for ef in efs if out["search"][ef]["recall_at_10"] and out["search"][ef]["recall_at_10"]["min"] >= GOAL_RECALL]
    out["smallest_ef_with_min_recall_at_goal"] = int(holding[0]) if holding else None
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.child:
        child(args)
        return {}
    results: dict[str, Any] = {"benchmark": "store_scale", "args": vars(args), "machine": machine(), "busy_at_start": busy_processes()}
    seeds = [int(s) for s in args.seeds.split(",") if s]
    quants = [q for q in args.quantization.split(",") if q]
    tmp = Path(tempfile.mkdtemp(prefix="ragmm-bench-scale-results-"))
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--small"]
    if args.small:
        forwarded += ["--points", str(args.points), "--queries", str(args.queries), "--warmup", str(args.warmup)]
    builds: dict[str, list[dict[str, Any]]] = {q: [] for q in quants}
    name = f"store_scale_{args.points}" if not args.out else "store_scale"
    try:
        for quant in quants:
            for seed in seeds:
                out = tmp / f"{quant}-{seed}.json"
                cmd = [sys.executable, __file__, *forwarded, "--child", f"{seed}:{quant}:{out}"]
                t0 = time.perf_counter()
                proc = subprocess.Popen(cmd)
                try:
                    rc = proc.wait(timeout=args.budget_s)
                except subprocess.TimeoutExpired:
                    proc.terminate()  # the child reports how far it got, once Python runs again
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:  # inside Qdrant's (Rust) index build: no handler runs
                        proc.kill()
                        proc.wait()
                    rc = "stopped at the budget"
                build = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {"seed": seed, "quantization": quant}
                build["wall_s"] = round(time.perf_counter() - t0, 1)
                build["exit"] = rc
                builds[quant].append(build)
                print(f"build {quant} seed {seed}: exit {rc}, wall {build['wall_s']} s", flush=True)
                results["builds"] = builds
                results["summary"] = {q: summarise(b) for q, b in builds.items()}
                save(name, results, args.out)  # after every build
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["builds"] = builds
    results["summary"] = {q: summarise(b) for q, b in builds.items()}
    results["busy_at_end"] = busy_processes()
    for q, s in results["summary"].items():
        print(f"\n{q}: {s['finished']}/{s['builds']} builds; build_s {s['build_s']}; peak RSS MB {s['peak_rss_mb']}; disk {s['disk_bytes']}")
        for ef, row in s["search"].items():
            print(f"  ef {ef}: recall@10 {row['recall_at_10']}, p50 ms {row['p50_ms']}, x numpy {row['p50_ratio_to_numpy']}")
        print(f"  smallest ef with recall@10 >= {GOAL_RECALL} on every build: {s['smallest_ef_with_min_recall_at_goal']}")
    path = save(name, results, args.out)
    print(f"\nwrote {path}")
    return results


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` removes the temp folders
    main()
