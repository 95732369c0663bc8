"""Pieces every generator shares: the numbered evidence block, citation markers, grounding.

A generator sees its evidence as a numbered list (``[1] (source, locator) text``) and cites
it by number. The rules that keep citations honest live here, so that every generator
follows them:

* a marker outside ``1..len(evidence)`` is never a citation and is removed from the text;
* when a language model cites nothing, each answer sentence is matched lexically against
  the evidence and gets the marker of the evidence that supports it best, if any does.

Sentences are split by pysbd's rules (abbreviations, decimals, quotes); words are lowercase
``\\w+`` tokens without NLTK's English stopwords (read as a plain file from the data
llama-index-core ships), Porter-stemmed (snowballstemmer) so that "lighthouses" matches
"lighthouse". None of these imports NLTK itself, which pulls in scipy and scikit-learn: seconds
on every ``ragmm ask``.

Example:
    >>> text = "Lighthouses warn ships [1][7]."
    >>> parse_citations(text, n_evidence=2)
    [1]
    >>> clean_citations(text, n_evidence=2)
    'Lighthouses warn ships [1].'
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

from ragmm.types import Citation, Hit, Query

NO_EVIDENCE_ANSWER = "I found no indexed evidence for this question; index documents with `ragmm index PATH`."

DEFAULT_EVIDENCE_CHARS = 600

# "[1]", "[1, 3]", "[1;2]", "[2-4]": one bracketed group of evidence numbers.
_MARKER = re.compile(r"\[\s*(\d+(?:\s*[-\u2013]\s*\d+)?(?:\s*[,;]\s*\d+(?:\s*[-\u2013]\s*\d+)?)*)\s*\]")
_RANGE = re.compile(r"(\d+)\s*[-\u2013]\s*(\d+)")
_WORD = re.compile(r"\w+")
# A paragraph: a stretch of text without a blank line in it.
_PARAGRAPH = re.compile(r"(?:(?!\n[ \t]*\n)[\s\S])+")
# A range wider than this is not a citation someone meant ("[1-2000]").
_MAX_RANGE = 20

# Used only when NLTK's stopword list cannot be found (it ships with llama-index-core).
_FALLBACK_STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does for from had has have he her his how i if in into is it its "
    "me my no not of on or our she so than that the their them then there these they this those to was we were what when "
    "where which who whom why will with would you your".split()
)


def number_evidence(evidence: Sequence[Hit], max_chars: int = DEFAULT_EVIDENCE_CHARS) -> str:
    """The evidence as the numbered block a generator reads and cites.

    Args:
        evidence: hits, best first; the first is ``[1]``.
        max_chars: each item's text is cut (at a word) to at most this many characters.

    Returns:
        One line per hit: ``[n] (source, locator) text``; the source is the file name.

    Example:
        >>> from ragmm.types import Item, Locator
        >>> hit = Hit(Item("paragraph", "docs/sea.md", "Lighthouses warn ships.", Locator(char_start=0, char_end=23)), 0.9)
        >>> number_evidence([hit])
        '[1] (sea.md, chars 0-23) Lighthouses warn ships.'
    """
    return "\n".join(evidence_line(n, hit, max_chars) for n, hit in enumerate(evidence, start=1))


def evidence_line(n: int, hit: Hit, max_chars: int = DEFAULT_EVIDENCE_CHARS) -> str:
    """Evidence ``n`` as one line: ``[n] (source, locator) text``, the text cut to ``max_chars``."""
    item = hit.item
    text = truncate(" ".join(strip_markers(item.text).split()), max_chars)
    name = Path(item.source).name or item.source
    where = f"image {name}" if item.modality == "image" else f"{name}, {item.locator}"
    return f"[{n}] ({where}) {text}"


def question_text(query: Query) -> str:
    """The question as a text-only generator reads it; a query image is named, and the
    evidence (found by the image) stands in for what it shows."""
    if query.image is None:
        return query.text
    return f"{query.text} (The question is about the image {Path(query.image).name}. The evidence was found by looking for images and passages like it, most similar first.)"


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at a word boundary when one is near."""
    if len(text) <= max_chars:
        return text
    if max_chars <= 1:
        return text[:max_chars]
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip() + "\u2026"


def _marker_numbers(group: str) -> list[int]:
    """The numbers of one marker's inside, ranges expanded: ``"1, 3-4"`` -> ``[1, 3, 4]``."""
    numbers: list[int] = []
    for part in re.split(r"[,;]", group):
        span = _RANGE.fullmatch(part.strip())
        if span:
            lo, hi = int(span.group(1)), int(span.group(2))
            if lo <= hi and hi - lo < _MAX_RANGE:
                numbers.extend(range(lo, hi + 1))
        else:
            numbers.append(int(part))
    return numbers


