"""Bounded load test of `ragmm serve` on loopback: /retrieve and /ask (extractive generator)
at concurrency 1, 4 and 16, a fixed number of requests each; p50/p95 latency, throughput,
and a check that no request failed or was lost. Then `ragmm ask` through the warm server in
fresh processes (wall time, CPU time, and that no model library was imported).

Usage:
    python bench/serve_load.py                       # indexes the demo corpus into a temp store
    python bench/serve_load.py --store /tmp/demo     # a store built by `ragmm index examples/docs examples/videos --corpus-root examples --store /tmp/demo`

Writes bench/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, busy_processes, machine, percentiles  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "How does a lighthouse tell ships which light they are looking at?",
    "When can visitors come to the apiary?",
    "When will the garden club's water pump be repaired?",
    "Who walked on the Moon first?",
    "What do honeybees do in winter?",
    "Why do volcanoes erupt?",
]


def one_request(client: Any, endpoint: str, question: str) -> tuple[float, bool, str]:
    """Latency, success and, on failure, why. /ask is read to its last NDJSON line."""
    t0 = time.perf_counter()
    try:
        if endpoint == "/retrieve":
            hits, _ = client.retrieve(question, k=5)
            ok, why = len(hits) > 0, "no hits"
        else:
            pieces = list(client.ask_stream(question, k=5))
            ok, why = bool(pieces) and getattr(pieces[-1], "text", "") != "", "no final answer"
    except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
        ok, why = False, f"{exc.__class__.__name__}: {exc}"
    return time.perf_counter() - t0, ok, "" if ok else why


def load(url: str, endpoint: str, concurrency: int, n: int) -> dict[str, Any]:
    from ragmm.serve.client import RagmmClient

    client = RagmmClient(url)
    results: list[tuple[float, bool, str]] = []
    lock = threading.Lock()

    def task(i: int) -> None:
        r = one_request(client, endpoint, QUESTIONS[i % len(QUESTIONS)])
        with lock:
            results.append(r)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(task, range(n)))
    wall = time.perf_counter() - t0
    failures = [why for _, ok, why in results if not ok]
    return {
        "endpoint": endpoint,
        "concurrency": concurrency,
        "requests": n,
        "answered": len(results),
        "lost": n - len(results),
        "failed": len(failures),
        "failures": sorted(set(failures))[:5],
        "throughput_rps": round(n / wall, 2),
        "wall_s": round(wall, 3),
        **percentiles([t for t, ok, _ in results if ok] or [0.0]),
    }


def cli_through_server(url: str, runs: int) -> dict[str, Any]:
    """`ragmm ask` in fresh processes, answered by the warm server."""
    exe = str(Path(sys.executable).with_name("ragmm"))
    env = {**os.environ, "RAGMM_SERVER": url}
    walls, cpus = [], []
    for i in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run([exe, "ask", QUESTIONS[i % len(QUESTIONS)], "-k", "3"], env=env, capture_output=True, text=True, timeout=120)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if out.returncode != 0 or "Evidence" not in out.stdout:
            raise SystemExit(f"ragmm ask through {url} failed: {out.stderr[-500:]}")
    # What the installed `ragmm` (ragmm.cli.fast.main) imports to answer through the server.
    code = "import sys\nfrom ragmm.cli.fast import main\nmain(['ask', 'Why do volcanoes erupt?'])\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'sentence_transformers', 'fastapi', 'numpy', 'httpx', 'typer', 'pydantic'}))"
    imported = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120).stdout.strip().splitlines()[-1]
    bare = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t0)
    return {
        "runs": runs,
        "wall_median_s": round(statistics.median(walls), 3),
        "wall_min_s": round(min(walls), 3),
        "cpu_median_s": round(statistics.median(cpus), 3),
        "python_startup_median_s": round(statistics.median(bare), 3),
        "model_libraries_imported": imported,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="a store of the demo corpus (default: index it into a temp dir first)")
    parser.add_argument("--requests", type=int, default=96, help="requests per endpoint and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--cli-runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ragmm.config import load_config
    from ragmm.pipeline import Pipeline
    from ragmm.serve.app import BackgroundServer, create_app, warm_up
    from ragmm.serve.settings import ServeSettings

    info = machine()
    tmp = None
    store = args.store
    index_s = None
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="ragmm-serve-load-")
        store = Path(tmp.name) / "store"
    pipe = Pipeline(load_config(None, {"store": {"type": "edge", "path": str(store)}, "generator": {"type": "extractive"}}))
    if not pipe.available_corpora():
        t0 = time.perf_counter()
        pipe.index([ROOT / "examples" / "docs", ROOT / "examples" / "videos"], corpus_root=ROOT / "examples", progress=False)
        index_s = round(time.perf_counter() - t0, 1)
        print(f"indexed the demo corpus in {index_s}s", flush=True)
    warm_s = warm_up(pipe)
    # The limits stay on (a real server's path) but far above what the test sends.
    app = create_app(pipe, ServeSettings(rate=1e6, burst=10**6))
    rows = []
    with BackgroundServer(app) as server:
        for endpoint in ("/retrieve", "/ask"):
            load(server.url, endpoint, 1, 6)  # warm: every question once
            for c in args.concurrency:
                row = load(server.url, endpoint, c, args.requests)
                rows.append(row)
                print(f"{endpoint:9s} c={c:<3d} p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms  {row['throughput_rps']:7.1f} req/s  failed {row['failed']} lost {row['lost']}", flush=True)
        cli = cli_through_server(server.url, args.cli_runs)
        print(f"ragmm ask through the server: median {cli['wall_median_s']} s wall, {cli['cpu_median_s']} s CPU (python startup alone {cli['python_startup_median_s']} s); model libraries imported: {cli['model_libraries_imported']}", flush=True)
    pipe.close()
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": info,
        "busy_processes_at_end": busy_processes(),
        "loadavg_at_end": os.getloadavg(),
        "corpus": "examples/docs + examples/videos (the demo corpus)",
        "generator": "extractive",
        "index_s": index_s,
        "warm_up_s": round(warm_s, 2),
        "load": rows,
        "cli_ask_through_server": cli,
        "all_answered": all(r["failed"] == 0 and r["lost"] == 0 for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()
    if not result["all_answered"]:
        raise SystemExit("some requests failed or were lost; see the JSON")


if __name__ == "__main__":
    main()
