"""Routing evaluation: a router against queries labelled with the routes they need.

Every corpus route is offered as available, so the router's own choice is measured. A query
is right when the set of routes chosen equals the labelled set (``[]`` counts as ``{"none"}``).
Per-route precision, recall and F1 count each route of a multi-route query on its own. The
confusion matrix (PNG) puts single-route queries' labelled route against the router's most
probable route.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragmm.routing import CORPUS_ROUTES, NONE, ROUTES
from ragmm.types import Query


@dataclass(slots=True)
class RouteScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(slots=True)
class RoutingReport:
    """What ``ragmm eval routing`` writes to ``report.json``."""

    router: str
    queries: str
    n: int
    accuracy: float
    per_route: dict[str, RouteScores]
    confusion: list[list[int]]
    labels: list[str] = field(default_factory=lambda: list(ROUTES))
    by_source: dict[str, float] = field(default_factory=dict)
    ms_per_query: float = 0.0
    fallbacks: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_labelled(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows ``{"query", "routes", "source"?}`` of a JSONL file (every ``len // limit``-th when limited)."""
    from ragmm.errors import InputError

    if not path.is_file():
        raise InputError(str(path), "file not found; build it with `python -m ragmm.training.data.routes`")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit and len(rows) > limit:
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return rows


def score(gold: Sequence[frozenset[str]], pred: Sequence[frozenset[str]], top: Sequence[str]) -> tuple[float, dict[str, RouteScores], list[list[int]]]:
    """Exact-set accuracy, per-route scores, and the confusion matrix (rows: labelled route of
    single-route queries, columns: most probable predicted route), in :data:`ROUTES` order.

    Example:
        >>> acc, per, conf = score([frozenset({"image"}), frozenset({"none"})], [frozenset({"image"}), frozenset({"paragraph"})], ["image", "paragraph"])
        >>> acc, per["image"].f1, per["none"].recall
        (0.5, 1.0, 0.0)
    """
    acc = sum(g == p for g, p in zip(gold, pred, strict=True)) / max(len(gold), 1)
    per: dict[str, RouteScores] = {}
    for r in ROUTES:
        tp = sum(r in g and r in p for g, p in zip(gold, pred, strict=True))
        fp = sum(r not in g and r in p for g, p in zip(gold, pred, strict=True))
        fn = sum(r in g and r not in p for g, p in zip(gold, pred, strict=True))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[r] = RouteScores(prec, rec, f1, tp + fn)
    index = {r: i for i, r in enumerate(ROUTES)}
    conf = [[0] * len(ROUTES) for _ in ROUTES]
    for g, t in zip(gold, top, strict=True):
        if len(g) == 1:
            conf[index[next(iter(g))]][index[t]] += 1
    return acc, per, conf


def plot_confusion(conf: list[list[int]], labels: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(conf, dtype=float)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.8), dpi=120)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted (most probable route)")
    ax.set_ylabel("labelled route")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if m[i, j]:
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def evaluate_routing(router: Any, queries: Path, out_dir: Path, name: str = "router", limit: int | None = None, progress: bool = True) -> RoutingReport:
    """Route every labelled query with all corpora available; write ``report.json`` and
    ``confusion.png`` under ``out_dir``.

    Args:
        router: a :class:`~ragmm.protocols.Router`.
        queries: JSONL of ``{"query", "routes"[, "source"]}``.
        out_dir: folder for the report and the plot.
        name: the router's name in the report.
        limit: evaluate an evenly spread subset of this many queries (slow routers).
    """
    from tqdm.auto import tqdm

    rows = load_labelled(queries, limit)
    available = list(CORPUS_ROUTES)
    gold, pred, top, errors = [], [], [], []
    start = time.perf_counter()
    for row in tqdm(rows, desc=f"routing ({name})", disable=not progress):
        routes = router.route(Query(row["query"]), available)
        p = frozenset(r.corpus for r in routes) or frozenset({NONE})
        g = frozenset(row["routes"])
        gold.append(g)
        pred.append(p)
        top.append(routes[0].corpus if routes else NONE)
        if g != p and len(errors) < 50:
            errors.append({"query": row["query"], "routes": sorted(g), "predicted": [r.corpus for r in routes] or [NONE]})
    elapsed = time.perf_counter() - start
    acc, per, conf = score(gold, pred, top)
    by_source: dict[str, list[bool]] = {}
    for row, g, p in zip(rows, gold, pred, strict=True):
        by_source.setdefault(str(row.get("source", "")), []).append(g == p)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = RoutingReport(
        router=name,
        queries=str(queries),
        n=len(rows),
        accuracy=acc,
        per_route=per,
        confusion=conf,
        by_source={s: sum(v) / len(v) for s, v in sorted(by_source.items())},
        ms_per_query=1000 * elapsed / max(len(rows), 1),
        fallbacks=getattr(router, "fallbacks", None),
        errors=errors,
    )
    plot_confusion(conf, list(ROUTES), out_dir / "confusion.png", f"{name} on {queries.name}: accuracy {acc:.3f} (n={len(rows)})")
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
