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


def _report(fixed_recall, sweep):
    from ragmm.evaluation.rerank import ArmScores, RerankReport, sweep_key

    r = RerankReport("dev", "x", 5, 20, 0.5, 10, arms={"fixed top-k": ArmScores(0.2, fixed_recall, 5.0, 0.0)})
    r.sweep = {sweep_key(t): ArmScores(0.5, rec, 1.0, 0.0) for t, rec in sweep.items()}
    return r


def test_keep_recall_threshold_must_hold_on_every_dev_set():
    from ragmm.evaluation.rerank import keep_recall_threshold

    a = _report(0.8, {0.01: 0.9, 0.1: 0.85, 0.3: 0.8, 0.5: 0.6})
    b = _report(0.5, {0.01: 0.7, 0.1: 0.5, 0.3: 0.45, 0.5: 0.4})
    assert keep_recall_threshold([a]) == 0.3
    assert keep_recall_threshold([a, b]) == 0.1
    # none keeps it: the lowest swept threshold
    assert keep_recall_threshold([_report(0.99, {0.01: 0.9, 0.5: 0.5})]) == 0.01


def _write_set(folder):
    docs = [{"id": f"d{i}", "text": f"{w} {v}"} for i, (w, v) in enumerate((w, v) for w in WORDS for v in ("one", "two"))]
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    (folder / "queries.jsonl").write_text("\n".join(json.dumps({"id": f"q{w}", "text": f"{w} please"}) for w in WORDS))
    (folder / "qrels.tsv").write_text("".join(f"q{d['text'].split()[0]}\t0\t{d['id']}\t1\n" for d in docs))


def test_eval_rerank_cli_chooses_the_threshold_on_dev(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from ragmm.cli import evaluate
    from ragmm.pipeline import Pipeline

    built = ExactReranker()
    pipe = SimpleNamespace(config=SimpleNamespace(reranker=SimpleNamespace(type="exact")), encoder=lambda modality: BagEncoder(), close=lambda: None)
    monkeypatch.setattr(Pipeline, "from_config", classmethod(lambda cls, config=None, **kw: pipe))
    monkeypatch.setattr(evaluate, "_component", lambda pipe, kind, embeddings=None: built)
    _write_set(tmp_path / "dev" / "paragraph")
    _write_set(tmp_path / "test")
    args = ["rerank", "--dataset", str(tmp_path / "test"), "--dev", str(tmp_path / "dev" / "paragraph"), "--candidates", "8", "--out", str(tmp_path / "out"), "-q"]
    res = CliRunner().invoke(evaluate.eval_app, args)
    assert res.exit_code == 0, res.output
    # relevancies are 0 or 1: every swept threshold keeps the recall, so the highest is chosen
    assert "threshold 0.95: the highest" in res.output
    assert json.loads((tmp_path / "out" / "test" / "report.json").read_text())["threshold"] == 0.95
    assert (tmp_path / "out" / "dev" / "paragraph" / "report.json").is_file()
    res = CliRunner().invoke(evaluate.eval_app, [*args, "--threshold", "0.5"])
    assert res.exit_code != 0 and "not both" in res.output
