"""The retrieval loop on fakes: fallback routes, one rewrite, the step limit, a route of none."""

from __future__ import annotations

import pytest

from ragmm.agent import AgentSettings, RetrievalLoop, rules_rewrite
from ragmm.protocols import Route
from ragmm.types import Hit, Item, Query


class FixedRouter:
    def __init__(self, routes, probabilities=None):
        self.routes, self.p = routes, probabilities or {}

    def route(self, query, available):
        return [Route(c, p) for c, p in self.routes if c in available]

    def probabilities(self, text):
        return self.p


class ThresholdReranker:
    """Keeps hits scoring at least 0.5; relevancy = score."""

    def rerank(self, query, hits, k):
        kept = sorted((h for h in hits if h.score >= 0.5), key=lambda h: -h.score)[:k]
        for h in kept:
            h.scores["relevancy"] = h.score
        return kept


def searcher(table, log):
    """``table[(corpus, query text)]`` = score of that corpus's one item for that query."""

    def search(query, corpus, n):
        log.append((corpus, query.text))
        score = table.get((corpus, query.text))
        return [] if score is None else [Hit(Item(corpus, f"{corpus}.txt", f"item of {corpus}"), score, {"dense": score})]

    return search


def loop(routes, table, log, probabilities=None, **settings):
    return RetrievalLoop(FixedRouter(routes, probabilities), ThresholdReranker(), searcher(table, log), AgentSettings(**settings), rules_rewrite)


def test_relevant_at_first_search_stops_there():
    log = []
    hits, trace = loop([("paragraph", 0.9)], {("paragraph", "q"): 0.8}, log).run(Query("q"), ["paragraph", "image"], 3, 10)
    assert [h.item.corpus for h in hits] == ["paragraph"] and log == [("paragraph", "q")]
    assert [s.kind for s in trace.steps] == ["route", "search", "stop"]
    assert trace.steps[1].candidates[0].kept and trace.steps[1].candidates[0].relevancy == 0.8


def test_next_most_probable_route_then_rewrite():
    log = []
    table = {("image", "what shows a red kite?"): 0.1, ("document", "shows red kite"): 0.7}
    probabilities = {"image": 0.8, "paragraph": 0.2, "document": 0.6}
    hits, trace = loop([("image", 0.8)], table, log, probabilities, max_searches=3).run(Query("what shows a red kite?"), ["paragraph", "document", "image"], 3, 10)
    # image (routed) -> document (next most probable) -> rewrite over both
    assert log[:2] == [("image", "what shows a red kite?"), ("document", "what shows a red kite?")]
    assert ("document", "shows red kite") in log and hits[0].item.corpus == "document"
    assert [s.kind for s in trace.steps] == ["route", "search", "search", "rewrite", "search", "stop"]
    assert "route: image 0.80" in trace.lines()[0]


@pytest.mark.parametrize("max_searches", [1, 2, 3])
def test_step_limit_bounds_the_searches(max_searches):
    log = []
    hits, trace = loop([("paragraph", 0.9)], {}, log, max_searches=max_searches).run(Query("nothing here"), ["paragraph", "document", "image", "clip"], 3, 10)
    assert hits == [] and len({*log}) <= max_searches and sum(s.kind == "search" for s in trace.steps) <= max_searches
    assert trace.steps[-1].kind == "stop"


def test_no_route_means_no_retrieval():
    log = []
    hits, trace = loop([], {}, log).run(Query("hello!"), ["paragraph"], 3, 10)
    assert hits == [] and log == [] and "no retrieval" in trace.steps[-1].note


def test_gives_up_honestly_when_nothing_passes():
    log = []
    hits, trace = loop([("paragraph", 0.9)], {("paragraph", "x y"): 0.2}, log, fallback_routes=False, rewrite="off").run(Query("x y"), ["paragraph"], 3, 10)
    assert hits == [] and "nothing relevant" in trace.steps[-1].note
    assert trace.steps[1].candidates[0].kept is False


def test_rules_rewrite_keeps_content_words():
    assert rules_rewrite("Who designed the lighthouse lens?") == "designed lighthouse lens"


def test_the_shared_query_encode_is_its_own_stage():
    """Whichever stage asks for the question's embedding first (a trained router, else the first
    retriever) pays the encode: timings report it as ``encode``, not as routing."""
    import time

    from ragmm.encoders.shared import QueryEmbeddings

    class SlowEncoder:
        name = "slow"

        def encode_query(self, texts):
            time.sleep(0.05)
            return [[1.0, 0.0] for _ in texts]

    memo, encoder = QueryEmbeddings(), SlowEncoder()

    class EmbeddingRouter(FixedRouter):
        def route(self, query, available):
            memo.text(encoder, query.text)
            return super().route(query, available)

    def search(query, corpus, n):
        memo.text(encoder, query.text)  # the same text: served by the memo
        return [Hit(Item(corpus, f"{corpus}.txt", "x"), 0.9, {"dense": 0.9})]

    run = RetrievalLoop(EmbeddingRouter([("paragraph", 0.9)]), ThresholdReranker(), search, AgentSettings(), encode_clock=memo.encode_seconds)
    timings = {}
    hits, _ = run.run(Query("q"), ["paragraph"], 3, 10, timings)
    assert len(hits) == 1
    assert timings["encode"] >= 0.05 and timings["route"] < 0.04 and timings["retrieve"] < 0.04
    assert memo.encode_seconds() == pytest.approx(timings["encode"], abs=1e-6)
