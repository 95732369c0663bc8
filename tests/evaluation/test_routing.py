"""Routing evaluation: scores, report and confusion matrix on fixtures."""

from __future__ import annotations

import json

from ragmm.evaluation.routing import evaluate_routing, score
from ragmm.protocols import Route
from ragmm.routing import ROUTES


class KeywordRouter:
    def route(self, query, available):
        t = query.text.lower()
        if "hello" in t:
            return []
        out = [Route(c, 0.9) for c, w in (("image", "picture"), ("paragraph", "define")) if w in t]
        return [r for r in out if r.corpus in available] or [Route("document", 0.4)]


def test_score_multi_label():
    gold = [frozenset({"paragraph", "image"}), frozenset({"image"}), frozenset({"none"})]
    pred = [frozenset({"paragraph"}), frozenset({"image"}), frozenset({"none"})]
    acc, per, conf = score(gold, pred, ["paragraph", "image", "none"])
    assert acc == 2 / 3
    assert per["image"].recall == 0.5 and per["image"].precision == 1.0
    assert per["paragraph"].precision == 1.0 and per["paragraph"].recall == 1.0
    # only single-route queries enter the confusion matrix
    assert sum(map(sum, conf)) == 2
    assert conf[ROUTES.index("image")][ROUTES.index("image")] == 1


def test_evaluate_routing_writes_report_and_png(tmp_path):
    rows = [
        {"query": "show a picture of a fox", "routes": ["image"], "source": "a"},
        {"query": "define fox", "routes": ["paragraph"], "source": "a"},
        {"query": "hello", "routes": ["none"], "source": "b"},
        {"query": "define fox and a picture", "routes": ["paragraph", "image"], "source": "b"},
        {"query": "summarise the report", "routes": ["document"], "source": "b"},
        {"query": "what happens in the film", "routes": ["video"], "source": "b"},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    report = evaluate_routing(KeywordRouter(), path, tmp_path / "out", name="kw", progress=False)
    assert report.accuracy == 5 / 6
    assert report.by_source == {"a": 1.0, "b": 0.75}
    assert report.errors == [{"query": "what happens in the film", "routes": ["video"], "predicted": ["document"]}]
    assert (tmp_path / "out" / "confusion.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "report.json").read_text())["n"] == 6
