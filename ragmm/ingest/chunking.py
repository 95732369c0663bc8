"""Turning a parsed source into paragraph items and document items.

Paragraphs come from llama-index's sentence-aware ``SentenceSplitter``, sized in the text
encoder's own tokens so no chunk is cut by the encoder's length limit. The document corpus
holds whole documents, or sections of at most ``document_max_tokens`` for long ones; a
section's vector is the normalised mean of its paragraph vectors (computed by the indexer),
since a 256-token encoder would read only the first page of a whole document.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ragmm.ingest.readers import ParsedSource
from ragmm.types import Item, Locator

PARAGRAPH = "paragraph"
DOCUMENT = "document"


@dataclass(slots=True)
class ChunkedSource:
    """Items of one source; ``sections[i]`` lists the paragraph indices that section ``i``
    averages over."""

    source: ParsedSource
    paragraphs: list[Item]
    documents: list[Item]
    sections: list[list[int]]


class Chunker:
    """Splits sources with llama-index's ``SentenceSplitter``.

    Args:
        count_tokens: returns the number of encoder tokens in a string.
        chunk_size: paragraph size in tokens.
        chunk_overlap: tokens shared by neighbouring paragraphs.
        document_max_tokens: largest document section, in tokens.
    """

    def __init__(self, count_tokens: Callable[[str], int], chunk_size: int, chunk_overlap: int, document_max_tokens: int) -> None:
        from llama_index.core.node_parser import SentenceSplitter

        # SentenceSplitter wants a tokenizer returning a list; only its length is used.
        self._splitter = SentenceSplitter(
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            tokenizer=lambda text: range(count_tokens(text)),
            include_metadata=False,
            include_prev_next_rel=False,
        )
        self._count = count_tokens
        self.document_max_tokens = document_max_tokens

    def chunk(self, source: ParsedSource) -> ChunkedSource:
        from llama_index.core import Document

        paragraphs: list[Item] = []
        tokens: list[int] = []
        for page in source.pages:
            nodes = self._splitter.get_nodes_from_documents([Document(text=page.text)])
            cursor = 0
            for node in nodes:
                text = node.get_content()
                start = node.start_char_idx
                if start is None:  # the splitter could not map the chunk back; search from the last one
                    start = page.text.find(text[:64], cursor)
                    start = max(start, 0)
                end = node.end_char_idx if node.end_char_idx is not None else start + len(text)
                cursor = start
                paragraphs.append(
                    Item(
                        corpus=PARAGRAPH,
                        source=source.key,
                        text=text,
                        locator=Locator(page=page.number, char_start=start, char_end=end),
                        source_hash=source.source_hash,
                        metadata={"title": source.title},
                    )
                )
                tokens.append(self._count(text))
        sections = _group(tokens, self.document_max_tokens)
        documents = [self._section_item(source, paragraphs, members, i, len(sections)) for i, members in enumerate(sections)]
        return ChunkedSource(source, paragraphs, documents, sections)

    def _section_item(self, source: ParsedSource, paragraphs: Sequence[Item], members: list[int], i: int, n: int) -> Item:
        first, last = paragraphs[members[0]], paragraphs[members[-1]]
        page_numbers = [p.number for p in source.pages if p.number is not None]
        if page_numbers:
            pages = sorted({paragraphs[m].locator.page for m in members if paragraphs[m].locator.page is not None})
            text = "\n\n".join(_dedupe_overlap([paragraphs[m].text for m in members]))
            locator = Locator(page=pages[0] if pages else None, section=i if n > 1 else None)
            meta = {"title": source.title, "pages": [pages[0], pages[-1]] if pages else []}
        else:
            page_text = source.pages[0].text
            start, end = first.locator.char_start or 0, last.locator.char_end or len(page_text)
            text = page_text[start:end]
            locator = Locator(char_start=start, char_end=end, section=i if n > 1 else None)
            meta = {"title": source.title}
        return Item(corpus=DOCUMENT, source=source.key, text=text, locator=locator, source_hash=source.source_hash, metadata=meta)


def _group(tokens: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive paragraph indices grouped so each group holds at most ``budget`` tokens
    (a single larger paragraph gets its own group)."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, n in enumerate(tokens):
        if current and used + n > budget:
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        groups.append(current)
    return groups


def _dedupe_overlap(texts: list[str]) -> list[str]:
    """Drop the prefix of each paragraph that repeats the end of the previous one (the
    splitter's overlap), so a section's text reads once."""
    out: list[str] = []
    for t in texts:
        if out:
            prev = out[-1]
            for size in range(min(len(prev), len(t)), 0, -1):
                if prev.endswith(t[:size]) and size > 20:
                    t = t[size:].lstrip()
                    break
        out.append(t)
    return out
