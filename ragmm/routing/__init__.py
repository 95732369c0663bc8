"""Routers: which corpora a query needs.

The modality-aware router (after UniversalRAG) arrives with the image and video corpora;
until then ``all`` searches every configured corpus that exists.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragmm.types import Query


class AllCorporaRouter:
    """Routes every query to all available corpora (or to ``query.corpora`` when given)."""

    def route(self, query: Query, available: Sequence[str]) -> list[str]:
        wanted = query.corpora
        return [c for c in available if wanted is None or c in wanted]
