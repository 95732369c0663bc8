"""The gradient-cache variant against the plain loss, and sentence-transformers' own cached loss."""

from __future__ import annotations

import copy

import pytest
import torch
from ragmm.training.losses import CLIPLoss

from tests.training.losses.conftest import sentences


@pytest.fixture
def batch(tiny_model, make_features):
    rows = [
        {"anchor": a, "positive": p, "negative": n}
        for a, p, n in zip(sentences(8, 4, 201), sentences(8, 7, 202), sentences(8, 5, 203), strict=True)
    ]
    return make_features(tiny_model, rows)


def loss_and_grads(loss_fn, features, labels, factor=1.0):
    loss_fn.zero_grad()
    loss = loss_fn([dict(f) for f in features], labels)
    (loss * factor).backward()
    grads = {name: p.grad.clone() for name, p in loss_fn.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def assert_same(a, b):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("factor", [1.0, 0.25])
def test_cached_clip_equals_clip_in_value_and_gradients(tiny_model, batch, factor):
    from ragmm.training.losses import CachedCLIPLoss

    features, labels = batch
    plain = CLIPLoss(copy.deepcopy(tiny_model), temperature=0.1)
    cached = CachedCLIPLoss(copy.deepcopy(tiny_model), temperature=0.1, mini_batch_size=3)
    # factor < 1 is what gradient accumulation does to the loss: the temperature's gradient must
    # be scaled like the model's (the cached loss only sees it through grad_output).
    want = loss_and_grads(plain, features, labels, factor)
    got = loss_and_grads(cached, features, labels, factor)
    assert "logit_scale.log_scale" in got[1]
    assert_same(got, want)


def test_cached_clip_without_grad_gives_the_loss(tiny_model, batch):
    from ragmm.training.losses import CachedCLIPLoss

    features, labels = batch
    with torch.no_grad():
        want = CLIPLoss(tiny_model, temperature=0.1)([dict(f) for f in features], labels)
        got = CachedCLIPLoss(tiny_model, temperature=0.1, mini_batch_size=3)([dict(f) for f in features], labels)
    torch.testing.assert_close(got, want)


def test_sentence_transformers_cached_mnrl_is_clip_at_a_fixed_temperature(tiny_model, batch):
    """Why CachedCLIPLoss exists: ST's cached loss serves CLIP only with a fixed temperature."""
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    features, labels = batch
    ours = CLIPLoss(copy.deepcopy(tiny_model), temperature=0.05, learnable_temperature=False)
    theirs = CachedMultipleNegativesRankingLoss(
        copy.deepcopy(tiny_model),
        scale=20.0,
        mini_batch_size=3,
        directions=("query_to_doc", "doc_to_query"),
        partition_mode="per_direction",
    )
    assert_same(loss_and_grads(theirs, features, labels), loss_and_grads(ours, features, labels))
    # ...and that temperature is a float, not a parameter the trainer could learn.
    assert [name for name, _ in theirs.named_parameters() if not name.startswith("model.")] == []
