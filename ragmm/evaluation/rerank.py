"""Rerank evaluation: is the context kept for the generator relevant, and is the relevant kept?

For each judged query the text encoder retrieves ``candidates`` items of a corpus file (exact
cosine, so every arm starts from the same candidates); then three arms choose the context:

``fixed top-k``      the ``k`` best by retrieval score (what ``none`` does);
``reranked top-k``   the ``k`` best by calibrated relevancy, no threshold;
``adaptive up-to-k`` those whose relevancy passes the reranker's threshold, at most ``k``.

Precision is over every item kept (all queries pooled), recall the mean share of a query's
relevant items kept. An unanswerable variant removes each query's relevant items from its
candidates: the right context is then nothing, and ``abstain`` is how often an arm keeps none.

Adaptive up-to-k is also scored at every threshold of :data:`SWEEP` from the same relevancies;
on dev sets, :func:`keep_recall_threshold` picks from that sweep the highest threshold that
keeps fixed top-k's recall, the one to evaluate held-out sets with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragmm.reranking.base import select
from ragmm.types import Hit, Item, Query

ARMS = ("fixed top-k", "reranked top-k", "adaptive up-to-k")
# Thresholds scored for adaptive up-to-k; finer near 0, where a trained scorer's relevancies of
# the last relevant candidates often lie.
SWEEP = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, *(round(0.05 * i, 2) for i in range(1, 20)))


def sweep_key(t: float) -> str:
    """How a swept threshold is written in ``report.json`` (``0.005``, ``0.1``)."""
    return f"{t:.3f}".rstrip("0").rstrip(".") if t else "0"


@dataclass(slots=True)
class JudgedQuery:
    """One judged query of a rerank set, with the candidates retrieval gives it.

    Args:
        text: the query.
        relevant: ids of its relevant items.
        candidates: indices into the set's items, best retrieval score first.
        unanswerable: the same number of candidates with the relevant items taken out.
        scores: the retrieval score of every item (indexable by item index).
    """

    text: str
    relevant: set[str]
    candidates: list[int]
    unanswerable: list[int]
    scores: Any


@dataclass(slots=True)
class JudgedSet:
    """A rerank set read and retrieved: items, and its judged queries with their candidates."""

    items: list[Item]
    queries: list[JudgedQuery]


def judged_candidates(encoder: Any, queries: Path, qrels: Path, corpus_file: Path, candidates: int = 20, limit: int | None = None) -> JudgedSet:
    """Read a rerank set and retrieve each judged query's candidates by exact cosine.

    Args:
        encoder: the text encoder that retrieves the candidates.
        queries: JSONL ``{"id", "text"}``.
        qrels: TREC qrels (``qid 0 docid rel``).
        corpus_file: JSONL ``{"id", "text"[, "corpus", "modality"]}``.
        candidates: items retrieved per query.
        limit: an evenly spread subset of this many queries.
    """
    import numpy as np

    from ragmm.evaluation.retrieval import load_qrels

    judged = load_qrels(qrels)
    rows = [q for q in _read_jsonl(queries) if judged.get(q["id"])]
    if limit and len(rows) > limit:
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    docs = _read_jsonl(corpus_file)
    items = [Item(corpus=d.get("corpus", "paragraph"), source=d["id"], text=d["text"], modality=d.get("modality", "text")) for d in docs]
    doc_vecs = np.asarray(encoder.encode_document([d["text"] for d in docs]), dtype=np.float32)  # (N, D)
    q_vecs = np.asarray(encoder.encode_query([q["text"] for q in rows]), dtype=np.float32)  # (Q, D)
    sims = q_vecs @ doc_vecs.T  # (Q, N)
    out = []
    for qi, q in enumerate(rows):
        rel = {d for d, r in judged[q["id"]].items() if r > 0}
        order = np.argsort(-sims[qi])
        top = [int(j) for j in order[:candidates]]
        # The unanswerable variant: the same query, its relevant items taken out of the candidates.
        unans = [int(j) for j in order if docs[int(j)]["id"] not in rel][:candidates]
        out.append(JudgedQuery(q["text"], rel, top, unans, sims[qi]))
    return JudgedSet(items, out)


@dataclass(slots=True)
class ArmScores:
    precision: float
    recall: float
    mean_kept: float
    empty: float  # share of queries given no context
    abstain_unanswerable: float | None = None  # share of unanswerable queries given no context


@dataclass(slots=True)
class RerankReport:
    """What ``ragmm eval rerank`` writes to ``report.json``."""

    dataset: str
    reranker: str
    k: int
    candidates: int
    threshold: float
    n_queries: int
    arms: dict[str, ArmScores] = field(default_factory=dict)
    ms_rerank_per_query: float = 0.0  # the call on a query's candidates (the unanswerable variant's not counted)
    # Adaptive up-to-k at other thresholds, from the same relevancies: threshold -> scores.
    sweep: dict[str, ArmScores] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from ragmm.errors import InputError

    if not path.is_file():
        raise InputError(str(path), "file not found; build it with `python -m ragmm.training.data.rerank`")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score_arm(kept: Sequence[Sequence[str]], relevant: Sequence[set[str]]) -> ArmScores:
    """Pooled precision, mean recall, mean items kept and the share of empty contexts.

    Example:
        >>> s = score_arm([["a", "b"], []], [{"a"}, {"c"}])
        >>> (s.precision, s.recall, s.empty)
        (0.5, 0.5, 0.5)
    """
    total = sum(len(k) for k in kept)
    hits = sum(len(set(k) & r) for k, r in zip(kept, relevant, strict=True))
    recall = sum(len(set(k) & r) / len(r) for k, r in zip(kept, relevant, strict=True) if r) / max(len(kept), 1)
    return ArmScores(
        precision=hits / total if total else 0.0,
        recall=recall,
        mean_kept=total / max(len(kept), 1),
        empty=sum(not k for k in kept) / max(len(kept), 1),
    )


def evaluate_rerank(
    reranker: Any,
    encoder: Any,
    queries: Path,
    qrels: Path,
    corpus_file: Path,
    out_dir: Path,
    k: int = 5,
    candidates: int = 20,
    limit: int | None = None,
    name: str = "reranker",
    progress: bool = True,
    data: JudgedSet | None = None,
) -> RerankReport:
    """Score the three arms on one judged set; write ``report.json`` under ``out_dir``.

    Args:
        reranker: a calibrated reranker (``relevancies(query, items)`` and ``threshold``).
        encoder: the text encoder that retrieves the candidates.
        queries: JSONL ``{"id", "text"}``.
        qrels: TREC qrels (``qid 0 docid rel``).
        corpus_file: JSONL ``{"id", "text"[, "corpus", "modality"]}``.
        out_dir: where the report goes.
        k: most items kept.
        candidates: items retrieved per query before reranking.
        limit: evaluate an evenly spread subset of this many queries.
        data: the set already read and retrieved (:func:`judged_candidates` with the same
            files, ``candidates`` and ``limit``), so that it is not encoded again.
    """
    from tqdm.auto import tqdm

    if data is None:
        data = judged_candidates(encoder, queries, qrels, corpus_file, candidates, limit)
    items = data.items
    kept: dict[str, list[list[str]]] = {a: [] for a in ARMS}
    abstain: dict[str, list[bool]] = {a: [] for a in ARMS}
    relevant: list[set[str]] = []
    sweep_at = list(SWEEP)
    swept: dict[float, list[list[str]]] = {t: [] for t in sweep_at}
    swept_abstain: dict[float, list[bool]] = {t: [] for t in sweep_at}
    seconds = 0.0
    for q in tqdm(data.queries, desc=f"rerank ({name})", disable=not progress):
        relevant.append(q.relevant)
        top, unans = q.candidates, q.unanswerable
        # One reranker call per list, as a pipeline makes it: a reranker may score an item
        # against the others it is given (the late-interaction features' distance to the best).
        t0 = time.perf_counter()
        by_list = {True: reranker.relevancies(Query(q.text), [items[j] for j in top])}
        seconds += time.perf_counter() - t0
        by_list[False] = reranker.relevancies(Query(q.text), [items[j] for j in unans])
        for cand, answerable in ((top, True), (unans, False)):
            hits = [Hit(items[j], float(q.scores[j])) for j in cand]
            relevancy = by_list[answerable]
            chosen = {
                "fixed top-k": hits[:k],
                "reranked top-k": select(hits, relevancy, k, float("-inf")),
                "adaptive up-to-k": select(hits, relevancy, k, reranker.threshold),
            }
            for arm, hs in chosen.items():
                ids = [h.item.source for h in hs]
                if answerable:
                    kept[arm].append(ids)
                else:
                    abstain[arm].append(not ids)
            for t in sweep_at:
                ids = [h.item.source for h in select(hits, relevancy, k, t)]
                if answerable:
                    swept[t].append(ids)
                else:
                    swept_abstain[t].append(not ids)
    report = RerankReport(dataset=str(queries.parent), reranker=name, k=k, candidates=candidates, threshold=float(reranker.threshold), n_queries=len(data.queries))
    for arm in ARMS:
        scores = score_arm(kept[arm], relevant)
        scores.abstain_unanswerable = sum(abstain[arm]) / max(len(abstain[arm]), 1)
        report.arms[arm] = scores
    for t in sweep_at:
        scores = score_arm(swept[t], relevant)
        scores.abstain_unanswerable = sum(swept_abstain[t]) / max(len(swept_abstain[t]), 1)
        report.sweep[sweep_key(t)] = scores
    report.ms_rerank_per_query = 1000 * seconds / max(len(data.queries), 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report


def keep_recall_threshold(reports: Sequence[RerankReport]) -> float:
    """The highest swept threshold at which adaptive up-to-k's recall is not below fixed top-k's
    on any of ``reports`` (dev sets: never the sets it will be evaluated on); the lowest swept
    threshold when none is.

    Example:
        >>> r = RerankReport("dev", "x", 5, 20, 0.5, 10, arms={"fixed top-k": ArmScores(0.2, 0.8, 5, 0)})
        >>> r.sweep = {"0.1": ArmScores(0.5, 0.85, 2, 0), "0.5": ArmScores(0.9, 0.6, 1, 0)}
        >>> keep_recall_threshold([r])
        0.1
    """
    if not reports:
        raise ValueError("keep_recall_threshold needs at least one dev report")
    thresholds = sorted({float(t) for r in reports for t in r.sweep})
    kept = [t for t in thresholds if all(r.sweep[sweep_key(t)].recall >= r.arms["fixed top-k"].recall - 1e-9 for r in reports)]
    return max(kept) if kept else thresholds[0]
