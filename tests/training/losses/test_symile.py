from __future__ import annotations

import math

import pytest
import torch
from ragmm.training.losses import SymileLoss, symile_loss

from tests.training.losses.helpers import (
    assert_gradients_flow,
    assert_matches_reference,
    cross_entropy,
    leaves,
    mean,
    unit,
)


def mip(*vectors):
    """Multilinear inner product of equal-length vectors, one coordinate at a time."""
    total = vectors[0].new_zeros(())
    for d in range(vectors[0].shape[0]):
        term = vectors[0][d]
        for v in vectors[1:]:
            term = term * v[d]
        total = total + term
    return total


def reference_symile(embeddings, log_scale, negative_sampling, seed=None):
    """Saporta et al. 2024, both negative-sampling variants, each anchor modality in turn."""
    scale = torch.exp(log_scale)
    batch = embeddings[0].shape[0]
    reps = [[unit(e[i]) for i in range(batch)] for e in embeddings]
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    per_anchor = []
    for m, anchor in enumerate(reps):
        others = reps[:m] + reps[m + 1 :]
        if negative_sampling == "n_squared":
            y, z = others
            rows = []
            for i in range(batch):
                logits = [scale * mip(anchor[i], y[j], z[k]) for j in range(batch) for k in range(batch)]
                rows.append(cross_entropy(logits, i * batch + i))  # (j, k) = (i, i) sits at i * B + i
        else:
            perms = [torch.randperm(batch, generator=generator) for _ in others]
            rows = []
            for i in range(batch):
                logits = []
                for j in range(batch):
                    tuple_j = [o[i] for o in others] if j == i else [o[int(p[j])] for o, p in zip(others, perms, strict=True)]
                    logits.append(scale * mip(anchor[i], *tuple_j))
                rows.append(cross_entropy(logits, i))
        per_anchor.append(mean(rows))
    return mean(per_anchor)


def test_n_squared_matches_reference():
    a, b, c = leaves((4, 5), (4, 5), (4, 5), seed=80)
    log_scale = torch.tensor(math.log(3.0), dtype=torch.float64, requires_grad=True)
    assert_matches_reference(
        lambda x, y, z, s: symile_loss([x, y, z], s.exp(), negative_sampling="n_squared"),
        lambda x, y, z, s: reference_symile([x, y, z], s, "n_squared"),
        [a, b, c, log_scale],
    )


@pytest.mark.parametrize("num_modalities", [3, 4])
def test_n_sampling_matches_reference(num_modalities):
    tensors = leaves(*[(5, 6)] * num_modalities, seed=81)
    log_scale = torch.tensor(math.log(3.0), dtype=torch.float64, requires_grad=True)

    def impl(*args):
        *embs, s = args
        return symile_loss(embs, s.exp(), negative_sampling="n", generator=torch.Generator().manual_seed(7))

    def ref(*args):
        *embs, s = args
        return reference_symile(embs, s, "n", seed=7)

    assert_matches_reference(impl, ref, [*tensors, log_scale])


def test_gradients_flow_and_errors():
    a, b, c = leaves((4, 8), (4, 8), (4, 8), seed=83)
    scale = torch.tensor(2.0, requires_grad=True)
    loss = symile_loss([a, b, c], scale.exp())
    assert_gradients_flow(loss, [a, b, c, scale])
    with pytest.raises(ValueError, match="3 modalities"):
        symile_loss([a, b, c, a], 2.0, negative_sampling="n_squared")
    with pytest.raises(ValueError, match="one shape"):
        symile_loss([a, b[:3], c], 2.0)


def test_module_with_tiny_model(tiny_model, make_features):
    from tests.training.losses.conftest import sentences

    texts = [sentences(5, n, seed) for n, seed in ((3, 91), (5, 92), (4, 93))]
    rows = [{"text": t, "image": i, "audio": a} for t, i, a in zip(*texts, strict=True)]
    features, labels = make_features(tiny_model, rows)
    loss_fn = SymileLoss(tiny_model, temperature=0.2, negative_sampling="n_squared")
    loss = loss_fn(features, labels)
    emb = [tiny_model(f)["sentence_embedding"] for f in features]
    torch.testing.assert_close(loss, symile_loss(emb, 5.0, negative_sampling="n_squared"))
    assert_gradients_flow(loss, [loss_fn.logit_scale.log_scale, next(tiny_model.parameters())])
    with pytest.raises(ValueError, match="at least 3 input columns"):
        loss_fn(features[:2], labels)
