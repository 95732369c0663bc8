"""An answer made of evidence sentences, no language model: fast, and never says more than the evidence.

Every evidence sentence is scored by the share of the question's words it contains, each
word weighted by its idf over the evidence sentences (a word in every sentence tells
nothing). The best few sentences are written in evidence order, each followed by the
marker of the evidence it came from.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from ragmm.generation.base import collect
from ragmm.generation.prompt import NO_EVIDENCE_ANSWER, build_citations, content_tokens, sentence_spans, strip_markers, truncate
from ragmm.types import Answer, Hit, Query

NO_MATCH_ANSWER = "I found no sentence in the retrieved evidence that shares words with this question; try rephrasing it."


@dataclass(frozen=True, slots=True)
class _Sentence:
    n: int  # evidence number, 1-based
    position: int  # order inside its evidence item
    text: str
    tokens: frozenset[str]
    hit_score: float


class ExtractiveGenerator:
    """Answers with the evidence sentences that best match the question.

    Args:
        max_sentences: most sentences in an answer.
        min_overlap: least idf-weighted share (0..1) of the question's words that a sentence
            must contain to be used.
        max_sentence_chars: longer sentences (a table, a list without full stops) are cut.

    Example:
        >>> from ragmm.types import Item
        >>> hits = [Hit(Item("paragraph", "sea.md", "Lighthouses warn ships of rocks. They are tall."), 0.8)]
        >>> ExtractiveGenerator().generate(Query("What do lighthouses warn?"), hits).text
        'Lighthouses warn ships of rocks. [1]'
    """

    name = "extractive"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        max_sentences: int = Field(3, gt=0, description="most evidence sentences in an answer")
        min_overlap: float = Field(
            0.2, ge=0, le=1, description="least idf-weighted share of the question's words a sentence must contain to be quoted"
        )
        max_sentence_chars: int = Field(400, gt=20, description="longer sentences are cut, so a table or list does not flood the answer")

    def __init__(self, max_sentences: int = 3, min_overlap: float = 0.2, max_sentence_chars: int = 400) -> None:
        self.max_sentences = max_sentences
        self.min_overlap = min_overlap
        self.max_sentence_chars = max_sentence_chars

    @classmethod
    def from_config(cls, cfg: ExtractiveGenerator.Config) -> ExtractiveGenerator:
        return cls(max_sentences=cfg.max_sentences, min_overlap=cfg.min_overlap, max_sentence_chars=cfg.max_sentence_chars)

    def generate(self, query: Query, evidence: Sequence[Hit]) -> Answer:
        """Quote the best-matching evidence sentences, each with its ``[n]``."""
        return collect(self.stream(query, evidence))

    def stream(self, query: Query, evidence: Sequence[Hit]) -> Iterator[str | Answer]:
        """Yield the answer one quoted sentence (with its marker) at a time, then the
        :class:`Answer`; the pieces joined are the answer's text."""
        start = time.perf_counter()
        evidence = list(evidence)
        if not evidence:
            yield NO_EVIDENCE_ANSWER
            yield Answer(text=NO_EVIDENCE_ANSWER, generator=self.name, timings={"generate": time.perf_counter() - start})
            return
        if query.image is not None:
            # Nothing in an image query's words says what the image shows; the evidence found by
            # the image does. Name the closest matches, best first.
            chosen = []
            for n, hit in enumerate(evidence[: self.max_sentences], start=1):
                first = next(iter(_sentences([hit])), None)
                if first is not None:
                    chosen.append(dataclasses.replace(first, n=n))
        else:
            chosen = self.select(query.text, evidence)
        if chosen and query.image is not None:
            pieces = ["Most similar: "] + [("; " if i else "") + f"{truncate(s.text, self.max_sentence_chars)} [{s.n}]" for i, s in enumerate(chosen)]
        elif chosen:
            pieces = [(" " if i else "") + f"{truncate(s.text, self.max_sentence_chars)} [{s.n}]" for i, s in enumerate(chosen)]
        else:
            pieces = [NO_MATCH_ANSWER]
        yield from pieces
        yield Answer(
            text="".join(pieces),
            citations=build_citations([s.n for s in chosen], evidence),
            evidence=evidence,
            timings={"generate": time.perf_counter() - start},
            generator=self.name,
        )

    def select(self, question: str, evidence: Sequence[Hit]) -> list[_Sentence]:
        """The sentences to quote, in evidence order (rank, then position in the item)."""
        sentences = _sentences(evidence)
        wanted = set(content_tokens(question))
        if not sentences or not wanted:
            return []
        df: dict[str, int] = {}
        for s in sentences:
            for t in s.tokens & wanted:
                df[t] = df.get(t, 0) + 1
        # Smoothed idf (as scikit-learn's): a question word absent from the evidence gets the
        # highest weight, so a question about something else scores low everywhere.
        idf = {t: math.log((len(sentences) + 1) / (df.get(t, 0) + 1)) + 1 for t in wanted}
        total = sum(idf.values())

        def overlap(s: _Sentence) -> float:
            return sum(idf[t] for t in s.tokens & wanted) / total

        scored = sorted(((overlap(s), s) for s in sentences), key=lambda x: (-x[0], -x[1].hit_score, x[1].n, x[1].position))
        chosen: list[_Sentence] = []
        seen: set[str] = set()
        for score, s in scored:
            if len(chosen) == self.max_sentences or score <= 0 or score < self.min_overlap:
                break
            # The paragraph and document corpora hold the same text; quote it once.
            key = " ".join(s.text.lower().split())
            if key not in seen:
                seen.add(key)
                chosen.append(s)
        return sorted(chosen, key=lambda s: (s.n, s.position))


def _sentences(evidence: Sequence[Hit]) -> list[_Sentence]:
    out = []
    for n, hit in enumerate(evidence, start=1):
        text = hit.item.text
        for position, (a, b) in enumerate(sentence_spans(text)):
            sentence = " ".join(strip_markers(text[a:b]).split())
            tokens = frozenset(content_tokens(sentence))
            if tokens:
                out.append(_Sentence(n=n, position=position, text=sentence, tokens=tokens, hit_score=hit.score))
    return out
