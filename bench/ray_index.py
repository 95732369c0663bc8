"""Index throughput on Ray Data (1 and 2 local encode actors) against the single-process indexer.

A seeded synthetic text corpus (bench/synthetic.py, as bench/index_throughput.py uses) is
indexed into a fresh Qdrant Edge store per run, in one process:

1. ``Pipeline.index`` (the single-process indexer), cold: its model load is in the time, as an
   actor's is in a Ray run's;
2. ``index_with_ray`` with 1 encode actor, then with 2;
3. ``Pipeline.index`` again, so the drift of a shared machine's speed over the runs shows.

Ray is started once before the runs (its start-up is reported apart). Its CPU count is
logical: ``--ray-cpus`` (default 3) slots on this machine's cores, so that two 1-CPU encode
actors and the half-CPU read tasks fit at once; Ray sets ``OMP_NUM_THREADS`` to an actor's CPU
count, so each actor encodes on one thread while the single process uses every core. Reading
runs in one task at a time by default (``--read-concurrency``): on two cores more readers only
add processes that each load the tokenizer's model.

Figures: items/s (paragraph and document items written / wall seconds of the call) and
paragraph items/s; every run's points are checked to be the same (ids) as the first run's.

Usage:
    .venv/bin/python bench/ray_index.py                # 40 files x 20 paragraphs (about 15 min on 2 busy cores)
    .venv/bin/python bench/ray_index.py --files 12     # smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import busy_processes, machine, save, write_config
from synthetic import write_corpus


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=40, help="source files in the corpus")
    p.add_argument("--paragraphs", type=int, default=20, help="paragraphs per file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="[ray] batch_size: sources per encode call")
    p.add_argument("--read-concurrency", type=int, default=1, help="[ray] read_concurrency: parallel read tasks (each loads the tokenizer's model once)")
    p.add_argument("--ray-cpus", type=int, default=3, help="logical CPUs of the local Ray")
    p.add_argument("--out", default=None, help="results file (default bench/results/ray_index.json)")
    return p.parse_args(argv)


def point_ids(pipe: Any) -> dict[str, set[str]]:
    from ragmm.ingest.ledger import LEDGER

    return {c: {p.id for p in pipe.store.scroll(c)} for c in pipe.store.collections() if c != LEDGER}


def run(name: str, cfg: Path, corpus: Path, workers: int | None, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """One index run into a fresh store: single-process when ``workers`` is None."""
    from ragmm.config import load_config
    from ragmm.ingest.distributed import index_with_ray
    from ragmm.pipeline import Pipeline

    store = cfg.parent / f"store-{name}"
    overrides: dict[str, Any] = {"store": {"type": "edge", "path": str(store)}}
    if workers is not None:
        overrides["ray"] = {"num_encode_actors": workers, "batch_size": args.batch_size, "read_concurrency": args.read_concurrency}
    busy = busy_processes()
    load = os.getloadavg()[0]
    with Pipeline(load_config(cfg, overrides)) as pipe:
        t0 = time.perf_counter()
        if workers is None:
            report = pipe.index([corpus], corpus_root=corpus, progress=False)
        else:
            report = index_with_ray(pipe, [corpus], corpus_root=corpus, progress=False)
        wall = time.perf_counter() - t0
        ids = point_ids(pipe)
    items = sum(report.items.values())
    row = {
        "run": name,
        "encode_actors": workers,
        "files_indexed": report.files_indexed,
        "items": items,
        "paragraph_items": report.items.get("paragraph", 0),
        "wall_s": round(wall, 2),
        "items_per_s": round(items / wall, 2),
        "paragraph_items_per_s": round(report.items.get("paragraph", 0) / wall, 2),
        "loadavg_1min_at_start": round(load, 2),
        "busy_at_start": busy,
    }
    print(f"{name}: {items} items in {wall:.1f} s = {row['items_per_s']} items/s (load {load:.1f})", flush=True)
    shutil.rmtree(store, ignore_errors=True)
    return row, ids


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import ray

    results: dict[str, Any] = {"benchmark": "ray_index", "args": vars(args), "machine": machine(), "busy_at_start": busy_processes()}
    tmp = Path(tempfile.mkdtemp(prefix="ragmm-bench-ray-"))
    try:
        corpus = tmp / "corpus"
        n_par, n_words, _, _ = write_corpus(corpus, args.files, args.paragraphs, seed=args.seed)
        results["corpus"] = {"files": args.files, "paragraphs": n_par, "words": n_words}
        cfg = write_config(tmp, tmp / "store")
        t0 = time.perf_counter()
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, object_store_memory=300 * 1024 * 1024, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        results["ray"] = {"version": ray.__version__, "init_s": round(time.perf_counter() - t0, 2), "logical_cpus": args.ray_cpus}
        rows, reference = [], None
        try:
            for name, workers in (("single-process", None), ("ray-1-actor", 1), ("ray-2-actors", 2), ("single-process-again", None)):
                row, ids = run(name, cfg, corpus, workers, args)
                reference = reference or ids
                row["same_points_as_first_run"] = ids == reference
                rows.append(row)
        finally:
            ray.shutdown()
        results["runs"] = rows
        single = [r["items_per_s"] for r in rows if r["encode_actors"] is None]
        results["ratio_to_single_process_mean"] = {r["run"]: round(r["items_per_s"] / (sum(single) / len(single)), 3) for r in rows if r["encode_actors"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = save("ray_index", results, args.out)
    print(f"ratios to the single-process mean: {results['ratio_to_single_process_mean']}; written to {path}")
    return results


if __name__ == "__main__":
    main()
