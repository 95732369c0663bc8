from __future__ import annotations

import pytest
import torch
from ragmm.training.losses import CLaMRLoss, clamr_loss

from tests.training.losses.helpers import (
    assert_gradients_flow,
    assert_matches_reference,
    cross_entropy,
    dot,
    leaves,
    mean,
    unit,
)
from tests.training.losses.test_maxsim import random_mask, reference_maxsim

IGNORE = -100


def reference_clamr(query, items, labels, score, weight, scale, negatives=None):
    """Wan et al. 2025: contrastive over items scored by their best modality + modality cross-entropy.

    ``score(i, item, m)`` gives the similarity of query ``i`` to view ``m`` of ``item``;
    ``items`` and ``negatives`` are python lists of items.
    """
    batch = query.shape[0]
    candidates = list(items) + (list(negatives) if negatives is not None else [])
    contrastive, modality = [], []
    for i in range(batch):
        item_logits = []
        for item in candidates:
            views = [scale * score(i, item, m) for m in range(len(item))]
            best = views[0]
            for v in views[1:]:
                best = torch.maximum(best, v)
            item_logits.append(best)
        contrastive.append(cross_entropy(item_logits, i))
        if int(labels[i]) != IGNORE:
            positive_views = [scale * score(i, items[i], m) for m in range(len(items[i]))]
            modality.append(cross_entropy(positive_views, int(labels[i])))
    total = mean(contrastive)
    if modality:
        total = total + weight * mean(modality)
    return total


@pytest.mark.parametrize("num_negatives", [0, 1])
def test_late_interaction_matches_reference(num_negatives):
    b, m, d = 3, 3, 4
    query, items, negatives = leaves((b, 4, d), (b, m, 5, d), (b, max(num_negatives, 1), m, 3, d), seed=60)
    q_mask, i_mask = random_mask(b, 4, seed=61), random_mask(b, m, 5, seed=62)
    n_mask = random_mask(b, max(num_negatives, 1), m, 3, seed=63)
    labels = torch.tensor([2, IGNORE, 0])

    def ref(q, it, ng):
        views = [[(it[k, v], i_mask[k, v]) for v in range(m)] for k in range(b)]
        negs = [[(ng[k, h, v], n_mask[k, h, v]) for v in range(m)] for k in range(b) for h in range(ng.shape[1])]

        def score(i, item, v):
            return reference_maxsim(q[i], q_mask[i], *item[v])

        return reference_clamr(q, views, labels, score, 0.7, 2.0, negs if num_negatives else None)

    def impl(q, it, ng):
        extra = {"hard_negatives": ng, "hard_negatives_mask": n_mask} if num_negatives else {}
        return clamr_loss(q, it, labels, query_mask=q_mask, item_mask=i_mask, scale=2.0, modality_weight=0.7, **extra)

    # Without hard negatives their tensor is unused: pass it detached (no gradient expected).
    assert_matches_reference(impl, ref, [query, items, negatives if num_negatives else negatives.detach()])


def test_dense_matches_reference():
    b, m, d = 4, 3, 6
    query, items, negatives = leaves((b, d), (b, m, d), (b, 2, m, d), seed=64)
    labels = torch.tensor([0, 1, 2, 1])

    def ref(q, it, ng):
        views = [[it[k, v] for v in range(m)] for k in range(b)]
        negs = [[ng[k, h, v] for v in range(m)] for k in range(b) for h in range(2)]
        return reference_clamr(
            q, views, labels, lambda i, item, v: dot(unit(q[i]), unit(item[v])), 1.5, 20.0, negs
        )

    def impl(q, it, ng):
        return clamr_loss(q, it, labels, hard_negatives=ng, scale=20.0, modality_weight=1.5)

    assert_matches_reference(impl, ref, [query, items, negatives])


def test_modality_term_teaches_the_answering_view():
    query, items = leaves((4, 6), (4, 3, 6), seed=65)
    labels = torch.tensor([0, 1, 2, 0])
    with_term = clamr_loss(query, items, labels, scale=10.0, modality_weight=1.0)
    without = clamr_loss(query, items, None, scale=10.0)
    assert with_term > without
    # Every label ignored: the modality term adds nothing (and no NaN).
    ignored = clamr_loss(query, items, torch.full((4,), IGNORE), scale=10.0)
    torch.testing.assert_close(ignored, without)
    assert_gradients_flow(with_term, [query, items])


def test_missing_view_is_never_the_best():
    query, items = leaves((2, 4), (2, 2, 4), seed=66)
    present = torch.tensor([[True, False], [True, True]])
    loss = clamr_loss(query, items, None, item_mask=present, scale=5.0)
    reduced = items.detach().clone()
    reduced[0, 1] = reduced[0, 0]  # the missing view replaced by the present one: same best scores
    torch.testing.assert_close(loss, clamr_loss(query, reduced, None, item_mask=present, scale=5.0))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("interaction", ["late", "dense"])
def test_module_with_tiny_model(tiny_model, make_features, interaction):
    from tests.training.losses.conftest import sentences

    texts = [sentences(4, n, seed) for n, seed in ((3, 71), (6, 72), (4, 73), (5, 74))]
    rows = [
        {"query": q, "frames": f, "speech": s, "ocr": o, "label": lab}
        for q, f, s, o, lab in zip(*texts, [0, 2, IGNORE, 1], strict=True)
    ]
    features, labels = make_features(tiny_model, rows)
    loss_fn = CLaMRLoss(tiny_model, interaction=interaction, scale=5.0, modality_weight=0.5)
    loss = loss_fn(features, labels)
    outputs = [tiny_model(f) for f in features]
    if interaction == "dense":
        emb = [o["sentence_embedding"] for o in outputs]
        want = clamr_loss(emb[0], torch.stack(emb[1:], dim=1), labels, scale=5.0, modality_weight=0.5)
    else:
        tokens = [o["token_embeddings"] for o in outputs]
        masks = [o["attention_mask"].bool() for o in outputs]
        length = max(t.shape[1] for t in tokens[1:])
        views = torch.stack([torch.nn.functional.pad(t, (0, 0, 0, length - t.shape[1])) for t in tokens[1:]], 1)
        view_masks = torch.stack([torch.nn.functional.pad(k, (0, length - k.shape[1])) for k in masks[1:]], 1)
        want = clamr_loss(
            tokens[0], views, labels, query_mask=masks[0], item_mask=view_masks, scale=5.0, modality_weight=0.5
        )
    torch.testing.assert_close(loss, want)
    assert_gradients_flow(loss, [next(tiny_model.parameters())])


def test_module_checks_the_view_count(tiny_model, make_features):
    rows = [{"query": "the cat", "frames": "a dog", "speech": "sun", "ocr": "sea"}] * 2
    features, labels = make_features(tiny_model, rows)
    with pytest.raises(ValueError, match="num_modalities=2"):
        CLaMRLoss(tiny_model, num_modalities=2)(features, labels)


def test_late_interaction_needs_masks():
    with pytest.raises(ValueError, match="query_mask"):
        clamr_loss(torch.randn(2, 3, 4), torch.randn(2, 2, 5, 4), None)
