"""The ``llm`` router: a prompted language model names the sources a question needs.

Small models answer loosely ("Sources: a picture and the text."), so the answer is parsed by
words, synonyms included, and anything that names no route falls back to every available
corpus (as ``all`` does) rather than to no retrieval.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.protocols import Route
from ragmm.routing import NONE, AllCorporaRouter
from ragmm.types import Query

SYSTEM_PROMPT = (
    "You decide where to look for the answer to a question. The sources are:\n"
    "paragraph: a passage of text (facts, definitions, explanations)\n"
    "document: a whole document (summaries, overviews, main points)\n"
    "image: pictures (what something looks like)\n"
    "clip: a moment of a video (what was said or shown at some point)\n"
    "video: a whole video (what the video is about)\n"
    "none: no lookup needed (greetings, chit-chat, arithmetic)\n"
    "Reply with the source names only, separated by commas."
)

# Words a model uses for each route, matched as whole words in its answer.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "paragraph": ("paragraph", "paragraphs", "passage", "passages", "text"),
    "document": ("document", "documents", "doc", "report", "article"),
    "image": ("image", "images", "picture", "pictures", "photo", "photos", "illustration", "drawing"),
    "clip": ("clip", "clips", "segment", "scene", "moment"),
    "video": ("video", "videos", "film", "movie"),
    NONE: ("none", "no lookup", "no retrieval", "nothing", "no source", "no sources"),
}
_PATTERN = re.compile(r"\b(" + "|".join(sorted((re.escape(w) for ws in SYNONYMS.values() for w in ws), key=len, reverse=True)) + r")\b")
_ROUTE_OF = {w: route for route, ws in SYNONYMS.items() for w in ws}


def parse_routes(answer: str) -> list[str] | None:
    """The routes a model's answer names, in the order named; ``None`` when it names none.

    ``none`` beside a corpus is dropped (the model hedged: searching is the safe reading).

    Example:
        >>> parse_routes("Sources: Image, paragraph.")
        ['image', 'paragraph']
        >>> parse_routes("none") == ["none"]
        True
        >>> parse_routes("I like turtles") is None
        True
    """
    found: list[str] = []
    for match in _PATTERN.finditer(answer.lower()):
        route = _ROUTE_OF[match.group(1)]
        if route not in found:
            found.append(route)
    if not found:
        return None
    corpora = [r for r in found if r != NONE]
    return corpora or [NONE]


class LLMRouter:
    """Asks a language model which sources a question needs.

    Args:
        lm: a :class:`~ragmm.routing.lm.JudgeLM` (built lazily by ``lm_factory`` when ``None``).
        lm_factory: a zero-argument callable giving the language model.
        system_prompt: the instructions.
        max_new_tokens: the longest answer read.

    Example:
        >>> router = LLMRouter.from_config(LLMRouter.Config())              # doctest: +SKIP
        >>> router.route(Query("hello!"), ["paragraph", "image"])          # doctest: +SKIP
        []
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        model: str | None = Field(None, description="None = the packaged SmolLM2-135M-Instruct; else a local folder, .gguf file or cached hub id")
        device: str = Field("auto", description="'auto', 'cpu' or 'cuda'")
        max_new_tokens: int = Field(12, gt=0, description="tokens of the answer read; a list of route names is short")
        system_prompt: str = SYSTEM_PROMPT

    def __init__(self, lm: Any = None, lm_factory: Callable[[], Any] | None = None, system_prompt: str = SYSTEM_PROMPT, max_new_tokens: int = 12) -> None:
        self._lm = lm
        self._lm_factory = lm_factory
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.fallbacks = 0  # answers that named no route (counted for evaluation)

    @classmethod
    def from_config(cls, config: Config, **_: Any) -> LLMRouter:
        from ragmm.routing.lm import ChatLM

        return cls(lm_factory=lambda: ChatLM(config.model, config.device), system_prompt=config.system_prompt, max_new_tokens=config.max_new_tokens)

    @property
    def lm(self) -> Any:
        if self._lm is None:
            self._lm = self._lm_factory() if self._lm_factory else None
        return self._lm

    def answer(self, text: str) -> str:
        """The model's raw answer for a question."""
        return self.lm.complete(self.system_prompt, f"Question: {text}\nSources:", self.max_new_tokens)

    def probabilities(self, text: str) -> Mapping[str, float] | None:
        """1 for each route the model named, 0 for the others; ``None`` when it named none."""
        routes = parse_routes(self.answer(text))
        if routes is None:
            return None
        return {r: 1.0 for r in routes}

    def route(self, query: Query, available: Sequence[str]) -> list[Route]:
        """The corpora the model named that are available, in its order; ``[]`` for ``none``;
        every available corpus when it named nothing usable."""
        if query.corpora is not None:
            return AllCorporaRouter().route(query, available)
        named = self.probabilities(query.text)
        if named is not None and NONE in named:
            return []
        chosen = [Route(c, 1.0) for c in (named or {}) if c in available]
        if not chosen:
            self.fallbacks += 1
            return AllCorporaRouter().route(query, available)
        return chosen
