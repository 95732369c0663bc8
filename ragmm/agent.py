"""The retrieval loop: route, search, rerank; when nothing relevant is found, try the next most
probable route, then a rewritten query, then give up honestly. Every step goes into a
:class:`~ragmm.types.Trace` (``ragmm ask --explain``).

A step limit (``[agent] max_searches``) bounds the loop: a question costs at most that many
searches, whatever the router and the reranker say.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError
from ragmm.protocols import Reranker, Router
from ragmm.types import Candidate, Hit, Query, Step, Trace

Search = Callable[[Query, str, int], list[Hit]]

# Words that shape a question but say nothing a retriever can match.
_QUESTION_WORDS = frozenset(
    """a an and are as at be been being by can could did do does for from had has have how i if in into is it its me my of on or
    our please shall should so tell than that the their them then there these they this those to us was we were what when where
    which who whom whose why will with would you your about any some""".split()
)
_WORD = re.compile(r"[\w'-]+")


class AgentSettings(BaseModel):
    """``[agent]``: how hard the pipeline tries before it says it found nothing relevant."""

    model_config = ConfigDict(extra="forbid")

    max_searches: int = Field(3, ge=1, le=10, description="searches per question at most (the first one included)")
    fallback_routes: bool = Field(True, description="when nothing relevant is found, search the next most probable corpus not yet searched (once)")
    rewrite: Literal["off", "rules", "llm"] = Field(
        "rules", description="then rewrite the query once: rules (keep the content words) or llm (the generator rewrites it)"
    )


def rules_rewrite(text: str) -> str:
    """The question's content words, in order: what a retriever can match.

    Example:
        >>> rules_rewrite("When can visitors come to the apiary?")
        'visitors come apiary'
    """
    words = [w for w in _WORD.findall(text) if w.lower() not in _QUESTION_WORDS]
    return " ".join(words)


def llm_rewriter(generator_factory: Callable[[], object]) -> Callable[[str], str]:
    """A rewrite by the configured generator's language model (``complete(prompt) -> str``).

    Raises:
        ConfigError: the generator cannot complete free text (``extractive`` cannot).
    """

    def rewrite(text: str) -> str:
        generator = generator_factory()
        complete = getattr(generator, "complete", None)
        if complete is None:
            raise ConfigError(f"[agent] rewrite = \"llm\" needs a generator that completes text; {type(generator).__name__} does not: use rewrite = \"rules\"")
        out = complete(f"Rewrite this question as a short search query. Question: {text}\nSearch query:")
        line = next((ln.strip() for ln in str(out).splitlines() if ln.strip()), "")
        return line.strip("\"'")[:300]

    return rewrite


class RetrievalLoop:
    """Route -> search -> rerank, with fallbacks (see the module docstring).

    Args:
        router: picks the corpora; its ``probabilities(text)`` (when it has one) orders the
            fallback routes.
        reranker: keeps the relevant hits, up to ``k``; ``[]`` means nothing passed.
        search: ``(query, corpus, n) -> hits`` of one corpus.
        settings: ``[agent]``.
        rewrite: the query rewriter (``None``: no rewrite step).
    """

    def __init__(
        self,
        router: Router,
        reranker: Reranker,
        search: Search,
        settings: AgentSettings,
        rewrite: Callable[[str], str] | None = None,
        encode_clock: Callable[[], float] | None = None,
    ) -> None:
        self.router = router
        self.reranker = reranker
        self.search = search
        self.settings = settings
        self.rewrite = rewrite
        # Seconds spent encoding queries so far (QueryEmbeddings.encode_seconds): the stage
        # that asks first pays the shared encode; it is reported as "encode" instead.
        self.encode_clock = encode_clock or (lambda: 0.0)

    def run(self, query: Query, available: Sequence[str], k: int, per_corpus: int, timings: dict[str, float] | None = None) -> tuple[list[Hit], Trace]:
        """The evidence for ``query`` (possibly none) and the trace of how it was found."""
        timings = timings if timings is not None else {}
        trace = Trace()
        t0, e0 = time.perf_counter(), self.encode_clock()
        routes = self.router.route(query, available)
        self._add(timings, "route", t0, e0)
        trace.steps.append(Step("route", query.text, routes=[(r.corpus, r.probability) for r in routes]))
        if not routes:
            trace.steps.append(Step("stop", query.text, note="the router says no retrieval is needed"))
            return [], trace
        searched: list[str] = []
        plan = [r.corpus for r in routes]
        current, fell_back, rewritten = query, False, False
        for n in range(1, self.settings.max_searches + 1):
            kept = self._search(current, plan, k, per_corpus, trace, timings)
            searched += [c for c in plan if c not in searched]
            if kept:
                trace.steps.append(Step("stop", current.text, note=f"{len(kept)} relevant item(s) found"))
                return kept, trace
            if n == self.settings.max_searches:
                trace.steps.append(Step("stop", current.text, note=f"nothing relevant after {n} search(es): the step limit"))
                return [], trace
            fallback = self._next_route(query, available, searched) if self.settings.fallback_routes and not fell_back else None
            if fallback is not None:
                fell_back = True
                plan = [fallback]
                continue
            if self.rewrite is not None and not rewritten:
                rewritten = True
                text = self.rewrite(query.text)
                if text and text.lower() != query.text.lower():
                    current = dataclasses.replace(query, text=text)
                    trace.steps.append(Step("rewrite", text, note=self.settings.rewrite))
                    plan = list(searched)
                    continue
            break
        trace.steps.append(Step("stop", current.text, note="nothing relevant found in any corpus tried"))
        return [], trace

    def _search(self, query: Query, corpora: Sequence[str], k: int, per_corpus: int, trace: Trace, timings: dict[str, float]) -> list[Hit]:
        t0, e0 = time.perf_counter(), self.encode_clock()
        hits = [h for corpus in corpora for h in self.search(query, corpus, per_corpus)]
        self._add(timings, "retrieve", t0, e0)
        retrieval = [(h, h.score) for h in hits]  # before a reranker rescales scores
        t1, e1 = time.perf_counter(), self.encode_clock()
        kept = self.reranker.rerank(query, hits, k)
        self._add(timings, "rerank", t1, e1)
        kept_ids = {h.item.id: h for h in kept}
        candidates = []
        for h, score in sorted(retrieval, key=lambda pair: pair[1], reverse=True):
            final = kept_ids.get(h.item.id)
            relevancy = (final or h).scores.get("relevancy", final.score if final is not None else None)
            candidates.append(Candidate(h.item.corpus, h.item.source, str(h.item.locator), float(score), relevancy, final is not None))
        trace.steps.append(Step("search", query.text, corpora=list(corpora), candidates=candidates))
        return kept

    def _next_route(self, query: Query, available: Sequence[str], searched: Sequence[str]) -> str | None:
        """The most probable available corpus not yet searched (``None`` when all were)."""
        rest = [c for c in available if c not in searched and (query.corpora is None or c in query.corpora)]
        if not rest:
            return None
        probabilities = getattr(self.router, "probabilities", None)
        if probabilities is None:
            return rest[0]
        p = probabilities(query.text)
        return max(rest, key=lambda c: p.get(c, 0.0))

    def _add(self, timings: dict[str, float], stage: str, since: float, encoded_before: float) -> None:
        """Add the time since ``since`` to ``stage``, less the query encoding done meanwhile,
        which goes to ``encode``."""
        elapsed = time.perf_counter() - since
        encode = self.encode_clock() - encoded_before
        timings[stage] = timings.get(stage, 0.0) + elapsed - encode
        if encode > 0:
            timings["encode"] = timings.get("encode", 0.0) + encode
