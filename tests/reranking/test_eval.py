"""Rerank evaluation on a fixture corpus: fixed top-k against adaptive up-to-k."""

from __future__ import annotations

import json

import numpy as np

from ragmm.evaluation.rerank import evaluate_rerank, score_arm
from ragmm.reranking.base import CalibratedReranker
from ragmm.reranking.calibration import Calibration, Calibrator

WORDS = ["fox", "car", "sea", "sun", "tree", "bird"]


class BagEncoder:
    name = "bag"

    def _enc(self, texts):
        rows = np.array([[float(w in t) for w in WORDS] + [0.1] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    encode_query = encode_document = _enc


class ExactReranker(CalibratedReranker):
    """Relevant when the item names the query's first word."""

    def __init__(self):
        super().__init__(Calibration({"default": Calibrator("isotonic", x=[0.0, 1.0], y=[0.0, 1.0])}, threshold=0.5))

    def relevancies(self, query, items):
        return [1.0 if query.text.split()[0] in it.text else 0.0 for it in items]


def test_score_arm_counts_empty_contexts():
    s = score_arm([["a"], ["b", "c"], []], [{"a"}, {"c", "d"}, {"e"}])
    assert s.precision == 2 / 3
    assert s.recall == (1 + 0.5 + 0) / 3
    assert s.empty == 1 / 3


def test_adaptive_beats_fixed_top_k_on_precision(tmp_path):
    docs = [{"id": f"d{i}", "text": f"{w} {v}"} for i, (w, v) in enumerate((w, v) for w in WORDS for v in ("one", "two"))]
    queries = [{"id": f"q{w}", "text": f"{w} please"} for w in WORDS]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (tmp_path / "qrels.tsv").write_text("".join(f"q{d['text'].split()[0]}\t0\t{d['id']}\t1\n" for d in docs))
    report = evaluate_rerank(ExactReranker(), BagEncoder(), tmp_path / "queries.jsonl", tmp_path / "qrels.tsv", tmp_path / "corpus.jsonl", tmp_path / "out", k=5, candidates=8, progress=False)
    fixed, adaptive = report.arms["fixed top-k"], report.arms["adaptive up-to-k"]
    assert adaptive.precision == 1.0 and fixed.precision < 0.5
    assert adaptive.recall == fixed.recall == 1.0
    assert adaptive.abstain_unanswerable == 1.0 and fixed.abstain_unanswerable == 0.0
    assert (tmp_path / "out" / "report.json").is_file()
