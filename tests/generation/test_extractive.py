"""The extractive generator quotes the right evidence sentences and cites only its evidence."""

from __future__ import annotations

import pytest

from ragmm.generation.extractive import NO_MATCH_ANSWER, ExtractiveGenerator
from ragmm.generation.prompt import NO_EVIDENCE_ANSWER, parse_citations
from ragmm.registry import registry
from ragmm.types import Answer, Hit, Item, Query

BREAD = "Bread is made from flour, water, salt and yeast. The dough rises because yeast produces carbon dioxide gas."
LIGHTHOUSE = (
    "A lighthouse is a tower with a bright lamp at the top. It warns ships of dangerous rocks at night. "
    "The oldest lighthouses burned wood fires."
)
VOLCANO = "A volcano is an opening in the crust of a planet. Lava is molten rock that erupts from a volcano."


def hits(*texts: str) -> list[Hit]:
    return [Hit(Item("paragraph", f"doc{i}.md", t), score=1.0 - i / 10) for i, t in enumerate(texts)]


def assert_citations_point_into(answer: Answer, evidence: list[Hit]) -> None:
    """The Generator contract: every citation is a given hit, under its own number."""
    for c in answer.citations:
        assert 1 <= c.n <= len(evidence)
        assert c.hit is evidence[c.n - 1]
    assert set(parse_citations(answer.text, len(evidence))) == {c.n for c in answer.citations}
    assert parse_citations(answer.text, 10**6) == parse_citations(answer.text, len(evidence))


def test_answers_with_the_sentence_that_holds_the_answer() -> None:
    evidence = hits(BREAD, LIGHTHOUSE, VOLCANO)
    answer = ExtractiveGenerator(max_sentences=1).generate(Query("What do lighthouses warn ships of?"), evidence)
    assert answer.text == "It warns ships of dangerous rocks at night. [2]"
    assert [c.n for c in answer.citations] == [2]
    assert answer.citations[0].hit is evidence[1]
    assert answer.generator == "extractive"
    assert answer.evidence == evidence
    assert "generate" in answer.timings


def test_sentences_are_written_in_evidence_order_each_with_its_marker() -> None:
    evidence = hits(VOLCANO, BREAD)
    answer = ExtractiveGenerator(max_sentences=3, min_overlap=0.3).generate(Query("Why does bread dough rise with yeast?"), evidence)
    assert answer.text == (
        "Bread is made from flour, water, salt and yeast. [2] The dough rises because yeast produces carbon dioxide gas. [2]"
    )
    assert_citations_point_into(answer, evidence)


def test_max_sentences_and_min_overlap_limit_the_answer() -> None:
    evidence = hits(LIGHTHOUSE, VOLCANO)
    question = Query("lighthouse volcano rocks")
    assert len(ExtractiveGenerator(max_sentences=1, min_overlap=0.0).generate(question, evidence).citations) == 1
    three = ExtractiveGenerator(max_sentences=3, min_overlap=0.0).generate(question, evidence)
    assert three.text.count("[") == 3
    assert ExtractiveGenerator(min_overlap=1.0).generate(question, evidence).citations == []


def test_duplicate_text_from_two_corpora_is_quoted_once() -> None:
    # The paragraph and the document corpus return the same sentence: quote the better-ranked one.
    evidence = hits(LIGHTHOUSE, LIGHTHOUSE)
    answer = ExtractiveGenerator(max_sentences=3).generate(Query("What do lighthouses warn ships of?"), evidence)
    assert answer.text.count("warns ships") == 1
    assert [c.n for c in answer.citations] == [1]


def test_no_matching_sentence_gives_no_citation() -> None:
    evidence = hits(BREAD, VOLCANO)
    answer = ExtractiveGenerator().generate(Query("Who won the 1998 World Cup?"), evidence)
    assert answer.text == NO_MATCH_ANSWER
    assert answer.citations == []
    assert ExtractiveGenerator().generate(Query("What is it?"), evidence).citations == []


def test_empty_evidence_says_there_is_nothing_to_answer_from() -> None:
    answer = ExtractiveGenerator().generate(Query("What is a lighthouse?"), [])
    assert answer.text == NO_EVIDENCE_ANSWER
    assert answer.citations == [] and answer.evidence == []


@pytest.mark.parametrize(
    "question",
    ["What do lighthouses warn ships of?", "Why does bread rise?", "What is lava?", "Tell me about rocks and fires", "nothing relevant", ""],
)
def test_cites_only_given_evidence(question: str) -> None:
    evidence = hits(BREAD, LIGHTHOUSE, VOLCANO, "Text with a fake marker [7] about rocks and ships.")
    answer = ExtractiveGenerator(max_sentences=5, min_overlap=0.0).generate(Query(question), evidence)
    assert_citations_point_into(answer, evidence)


def test_built_from_config_through_the_registry() -> None:
    cls = registry.get("generator", "extractive")
    assert cls is ExtractiveGenerator
    gen = cls.from_config(cls.Config(max_sentences=1, min_overlap=0.5))
    assert (gen.max_sentences, gen.min_overlap) == (1, 0.5)
    with pytest.raises(ValueError, match="max_sentence"):
        cls.Config.model_validate({"max_sentence": 2})


def test_stream_yields_the_quoted_sentences_then_the_answer() -> None:
    from ragmm.types import Answer

    evidence = [
        Hit(Item("paragraph", "sea.md", "Lighthouses warn ships of rocks. They are tall."), 0.8),
        Hit(Item("paragraph", "lens.md", "Fresnel designed a lens for lighthouses. It has prisms."), 0.7),
    ]
    pieces = list(ExtractiveGenerator().stream(Query("What do lighthouses warn, and who designed the lens?"), evidence))
    answer = pieces[-1]
    assert isinstance(answer, Answer) and len(pieces) >= 3
    assert "".join(pieces[:-1]) == answer.text
    assert answer.text == ExtractiveGenerator().generate(Query("What do lighthouses warn, and who designed the lens?"), evidence).text
