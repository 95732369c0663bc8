"""Routers: which corpora a query needs (after UniversalRAG, Yeo et al. 2025).

A route is a corpus of one modality and granularity (``paragraph``, ``document``, ``image``,
``clip``, ``video``) or ``none``, a query that needs no retrieval. Routers are multi-label: a
query may need a paragraph and an image. Whatever a router believes, a corpus that is not
available (empty or absent) is never returned.

Implementations (registered in :mod:`ragmm.registry`):

* ``all``: every available corpus (the reranker's calibration makes their scores comparable);
* ``trained``: a small classifier over the text encoder's query embedding
  (:mod:`ragmm.routing.trained`);
* ``llm``: a prompted language model (:mod:`ragmm.routing.llm`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ragmm.protocols import Route
from ragmm.types import Query

NONE = "none"
CORPUS_ROUTES = ("paragraph", "document", "image", "clip", "video")
ROUTES = (NONE, *CORPUS_ROUTES)

# A corpus a router was not trained on (a user's own corpus name) cannot be judged by it: it is
# searched, ranked after the corpora the router chose, with this probability.
UNKNOWN_CORPUS_PROBABILITY = 0.5

__all__ = ["CORPUS_ROUTES", "NONE", "ROUTES", "AllCorporaRouter", "Route", "select_routes"]


class AllCorporaRouter:
    """Routes every query to all available corpora (or to ``query.corpora`` when given)."""

    def route(self, query: Query, available: Sequence[str]) -> list[Route]:
        """Every available corpus, probability 1, in the order given."""
        wanted = query.corpora
        return [Route(c, 1.0) for c in available if wanted is None or c in wanted]


def select_routes(probabilities: Mapping[str, float], available: Sequence[str], threshold: float, wanted: Sequence[str] | None = None) -> list[Route]:
    """Turn a router's per-route probabilities into the corpora to search.

    * ``wanted`` (``Query.corpora``) overrides the router: those available corpora, ranked by
      their probability.
    * ``none`` wins when it passes ``threshold`` and is more probable than every available
      corpus: ``[]`` (answer without retrieval).
    * Otherwise the available corpora passing ``threshold``, most probable first; when none
      passes, the single most probable available corpus (a query is never left unrouted only
      because the router is unsure).
    * Available corpora that are not routes the router knows come last, with
      :data:`UNKNOWN_CORPUS_PROBABILITY`.

    Args:
        probabilities: route -> probability in [0, 1] (multi-label: they need not sum to 1).
        available: corpora that exist and hold items.
        threshold: least probability for a corpus to be chosen.
        wanted: corpora the user asked for, if any.

    Returns:
        Routes whose corpus is in ``available``, most probable first; ``[]`` for no retrieval.

    Example:
        >>> select_routes({"none": 0.1, "paragraph": 0.9, "image": 0.7, "video": 0.95}, ["paragraph", "image"], 0.5)
        [Route(corpus='paragraph', probability=0.9), Route(corpus='image', probability=0.7)]
    """
    known = [c for c in available if c in probabilities and c != NONE]
    unknown = [c for c in available if c not in probabilities and c != NONE]
    ranked = sorted(known, key=lambda c: -probabilities[c])
    if wanted is not None:
        return [Route(c, float(probabilities[c])) for c in ranked if c in wanted] + [Route(c, UNKNOWN_CORPUS_PROBABILITY) for c in unknown if c in wanted]
    p_none = probabilities.get(NONE, 0.0)
    best = probabilities[ranked[0]] if ranked else 0.0
    if p_none >= threshold and p_none > best:
        return []
    chosen = [c for c in ranked if probabilities[c] >= threshold] or ranked[:1]
    return [Route(c, float(probabilities[c])) for c in chosen] + [Route(c, UNKNOWN_CORPUS_PROBABILITY) for c in unknown]
