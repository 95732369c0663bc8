"""Slow, loop-based building blocks for the reference losses, and the comparison helper.

The references are written independently of ``ragmm.training.losses``: python loops over rows
and candidates, one scalar at a time, in float64, so that a vectorisation or indexing mistake in
the implementation cannot be mirrored here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def unit(v: Tensor) -> Tensor:
    """One vector scaled to unit length."""
    return v / torch.sqrt((v * v).sum())


def dot(a: Tensor, b: Tensor) -> Tensor:
    total = a.new_zeros(())
    for x, y in zip(a, b, strict=True):
        total = total + x * y
    return total


def log_softmax_at(logits: Sequence[Tensor], index: int) -> Tensor:
    """``log(exp(logits[index]) / sum_k exp(logits[k]))`` from a list of scalars."""
    top = max(float(x.detach()) for x in logits if float(x.detach()) != float("-inf"))
    total = logits[0].new_zeros(())
    for x in logits:
        total = total + torch.exp(x - top)
    return logits[index] - (top + torch.log(total))


def cross_entropy(logits: Sequence[Tensor], index: int) -> Tensor:
    return -log_softmax_at(logits, index)


def mean(values: Sequence[Tensor]) -> Tensor:
    total = values[0].new_zeros(())
    for v in values:
        total = total + v
    return total / len(values)


def leaves(*shapes: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float64) -> list[Tensor]:
    """Random leaf tensors that require grad, reproducibly."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_() for shape in shapes]


def assert_matches_reference(
    implementation: Callable[..., Tensor], reference: Callable[..., Tensor], inputs: Sequence[Tensor]
) -> None:
    """The implementation equals the reference in value and in its gradient w.r.t. every input."""
    got = implementation(*inputs)
    want = reference(*inputs)
    torch.testing.assert_close(got, want)
    differentiable = [x for x in inputs if x.requires_grad]
    got_grads = torch.autograd.grad(got, differentiable, allow_unused=True)
    want_grads = torch.autograd.grad(want, differentiable, allow_unused=True)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert g is not None and w is not None, "an input received no gradient"
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, w)


def assert_gradients_flow(loss: Tensor, tensors: Sequence[Tensor]) -> None:
    """Every tensor gets a finite, non-zero gradient from ``loss``."""
    grads = torch.autograd.grad(loss, list(tensors), allow_unused=True)
    for tensor, grad in zip(tensors, grads, strict=True):
        assert grad is not None, f"no gradient reached a tensor of shape {tuple(tensor.shape)}"
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


def reference_clip(
    query: Tensor, docs: Tensor, log_scale: Tensor, negatives: Tensor | None = None, normalize: bool = True
) -> Tensor:
    """CLIP's symmetric InfoNCE, one row and one candidate at a time (shared by several tests)."""
    scale = torch.exp(log_scale)
    batch = query.shape[0]
    norm = unit if normalize else (lambda v: v)
    q = [norm(query[i]) for i in range(batch)]
    d = [norm(docs[i]) for i in range(batch)]
    candidates = list(d)
    if negatives is not None:
        for b in range(batch):
            for h in range(negatives.shape[1]):
                candidates.append(norm(negatives[b, h]))
    q2d = [cross_entropy([scale * dot(q[i], c) for c in candidates], i) for i in range(batch)]
    d2q = [cross_entropy([scale * dot(d[i], q[j]) for j in range(batch)], i) for i in range(batch)]
    return (mean(q2d) + mean(d2q)) / 2
