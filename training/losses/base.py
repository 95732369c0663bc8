"""Pieces shared by the loss modules: CLIP's learnable temperature and the model-binding helpers.

Every loss in this package is a pure function of embeddings plus a thin ``nn.Module`` whose
``forward(sentence_features, labels)`` embeds the input columns with the model and calls that
function, exactly as sentence-transformers' own losses do. The helpers here are the only places
that touch the model, so each loss module stays a few lines long.

Nothing here imports sentence-transformers: the model is used through its call signature
(``model(features) -> {"sentence_embedding", "token_embeddings", "attention_mask", ...}``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LogitScale(nn.Module):
    """CLIP's learnable temperature, stored as ``log(1 / temperature)``.

    CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
    Supervision", Sec. 2.5) learns the softmax temperature as a log-parameterised multiplicative
    scalar, initialised to the equivalent of 0.07 and "clipped to prevent scaling the logits by
    more than 100". CLIP clamps the parameter after each optimizer step; this module clamps it
    when read, which gives the same bound with any optimizer or trainer and keeps gradients
    flowing at the bound (so the temperature can move back down).

    Args:
        temperature: Initial temperature ``tau``; the scale starts at ``1 / tau``.
        learnable: Whether the temperature is a trained parameter (CLIP) or fixed.
        max_scale: Upper bound on the scale ``1 / tau`` (CLIP: 100).

    Raises:
        ValueError: ``temperature`` is not positive, or ``1 / temperature`` exceeds ``max_scale``.

    Example:
        >>> scale = LogitScale(temperature=0.07)
        >>> round(float(scale()), 2)
        14.29
    """

    def __init__(self, temperature: float = 0.07, learnable: bool = True, max_scale: float = 100.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if 1.0 / temperature > max_scale:
            raise ValueError(
                f"temperature={temperature} gives a scale of {1.0 / temperature:.1f}, above max_scale={max_scale}; "
                f"raise max_scale or use a temperature of at least {1.0 / max_scale}"
            )
        self.max_log_scale = math.log(max_scale)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable)

    def clamp_(self) -> None:
        """Clamp the parameter in place to ``log(max_scale)`` (a no-op while below the bound)."""
        # Only write when needed: an in-place write bumps the tensor's version counter, which
        # would break a graph built earlier that saved the parameter (e.g. the cached loss).
        if bool(self.log_scale.detach() > self.max_log_scale):
            with torch.no_grad():
                self.log_scale.clamp_(max=self.max_log_scale)

    def forward(self) -> Tensor:
        """Return the scale ``1 / temperature`` as a 0-dim tensor, after clamping."""
        self.clamp_()
        return self.log_scale.exp()

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.log_scale.detach()))

    @property
    def learnable(self) -> bool:
        return self.log_scale.requires_grad

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:.4g}, learnable={self.learnable}, max_scale={math.exp(self.max_log_scale):.4g}"


def l2_normalize(x: Tensor, normalize: bool = True) -> Tensor:
    """L2-normalise ``x`` along its last axis when ``normalize`` is set, else return it unchanged."""
    return F.normalize(x, p=2, dim=-1) if normalize else x


def embed_sentences(model: nn.Module, sentence_features: Iterable[dict[str, Any]]) -> list[Tensor]:
    """One pooled ``(B, D)`` embedding per input column, as sentence-transformers' own losses get them.

    Args:
        model: A sentence-transformers model (or anything returning ``{"sentence_embedding": ...}``).
        sentence_features: One tokenized feature dict per dataset column, as the trainer passes them.

    Returns:
        A list with one ``(B, D)`` tensor per column.
    """
    return [model(features)["sentence_embedding"] for features in sentence_features]


def embed_tokens(model: nn.Module, features: dict[str, Any], task: str) -> tuple[Tensor, Tensor]:
    """Token embeddings ``(B, L, D)`` and their boolean mask ``(B, L)`` for one input column.

    The column is run under the task the data collator stamped on it (``features["task"]``), else
    ``task`` ("query" or "document"), as sentence-transformers' multi-vector losses do; models
    without task-dependent modules ignore the keyword.
    """
    outputs = model(features, task=features.get("task", task))
    return outputs["token_embeddings"], outputs["attention_mask"].bool()


def pad_token_batches(embeddings: Sequence[Tensor], masks: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Right-pad token batches of different lengths to a common length and stack them at axis 1.

    Args:
        embeddings: ``K`` tensors of shape ``(B, ..., L_k, D)``.
        masks: ``K`` boolean tensors of shape ``(B, ..., L_k)``.

    Returns:
        ``(B, K, ..., L, D)`` embeddings and a ``(B, K, ..., L)`` mask, ``L = max(L_k)``; padding is
        masked out.
    """
    length = max(e.size(-2) for e in embeddings)
    padded = [F.pad(e, (0, 0, 0, length - e.size(-2))) for e in embeddings]  # each (B, ..., L, D)
    padded_masks = [F.pad(m.bool(), (0, length - m.size(-1)), value=False) for m in masks]  # each (B, ..., L)
    return torch.stack(padded, dim=1), torch.stack(padded_masks, dim=1)


def concat_token_batches(a: Tensor, a_mask: Tensor, b: Tensor, b_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenate two token batches along rows, right-padding the token axis to the longer one.

    Args:
        a: ``(N1, ..., L1, D)`` token embeddings; ``a_mask`` is ``(N1, ..., L1)``.
        b: ``(N2, ..., L2, D)`` token embeddings; ``b_mask`` is ``(N2, ..., L2)``.

    Returns:
        ``(N1 + N2, ..., L, D)`` embeddings and their ``(N1 + N2, ..., L)`` mask, ``L = max(L1, L2)``.
    """
    length = max(a.size(-2), b.size(-2))
    a = F.pad(a, (0, 0, 0, length - a.size(-2)))
    b = F.pad(b, (0, 0, 0, length - b.size(-2)))
    a_mask = F.pad(a_mask.bool(), (0, length - a_mask.size(-1)), value=False)
    b_mask = F.pad(b_mask.bool(), (0, length - b_mask.size(-1)), value=False)
    return torch.cat([a, b]), torch.cat([a_mask, b_mask])


def require_columns(loss_name: str, sentence_features: Sequence[Any], minimum: int, what: str) -> None:
    """Raise an actionable error when a batch has fewer input columns than the loss needs."""
    if len(sentence_features) < minimum:
        raise ValueError(
            f"{loss_name} needs at least {minimum} input columns ({what}), got {len(sentence_features)}; "
            "check the column order and count of the training dataset"
        )