def parse_citations(text: str, n_evidence: int) -> list[int]:
    """Evidence numbers cited in ``text``, in order of first mention, each once.

    Numbers outside ``1..n_evidence`` are dropped: a generator never cites evidence it was
    not given.

    Example:
        >>> parse_citations("A [2]. B [1, 3][2]. C [9].", n_evidence=3)
        [2, 1, 3]
    """
    seen: dict[int, None] = {}
    for match in _MARKER.finditer(text):
        for n in _marker_numbers(match.group(1)):
            if 1 <= n <= n_evidence:
                seen.setdefault(n, None)
    return list(seen)


def clean_citations(text: str, n_evidence: int) -> str:
    """``text`` with out-of-range numbers removed from its markers.

    A marker with some valid numbers keeps those (``[1, 7]`` -> ``[1]`` for two items); a
    marker with none is removed with the space before it.

    Example:
        >>> clean_citations("Ships [1, 7]. Rocks [7].", n_evidence=2)
        'Ships [1]. Rocks.'
    """

    def keep_valid(match: re.Match[str]) -> str:
        valid = [n for n in dict.fromkeys(_marker_numbers(match.group(1))) if 1 <= n <= n_evidence]
        return f"[{', '.join(map(str, valid))}]" if valid else ""

    text = _MARKER.sub(keep_valid, text)
    # Removing "[7]" from "rocks [7]." leaves "rocks ."; close the gap.
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def strip_markers(text: str) -> str:
    """``text`` without any ``[n]`` markers.

    Evidence often carries its own footnote markers (``[12]`` in a wiki page); quoted or
    shown to a model as they are, they would read as citations of other evidence.

    Example:
        >>> strip_markers("Ships sail.[12] Rocks [3, 4] sink.")
        'Ships sail. Rocks sink.'
    """
    return clean_citations(text, 0)


def build_citations(numbers: Sequence[int], evidence: Sequence[Hit]) -> list[Citation]:
    """One :class:`Citation` per distinct valid number, in the given order.

    Example:
        >>> from ragmm.types import Item
        >>> hits = [Hit(Item("paragraph", "a.md", "A."), 0.9), Hit(Item("paragraph", "b.md", "B."), 0.8)]
        >>> [(c.n, c.hit.item.source) for c in build_citations([2, 2, 5], hits)]
        [(2, 'b.md')]
    """
    return [Citation(n=n, hit=evidence[n - 1]) for n in dict.fromkeys(numbers) if 1 <= n <= len(evidence)]


def ground(text: str, evidence: Sequence[Hit], min_f1: float = 0.25) -> tuple[str, list[int]]:
    """Cite, for each sentence of ``text``, the evidence that supports it best.

    Support is token F1 between the answer sentence and the best-matching sentence of an
    evidence item (content words only); a sentence gets a marker only when that F1 is above
    ``min_f1``. Use it when a language model's answer cites nothing.

    Args:
        text: the answer, without citation markers.
        evidence: the hits the answer was written from; ``[n]`` is ``evidence[n - 1]``.
        min_f1: least token F1 for a sentence to count as supported.

    Returns:
        The text with `` [n]`` after each supported sentence, and the cited numbers.

    Example:
        >>> from ragmm.types import Item
        >>> hits = [Hit(Item("p", "a.md", "Bread rises because yeast makes gas."), 0.9),
        ...         Hit(Item("p", "b.md", "A lighthouse warns ships of rocks."), 0.8)]
        >>> ground("Lighthouses warn ships about rocks.", hits)
        ('Lighthouses warn ships about rocks. [2]', [2])
    """
    evidence_sentences = [evidence_sentence_tokens(hit.item.text) for hit in evidence]
    pieces: list[str] = []
    cited: dict[int, None] = {}
    last = 0
    for start, end in sentence_spans(text):
        tokens = content_tokens(text[start:end])
        best_n, best_f1 = 0, 0.0
        for n, sentences in enumerate(evidence_sentences, start=1):
            f1 = max((token_f1(tokens, s) for s in sentences), default=0.0)
            if f1 > best_f1:
                best_n, best_f1 = n, f1
        pieces.append(text[last:end])
        if best_n and best_f1 > min_f1:
            pieces.append(f" [{best_n}]")
            cited.setdefault(best_n, None)
        last = end
    pieces.append(text[last:])
    return "".join(pieces), list(cited)


def evidence_sentence_tokens(text: str) -> list[list[str]]:
    """The content tokens of each sentence of ``text``."""
    return [content_tokens(text[a:b]) for a, b in sentence_spans(text)]


