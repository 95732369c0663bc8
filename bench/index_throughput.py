"""Index throughput: ``Pipeline.index`` against the raw sentence-transformers encoder.

A seeded synthetic corpus (default 400 .txt files x 50 paragraphs of 40-80 words = 20,000
paragraphs) is indexed by ragmm into a fresh Qdrant Edge store. The baseline is
``SentenceTransformer.encode`` on exactly the paragraph texts ragmm produces, with the same
model object, batch size and precision context (bf16 autocast where ragmm uses it).

On a shared 2-core machine the speed of both drifts by tens of percent within minutes, so
the corpus is cut into ``--slices`` slices of files and the two are interleaved ABBA-wise:
raw then ragmm on slice 1, ragmm then raw on slice 2, and so on. ragmm indexes the slices
into the same store (one ``Pipeline.index`` call per slice, as successive ``ragmm index``
runs would); each side's rate is its total items over its total time, and the spread of
the per-slice ratios is reported with them.

Figures: passages/s (paragraph items written / wall seconds of ``Pipeline.index``), raw
passages/s, their ratio (goal >= 0.85), and where ragmm's time went (timers around read,
chunk, encode, upsert, ledger, flush and optimize; cProfile with ``--profile``).

Usage:
    .venv/bin/python bench/index_throughput.py            # full run (~10 min on 2 cores)
    .venv/bin/python bench/index_throughput.py --small    # smoke run (~1 min), profiled
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Timers, busy_processes, machine, save, write_config
from synthetic import write_corpus

GOAL_RATIO = 0.85


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=400, help="source files in the corpus")
    p.add_argument("--paragraphs", type=int, default=50, help="paragraphs per file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup-files", type=int, default=16, help="files of a separate corpus chunked and encoded before timing (50 paragraphs each)")
    p.add_argument("--slices", type=int, default=8, help="slices of files; raw and ragmm alternate ABBA-wise over them")
    p.add_argument("--profile", action="store_true", help="also index the corpus once more under cProfile (default with --small)")
    p.add_argument("--small", action="store_true", help="smoke run: 12 files, profiled")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (corpus and store)")
    p.add_argument("--out", default=None, help="results file (default bench/results/index_throughput[_small].json)")
    args = p.parse_args(argv)
    if args.small:
        args.files, args.warmup_files, args.profile, args.slices = 12, 4, True, 2
    return args


def raw_encode(enc: Any, texts: list[str]) -> Any:
    """The baseline: the encoder's own model, batch size and precision context, nothing else."""
    import torch

    with torch.inference_mode(), enc.precision_context():
        return enc.model.encode(texts, batch_size=enc.config.batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)


def chunk_texts(pipe: Any, files: list[Path], corpus_root: Path) -> list[str]:
    """The paragraph texts ragmm's chunker makes of ``files`` (what its encoder sees)."""
    from ragmm.ingest.readers import read_source, source_key

    out: list[str] = []
    for f in files:
        parsed = read_source(f, source_key(f, corpus_root), 10**9)
        out.extend(p.text for p in pipe.indexer.reader("text").chunker.chunk(parsed).paragraphs)
    return out


@contextmanager
def stage_timers(pipe: Any) -> Iterator[Timers]:
    """Timers around each stage of ``Pipeline.index`` (a few microseconds per call)."""
    import ragmm.ingest.text as text_mod

    timers = Timers()
    ix, store, enc = pipe.indexer, pipe.store, pipe.encoder("text")
    chunker = ix.reader("text").chunker
    patched = [
        (text_mod, "parse_source", timers.wrap("read", text_mod.parse_source)),
        (chunker, "chunk", timers.wrap("chunk", chunker.chunk)),
        (enc, "encode_document", timers.wrap("encode", enc.encode_document)),
        (store, "upsert", timers.wrap("upsert", store.upsert)),
        (store, "delete", timers.wrap("delete", store.delete)),
        (store, "flush", timers.wrap("flush", store.flush)),
        (store, "optimize", timers.wrap("optimize", store.optimize)),
        (store, "create_collection", timers.wrap("create_collection", store.create_collection)),
        (ix.ledger, "get", timers.wrap("ledger_get", ix.ledger.get)),
        (ix.ledger, "mark_complete", timers.wrap("ledger_mark", ix.ledger.mark_complete)),
    ]
    original_read = text_mod.parse_source
    for obj, name, fn in patched:
        setattr(obj, name, fn)
    try:
        yield timers
    finally:
        for obj, name, _ in patched:
            if obj is text_mod:
                setattr(obj, name, original_read)
            else:
                delattr(obj, name)  # back to the class attribute


