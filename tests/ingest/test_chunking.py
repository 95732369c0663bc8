from pathlib import Path

from ragmm.ingest.chunking import DOCUMENT, PARAGRAPH, Chunker, _group
from ragmm.ingest.readers import Page, ParsedSource


def words(text: str) -> int:
    return len(text.split())


def make_source(pages: list[Page]) -> ParsedSource:
    return ParsedSource(path=Path("x.txt"), key="x.txt", source_hash="h", pages=pages, title="x")


def test_paragraph_spans_point_into_the_source_text():
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(120))
    chunked = Chunker(words, chunk_size=60, chunk_overlap=10, document_max_tokens=10_000).chunk(make_source([Page(text)]))
    assert len(chunked.paragraphs) > 5
    for item in chunked.paragraphs:
        assert item.corpus == PARAGRAPH
        assert words(item.text) <= 60
        loc = item.locator
        assert text[loc.char_start : loc.char_end] == item.text
    # every sentence lands in some chunk
    joined = " ".join(p.text for p in chunked.paragraphs)
    assert all(f"number {i} " in joined for i in range(120))


def test_short_document_is_one_section_with_the_whole_text():
    text = "Bees dance. They tell distance by the waggle run."
    chunked = Chunker(words, 50, 5, 1000).chunk(make_source([Page(text)]))
    assert len(chunked.documents) == 1
    doc = chunked.documents[0]
    assert doc.corpus == DOCUMENT and doc.text == text and doc.locator.section is None
    assert chunked.sections == [[0]]


def test_long_document_is_split_into_sections_within_budget():
    text = " ".join(f"Word{i} is here now." for i in range(2000))
    chunked = Chunker(words, 40, 0, 200).chunk(make_source([Page(text)]))
    assert len(chunked.documents) > 5
    assert [d.locator.section for d in chunked.documents] == list(range(len(chunked.documents)))
    covered = [i for s in chunked.sections for i in s]
    assert covered == list(range(len(chunked.paragraphs)))
    for section in chunked.sections:
        assert sum(words(chunked.paragraphs[i].text) for i in section) <= 200


def test_pages_keep_their_numbers():
    chunked = Chunker(words, 50, 5, 1000).chunk(make_source([Page("Owls hunt at night.", 1), Page("Herons wade in water.", 2)]))
    assert [p.locator.page for p in chunked.paragraphs] == [1, 2]
    assert chunked.documents[0].metadata["pages"] == [1, 2]
    assert "Owls" in chunked.documents[0].text and "Herons" in chunked.documents[0].text


def test_item_ids_are_deterministic_and_content_sensitive():
    a = Chunker(words, 50, 5, 1000).chunk(make_source([Page("Alpha beta gamma.")]))
    b = Chunker(words, 50, 5, 1000).chunk(make_source([Page("Alpha beta gamma.")]))
    c = Chunker(words, 50, 5, 1000).chunk(make_source([Page("Alpha beta delta.")]))
    assert a.paragraphs[0].id == b.paragraphs[0].id
    assert a.paragraphs[0].id != c.paragraphs[0].id


def test_group_gives_oversized_paragraph_its_own_section():
    assert _group([5, 5, 50, 5], budget=12) == [[0, 1], [2], [3]]
