"""A chat language model used as a judge: free completion, and the probability of a yes.

The ``llm`` router and the ``llm`` reranker ask it short questions. It loads the packaged
SmolLM2-135M-Instruct (or any model :func:`ragmm.generation.causal_lm.resolve_model` accepts)
on first use; tests give the router and reranker a fake with the same two methods instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol


class JudgeLM(Protocol):
    """What the ``llm`` router and reranker need from a language model."""

    def complete(self, system: str, user: str, max_new_tokens: int = 16) -> str:
        """The model's greedy answer to one chat turn."""

    def yes_probability(self, system: str, users: Sequence[str]) -> list[float]:
        """For each user turn, P(yes) / (P(yes) + P(no)) of the answer's first token."""


class ChatLM:
    """A causal LM with a chat template, loaded lazily.

    Args:
        model: ``None`` for the packaged SmolLM2-135M-Instruct; else a local folder, ``.gguf``
            file or cached hub id.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, model: str | None = None, device: str = "auto") -> None:
        from ragmm.generation.causal_lm import resolve_model

        self.model_id, self.gguf_file = resolve_model(model)
        self.device_setting = device
        self._model: Any = None
        self._tok: Any = None
        self._yes_no: tuple[list[int], list[int]] | None = None

    def load(self) -> float:
        """Load now (no-op when loaded); the seconds taken."""
        if self._model is not None:
            return 0.0
        start = time.perf_counter()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device_setting
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs: dict[str, Any] = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        self._tok = AutoTokenizer.from_pretrained(self.model_id, **kwargs)
        self._model = AutoModelForCausalLM.from_pretrained(self.model_id, dtype=torch.float32 if device == "cpu" else "auto", **kwargs).to(device).eval()
        return time.perf_counter() - start

    def _prompt(self, system: str, user: str) -> str:
        tok = self._tok
        if tok.chat_template is None:
            return f"{system}\n\n{user}\nAnswer:"
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def complete(self, system: str, user: str, max_new_tokens: int = 16) -> str:
        import torch

        self.load()
        inputs = self._tok(self._prompt(system, user), return_tensors="pt").to(self._model.device)
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else self._tok.eos_token_id
        with torch.inference_mode():
            out = self._model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)  # (1, T + new)
        return self._tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    def _token_ids(self) -> tuple[list[int], list[int]]:
        if self._yes_no is None:

            def ids(words: Sequence[str]) -> list[int]:
                found = {self._tok.encode(w, add_special_tokens=False)[0] for w in words}
                return sorted(found)

            self._yes_no = (ids(["yes", "Yes", " yes", " Yes", "YES"]), ids(["no", "No", " no", " No", "NO"]))
        return self._yes_no

    def yes_probability(self, system: str, users: Sequence[str], batch_size: int = 8) -> list[float]:
        import torch

        self.load()
        yes, no = self._token_ids()
        out: list[float] = []
        tok = self._tok
        # Left padding keeps every prompt's last token in the last column.
        side, tok.padding_side = tok.padding_side, "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        try:
            for i in range(0, len(users), batch_size):
                prompts = [self._prompt(system, u) for u in users[i : i + batch_size]]
                inputs = tok(prompts, return_tensors="pt", padding=True).to(self._model.device)
                with torch.inference_mode():
                    logits = self._model(**inputs).logits[:, -1, :].float()  # (B, V) next-token logits
                probs = logits.softmax(-1)
                p_yes, p_no = probs[:, yes].sum(-1), probs[:, no].sum(-1)  # (B,), (B,)
                out.extend((p_yes / (p_yes + p_no).clamp_min(1e-12)).tolist())
        finally:
            tok.padding_side = side
        return out
