from __future__ import annotations

import pytest
import torch
from ragmm.training.losses import MaxSimLoss, maxsim_loss, maxsim_scores

from tests.training.losses.helpers import (
    assert_gradients_flow,
    assert_matches_reference,
    cross_entropy,
    dot,
    leaves,
    mean,
    unit,
)


def reference_maxsim(q_tokens, q_mask, d_tokens, d_mask):
    """ColBERT Eq. 3: sum over real query tokens of the best match among real document tokens."""
    total = q_tokens.new_zeros(())
    for i in range(q_tokens.shape[0]):
        if not q_mask[i]:
            continue
        best = None
        for j in range(d_tokens.shape[0]):
            if d_mask[j]:
                s = dot(unit(q_tokens[i]), unit(d_tokens[j]))
                best = s if best is None or s > best else best
        total = total + best
    return total


def reference_loss(query, q_mask, docs, d_mask, negatives=None, n_mask=None, scale=1.0):
    batch = query.shape[0]
    candidates = [(docs[b], d_mask[b]) for b in range(batch)]
    if negatives is not None:
        candidates += [(negatives[b, h], n_mask[b, h]) for b in range(batch) for h in range(negatives.shape[1])]
    rows = []
    for i in range(batch):
        logits = [scale * reference_maxsim(query[i], q_mask[i], c, m) for c, m in candidates]
        rows.append(cross_entropy(logits, i))
    return mean(rows)


def random_mask(*shape, seed):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(*shape, generator=generator) > 0.3
    mask[..., 0] = True  # every sequence keeps at least one real token
    return mask


@pytest.mark.parametrize("num_negatives", [0, 2])
def test_maxsim_loss_matches_reference(num_negatives):
    query, docs, negatives = leaves((3, 4, 5), (3, 6, 5), (3, max(num_negatives, 1), 3, 5), seed=40 + num_negatives)
    q_mask, d_mask = random_mask(3, 4, seed=1), random_mask(3, 6, seed=2)
    n_mask = random_mask(3, max(num_negatives, 1), 3, seed=3)
    if num_negatives == 0:
        assert_matches_reference(
            lambda q, d: maxsim_loss(q, q_mask, d, d_mask, scale=2.0),
            lambda q, d: reference_loss(q, q_mask, d, d_mask, scale=2.0),
            [query, docs],
        )
    else:
        # Hard negatives (3 tokens) are shorter than the positives (6): the loss pads them.
        assert_matches_reference(
            lambda q, d, n: maxsim_loss(q, q_mask, d, d_mask, n, n_mask, scale=2.0),
            lambda q, d, n: reference_loss(q, q_mask, d, d_mask, n, n_mask, scale=2.0),
            [query, docs, negatives],
        )


def test_scores_ignore_padding_and_empty_documents_never_win():
    query, docs = leaves((2, 3, 4), (2, 5, 4), seed=44)
    q_mask = torch.tensor([[True, True, False], [True, False, False]])
    d_mask = torch.tensor([[True, True, True, False, False], [False, False, False, False, False]])
    scores = maxsim_scores(query, q_mask, docs, d_mask)
    padded = query.detach().clone()
    padded[0, 2] = 1e6  # a padded query token: changing it must not change any score
    torch.testing.assert_close(maxsim_scores(padded, q_mask, docs, d_mask), scores)
    assert torch.isneginf(scores[:, 1]).all()
    assert torch.isfinite(scores[:, 0]).all()


def test_gradients_flow():
    query, docs, negatives = leaves((3, 4, 8), (3, 5, 8), (3, 2, 5, 8), seed=45)
    ones = torch.ones
    loss = maxsim_loss(
        query, ones(3, 4, dtype=torch.bool), docs, ones(3, 5, dtype=torch.bool), negatives, ones(3, 2, 5, dtype=torch.bool)
    )
    assert_gradients_flow(loss, [query, docs, negatives])


def test_hard_negatives_need_a_mask():
    with pytest.raises(ValueError, match="hard_negatives_mask"):
        ones = torch.ones
        maxsim_loss(torch.randn(2, 3, 4), ones(2, 3), torch.randn(2, 3, 4), ones(2, 3), torch.randn(2, 1, 3, 4))


def test_module_with_tiny_model(tiny_model, make_features):
    from tests.training.losses.conftest import sentences

    rows = [
        {"query": q, "positive": p, "negative": n}
        for q, p, n in zip(sentences(5, 3, 51), sentences(5, 7, 52), sentences(5, 4, 53), strict=True)
    ]
    features, labels = make_features(tiny_model, rows)
    loss_fn = MaxSimLoss(tiny_model)
    loss = loss_fn(features, labels)
    outputs = [tiny_model(f) for f in features]
    tokens = [(o["token_embeddings"], o["attention_mask"].bool()) for o in outputs]
    want = maxsim_loss(
        *tokens[0], *tokens[1], tokens[2][0].unsqueeze(1), tokens[2][1].unsqueeze(1)
    )
    torch.testing.assert_close(loss, want)
    assert_gradients_flow(loss, [next(tiny_model.parameters())])


def test_equals_sentence_transformers_multi_vector_loss(tiny_model_dir):
    """On a MultiVectorEncoder, batched by its own collator, MaxSimLoss (without its extra
    normalisation) is sentence-transformers' MultiVectorMultipleNegativesRankingLoss."""
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.base.trainer import BaseTrainer
    from sentence_transformers.multi_vector_encoder.data_collator import MultiVectorEncoderDataCollator
    from sentence_transformers.multi_vector_encoder.losses import MultiVectorMultipleNegativesRankingLoss
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    from tests.training.losses.conftest import sentences

    torch.manual_seed(0)
    model = MultiVectorEncoder(modules=[Transformer(str(tiny_model_dir)), MultiVectorMask()], device="cpu")
    rows = [
        {"query": q, "positive": p, "negative": n}
        for q, p, n in zip(sentences(4, 3, 54), sentences(4, 7, 55), sentences(4, 4, 56), strict=True)
    ]
    batch = MultiVectorEncoderDataCollator(preprocess_fn=model.preprocess)(rows)
    features, labels = BaseTrainer.collect_features(None, batch)
    assert features[0]["task"] == "query" and features[1]["task"] == "document"
    ours = MaxSimLoss(model, normalize=False)([dict(f) for f in features], labels)
    theirs = MultiVectorMultipleNegativesRankingLoss(model)([dict(f) for f in features], labels)
    torch.testing.assert_close(ours, theirs)
