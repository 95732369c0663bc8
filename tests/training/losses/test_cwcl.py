from __future__ import annotations

import math

import pytest
import torch
from ragmm.training.losses import CWCLLoss, cwcl_loss

from tests.training.losses.helpers import (
    assert_gradients_flow,
    assert_matches_reference,
    dot,
    leaves,
    log_softmax_at,
    mean,
    unit,
)


def reference_cwcl(query, docs, log_scale, targets=None):
    """Srinivasa et al. 2023, Eq. for L_CWCL in both directions, weights from the target modality."""
    scale = torch.exp(log_scale)
    batch = query.shape[0]
    q = [unit(query[i]) for i in range(batch)]
    d = [unit(docs[i]) for i in range(batch)]
    source = docs if targets is None else targets
    t = [unit(source[i].detach()) for i in range(batch)]
    w = [[dot(t[i], t[j]) / 2 + 0.5 for j in range(batch)] for i in range(batch)]
    directions = []
    for first, second in ((q, d), (d, q)):
        rows = []
        for i in range(batch):
            logits = [scale * dot(first[i], second[k]) for k in range(batch)]
            weighted = [w[i][j] * log_softmax_at(logits, j) for j in range(batch)]
            total_w = w[i][0]
            for j in range(1, batch):
                total_w = total_w + w[i][j]
            rows.append(-mean(weighted) * batch / total_w)
        directions.append(mean(rows))
    return (directions[0] + directions[1]) / 2


@pytest.mark.parametrize("separate_targets", [False, True])
def test_matches_reference(separate_targets):
    query, docs, targets = leaves((5, 6), (5, 6), (5, 6), seed=21)
    targets = targets.detach()
    log_scale = torch.tensor(math.log(1 / 0.5), dtype=torch.float64, requires_grad=True)

    def impl(q, d, s):
        return cwcl_loss(q, d, s.exp(), target_emb=targets if separate_targets else None)

    def ref(q, d, s):
        return reference_cwcl(q, d, s, targets if separate_targets else None)

    assert_matches_reference(impl, ref, [query, docs, log_scale])


def test_identity_weights_give_clip():
    # Targets with cosine -1 between different items give one-hot weights (w_ii = 1, w_ij = 0),
    # and with one-hot soft targets CWCL is the CLIP loss.
    query, docs = leaves((2, 4), (2, 4), seed=22)
    targets = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]], dtype=torch.float64)
    from ragmm.training.losses import clip_loss

    torch.testing.assert_close(cwcl_loss(query, docs, 5.0, target_emb=targets), clip_loss(query, docs, 5.0))


def test_no_gradient_through_the_soft_targets():
    query, docs = leaves((4, 8), (4, 8), seed=23)
    loss = cwcl_loss(query, docs, 10.0)
    assert_gradients_flow(loss, [query, docs])
    # With a separate target encoder, its embeddings get no gradient.
    targets = torch.randn(4, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(cwcl_loss(query, docs, 10.0, target_emb=targets), [targets], allow_unused=True)
    assert grad is None


def test_module_with_tiny_model(tiny_model, make_features):
    from tests.training.losses.conftest import sentences

    rows = [{"text": a, "image": p} for a, p in zip(sentences(6, 4, 31), sentences(6, 6, 32), strict=True)]
    features, labels = make_features(tiny_model, rows)
    loss_fn = CWCLLoss(tiny_model, temperature=0.1)
    loss = loss_fn(features, labels)
    q, d = (tiny_model(f)["sentence_embedding"] for f in features)
    torch.testing.assert_close(loss, cwcl_loss(q, d, 10.0))
    assert_gradients_flow(loss, [loss_fn.logit_scale.log_scale, next(tiny_model.parameters())])
    three = [*features, features[1]]
    with pytest.raises(ValueError, match="pairs"):
        loss_fn(three, labels)


def test_module_with_a_frozen_target_model(tiny_model, make_features):
    import copy

    from tests.training.losses.conftest import sentences

    rows = [{"text": a, "image": p} for a, p in zip(sentences(6, 4, 33), sentences(6, 6, 34), strict=True)]
    features, labels = make_features(tiny_model, rows)
    teacher = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.1 * torch.randn_like(p))  # a different encoder than the trained one
    loss_fn = CWCLLoss(tiny_model, temperature=0.1, target_model=teacher)
    loss_fn.train()
    assert not teacher.training
    assert all(p.requires_grad is False for p in teacher.parameters())
    trainable = {id(p) for p in loss_fn.parameters() if p.requires_grad}
    assert trainable.isdisjoint(id(p) for p in teacher.parameters())

    loss = loss_fn([dict(f) for f in features], labels)
    q, d = (tiny_model(dict(f))["sentence_embedding"] for f in features)
    target = teacher(dict(features[1]))["sentence_embedding"]
    torch.testing.assert_close(loss, cwcl_loss(q, d, 10.0, target_emb=target))
