"""Pieces shared by the loss modules: CLIP's learnable temperature and the model-binding helpers.

Every loss in this package is a pure function of embeddings plus a thin ``nn.Module`` whose
``forward(sentence_features, labels)`` embeds the input columns with the model and calls that
function, exactly as sentence-transformers' own losses do. The helpers here are the only places
that touch the model, so each loss module stays a few lines long.

Nothing here imports sentence-transformers: the model is used through its call signature
(``model(features) -> {"sentence_embedding", "token_embeddings", "attention_mask", ...}``).

Cross-process negatives (:class:`Shard`, :func:`gather_rows`, :func:`gather_tokens`,
:func:`sync_grad`): under data parallelism each process embeds its own ``b`` rows; a contrastive
loss that gathers every process's embeddings contrasts its rows with all ``N = sum(b)`` of them,
so the negatives grow with the number of processes (open_clip's ``gather_features`` with
``gather_with_grad`` and ``local_loss``; sentence-transformers' ``gather_across_devices``). Each
process computes the loss of *its* rows against the gathered candidates, scaled so that the mean
over processes is the loss of the whole gathered batch; DDP averages parameter gradients over
processes, so the model gets the gradient of that whole-batch loss. For that, the gather's
backward sums every process's gradient into the rows it owns: the local embeddings receive
``world_size`` times the whole-batch gradient, which DDP's averaging divides back out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Shard:
    """Where this process's rows sit in a batch gathered from every process.

    Attributes:
        rank: This process's rank.
        sizes: Rows each process contributes, in rank order (batches may differ at an epoch's end).

    Example:
        >>> shard = Shard(rank=1, sizes=(4, 3))
        >>> shard.rows, shard.total, shard.world_size
        (slice(4, 7, None), 7, 2)
    """

    rank: int
    sizes: tuple[int, ...]

    @property
    def world_size(self) -> int:
        return len(self.sizes)

    @property
    def total(self) -> int:
        return sum(self.sizes)

    @property
    def rows(self) -> slice:
        start = sum(self.sizes[: self.rank])
        return slice(start, start + self.sizes[self.rank])

    def targets(self, device: torch.device | str | None = None) -> Tensor:
        """Indices of this process's rows in the gathered batch, ``(b,)``: the labels of its positives."""
        rows = self.rows
        return torch.arange(rows.start, rows.stop, device=device)

    def mean(self, values: Tensor) -> Tensor:
        """This process's share of the mean of per-row values over the gathered batch.

        ``values`` are this process's ``(b,)`` per-row losses; the result is ``sum * world_size / N``,
        so the mean over processes (what DDP's gradient averaging takes) is the mean over all ``N``
        rows, whatever each process's ``b``. In one process it is ``values.mean()``.
        """
        if self.world_size == 1:
            return values.mean()
        return values.sum() * (self.world_size / self.total)


def _process_group() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` when none is initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_shard(batch: Tensor, gather: bool = True) -> Shard:
    """This process's :class:`Shard` for a batch whose rows are ``batch``'s first axis.

    One process (no process group, or ``gather=False``) is a shard of the whole batch. Otherwise
    the processes exchange their row counts (one small all-gather), so every process must call it.
    """
    rank, world_size = _process_group()
    if not gather or world_size == 1:
        return Shard(0, (batch.size(0),))
    import torch.distributed as dist

    size = torch.tensor([batch.size(0)], device=batch.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    return Shard(rank, tuple(int(s) for s in sizes))


class _GatherRows(torch.autograd.Function):
    """All-gather along axis 0 (forward); sum every process's gradient into the owner's rows (backward)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, shard: Shard) -> Tensor:  # type: ignore[override]
        import torch.distributed as dist

        ctx.shard = shard
        longest = max(shard.sizes)
        padded = F.pad(x, (0, 0) * (x.dim() - 1) + (0, longest - x.size(0))).contiguous()  # (max b, ...)
        parts = [torch.empty_like(padded) for _ in range(shard.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:size] for part, size in zip(parts, shard.sizes, strict=True)])  # (N, ...)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        import torch.distributed as dist

        # Every process's loss depends on every row; an all-reduce (supported by every backend,
        # gloo included, unlike reduce-scatter) sums those gradients, then each keeps its rows.
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.shard.rows], None


def gather_rows(x: Tensor, shard: Shard) -> Tensor:
    """Concatenate every process's ``x`` along axis 0, in rank order, with gradient to the local rows.

    The gradient that reaches this process's ``x`` is the sum of every process's gradient with
    respect to these rows (``world_size`` times the whole-batch gradient when each process returns
    :meth:`Shard.mean` of its rows; see the module docstring). Masks and labels go through the
    same path without a gradient.

    Args:
        x: ``(b, ...)`` this process's rows; every process must call with the same trailing shape.
        shard: From :func:`local_shard`.

    Returns:
        ``(N, ...)``, ``N = shard.total``; ``x`` itself in one process.
    """
    if shard.world_size == 1:
        return x
    if x.dtype == torch.bool:  # not every backend reduces booleans
        return _GatherRows.apply(x.to(torch.uint8), shard).bool()
    return _GatherRows.apply(x, shard)


def gather_tokens(tokens: Tensor, mask: Tensor, shard: Shard) -> tuple[Tensor, Tensor]:
    """:func:`gather_rows` for token batches whose token axis differs between processes.

    Each process pads its batch to its own longest text, so the token axis is first padded (and
    masked out) to the longest across processes; padded tokens never score in MaxSim.

    Args:
        tokens: ``(b, ..., L, D)`` token embeddings.
        mask: ``(b, ..., L)`` boolean, True for real tokens.
        shard: From :func:`local_shard`.

    Returns:
        ``(N, ..., L_max, D)`` embeddings and their ``(N, ..., L_max)`` mask.
    """
    if shard.world_size == 1:
        return tokens, mask
    import torch.distributed as dist

    length = torch.tensor([tokens.size(-2)], device=tokens.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    pad = int(length) - tokens.size(-2)
    tokens = F.pad(tokens, (0, 0, 0, pad))
    mask = F.pad(mask.bool(), (0, pad), value=False)
    return gather_rows(tokens, shard), gather_rows(mask, shard)


class _AverageGrad(torch.autograd.Function):
    """Identity forward; the gradient averaged over processes backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        import torch.distributed as dist

        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad / dist.get_world_size()


def sync_grad(value: Tensor | float, shard: Shard) -> Tensor | float:
    """Pass a loss parameter's value through so its gradient is averaged over processes.

    The trainer wraps the model in DDP, not the loss: a learnable temperature would otherwise get
    only this process's gradient and drift apart between processes. Averaged, every process gets
    the gradient of the whole-batch loss, as the model's parameters do.
    """
    if shard.world_size == 1 or not isinstance(value, Tensor) or not value.requires_grad:
        return value
    return _AverageGrad.apply(value)
