from __future__ import annotations

import math

import pytest
import torch
from ragmm.training.losses import (
    CLIPUniformityAlignmentLoss,
    clip_loss,
    clip_uniformity_alignment_loss,
    clip_uniformity_alignment_terms,
)

from tests.training.losses.helpers import (
    assert_gradients_flow,
    assert_matches_reference,
    dot,
    leaves,
    mean,
    reference_clip,
    unit,
)


def sq_dist(a, b):
    diff = a - b
    return dot(diff, diff)


def log_mean_exp(values):
    return torch.log(mean([torch.exp(v) for v in values]))


def reference_cuaxu(query, docs, log_scale, w_align, w_unif, w_xunif, t=2.0):
    """Fahim et al. 2024: L_CLIP + w_a L_align + w_u (L_unif(q) + L_unif(d)) / 2 + w_x L_xunif."""
    batch = query.shape[0]
    q = [unit(query[i]) for i in range(batch)]
    d = [unit(docs[i]) for i in range(batch)]
    align = mean([sq_dist(q[i], d[i]) for i in range(batch)])
    unif_q = log_mean_exp([-t * sq_dist(q[i], q[j]) for i in range(batch) for j in range(i + 1, batch)])
    unif_d = log_mean_exp([-t * sq_dist(d[i], d[j]) for i in range(batch) for j in range(i + 1, batch)])
    xunif = log_mean_exp([-t * sq_dist(q[i], d[j]) for i in range(batch) for j in range(batch) if i != j])
    clip = reference_clip(query, docs, log_scale)
    return clip + w_align * align + w_unif * (unif_q + unif_d) / 2 + w_xunif * xunif


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (0.5, 2.0, 0.0), (0.0, 0.0, 0.3)])
def test_matches_reference(weights):
    w_align, w_unif, w_xunif = weights
    query, docs = leaves((5, 6), (5, 6), seed=3)
    log_scale = torch.tensor(math.log(1 / 0.2), dtype=torch.float64, requires_grad=True)

    def impl(q, d, s):
        return clip_uniformity_alignment_loss(
            q,
            d,
            s.exp(),
            alignment_weight=w_align,
            uniformity_weight=w_unif,
            cross_uniformity_weight=w_xunif,
        )

    def ref(q, d, s):
        return reference_cuaxu(q, d, s, w_align, w_unif, w_xunif)

    assert_matches_reference(impl, ref, [query, docs, log_scale])


def test_zero_weights_reduce_to_clip_and_terms_are_named():
    query, docs = leaves((4, 8), (4, 8), seed=4)
    plain = clip_uniformity_alignment_loss(
        query, docs, 10.0, alignment_weight=0, uniformity_weight=0, cross_uniformity_weight=0
    )
    torch.testing.assert_close(plain, clip_loss(query, docs, 10.0))
    terms = clip_uniformity_alignment_terms(query, docs, 10.0, cross_uniformity_weight=0)
    assert list(terms) == ["clip", "alignment", "uniformity"]  # the paper's L_CUA


def test_duplicate_embeddings_give_finite_gradients():
    # Identical rows (a duplicate in the batch) make a pairwise distance 0, where a norm-based
    # uniformity term would produce NaN gradients.
    query, docs = leaves((4, 8), (4, 8), seed=5)
    query_dup = torch.cat([query[:1], query[:1], query[2:]])
    loss = clip_uniformity_alignment_loss(query_dup, docs.detach().clone().requires_grad_(), 10.0)
    (grad,) = torch.autograd.grad(loss, [query])
    assert torch.isfinite(grad).all()


def test_module_with_tiny_model(tiny_model, make_features):
    from tests.training.losses.conftest import sentences

    rows = [{"anchor": a, "positive": p} for a, p in zip(sentences(6, 4, 11), sentences(6, 6, 12), strict=True)]
    features, labels = make_features(tiny_model, rows)
    loss_fn = CLIPUniformityAlignmentLoss(tiny_model, temperature=0.1, uniformity_weight=0.5)
    loss = loss_fn(features, labels)
    q, d = (tiny_model(f)["sentence_embedding"] for f in features)
    torch.testing.assert_close(loss, clip_uniformity_alignment_loss(q, d, 10.0, uniformity_weight=0.5))
    assert_gradients_flow(loss, [loss_fn.logit_scale.log_scale, next(tiny_model.parameters())])
