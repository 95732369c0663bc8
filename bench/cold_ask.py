"""Cold ``ragmm ask``: the wall time of one question in a fresh process, split into phases.

Each run starts ``python -m ragmm.cli.app ask --json ...`` in a new process (nothing warm but
the OS file cache) and reads back the answer's timings:

- ``startup``: wall minus the pipeline's own total (interpreter, CLI and config imports, store
  open, JSON printing);
- ``retrieve``: route + retrieve + rerank, including the query encoder's imports and load;
- ``generator_load``: loading the generator's model (0 for ``extractive``);
- ``generate``: writing the answer;
- ``cpu``: the process's user + system seconds, which other jobs on a shared machine disturb far
  less than wall time.

One more run per variant and generator under ``python -X importtime`` gives the total time
spent importing (whichever phase imported it) and the heaviest top-level modules.

``--before REV`` measures a git revision too, laid out as an importable ``ragmm`` package in a
temporary folder (retrievers/, training/, cli/ under ragmm/ as pyproject's package-dir does),
with runs alternating between the two variants so a drifting machine load hits both alike. A
warm-up run per variant and generator is not counted (it creates one-time caches: the ONNX
query export, SmolLM2's converted folder); its wall time is kept as ``first_run_s``.

Usage::

    python bench/cold_ask.py --store .ragmm                      # after `make demo`
    python bench/cold_ask.py --before bf6a1a2 --runs 3           # before/after, saved to bench/results/cold_ask.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import busy_processes, machine, save

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Who designed the lighthouse lens?"
GOAL_EXTRACTIVE_S = 2.0
# `python -X importtime` lines: "import time: self [us] | cumulative | <indent>name".
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)$")


@dataclass(slots=True)
class Run:
    """One cold ``ragmm ask`` in a fresh process (seconds)."""

    wall: float
    cpu: float  # user + system seconds of the process: far less sensitive than wall to other jobs on the machine
    startup: float
    retrieve: float
    generator_load: float
    generate: float
    answer: str


@dataclass(slots=True)
class Summary:
    """Medians over the counted runs of one variant and generator (seconds)."""

    variant: str
    generator: str
    runs: int
    wall_s: float
    cpu_s: float
    startup_s: float
    retrieve_s: float
    generator_load_s: float
    generate_s: float
    first_run_s: float
    imports_s: float
    top_imports: list[tuple[str, float]] = field(default_factory=list)
    answer: str = ""
    all_walls_s: list[float] = field(default_factory=list)


def layout_revision(rev: str, into: Path) -> Path:
    """``rev`` of this repository as an importable package root: ``into/pkg/ragmm`` with
    retrievers/, training/ and cli/ placed as pyproject's package-dir maps them."""
    src = into / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    pkg = into / "pkg"
    pkg.mkdir()
    (src / "ragmm").rename(pkg / "ragmm")
    for sub in ("retrievers", "training", "cli"):
        (src / sub).rename(pkg / "ragmm" / sub)
    return pkg


def ask_once(generator: str, store: Path, question: str, env: dict[str, str], importtime: bool = False) -> tuple[Run, str]:
    """Run one cold ``ragmm ask --json``; return its phases and its stderr."""
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "ragmm.cli.app", "ask", "--json", "--store", str(store), "--generator", generator, question]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), timeout=1800, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout)
    t = out.get("timings", {})
    load = t.get("load", 0.0)
    run = Run(
        wall=wall,
        cpu=cpu,
        startup=wall - t.get("total", 0.0),
        retrieve=sum(t.get(k, 0.0) for k in ("route", "retrieve", "rerank")),
        generator_load=load,
        generate=t.get("generate", 0.0) - load,  # the pipeline's generate includes the model load
        answer=out.get("answer", ""),
    )
    return run, proc.stderr


