from __future__ import annotations

import math

import pytest
import torch
from ragmm.training.losses import GRAMLoss, gram_loss, gram_volume

from tests.training.losses.helpers import (
    assert_gradients_flow,
    assert_matches_reference,
    dot,
    leaves,
    log_softmax_at,
    mean,
    unit,
)

EPS = 1e-8


def determinant(matrix):
    """Laplace expansion along the first row (matrix: list of lists of scalars)."""
    if len(matrix) == 1:
        return matrix[0][0]
    total = matrix[0][0].new_zeros(())
    for c in range(len(matrix)):
        minor = [row[:c] + row[c + 1 :] for row in matrix[1:]]
        sign = 1.0 if c % 2 == 0 else -1.0
        total = total + sign * matrix[0][c] * determinant(minor)
    return total


def reference_volume(vectors):
    """Volume of the parallelotope: sqrt of the Gram determinant of the vectors."""
    gram = [[dot(u, v) for v in vectors] for u in vectors]
    det = determinant(gram)
    return torch.sqrt(torch.clamp(det, min=0.0) + EPS)


def smoothed_ce(logits, index, smoothing):
    nll = -log_softmax_at(logits, index)
    if not smoothing:
        return nll
    uniform = mean([-log_softmax_at(logits, k) for k in range(len(logits))])
    return (1 - smoothing) * nll + smoothing * uniform


def reference_gram(anchor, others, log_scale, smoothing=0.0):
    """Cicchetti et al. 2025: InfoNCE on -volume, anchor-to-items and items-to-anchor."""
    scale = torch.exp(log_scale)
    batch = anchor.shape[0]
    a = [unit(anchor[i]) for i in range(batch)]
    o = [[unit(other[j]) for other in others] for j in range(batch)]
    logits = [[-scale * reference_volume([a[i], *o[j]]) for j in range(batch)] for i in range(batch)]
    rows = mean([smoothed_ce(logits[i], i, smoothing) for i in range(batch)])
    cols = mean([smoothed_ce([logits[i][j] for i in range(batch)], j, smoothing) for j in range(batch)])
    return (rows + cols) / 2


@pytest.mark.parametrize(("num_modalities", "smoothing"), [(3, 0.0), (4, 0.0), (3, 0.1)])
def test_matches_reference(num_modalities, smoothing):
    tensors = leaves(*[(4, 6)] * num_modalities, seed=100 + num_modalities)
    log_scale = torch.tensor(math.log(1 / 0.2), dtype=torch.float64, requires_grad=True)

    def impl(*args):
        anchor, *others, s = args
        return gram_loss(anchor, others, s.exp(), label_smoothing=smoothing)

    def ref(*args):
        anchor, *others, s = args
        return reference_gram(anchor, others, s, smoothing)

    assert_matches_reference(impl, ref, [*tensors, log_scale])


def test_volume_geometry():
    e = torch.eye(3, dtype=torch.float64)
    # Orthonormal vectors span the unit cube; collinear ones span nothing.
    torch.testing.assert_close(gram_volume(e[:1], e[1:2], e[2:3], eps=0.0), torch.ones(1, 1, dtype=torch.float64))
    torch.testing.assert_close(gram_volume(e[:1], e[:1], e[:1], eps=0.0), torch.zeros(1, 1, dtype=torch.float64))


def test_gradients_flow_even_for_perfectly_aligned_items():
    anchor, video, audio = leaves((4, 8), (4, 8), (4, 8), seed=110)
    scale = torch.tensor(2.0, requires_grad=True)
    assert_gradients_flow(gram_loss(anchor, [video, audio], scale.exp()), [anchor, video, audio, scale])
    # Aligned positives have volume ~0, where sqrt's gradient would be infinite without eps.
    aligned = anchor.detach().clone().requires_grad_()
    loss = gram_loss(aligned, [aligned, aligned], 10.0)
    (grad,) = torch.autograd.grad(loss, [aligned])
    assert torch.isfinite(grad).all()


def test_module_with_tiny_model(tiny_model, make_features):
    from tests.training.losses.conftest import sentences

    texts = [sentences(5, n, seed) for n, seed in ((3, 121), (5, 122), (4, 123))]
    rows = [{"text": t, "video": v, "audio": a} for t, v, a in zip(*texts, strict=True)]
    features, labels = make_features(tiny_model, rows)
    loss_fn = GRAMLoss(tiny_model, temperature=0.2)
    loss = loss_fn(features, labels)
    anchor, *others = (tiny_model(f)["sentence_embedding"] for f in features)
    torch.testing.assert_close(loss, gram_loss(anchor, others, 5.0))
    assert_gradients_flow(loss, [loss_fn.logit_scale.log_scale, next(tiny_model.parameters())])
