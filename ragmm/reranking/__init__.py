"""Rerankers: score each hit's relevancy and keep the relevant ones, up to ``k``.

* ``none``: retrieval-score order, duplicates dropped (scores of different corpora are not
  comparable: a fixed top-k over them is what the others improve on);
* ``cross-encoder``, ``late-interaction``, ``llm``: a calibrated relevancy in [0, 1] for every
  kind of item, and adaptive selection (:mod:`ragmm.reranking.base`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.types import Hit, Query


class ScoreOrderReranker:
    """Sorts hits by their retrieval score, drops duplicates and those under ``min_score``.

    Its ``threshold`` is ``min_score`` (``-inf`` when unset): a raw retrieval score, not a
    calibrated relevancy.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        min_score: float | None = Field(None, description="hits scoring lower are dropped (cosine similarity for dense retrieval)")

    def __init__(self, min_score: float | None = None) -> None:
        self.min_score = min_score
        self.threshold = float("-inf") if min_score is None else min_score

    @classmethod
    def from_config(cls, config: Config, **_: Any) -> ScoreOrderReranker:
        return cls(config.min_score)

    def rerank(self, query: Query, hits: Sequence[Hit], k: int) -> list[Hit]:
        seen: set[str] = set()
        out: list[Hit] = []
        for hit in sorted(hits, key=lambda h: h.score, reverse=True):
            if len(out) >= k:
                break
            if hit.item.id in seen or hit.score < self.threshold:
                continue
            seen.add(hit.item.id)
            out.append(Hit(hit.item, hit.score, {**hit.scores, "retrieval": hit.score}))
        return out