def token_f1(answer: Sequence[str], reference: Sequence[str]) -> float:
    """SQuAD-style token F1 of two token lists (multiset overlap).

    Example:
        >>> round(token_f1(["lighthous", "warn"], ["lighthous", "warn", "ship", "rock"]), 3)
        0.667
    """
    if not answer or not reference:
        return 0.0
    counts: dict[str, int] = {}
    for t in reference:
        counts[t] = counts.get(t, 0) + 1
    overlap = 0
    for t in answer:
        if counts.get(t, 0) > 0:
            counts[t] -= 1
            overlap += 1
    if not overlap:
        return 0.0
    precision, recall = overlap / len(answer), overlap / len(reference)
    return 2 * precision * recall / (precision + recall)


def content_tokens(text: str) -> list[str]:
    """Lowercase word tokens of ``text`` without stopwords or markers, stemmed.

    Example:
        >>> content_tokens("What are the Lighthouses for? [1]")
        ['lighthous']
    """
    stop = _stopwords()
    stem = _stemmer()
    words = _WORD.findall(_MARKER.sub(" ", text).lower())
    return [stem(w) for w in words if w not in stop]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the sentences of ``text``.

    Blank lines always end a sentence (a heading or list item is not glued to the next
    paragraph); inside a paragraph pysbd's rules decide, so "Dr." or "3.5" do not, and a
    single line break is a space (hard-wrapped text).

    Example:
        >>> text = "Dr. Smith sails at 3.5 knots. He is late!\\n\\nNext part"
        >>> [text[a:b] for a, b in sentence_spans(text)]
        ['Dr. Smith sails at 3.5 knots.', 'He is late!', 'Next part']
    """
    spans: list[tuple[int, int]] = []
    split = _sentence_splitter()
    for para in _PARAGRAPH.finditer(text):
        offset = para.start()
        for a, b in split(para.group()):
            sentence = para.group()[a:b]
            a += len(sentence) - len(sentence.lstrip())
            b -= len(sentence) - len(sentence.rstrip())
            if b > a:
                spans.append((offset + a, offset + b))
    return spans


def _nltk_stopwords_file() -> Path | None:
    """NLTK's English stopword list inside llama-index-core's bundled ``nltk_cache``.

    ``find_spec`` locates the folder without importing llama-index (seconds of imports).
    """
    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "_static" / "nltk_cache" / "corpora" / "stopwords" / "english"
    return path if path.is_file() else None


@functools.cache
def _sentence_splitter():  # -> Callable[[str], Iterable[tuple[int, int]]]
    try:
        import pysbd
    except ImportError:
        pysbd = None
    if pysbd is not None:
        segmenter = pysbd.Segmenter(language="en", clean=False, char_span=True)

        def pysbd_spans(text: str) -> list[tuple[int, int]]:
            # Same length, so spans index the original text.
            flat = text.replace("\n", " ").replace("\r", " ")
            return [(span.start, span.end) for span in segmenter.segment(flat)]

        return pysbd_spans
    # Without pysbd: end a sentence at . ! ? followed by space and an upper-case letter or digit.
    boundary = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")

    def regex_spans(text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for m in boundary.finditer(text):
            spans.append((start, m.start()))
            start = m.end()
        spans.append((start, len(text.rstrip())))
        return [(a, b) for a, b in spans if b > a]

    return regex_spans


@functools.cache
def _stopwords() -> frozenset[str]:
    path = _nltk_stopwords_file()
    if path is not None:
        return frozenset(w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip())
    return _FALLBACK_STOPWORDS


@functools.cache
def _stemmer():  # -> Callable[[str], str]
    try:
        import snowballstemmer
    except ImportError:
        return lambda word: word
    return functools.lru_cache(maxsize=65536)(snowballstemmer.stemmer("porter").stemWord)


# A phrase of 2 to 15 words said three or more times in a row: the loop greedy decoding of a
# small model falls into ("the direction of the direction of the direction of ...").
_LOOP = re.compile(r"(\b\w+(?:\W+\w+){1,14}?)(?:\W+\1\b){2,}", re.IGNORECASE)


def has_repetition_loop(text: str) -> bool:
    """Whether ``text`` has fallen into a loop that :func:`trim_repetition` would cut.

    Example:
        >>> has_repetition_loop("the direction of the direction of the direction of")
        True
    """
    return _LOOP.search(text) is not None


def trim_repetition(text: str) -> str:
    """``text`` cut where it starts repeating one phrase in a loop, keeping the phrase once.

    Example:
        >>> trim_repetition("It shows the direction of the direction of the direction of the direction")
        'It shows the direction of...'
        >>> trim_repetition("Fresnel [2] [2] [2] [2] [2] [2] [2]")
        'Fresnel [2]...'
    """
    m = _LOOP.search(text)
    if m is None:
        return text
    kept = text[: m.start(1) + len(m.group(1))]
    # A loop of markers ("[2] [2] [2]") is cut inside one: drop the unclosed "[2".
    kept = re.sub(r"\[[\d\s,;\-\u2013]*$", "", kept)
    return kept.rstrip(" ,;:") + "..."
