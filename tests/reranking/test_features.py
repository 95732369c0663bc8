"""The late-interaction reranker's feature calibration: rows of features per item, a logistic
curve over them, and its fit on judged sets' candidates (tiny fixtures, no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragmm.errors import ConfigError
from ragmm.reranking.calibration import Calibration, Calibrator, fit_calibrator
from ragmm.reranking.late_interaction import FEATURES, LateInteractionReranker, TextVectors
from ragmm.types import Item, Query

WORDS = ["fox", "car", "sea", "sun", "tree", "bird"]
VARIANTS = ["one", "two", "three"]


def unit(*xs):
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_logistic_calibrator_fits_several_features_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    cal = Calibration({"default": fit_calibrator(x.tolist(), y.tolist(), "logistic")}, threshold=0.5, features=["maxsim", "cosine"])
    c = cal.by_kind["default"]
    assert c.method == "logistic" and len(c.coef) == 2 and c.coef[0] > c.coef[1] > 0
    p = cal.apply([[2.0, 1.0], [-2.0, -1.0]], ["paragraph", "image"])
    assert p[0] > 0.95 and p[1] < 0.05
    cal.save(tmp_path)
    back = Calibration.load(tmp_path)
    assert back.features == ["maxsim", "cosine"] and back.by_kind["default"].coef == c.coef
    with pytest.raises(ConfigError, match="2 weights for features"):
        Calibration({"default": c}, features=["maxsim"]).apply([[1.0]], ["default"])


def test_feature_rows_measure_each_item_against_its_own_corpus_best():
    vectors = {
        "q": TextVectors(np.array([unit(1, 0, 0)]), unit(1, 0, 0)),
        "a": TextVectors(np.array([unit(1, 0, 0)]), unit(1, 0, 0)),
        "b": TextVectors(np.array([unit(1, 1, 0)]), unit(0, 1, 0)),
        "c": TextVectors(np.array([unit(1, 1, 1)]), unit(1, 1, 0)),
    }
    rr = LateInteractionReranker(lambda texts, is_query: [vectors[t] for t in texts], Calibration(features=list(FEATURES)))
    items = [Item("paragraph", "1", "a"), Item("paragraph", "2", "b"), Item("image", "3.png", "c", modality="image")]
    rows = np.asarray(rr.raw_scores(Query("q"), items))
    col = {n: rows[:, i] for i, n in enumerate(FEATURES)}
    np.testing.assert_allclose(col["cosine"], [1.0, 0.0, 1 / np.sqrt(2)], atol=1e-6)
    np.testing.assert_allclose(col["maxsim"], [1.0, 1 / np.sqrt(2), 1 / np.sqrt(3)], atol=1e-6)
    # the image is the best of its own corpus: distance 0, however low its raw scores
    np.testing.assert_allclose(col["cosine_to_best"], [0.0, -1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(col["maxsim_to_best"], [0.0, 1 / np.sqrt(2) - 1, 0.0], atol=1e-6)


def test_without_dense_vectors_the_mean_token_serves_and_unknown_features_are_named():
    def encode(texts, is_query):  # a multi-vector model: token vectors only
        return [np.array([unit(1, 0), unit(0, 1)]) if t == "q" else np.array([unit(1, 0)]) for t in texts]

    rr = LateInteractionReranker(encode, Calibration(features=["cosine"]))
    assert rr.raw_scores(Query("q"), [Item("paragraph", "1", "a")])[0][0] == pytest.approx(1 / np.sqrt(2), abs=1e-6)
    rr = LateInteractionReranker(encode, Calibration(features=["bm25"]))
    with pytest.raises(ConfigError, match="bm25"):
        rr.raw_scores(Query("q"), [Item("paragraph", "1", "a")])
    # no features: one MaxSim per item, as before
    assert LateInteractionReranker(encode, Calibration()).raw_scores(Query("q"), [Item("paragraph", "1", "a")]) == [0.5]


class BagEncoder:
    name = "bag"

    def _enc(self, texts):
        rows = np.array([[float(w in t.split()) for w in [*WORDS, *VARIANTS]] + [0.3] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    encode_query = encode_document = _enc


def _judged_set(folder, corpus):
    docs = [{"id": f"{corpus}-{w}-{v}", "text": f"{w} {v}", "corpus": corpus} for w in WORDS for v in VARIANTS]
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    (folder / "queries.jsonl").write_text("\n".join(json.dumps({"id": f"q{w}", "text": f"{w} one"}) for w in WORDS))
    (folder / "qrels.tsv").write_text("".join(f"q{w}\t0\t{corpus}-{w}-one\t1\n" for w in WORDS))


def test_train_reranker_fits_features_on_judged_candidates(tmp_path):
    from ragmm.evaluation.rerank import SWEEP
    from ragmm.training.reranker import RerankTrainConfig, train_reranker

    for corpus in ("paragraph", "image"):
        _judged_set(tmp_path / corpus, corpus)
    bag = BagEncoder()

    def encode(texts, is_query):  # tokens: one vector per word; dense: the bag of words
        return [TextVectors(bag._enc(t.split()), bag._enc([t])[0]) for t in texts]

    scorer = LateInteractionReranker(encode, Calibration())
    cfg = RerankTrainConfig.model_validate(
        {
            "type": "late-interaction",
            "output": str(tmp_path / "out"),
            "features": ["maxsim", "cosine", "maxsim_to_best", "cosine_to_best"],
            "data": {"judged": [str(tmp_path / "paragraph"), str(tmp_path / "image")], "candidates": 6, "k": 3},
        }
    )
    from ragmm.training import reranker as module

    res = module.fit_feature_calibration(scorer, bag, cfg, "bag:tokens", progress=False)
    assert res.features == cfg.features and set(res.by_kind) == {"default", "paragraph", "image"}
    assert res.threshold in SWEEP
    for name in ("paragraph", "image"):
        fixed, adaptive = res.metrics["judged"][name]["fixed top-k"], res.metrics["judged"][name]["adaptive up-to-k"]
        assert adaptive[1] >= fixed[1] and adaptive[0] > fixed[0]  # the rule: recall kept, precision up
    out = train_reranker(cfg, scorer=scorer)
    assert Calibration.load(out.output).features == cfg.features


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "late-interaction", "features": ["maxsim"], "data": {}}, "judged"),
        ({"type": "cross-encoder", "features": ["maxsim"], "data": {"judged": ["x"]}}, "late-interaction"),
        ({"type": "late-interaction", "features": ["bm25"], "data": {"judged": ["x"]}}, "bm25"),
        ({"type": "late-interaction", "data": {}}, "dev"),
    ],
)
def test_feature_config_is_checked(spec, message):
    from pydantic import ValidationError

    from ragmm.training.reranker import RerankTrainConfig

    with pytest.raises(ValidationError, match=message):
        RerankTrainConfig.model_validate({"output": "x", **spec})


def test_shipped_calibration_is_a_feature_calibration():
    from ragmm.reranking.late_interaction import SHIPPED_CALIBRATION

    cal = Calibration.load(SHIPPED_CALIBRATION)
    assert cal.features and set(cal.features) <= set(FEATURES)
    assert all(c.method == "logistic" and len(c.coef) == len(cal.features) for c in cal.by_kind.values())
    assert 0 < cal.threshold < 0.5
