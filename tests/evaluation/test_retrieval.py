import json

import pytest

from ragmm.errors import InputError
from ragmm.evaluation.plots import centroid_gap, project_2d
from ragmm.evaluation.retrieval import evaluate, evaluate_retrieval, load_qrels


def test_metrics_match_hand_computed_values():
    from ragmm.evaluation.retrieval import EvalQuery

    queries = [EvalQuery("a", "x"), EvalQuery("b", "y", "image"), EvalQuery("unjudged", "z")]
    qrels = {"a": {"d1": 1}, "b": {"d9": 1}}
    runs = {"a": [("d1", 0.9), ("d2", 0.5)], "b": [("d3", 0.9), ("d9", 0.8)]}
    metrics, by_modality, curve = evaluate(queries, qrels, lambda q, k: runs[q.id][:k], depth=10, progress=False)
    assert metrics["recall@1"] == pytest.approx(0.5)
    assert metrics["recall@5"] == pytest.approx(1.0)
    assert metrics["mrr@10"] == pytest.approx((1 + 0.5) / 2)
    assert by_modality["image"]["recall@1"] == 0.0 and by_modality["text"]["recall@1"] == 1.0
    assert curve[0] == (1, pytest.approx(0.5))


def test_qrels_formats_and_errors(tmp_path):
    (tmp_path / "q.tsv").write_text("q1 0 d1 1\nq1\t0\td2\t2\n")
    assert load_qrels(tmp_path / "q.tsv") == {"q1": {"d1": 1, "d2": 2}}
    (tmp_path / "q.jsonl").write_text(json.dumps({"query_id": "q1", "doc_id": "d1"}))
    assert load_qrels(tmp_path / "q.jsonl") == {"q1": {"d1": 1}}
    (tmp_path / "bad.tsv").write_text("q1 d1\n")
    with pytest.raises(InputError, match="line 1"):
        load_qrels(tmp_path / "bad.tsv")


def test_gap_and_projection():
    import numpy as np

    a = np.tile([1.0, 0.0], (5, 1))
    b = np.tile([0.0, 1.0], (5, 1))
    assert centroid_gap(a, b) == pytest.approx(np.sqrt(2))
    pa, pb = project_2d(a, b)
    assert pa.shape == (5, 2) and pb.shape == (5, 2)


def test_end_to_end_with_the_packaged_encoder(tmp_path, text_encoder):
    docs = ["a tower on the coast that guides ships with light", "an insect that makes honey", "molten rock erupting from a mountain"]
    queries = ["lighthouse", "bee", "volcano"]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(docs)))
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps({"id": f"q{i}", "text": t}) for i, t in enumerate(queries)))
    (tmp_path / "qrels.tsv").write_text("".join(f"q{i} 0 d{i} 1\n" for i in range(3)))
    report = evaluate_retrieval(tmp_path / "q.jsonl", tmp_path / "qrels.tsv", text_encoder, corpus_file=tmp_path / "c.jsonl", out_dir=tmp_path / "out", progress=False)
    assert report.metrics["recall@1"] == 1.0 and report.n_items == 3
    assert report.modality_gap is not None and report.modality_gap > 0
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["metrics"] == report.metrics
    for png in ("recall_at_k.png", "modality_gap.png"):
        assert (tmp_path / "out" / png).read_bytes()[:4] == b"\x89PNG"
