"""What the language-model generators share: streaming a Hugging Face ``generate`` from a
thread, and turning raw model text into an :class:`~ragmm.types.Answer` whose citations are
honest.

A generator's :meth:`~ragmm.protocols.Generator.stream` yields text pieces, then the final
``Answer``; :func:`collect` is ``generate`` written once over it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ragmm.generation.prompt import build_citations, clean_citations, ground, has_repetition_loop, parse_citations, trim_repetition
from ragmm.types import Answer, Hit

EMPTY_ANSWER = "The model gave no answer; see the evidence below."


def collect(stream: Iterator[str | Answer]) -> Answer:
    """The final :class:`Answer` of a generator's stream (its text pieces are dropped).

    Raises:
        RuntimeError: the stream ended without an ``Answer``.
    """
    last: str | Answer | None = None
    for last in stream:
        pass
    if not isinstance(last, Answer):
        raise RuntimeError("a generator's stream must end with its Answer")
    return last


def finish_answer(raw: str, evidence: Sequence[Hit], shown: int, *, min_support: float, name: str, timings: dict[str, float]) -> Answer:
    """The answer a language model's ``raw`` text makes.

    A repetition loop is cut, markers of evidence the model did not see (beyond ``shown``)
    are removed, and when nothing valid is cited each sentence is given the evidence that
    supports it (token F1 above ``min_support``).
    """
    text = clean_citations(trim_repetition(raw.strip()), shown)
    numbers = parse_citations(text, shown)
    if not numbers:
        text, numbers = ground(text, evidence[:shown], min_support)
    return Answer(text=text or EMPTY_ANSWER, citations=build_citations(numbers, evidence), evidence=list(evidence), timings=timings, generator=name)


def stream_generate(model: Any, tokenizer: Any, inputs: Any, generation_config: Any, stop_when: Callable[[str], bool] | None = has_repetition_loop) -> Iterator[str]:
    """Run ``model.generate`` in a thread and yield the decoded new text as it comes.

    Closing the iterator early (a client that went away) stops generation at the next token.
    An exception in the generating thread is raised here.

    Args:
        model: a transformers model with ``generate``.
        tokenizer: the tokenizer (or a processor's tokenizer) that decodes its tokens.
        inputs: the model inputs (``input_ids`` (1, T), ``attention_mask``, pixel values...).
        generation_config: a ``transformers.GenerationConfig``.
        stop_when: called with the text so far after each piece; ``True`` ends generation.
            By default a repetition loop ends it: small models fall into one under greedy
            decoding and would otherwise write until ``max_new_tokens`` (the loop is cut from
            the answer anyway).
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    stop = threading.Event()

    class Stopped(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            # inference_mode is per thread: it must be entered here, not by the caller.
            with torch.inference_mode():
                model.generate(**inputs, generation_config=generation_config, streamer=streamer, stopping_criteria=StoppingCriteriaList([Stopped()]))
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            failed.append(exc)
            streamer.end()

    thread = threading.Thread(target=run, name="ragmm-generate", daemon=True)
    thread.start()
    text = ""
    try:
        for piece in streamer:
            if piece:
                yield piece
                text += piece
                if stop_when is not None and stop_when(text):
                    break
    finally:
        stop.set()
        thread.join()
    if failed:
        raise failed[0]