def profile_run(cfg: Path, corpus: Path, warm_texts: list[str], top: int = 30) -> dict[str, Any]:
    """Index ``corpus`` once more into a fresh store under cProfile; the top functions."""
    from ragmm.pipeline import Pipeline

    pipe = Pipeline.from_config(cfg)
    pipe.encoder("text").encode_document(warm_texts)  # load and warm outside the profile
    pipe.indexer.reader("text").chunker  # noqa: B018
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    report = pipe.index([corpus], corpus_root=corpus, progress=False)
    prof.disable()
    wall = time.perf_counter() - t0
    pipe.close()
    out: dict[str, Any] = {"wall_s": round(wall, 3), "paragraph_items": report.items.get("paragraph", 0)}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(top)
        out[f"top_by_{key}"] = [line for line in buf.getvalue().splitlines() if line.strip()][-top - 1 :]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import numpy as np

    from ragmm.pipeline import Pipeline

    results: dict[str, Any] = {"benchmark": "index_throughput", "args": vars(args), "machine": machine(), "busy_at_start": busy_processes()}
    tmp = Path(tempfile.mkdtemp(prefix="ragmm-bench-index-"))
    try:
        corpus, warm = tmp / "corpus", tmp / "warmup"
        t0 = time.perf_counter()
        n_par, n_words, _, _ = write_corpus(corpus, args.files, args.paragraphs, seed=args.seed)
        write_corpus(warm, args.warmup_files, 50, seed=args.seed + 1000)
        files = sorted(corpus.rglob("*.txt"))
        results["corpus"] = {
            "files": len(files),
            "paragraphs": n_par,
            "words": n_words,
            "words_per_paragraph": round(n_words / n_par, 1),
            "bytes": sum(f.stat().st_size for f in files),
            "generate_s": round(time.perf_counter() - t0, 2),
        }
        print(f"corpus: {len(files)} files, {n_par} paragraphs, {n_words} words ({n_words / n_par:.1f} per paragraph) in {tmp}")

        cfg = write_config(tmp, tmp / "store")
        pipe = Pipeline.from_config(cfg)
        enc = pipe.encoder("text")

        # Warm-up (not timed): model load, kernels, tokenizer, llama-index splitter, Edge import.
        t0 = time.perf_counter()
        import qdrant_edge  # noqa: F401

        pipe.store  # noqa: B018  (builds the store object; it touches no files until first write)
        warm_texts = chunk_texts(pipe, sorted(warm.rglob("*.txt")), warm)
        enc.encode_document(warm_texts)
        raw_encode(enc, warm_texts)
        results["warmup"] = {"texts": len(warm_texts), "seconds": round(time.perf_counter() - t0, 2)}
        print(f"warm-up: {len(warm_texts)} texts in {results['warmup']['seconds']} s; bf16={enc.uses_bf16}, batch_size={enc.config.batch_size}")

        # The texts ragmm's chunker makes, per file (checked against the store afterwards);
        # timing the chunking alone here gives the chunker's share without a profiler.
        t0 = time.perf_counter()
        per_file = {f: chunk_texts(pipe, [f], corpus) for f in files}
        chunk_alone = time.perf_counter() - t0
        texts = [t for f in files for t in per_file[f]]
        print(f"re-chunk: {len(texts)} paragraph items from {n_par} source paragraphs in {chunk_alone:.1f} s")

        n_slices = max(1, min(args.slices, len(files)))
        slices = [files[i * len(files) // n_slices : (i + 1) * len(files) // n_slices] for i in range(n_slices)]
        rows: list[dict[str, Any]] = []
        raw_pairs: list[tuple[list[str], Any]] = []
        ragmm_wall, raw_wall, items, doc_items = 0.0, 0.0, 0, 0

        def run_raw(sl: list[Path]) -> float:
            slice_texts = [t for f in sl for t in per_file[f]]
            t0 = time.perf_counter()
            raw_pairs.append((slice_texts, raw_encode(enc, slice_texts)))
            return time.perf_counter() - t0

        with stage_timers(pipe) as timers:
            for i, sl in enumerate(slices):
                order = ("raw", "ragmm") if i % 2 == 0 else ("ragmm", "raw")
                row: dict[str, Any] = {"slice": i, "files": len(sl), "order": "/".join(order)}
                for side in order:
                    if side == "raw":
                        row["raw_s"] = run_raw(sl)
                        row["raw_texts"] = len(raw_pairs[-1][0])
                    else:
                        t0 = time.perf_counter()
                        report = pipe.index(sl, corpus_root=corpus, progress=False)
                        row["ragmm_s"] = time.perf_counter() - t0
                        row["ragmm_items"] = report.items.get("paragraph", 0)
                        doc_items += report.items.get("document", 0)
                        if report.skipped:
                            row["skipped"] = [f"{x.path}: {x.reason}" for x in report.skipped]
                row["loadavg"] = os.getloadavg()[0]
                row["raw_per_s"] = round(row["raw_texts"] / row["raw_s"], 2)
                row["ragmm_per_s"] = round(row["ragmm_items"] / row["ragmm_s"], 2)
                row["ratio"] = round(row["ragmm_per_s"] / row["raw_per_s"], 3)
                raw_wall += row["raw_s"]
                ragmm_wall += row["ragmm_s"]
                items += row["ragmm_items"]
                row["raw_s"], row["ragmm_s"] = round(row["raw_s"], 2), round(row["ragmm_s"], 2)
                rows.append(row)
                print(
                    f"slice {i} ({row['order']}): raw {row['raw_per_s']}/s, ragmm {row['ragmm_per_s']}/s, "
                    f"ratio {row['ratio']} (load {row['loadavg']:.1f})",
                    flush=True,
                )
        wall = ragmm_wall

        # Same texts? Same vectors? (bf16 results depend a little on batch composition.)
        stored = {p.payload["text"]: np.asarray(p.vectors["dense"], dtype=np.float32) for p in pipe.store.scroll("paragraph", with_vectors=True, batch=1024)}
        same_texts = sorted(stored) == sorted(texts)
        cos = [float(stored[t] @ v) for slice_texts, vecs in raw_pairs for t, v in zip(slice_texts, vecs, strict=True) if t in stored]

        raw_texts = sum(len(t) for t, _ in raw_pairs)
        raw_rate = raw_texts / raw_wall
        ragmm_rate = items / wall
        ratio = ragmm_rate / raw_rate
        ratios = [r["ratio"] for r in rows]

        stages = {k: round(v, 2) for k, v in sorted(timers.seconds.items(), key=lambda kv: -kv[1])}
        # Stages are exclusive (see Timers); what is left is the indexer's own Python: items,
        # payloads, ids, document vectors, the loop.
        other = wall - sum(timers.seconds.values())
        encode_vs_raw = timers.seconds.get("encode", 0.0) / (items / raw_rate) if items else float("nan")
        results.update(
            {
                "paragraph_items": items,
                "document_items": doc_items,
                "items_per_source_paragraph": round(items / n_par, 3),
                "ragmm": {
                    "wall_s": round(wall, 2),
                    "passages_per_s": round(ragmm_rate, 2),
                    "stages_s": stages,
                    "stage_calls": timers.calls,
                    "other_s": round(other, 2),
                    "share_of_wall": {k: round(v / wall, 3) for k, v in {**timers.seconds, "other": other}.items()},
                    "encode_time_vs_raw_time": round(encode_vs_raw, 3),
                },
                "raw": {"wall_s": round(raw_wall, 2), "texts": raw_texts, "passages_per_s": round(raw_rate, 2)},
                "slices": rows,
                "ratio_ragmm_over_raw": round(ratio, 3),
                "ratio_per_slice_min_max": [min(ratios), max(ratios)],
                "goal_ratio": GOAL_RATIO,
                "goal_met": ratio >= GOAL_RATIO,
                "chunking_alone_s": round(chunk_alone, 2),
                "check": {
                    "stored_texts_equal_rechunked": same_texts,
                    "cosine_stored_vs_raw_min": round(min(cos), 5) if cos else None,
                    "cosine_stored_vs_raw_mean": round(float(np.mean(cos)), 6) if cos else None,
                },
                "busy_at_end": busy_processes(),
            }
        )
        print(f"\nraw encoder: {raw_rate:.1f} passages/s ({raw_texts} texts in {raw_wall:.1f} s)")
        print(f"ragmm index: {ragmm_rate:.1f} passages/s ({items} paragraph items in {wall:.1f} s)")
        print(f"ratio ragmm/raw = {ratio:.3f} (per slice {min(ratios)}-{max(ratios)}; goal >= {GOAL_RATIO}: {'met' if ratio >= GOAL_RATIO else 'MISSED'})")
        print("ragmm stages (s): " + ", ".join(f"{k} {v}" for k, v in stages.items()) + f", other {other:.2f}")
        print(f"ragmm encode took {encode_vs_raw:.2f}x the raw encoder's time for the same texts")
        print(f"check: stored texts == re-chunked: {same_texts}; cosine stored vs raw min {results['check']['cosine_stored_vs_raw_min']}")
        pipe.close()

        if args.profile:
            print("\nprofiling a second run (fresh store) ...")
            results["profile"] = profile_run(write_config(tmp / "prof", tmp / "prof" / "store"), corpus, warm_texts)
            print("\n".join(results["profile"]["top_by_tottime"][:20]))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    path = save("index_throughput_small" if args.small and not args.out else "index_throughput", results, args.out)
    print(f"\nwrote {path}")
    return results


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` removes the temp folder
    main()