def import_profile(stderr: str, top: int = 8) -> tuple[float, list[tuple[str, float]]]:
    """Total seconds of top-level imports and the ``top`` heaviest top-level modules."""
    roots: dict[str, float] = {}
    for line in stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m and len(m.group(3)) == 1:  # one space: a module imported at top level
            roots[m.group(4)] = roots.get(m.group(4), 0.0) + int(m.group(2)) / 1e6
    ranked = sorted(roots.items(), key=lambda kv: -kv[1])
    return sum(roots.values()), [(name, round(s, 3)) for name, s in ranked[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="an indexed store (default: index examples/docs into a temporary one)")
    parser.add_argument("--generators", nargs="+", default=["extractive", "smollm2"])
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--runs", type=int, default=3, help="counted runs per variant and generator")
    parser.add_argument("--before", metavar="REV", help="also measure this git revision (e.g. the commit before a change)")
    parser.add_argument("--out", help="results file (default bench/results/cold_ask.json)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ragmm-cold-") as tmp:
        tmp_path = Path(tmp)
        store = args.store
        if store is None:
            store = tmp_path / "store"
            subprocess.run([sys.executable, "-m", "ragmm.cli.app", "index", str(ROOT / "examples" / "docs"), "--corpus-root", str(ROOT / "examples"), "--store", str(store), "-q"], check=True)
        store = store.resolve()
        variants: dict[str, dict[str, str]] = {"after": dict(os.environ)}
        if args.before:
            pkg = layout_revision(args.before, tmp_path / "before")
            variants[f"before ({args.before})"] = {**os.environ, "PYTHONPATH": str(pkg)}

        runs: dict[tuple[str, str], list[Run]] = {}
        first: dict[tuple[str, str], float] = {}
        for generator in args.generators:
            for variant, env in variants.items():
                first[variant, generator] = ask_once(generator, store, args.question, env)[0].wall
                print(f"warm-up {variant} {generator}: {first[variant, generator]:.1f}s", flush=True)
            for i in range(args.runs):
                for variant, env in variants.items():
                    run = ask_once(generator, store, args.question, env)[0]
                    runs.setdefault((variant, generator), []).append(run)
                    print(f"run {i + 1} {variant} {generator}: wall {run.wall:.2f}s cpu {run.cpu:.2f}s retrieve {run.retrieve:.2f}s load {run.generator_load:.2f}s generate {run.generate:.2f}s", flush=True)

        summaries = []
        for (variant, generator), rs in runs.items():
            _, stderr = ask_once(generator, store, args.question, variants[variant], importtime=True)
            imports_s, top = import_profile(stderr)
            med = lambda attr: round(statistics.median(getattr(r, attr) for r in rs), 3)  # noqa: E731
            summaries.append(
                Summary(
                    variant=variant, generator=generator, runs=len(rs), wall_s=med("wall"), cpu_s=med("cpu"), startup_s=med("startup"), retrieve_s=med("retrieve"),
                    generator_load_s=med("generator_load"), generate_s=med("generate"), first_run_s=round(first[variant, generator], 3),
                    imports_s=round(imports_s, 3), top_imports=top, answer=rs[-1].answer, all_walls_s=[round(r.wall, 3) for r in rs],
                )
            )
    for s in summaries:
        print(f"{s.variant:>22} {s.generator:>10}: wall {s.wall_s:6.2f}s (cpu {s.cpu_s:.2f}s) = startup {s.startup_s:.2f} + retrieve {s.retrieve_s:.2f} + load {s.generator_load_s:.2f} + generate {s.generate_s:.2f}; imports {s.imports_s:.2f}s ({', '.join(n for n, _ in s.top_imports[:4])})")
    results = {
        "question": args.question,
        "goal_extractive_wall_s": GOAL_EXTRACTIVE_S,
        "store": str(store),
        "summaries": [asdict(s) for s in summaries],
        "machine": {**machine(), "busy_at_end": busy_processes()},
    }
    print(f"saved {save('cold_ask', results, args.out)}")


if __name__ == "__main__":
    main()
