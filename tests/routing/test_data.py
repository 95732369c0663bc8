"""The router data builder: held-out templates and sources never reach training."""

from __future__ import annotations

import random

from ragmm.training.data import routes as rd

from ragmm.routing import ROUTES

WORDS_A = [("lantern", "a light in a case", "light"), ("harbour", "a sheltered port", "port")]
WORDS_B = [("quill", "a pen made from a feather", "pen")]


def test_every_family_has_templates_on_both_sides():
    for family in (rd.PARAGRAPH, rd.DOCUMENT, rd.IMAGE, rd.CLIP, rd.VIDEO, rd.PARAGRAPH_IMAGE, rd.CLIP_PARAGRAPH, rd.GREETINGS, rd.ARITHMETIC):
        held = [t for t in family if rd.held_out(t)]
        assert held and len(held) < len(family)


def test_train_and_test_share_no_template_and_cover_every_route(monkeypatch):
    monkeypatch.setattr(rd, "TYPO_RATE", 0.0)
    rng = random.Random(0)
    train = list(rd.generate("train", WORDS_A, ["red kite"], "a", "img-a", rng, 40))
    test = list(rd.generate("test", WORDS_B, ["blue boat"], "b", "img-b", rng, 20))
    assert not {e.template for e in train} & {e.template for e in test}
    assert {r for e in train for r in e.routes} == set(ROUTES)
    test_words = ("quill", "a pen made from a feather", "blue boat")
    assert all(any(w in e.query.lower() for w in test_words) for e in test if e.routes != ["none"])
    assert not any(w in e.query.lower() for e in test for w in ("lantern", "harbour", "red kite"))


def test_vary_keeps_the_words_and_swaps_source_names_within_their_kind(monkeypatch):
    monkeypatch.setattr(rd, "TYPO_RATE", 0.0)
    rng = random.Random(1)
    seen = {rd.vary("find the video about kites", rng).lower() for _ in range(200)}
    assert all("kites" in s for s in seen)
    assert any("webinar" in s or "film" in s for s in seen)
    assert not any("picture" in s or "report" in s for s in seen)
