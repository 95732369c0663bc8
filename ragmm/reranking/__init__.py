"""Rerankers: merge the hits of several corpora and keep the best ``k``.

The relevancy-score reranker that learns to drop irrelevant evidence (after "Re-ranking the
Context for Multimodal RAG") is trained in a later issue; ``none`` ranks by retrieval score.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from ragmm.types import Hit, Query


class ScoreOrderReranker:
    """Sorts hits by their retrieval score, drops duplicates and those under ``min_score``."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        min_score: float | None = Field(None, description="hits scoring lower are dropped (cosine similarity for dense retrieval)")

    def __init__(self, min_score: float | None = None) -> None:
        self.min_score = min_score

    @classmethod
    def from_config(cls, config: Config) -> ScoreOrderReranker:
        return cls(config.min_score)

    def rerank(self, query: Query, hits: Sequence[Hit], k: int) -> list[Hit]:
        seen: set[str] = set()
        out: list[Hit] = []
        for hit in sorted(hits, key=lambda h: h.score, reverse=True):
            if hit.item.id in seen or (self.min_score is not None and hit.score < self.min_score):
                continue
            seen.add(hit.item.id)
            out.append(hit)
            if len(out) == k:
                break
        return out
