"""What every relevancy reranker shares: calibrated scores and adaptive selection up to ``k``.

A relevancy reranker scores each (query, item) pair raw, turns the raw score into a calibrated
relevancy in [0, 1] (one curve per kind of item, :mod:`ragmm.reranking.calibration`), and keeps
the items whose relevancy passes ``threshold``, at most ``k`` (after "Re-ranking the Context for
Multimodal RAG", Mortaheb et al. 2025): a fixed top-k instead hands the generator noise
whenever fewer than ``k`` items are relevant, and ``[]`` lets the answer say nothing was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragmm.reranking.calibration import Calibration
from ragmm.types import Hit, Item, Query


def item_text(item: Item) -> str:
    """The text a text-reading reranker sees for an item: its text (an image's text view:
    title, description, OCR), else its file name."""
    return item.text or str(item.metadata.get("file_name") or Path(item.source).name)


def dedupe(hits: Sequence[Hit]) -> list[Hit]:
    """One hit per item (the best-scored), best retrieval score first; ties keep their order."""
    seen: set[str] = set()
    out: list[Hit] = []
    for hit in sorted(hits, key=lambda h: -h.score):
        if hit.item.id not in seen:
            seen.add(hit.item.id)
            out.append(hit)
    return out


def select(hits: Sequence[Hit], relevancies: Sequence[float], k: int, threshold: float) -> list[Hit]:
    """Adaptive up-to-``k``: the hits whose relevancy passes ``threshold``, best first, at most ``k``.

    Each kept hit is a new :class:`Hit` whose ``score`` is its relevancy, with the score it came
    in with kept as ``scores["retrieval"]`` and the relevancy as ``scores["relevancy"]``. Equal
    relevancies are ordered by retrieval score, then by input order.

    Example:
        >>> from ragmm.types import Item
        >>> hits = [Hit(Item("paragraph", "a.txt", "a"), 0.9), Hit(Item("paragraph", "b.txt", "b"), 0.8)]
        >>> [h.item.source for h in select(hits, [0.2, 0.7], k=5, threshold=0.5)]
        ['b.txt']
    """
    if k <= 0:
        return []
    scored = [(float(r), i, h) for i, (h, r) in enumerate(zip(hits, relevancies, strict=True)) if r >= threshold]
    scored.sort(key=lambda t: (-t[0], -t[2].score, t[1]))
    return [Hit(h.item, r, {**h.scores, "retrieval": h.score, "relevancy": r}) for r, _, h in scored[:k]]


class CalibratedReranker:
    """Base of the relevancy rerankers: subclasses give raw scores, this calibrates and selects.

    Args:
        calibration: the curves by kind of item, and the threshold chosen with them.
        threshold: least calibrated relevancy to keep an item (``None``: the calibration's).
    """

    def __init__(self, calibration: Calibration, threshold: float | None = None) -> None:
        self.calibration = calibration
        self.threshold = calibration.threshold if threshold is None else threshold

    def raw_scores(self, query: Query, items: Sequence[Item]) -> list[float]:
        """One raw score per item (higher: more relevant)."""
        raise NotImplementedError

    def relevancies(self, query: Query, items: Sequence[Item]) -> list[float]:
        """Calibrated relevancy in [0, 1] per item."""
        if not items:
            return []
        raw = self.raw_scores(query, items)
        return self.calibration.apply(raw, [self.calibration.kind_of(it.corpus, it.modality) for it in items])

    def rerank(self, query: Query, hits: Sequence[Hit], k: int) -> list[Hit]:
        """The relevant hits, best first, at most ``k``; ``[]`` when none passes the threshold."""
        unique = dedupe(hits)
        if not unique or k <= 0:
            return []
        return select(unique, self.relevancies(query, [h.item for h in unique]), k, self.threshold)


def load_calibration(explicit: str | None, model_folder: Path | None, shipped: Path | None) -> Calibration:
    """The calibration to use: an explicit file, else the model folder's, else a shipped one.

    Raises:
        ConfigError: none of them exists.
    """
    from ragmm.errors import ConfigError
    from ragmm.reranking.calibration import CALIBRATION_FILE

    for candidate in (Path(explicit).expanduser() if explicit else None, model_folder, shipped):
        if candidate is None:
            continue
        if explicit and candidate == Path(explicit).expanduser():
            return Calibration.load(candidate)
        if (candidate / CALIBRATION_FILE).is_file():
            return Calibration.load(candidate)
    where = model_folder or "the model"
    raise ConfigError(f"[reranker] no {CALIBRATION_FILE} in {where} and no `calibration` file given; fit one with `ragmm train reranker`")


def to_list(x: Any) -> list[float]:
    return [float(v) for v in x]
