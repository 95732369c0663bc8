"""Rerankers on fixtures: calibration, adaptive up-to-k (none pass, all pass, ties), each
implementation with a tiny or fake scorer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragmm.errors import ConfigError
from ragmm.protocols import Reranker
from ragmm.reranking import ScoreOrderReranker
from ragmm.reranking.base import CalibratedReranker, dedupe, select
from ragmm.reranking.calibration import Calibration, Calibrator, fit_calibrator
from ragmm.reranking.late_interaction import LateInteractionReranker, maxsim
from ragmm.reranking.llm import LLMReranker
from ragmm.types import Hit, Item, Query


def hit(name: str, score: float, corpus: str = "paragraph", modality: str = "text") -> Hit:
    return Hit(Item(corpus=corpus, source=f"{name}.txt", text=name, modality=modality), score)


class TableReranker(CalibratedReranker):
    """Raw score = a table lookup by item text."""

    def __init__(self, table, calibration=None, threshold=None):
        super().__init__(calibration or Calibration({"default": Calibrator("isotonic", x=[0.0, 1.0], y=[0.0, 1.0])}, threshold=0.5), threshold)
        self.table = table

    def raw_scores(self, query, items):
        return [self.table[it.text] for it in items]


def test_select_none_pass():
    assert select([hit("a", 0.9), hit("b", 0.8)], [0.1, 0.2], k=5, threshold=0.5) == []


def test_select_all_pass_capped_at_k():
    hits = [hit(c, 0.5) for c in "abcdef"]
    out = select(hits, [0.9, 0.8, 0.7, 0.95, 0.6, 0.99], k=3, threshold=0.5)
    assert [h.item.text for h in out] == ["f", "d", "a"]
    assert all(h.score == h.scores["relevancy"] for h in out)
    assert out[0].scores["retrieval"] == 0.5


def test_select_ties_ordered_by_retrieval_then_input():
    hits = [hit("a", 0.1), hit("b", 0.3), hit("c", 0.3)]
    out = select(hits, [0.7, 0.7, 0.7], k=3, threshold=0.5)
    assert [h.item.text for h in out] == ["b", "c", "a"]


def test_select_threshold_is_inclusive_and_k_zero_is_empty():
    assert [h.item.text for h in select([hit("a", 0.1)], [0.5], k=2, threshold=0.5)] == ["a"]
    assert select([hit("a", 0.1)], [0.9], k=0, threshold=0.5) == []


def test_dedupe_keeps_the_best_scored_copy():
    a1, a2 = hit("a", 0.2), hit("a", 0.9)
    assert [h.score for h in dedupe([a1, a2, hit("b", 0.5)])] == [0.9, 0.5]


def test_calibrated_reranker_keeps_only_relevant_up_to_k():
    rr = TableReranker({"a": 0.9, "b": 0.2, "c": 0.6, "d": 0.55})
    out = rr.rerank(Query("q"), [hit("a", 0.1), hit("b", 0.9), hit("c", 0.5), hit("d", 0.4)], k=2)
    assert [h.item.text for h in out] == ["a", "c"]
    assert rr.rerank(Query("q"), [], k=5) == []
    assert isinstance(rr, Reranker)


def test_one_threshold_means_the_same_across_kinds():
    # Raw scores of images sit lower than those of paragraphs; per-kind curves align them.
    cal = Calibration(
        {"paragraph": Calibrator("platt", a=10.0, b=-6.0), "image": Calibrator("platt", a=10.0, b=-2.5), "default": Calibrator("platt", a=1.0, b=0.0)},
        threshold=0.5,
    )
    rr = TableReranker({"para": 0.62, "img": 0.27, "weak-img": 0.15}, cal)
    hits = [hit("para", 0.62), hit("img", 0.27, "image", "image"), hit("weak-img", 0.15, "image", "image")]
    out = rr.rerank(Query("q"), hits, k=5)
    assert [h.item.text for h in out] == ["para", "img"]


def test_fit_platt_and_isotonic_are_monotone_and_calibrated():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=2000)
    labels = (rng.random(2000) < 1 / (1 + np.exp(-3 * raw))).astype(int)
    for method in ("platt", "isotonic"):
        cal = fit_calibrator(raw, labels, method)
        p = cal(np.sort(raw))
        assert np.all(np.diff(p) >= -1e-12)
        assert 0 <= p.min() and p.max() <= 1
        # mean predicted probability matches the base rate
        assert abs(cal(raw).mean() - labels.mean()) < 0.02
    platt = fit_calibrator(raw, labels, "platt")
    assert platt.a == pytest.approx(3.0, rel=0.2)


def test_fit_calibrator_needs_both_classes():
    with pytest.raises(ValueError, match="relevant and irrelevant"):
        fit_calibrator([0.1, 0.2], [1, 1])


def test_calibration_save_load(tmp_path):
    cal = Calibration({"default": Calibrator("isotonic", x=[0.0, 1.0], y=[0.1, 0.9])}, threshold=0.4, scorer="s")
    cal.save(tmp_path)
    back = Calibration.load(tmp_path)
    assert back.threshold == 0.4 and back.scorer == "s"
    assert back.apply([0.5], ["image"]) == pytest.approx([0.5])
    with pytest.raises(ConfigError, match="no calibration file"):
        Calibration.load(tmp_path / "missing")


def test_calibration_without_default_names_the_kind():
    cal = Calibration({"paragraph": Calibrator("platt")})
    with pytest.raises(ConfigError, match="'image'"):
        cal.apply([0.3], ["image"])


def test_score_order_reranker_keeps_retrieval_score():
    rr = ScoreOrderReranker()
    out = rr.rerank(Query("q"), [hit("a", 0.2), hit("b", 0.9), hit("a", 0.2)], k=5)
    assert [h.item.text for h in out] == ["b", "a"]
    assert out[0].scores["retrieval"] == 0.9
    assert ScoreOrderReranker(min_score=0.5).threshold == 0.5


def test_maxsim_normalised():
    q = np.array([[1, 0], [0, 1]], dtype=np.float32)
    d = np.array([[1, 0]], dtype=np.float32)
    assert maxsim(q, d) == pytest.approx(0.5)
    assert maxsim(q, np.zeros((0, 2), dtype=np.float32)) == 0.0


def test_late_interaction_reranker_with_tiny_vectors():
    vocab = {"fox": [1, 0, 0], "red": [0, 1, 0], "car": [0, 0, 1]}

    def encode(texts, is_query):
        return [np.array([vocab[w] for w in t.split() if w in vocab] or [[0, 0, 0]], dtype=np.float32) for t in texts]

    cal = Calibration({"default": Calibrator("platt", a=10.0, b=-5.0)}, threshold=0.5)
    rr = LateInteractionReranker(encode, cal)
    hits = [Hit(Item("paragraph", "1", "red car"), 0.9), Hit(Item("paragraph", "2", "red fox"), 0.5), Hit(Item("paragraph", "3", "fox"), 0.4)]
    out = rr.rerank(Query("red fox"), hits, k=5)
    # "red fox" matches both query tokens (MaxSim 1); the others one of two (MaxSim 0.5 ->
    # relevancy 0.5, kept: the threshold is inclusive), tied, so ordered by retrieval score.
    assert [h.item.source for h in out] == ["2", "1", "3"]
    assert out[0].scores["relevancy"] == pytest.approx(1 / (1 + np.exp(-5)))
    assert out[1].scores["relevancy"] == pytest.approx(0.5)


def test_late_interaction_shipped_calibration_checks_the_scorer(tmp_path):
    Calibration({"default": Calibrator("platt")}, scorer="other-model:tokens").save(tmp_path)

    class Enc:
        name = "sentence-transformers/all-MiniLM-L6-v2"

    rr = LateInteractionReranker.from_config(LateInteractionReranker.Config(calibration=str(tmp_path / "calibration.json")), encoders={"text": Enc()})
    with pytest.raises(ConfigError, match="fitted on other-model:tokens"):
        rr.rerank(Query("q"), [hit("a", 0.5)], k=3)


class FakeJudge:
    def __init__(self, p):
        self.p = p
        self.prompts = []

    def yes_probability(self, system, users):
        self.prompts.extend(users)
        return [self.p(u) for u in users]


def test_llm_reranker_uses_p_yes():
    judge = FakeJudge(lambda u: 0.9 if "lighthouse" in u.split("Evidence:")[1] else 0.1)
    cal = Calibration({"default": Calibrator("isotonic", x=[0.0, 1.0], y=[0.0, 1.0])}, threshold=0.5)
    rr = LLMReranker(lambda: judge, cal)
    out = rr.rerank(Query("what warns ships?"), [hit("a lighthouse warns ships", 0.3), hit("bananas", 0.9)], k=5)
    assert [h.item.text for h in out] == ["a lighthouse warns ships"]
    assert "Question: what warns ships?" in judge.prompts[0]


def test_cross_encoder_without_model_is_a_config_error():
    from ragmm.reranking.cross_encoder import CrossEncoderReranker

    with pytest.raises(ConfigError, match="ships no cross-encoder"):
        CrossEncoderReranker.from_config(CrossEncoderReranker.Config())


@pytest.mark.slow
def test_cross_encoder_reranker_with_a_tiny_random_model(tmp_path):
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification

    from ragmm.encoders.sentence_transformer import packaged_minilm_path
    from ragmm.reranking.cross_encoder import CrossEncoderReranker

    folder = tmp_path / "tiny-ce"
    cfg = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(folder)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(packaged_minilm_path())).save_pretrained(folder)
    CrossEncoder(str(folder), num_labels=1, local_files_only=True).save_pretrained(str(folder))
    Calibration({"default": Calibrator("platt", a=1.0, b=0.0)}, threshold=0.0, scorer="tiny").save(folder)
    rr = CrossEncoderReranker.from_config(CrossEncoderReranker.Config(model=str(folder), device="cpu"))
    out = rr.rerank(Query("a fox"), [hit("red fox", 0.5), hit("blue car", 0.4)], k=5)
    assert len(out) == 2 and all(0 <= h.score <= 1 for h in out)
    assert out == sorted(out, key=lambda h: -h.score)


def test_registry_builds_rerankers():
    from ragmm.registry import registry

    for name in ("none", "cross-encoder", "late-interaction", "llm"):
        cls = registry.get("reranker", name)
        assert hasattr(cls, "from_config")


def test_train_reranker_fits_calibration_on_dev(tmp_path):
    from ragmm.training.reranker import RerankTrainConfig, train_reranker

    rows = [{"query": f"q{i}", "text": f"{'good' if i % 2 else 'bad'} {i}", "label": i % 2, "kind": "paragraph" if i % 3 else "image"} for i in range(60)]
    dev = tmp_path / "dev.jsonl"
    dev.write_text("\n".join(json.dumps(r) for r in rows))
    scorer = TableReranker({r["text"]: (0.8 if r["label"] else 0.2) + 0.01 * (i % 5) for i, r in enumerate(rows)})
    cfg = RerankTrainConfig.model_validate({"type": "late-interaction", "output": str(tmp_path / "out"), "data": {"dev": str(dev)}})
    res = train_reranker(cfg, scorer=scorer)
    cal = Calibration.load(res.output)
    assert set(cal.by_kind) == {"default", "paragraph", "image"}
    assert cal.metrics["dev_f1"] == 1.0
    assert cal.apply([0.8], ["paragraph"])[0] > cal.threshold > cal.apply([0.2], ["image"])[0]


@pytest.mark.slow
def test_token_vectors_of_the_packaged_minilm(text_encoder):
    from ragmm.reranking.late_interaction import token_vectors

    a, b, c = token_vectors(text_encoder.model, ["a red fox", "the red fox runs", "tax law of 1990"])
    assert a.shape == (3, 384)  # special tokens left out
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)
    assert maxsim(a, b) > 0.7
    assert maxsim(a, c) < 0.3


def test_late_interaction_caches_item_vectors():
    calls = []

    def encode(texts, is_query):
        calls.append(list(texts))
        return [np.ones((1, 2), dtype=np.float32) / np.sqrt(2) for _ in texts]

    rr = LateInteractionReranker(encode, Calibration({"default": Calibrator("platt")}), cache_size=2)
    rr.raw_scores(Query("q"), [Item("paragraph", "1", "a"), Item("paragraph", "2", "b")])
    rr.raw_scores(Query("q"), [Item("paragraph", "2", "b"), Item("paragraph", "3", "c"), Item("paragraph", "4", "c")])
    assert calls == [["q"], ["a", "b"], ["q"], ["c"]]
    assert list(rr._cache) == ["b", "c"]
