"""Helpers shared by the benchmarks: machine facts, percentiles, JSON output, pipelines in temp dirs."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, library versions, the load when measured."""
    import importlib.metadata as md

    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "sentence-transformers", "transformers", "numpy", "qdrant-edge-py", "qdrant-client", "llama-index-core", "threadpoolctl"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_at_start": os.getloadavg(),
    }


def busy_processes(min_cpu: float = 20.0) -> list[str]:
    """Other processes using the CPU now (a benchmark on a shared 2-core box must say so)."""
    import subprocess

    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,comm,args", "--sort=-pcpu", "--no-headers"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 3 or int(parts[0]) == os.getpid():
            continue
        try:
            pcpu = float(parts[1])
        except ValueError:
            continue
        if pcpu >= min_cpu:
            rows.append(f"{parts[0]} {pcpu:.0f}% {parts[3][:100] if len(parts) > 3 else parts[2]}")
    return rows


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / p99 / mean / min / max in milliseconds."""
    import numpy as np

    a = np.asarray(seconds, dtype=np.float64) * 1e3
    return {
        "n": int(a.size),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "min_ms": round(float(a.min()), 3),
        "max_ms": round(float(a.max()), 3),
    }


def time_each(fn: Callable[[Any], Any], inputs: Sequence[Any]) -> tuple[list[float], list[Any]]:
    """Call ``fn`` on each input; per-call wall seconds and the results."""
    times, results = [], []
    for x in inputs:
        t0 = time.perf_counter()
        r = fn(x)
        times.append(time.perf_counter() - t0)
        results.append(r)
    return times, results


def run_variants(
    variants: Sequence[tuple[str, Callable[[Any], Any], Callable[[], Any]]], inputs: Sequence[Any], warm: Sequence[Any], passes: int
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Each variant ``(name, fn, context)`` over all ``inputs``, one block at a time (so a
    variant's thread pools only disturb itself), after ``warm`` calls in the same context;
    the order of the blocks reverses every pass to spread drift. Returns p50/p95 per
    variant and the results of the first pass."""
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    first: dict[str, list[Any]] = {}
    for p in range(passes):
        for name, fn, ctx in variants if p % 2 == 0 else variants[::-1]:
            with ctx():
                for x in warm:
                    fn(x)
                t, r = time_each(fn, inputs)
            times[name] += t
            first.setdefault(name, r)
            print(f"  {name}: p50 {percentiles(t)['p50_ms']} ms, p95 {percentiles(t)['p95_ms']} ms", flush=True)
    return {name: percentiles(t) for name, t in times.items()}, first


def recall(found: Sequence[Sequence[Any]], truth: Sequence[Sequence[Any]], k: int = 10) -> float:
    """Mean share of each exact top-``k`` found in the top ``k`` of ``found``."""
    return sum(len(set(f[:k]) & set(t[:k])) for f, t in zip(found, truth, strict=True)) / (k * len(truth))


class Timers:
    """Exclusive wall time and call counts per named stage, filled by :meth:`wrap`.

    Stages may nest (the ledger's ``mark_complete`` calls the store's ``upsert``): a nested
    stage's time is counted once, under the inner stage, so the stages add up to at most
    the wall time and ``wall - sum`` is the time spent outside every stage.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[float] = []  # time taken by nested stages, per open stage

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                nested = self._stack.pop()
                if self._stack:
                    self._stack[-1] += elapsed
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - nested
                self.calls[name] = self.calls.get(name, 0) + 1

        return timed


def write_config(folder: Path, store_path: Path, extra: str = "") -> Path:
    """A ragmm.toml for a fresh Edge store at ``store_path`` (the packaged encoder, no LLM),
    plus ``extra`` TOML."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "ragmm.toml"
    cfg.write_text(
        f'[store]\ntype = "edge"\npath = "{store_path.as_posix()}"\n\n'
        '[encoders.text]\ntype = "sentence-transformers"\nmodel = "all-MiniLM-L6-v2"\n\n'
        '[generator]\ntype = "extractive"\n\n' + extra,
        encoding="utf-8",
    )
    return cfg


def save(name: str, results: dict[str, Any], out: str | None = None) -> Path:
    """Write ``results`` to ``bench/results/<name>.json`` (or ``out``) and return the path."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    results.setdefault("machine", {})["loadavg_at_end"] = os.getloadavg()
    path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return path
