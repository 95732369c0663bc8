"""Retrieval evaluation: queries + qrels against a ragmm corpus, scored with ranx.

Two ways to name the corpus:

* ``corpus_file``: a JSONL of ``{"id", "text"}`` documents, encoded with the configured
  encoder (or ``--model``) into a fresh collection of a temporary Edge store: the retrieval
  path is the real one (HNSW), and before/after comparisons of a fine-tune need no index run.
* ``corpus``: an existing corpus of the configured store; a document's id is its
  ``metadata.doc_id`` when indexed with one, else its source key.

Metrics come from ranx (Recall@k, nDCG@10, MRR@10), per query modality when queries carry a
``modality`` field. The report is written as JSON with two PNG plots: the Recall@k curve and
a 2-D projection of query and item embeddings with the modality (centroid) gap.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragmm.encoders.shared import QueryEmbeddings
from ragmm.errors import InputError
from ragmm.protocols import CollectionSpec, Encoder, Retriever, Store
from ragmm.types import Item, Query

METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@10", "mrr@10")
CURVE_KS = (1, 2, 3, 5, 10, 20, 50, 100)


@dataclass(slots=True)
class EvalQuery:
    id: str
    text: str
    modality: str = "text"


@dataclass(slots=True)
class EvalReport:
    """What ``ragmm eval retrieval`` writes to ``report.json``."""

    encoder: str
    corpus: str
    n_queries: int
    n_items: int
    metrics: dict[str, float]
    by_modality: dict[str, dict[str, float]] = field(default_factory=dict)
    recall_curve: list[tuple[int, float]] = field(default_factory=list)
    modality_gap: float | None = None
    seconds: float = 0.0
    plots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise InputError(str(path), f"line {n} is not JSON ({exc.msg}); fix that line") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({exc.strerror or exc})") from None
    return rows


def load_queries(path: Path) -> list[EvalQuery]:
    """JSONL with ``id`` and ``text`` (or ``query``), optionally ``modality``."""
    out = []
    for row in _read_jsonl(path):
        text = row.get("text", row.get("query"))
        if "id" not in row or text is None:
            raise InputError(str(path), f"each line needs 'id' and 'text'; got keys {sorted(row)}")
        out.append(EvalQuery(str(row["id"]), str(text), str(row.get("modality", "text"))))
    return out


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """TREC qrels (``qid 0 docid rel``, tabs or spaces) or JSONL ``{query_id, doc_id, relevance}``."""
    qrels: dict[str, dict[str, int]] = {}
    if path.suffix == ".jsonl":
        for row in _read_jsonl(path):
            qrels.setdefault(str(row["query_id"]), {})[str(row["doc_id"])] = int(row.get("relevance", 1))
        return qrels
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({exc.strerror or exc})") from None
    for n, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise InputError(str(path), f"line {n}: TREC qrels need 4 columns 'query_id 0 doc_id relevance', got {len(parts)}")
        qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])
    return qrels


def index_corpus_file(path: Path, store: Store, encoder: Encoder, name: str = "eval", batch: int = 512, progress: bool = True) -> int:
    """Encode a JSONL corpus into collection ``name``; returns its size.

    Rows are ``{"id", "text"}`` documents, or ``{"id", "image"}`` with an image file path (for an
    image-text encoder, whose documents are images).
    """
    from tqdm.auto import tqdm

    from ragmm.ingest.text import item_points, text_spec

    rows = _read_jsonl(path)
    modality = "image" if rows and "image" in rows[0] else "text"
    # The same collection layout as `ragmm index` writes: dense, plus token vectors (searched
    # two-stage) for a late-interaction encoder.
    spec = text_spec(name, encoder)
    store.create_collection(CollectionSpec(name=name, vectors=spec.vectors, encoder=encoder.name, modality=modality))
    multivector = bool(getattr(encoder, "multivector", False))
    for start in tqdm(range(0, len(rows), batch), desc="encoding corpus", unit="batch", disable=not progress):
        chunk = rows[start : start + batch]
        vecs = encoder.encode_document([str(r["image"] if modality == "image" else r["text"]) for r in chunk])
        items = [
            Item(corpus=name, source=str(path), text=str(row.get("text", row.get("image", ""))), metadata={"doc_id": str(row["id"])}, modality=row.get("modality", modality))
            for row in chunk
        ]
        store.upsert(name, item_points(items, vecs, multivector))
    store.flush()
    store.optimize(name)
    return len(rows)


def _pooled(vectors: Sequence[Any]) -> Any:
    """(N, D) unit vectors: dense vectors as they are, multivectors mean-pooled per item."""
    import numpy as np

    rows = [np.asarray(v, dtype=np.float32) for v in vectors]
    rows = [r.mean(axis=0) if r.ndim == 2 else r for r in rows]
    out = np.stack(rows)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def doc_id(payload: dict[str, Any]) -> str:
    return str((payload.get("metadata") or {}).get("doc_id") or payload.get("source"))


def evaluate(
    queries: Sequence[EvalQuery],
    qrels: dict[str, dict[str, int]],
    search: Callable[[EvalQuery, int], list[tuple[str, float]]],
    depth: int = 100,
    progress: bool = True,
) -> tuple[dict[str, float], dict[str, dict[str, float]], list[tuple[int, float]]]:
    """Run ``search`` (query, k) -> [(doc_id, score)] for every judged query and score it.

    Returns:
        Overall metrics, metrics per query modality, and the Recall@k curve.
    """
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate
    from tqdm.auto import tqdm

    judged = [q for q in queries if q.id in qrels]
    if not judged:
        raise InputError("qrels", "no query id of the queries file appears in the qrels; check both files")
    run: dict[str, dict[str, float]] = {}
    for q in tqdm(judged, desc="querying", unit="q", disable=not progress):
        scores: dict[str, float] = {}
        for d, s in search(q, depth):
            scores.setdefault(d, float(s))  # best score of a doc with several items
        # ranx needs at least one entry per query; an empty result scores zero anyway.
        run[q.id] = scores or {"__none__": 0.0}
    curve_metrics = [f"recall@{k}" for k in CURVE_KS if k <= depth]

    def score(ids: list[str]) -> dict[str, float]:
        qr = Qrels({i: qrels[i] for i in ids})
        rn = Run({i: run[i] for i in ids})
        values = ranx_evaluate(qr, rn, list(dict.fromkeys([*METRICS, *curve_metrics])), make_comparable=True)
        return {k: float(v) for k, v in values.items()}

    overall = score([q.id for q in judged])
    by_modality: dict[str, dict[str, float]] = {}
    modalities = sorted({q.modality for q in judged})
    if len(modalities) > 1:
        for m in modalities:
            by_modality[m] = {k: v for k, v in score([q.id for q in judged if q.modality == m]).items() if k in METRICS}
    curve = [(k, overall[f"recall@{k}"]) for k in CURVE_KS if k <= depth]
    return {k: v for k, v in overall.items() if k in METRICS}, by_modality, curve


def evaluate_retrieval(
    queries_path: Path,
    qrels_path: Path,
    encoder: Encoder,
    store: Store | None = None,
    corpus: str | None = None,
    corpus_file: Path | None = None,
    out_dir: Path | None = None,
    depth: int = 100,
    label: str | None = None,
    progress: bool = True,
    retriever: Retriever | None = None,
    vector: str = "dense",
    embeddings: QueryEmbeddings | None = None,
) -> EvalReport:
    """Evaluate ``encoder`` on a corpus; write ``report.json`` and PNG plots to ``out_dir``.

    Queries are encoded in batches first, into ``embeddings``; the retriever then finds them
    there and searches exactly as ``ragmm ask`` does.

    Args:
        retriever: search with this instead of a :class:`DenseRetriever` over ``encoder`` (e.g.
            the pipeline's image-corpus retriever); it must read query embeddings from
            ``embeddings``.
        vector: the named vector sampled for the modality-gap plot.
        embeddings: the query-embedding memo the retriever reads (a new one by default).
    """

    from ragmm.evaluation.plots import plot_modality_gap, plot_recall_curve
    from ragmm.retrievers.dense import DenseRetriever

    t0 = time.perf_counter()
    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path)
    tmp = None
    if corpus_file is not None:
        from ragmm.stores.edge import EdgeStore

        tmp = tempfile.TemporaryDirectory(prefix="ragmm-eval-")
        store = EdgeStore(tmp.name)
        corpus = "eval"
        n_items = index_corpus_file(corpus_file, store, encoder, corpus, progress=progress)
    elif store is None or corpus is None:
        raise ValueError("give corpus_file, or a store and a corpus name")
    else:
        n_items = store.count(corpus)
    try:
        embeddings = embeddings or QueryEmbeddings()
        if retriever is None:
            retriever = DenseRetriever(store, encoder, embeddings=embeddings)
        # Encode all queries in batches once; the retriever then only searches.
        qvecs = encoder.encode_query([q.text for q in queries])
        embeddings.prime(encoder, [q.text for q in queries], qvecs)

        def search(q: EvalQuery, k: int) -> list[tuple[str, float]]:
            return [(doc_id(h.item.to_payload()), h.score) for h in retriever.retrieve(Query(q.text), corpus, k)]

        metrics, by_modality, curve = evaluate(queries, qrels, search, depth, progress)
        report = EvalReport(encoder=encoder.name, corpus=str(corpus_file or corpus), n_queries=len([q for q in queries if q.id in qrels]), n_items=n_items, metrics=metrics, by_modality=by_modality, recall_curve=curve)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            name = label or encoder.name.rsplit("/", 1)[-1]
            report.plots.append(str(plot_recall_curve({name: curve}, out_dir / "recall_at_k.png", f"Recall@k: {name}")))
            points = (p for p in store.scroll(corpus, with_vectors=True) if vector in p.vectors)  # image items may lack a text vector
            sample = [p.vectors[vector] for _, p in zip(range(2000), points, strict=False)]
            if sample:
                items, queries_2d = _pooled(sample), _pooled(list(qvecs[:2000]))
                report.modality_gap = plot_modality_gap(queries_2d, items, out_dir / "modality_gap.png", f"query vs item embeddings: {name}")
                report.plots.append(str(out_dir / "modality_gap.png"))
        report.seconds = time.perf_counter() - t0
        if out_dir is not None:
            (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
        return report
    finally:
        if tmp is not None:
            store.close()
            tmp.cleanup()
