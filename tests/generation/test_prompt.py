"""Citation markers, the numbered evidence block and the grounding fallback."""

from __future__ import annotations

import pytest

from ragmm.generation.prompt import (
    NO_EVIDENCE_ANSWER,
    build_citations,
    clean_citations,
    content_tokens,
    ground,
    number_evidence,
    parse_citations,
    sentence_spans,
    strip_markers,
    token_f1,
    truncate,
)
from ragmm.types import Hit, Item, Locator


def make_hits(*texts: str) -> list[Hit]:
    return [Hit(Item("paragraph", f"/data/doc{i}.md", t, Locator(char_start=0, char_end=len(t))), 1.0 - i / 10) for i, t in enumerate(texts)]


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("Ships [1].", 2, [1]),
        ("Ships [2]. Rocks [1].", 2, [2, 1]),
        ("Ships [1, 3].", 3, [1, 3]),
        ("Ships [1][2].", 2, [1, 2]),
        ("Ships [ 2 ;1 ].", 2, [2, 1]),
        ("Ships [1-3].", 4, [1, 2, 3]),
        ("Ships [1] and [1] again.", 2, [1]),
        ("No markers here.", 2, []),
        ("Out of range [0] [3] [99].", 2, []),
        ("Mixed [1, 7][5][2].", 2, [1, 2]),
        ("Anything cited without evidence [1].", 0, []),
    ],
)
def test_parse_citations(text: str, n: int, expected: list[int]) -> None:
    assert parse_citations(text, n) == expected


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("Ships [1].", 2, "Ships [1]."),
        ("Ships [3].", 2, "Ships."),
        ("Ships [1, 7]. Rocks [7] here.", 2, "Ships [1]. Rocks here."),
        ("Ships [1][9][2].", 2, "Ships [1][2]."),
        ("[0] Nothing valid [4-5].", 3, "Nothing valid."),
    ],
)
def test_clean_citations_removes_out_of_range_markers(text: str, n: int, expected: str) -> None:
    cleaned = clean_citations(text, n)
    assert cleaned == expected
    # Whatever markers are left are all valid.
    assert parse_citations(cleaned, 10**6) == parse_citations(cleaned, n)


def test_build_citations_points_at_the_numbered_hit() -> None:
    hits = make_hits("a.", "b.", "c.")
    citations = build_citations([3, 1, 3, 0, 4], hits)
    assert [c.n for c in citations] == [3, 1]
    assert citations[0].hit is hits[2] and citations[1].hit is hits[0]


def test_number_evidence_numbers_names_and_truncates() -> None:
    hits = make_hits("Lighthouses warn ships.", "word " * 100)
    block = number_evidence(hits, max_chars=40)
    first, second = block.splitlines()
    assert first == "[1] (doc0.md, chars 0-23) Lighthouses warn ships."
    assert second.startswith("[2] (doc1.md, chars 0-500) word word")
    assert len(second.split(") ", 1)[1]) <= 40
    assert second.endswith("\u2026")


def test_evidence_footnote_markers_are_not_shown_as_citations() -> None:
    assert strip_markers("Ships sail.[12] Rocks [3, 4] sink [1].") == "Ships sail. Rocks sink."
    block = number_evidence(make_hits("Lighthouses warn ships.[2] See [1]."))
    assert parse_citations(block.split(") ", 1)[1], 10) == []


def test_truncate_keeps_short_text_and_cuts_at_a_word() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("alpha beta gamma delta", 12) == "alpha beta\u2026"


def test_sentence_spans_respect_abbreviations_and_blank_lines() -> None:
    text = "Dr. Smith sails at 3.5 knots. He is late!\n\n# Next part\nwrapped line."
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "Dr. Smith sails at 3.5 knots.",
        "He is late!",
        "# Next part\nwrapped line.",
    ]
    assert sentence_spans("   \n\n ") == []


def test_content_tokens_drop_stopwords_and_markers_and_stem() -> None:
    assert content_tokens("What are the Lighthouses for? [1]") == ["lighthous"]
    assert content_tokens("A lighthouse") == ["lighthous"]


def test_token_f1() -> None:
    assert token_f1(["a", "b"], ["a", "b"]) == 1.0
    assert token_f1(["a"], ["b"]) == 0.0
    assert token_f1([], ["a"]) == 0.0
    assert token_f1(["a", "b"], ["a", "c", "d", "e"]) == pytest.approx(2 * 0.5 * 0.25 / 0.75)


def test_ground_cites_the_supporting_evidence_per_sentence() -> None:
    hits = make_hits(
        "Bread is made from flour and water. The dough rises because yeast produces gas.",
        "A lighthouse is a tall tower. It warns ships of dangerous rocks at night.",
    )
    text, numbers = ground("Lighthouses warn ships of rocks. Dough rises because of yeast gas. I like the sea.", hits)
    assert text == "Lighthouses warn ships of rocks. [2] Dough rises because of yeast gas. [1] I like the sea."
    assert numbers == [2, 1]


def test_ground_cites_nothing_below_the_threshold_or_without_evidence() -> None:
    hits = make_hits("A lighthouse is a tall tower. It warns ships of dangerous rocks at night.")
    assert ground("The weather in Paris is mild.", hits) == ("The weather in Paris is mild.", [])
    # "tower" is one of three content words on both sides (F1 1/3): above 0.25, below 0.5.
    assert ground("The tower of Pisa leans.", hits) == ("The tower of Pisa leans. [1]", [1])
    assert ground("The tower of Pisa leans.", hits, min_f1=0.5) == ("The tower of Pisa leans.", [])
    assert ground("A tall tower.", [], min_f1=0.0) == ("A tall tower.", [])


def test_no_evidence_answer_says_how_to_index() -> None:
    assert "ragmm index" in NO_EVIDENCE_ANSWER


def test_trim_repetition_cuts_a_loop_once():
    from ragmm.generation.prompt import trim_repetition

    looped = "The dance shows the direction of the direction of the direction of the direction of the direction [2]"
    assert trim_repetition(looped) == "The dance shows the direction of..."
    said_twice = "Bees dance. Bees dance. They fly [1]."
    assert trim_repetition(said_twice) == said_twice  # twice is not a loop
    assert trim_repetition("A plain answer [1].") == "A plain answer [1]."
