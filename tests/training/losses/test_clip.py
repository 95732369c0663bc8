from __future__ import annotations

import math

import pytest
import torch
from ragmm.training.losses import CLIPLoss, LogitScale, clip_loss

from tests.training.losses.helpers import assert_gradients_flow, assert_matches_reference, leaves, reference_clip


@pytest.mark.parametrize("num_negatives", [0, 2])
@pytest.mark.parametrize("normalize", [True, False])
def test_clip_loss_matches_reference(num_negatives, normalize):
    query, docs, negatives = leaves((5, 6), (5, 6), (5, max(num_negatives, 1), 6), seed=num_negatives)
    log_scale = torch.tensor(math.log(1 / 0.3), dtype=torch.float64, requires_grad=True)
    if num_negatives == 0:
        inputs = [query, docs, log_scale]

        def impl(q, d, s):
            return clip_loss(q, d, s.exp(), normalize=normalize)

        def ref(q, d, s):
            return reference_clip(q, d, s, normalize=normalize)
    else:
        inputs = [query, docs, negatives, log_scale]

        def impl(q, d, n, s):
            return clip_loss(q, d, s.exp(), n, normalize=normalize)

        def ref(q, d, n, s):
            return reference_clip(q, d, s, n, normalize=normalize)

    assert_matches_reference(impl, ref, inputs)


def test_gradients_reach_inputs_and_temperature():
    query, docs, negatives = leaves((4, 8), (4, 8), (4, 3, 8), seed=1)
    scale = LogitScale(temperature=0.07)
    loss = clip_loss(query.float(), docs.float(), scale(), negatives.float())
    assert_gradients_flow(loss, [query, docs, negatives, scale.log_scale])


def test_logit_scale_is_clamped_like_clip_and_still_trains():
    scale = LogitScale(temperature=0.07, max_scale=100.0)
    with torch.no_grad():
        scale.log_scale.fill_(10.0)  # a scale of e^10, as an optimizer overshoot might leave it
    value = scale()
    assert value.item() == pytest.approx(100.0)
    assert scale.log_scale.item() == pytest.approx(math.log(100.0))
    value.backward()
    assert scale.log_scale.grad is not None and scale.log_scale.grad.item() > 0


def test_fixed_temperature_is_not_a_trained_parameter():
    scale = LogitScale(temperature=0.05, learnable=False)
    assert not scale.log_scale.requires_grad
    assert scale().item() == pytest.approx(20.0)


@pytest.mark.parametrize("temperature", [0.0, -1.0, 0.001])
def test_logit_scale_rejects_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        LogitScale(temperature=temperature)


def test_clip_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        clip_loss(torch.randn(4, 8), torch.randn(3, 8), 10.0)
    with pytest.raises(ValueError, match=r"\(B, H, D\)"):
        clip_loss(torch.randn(4, 8), torch.randn(4, 8), 10.0, torch.randn(4, 8))


@pytest.mark.parametrize("with_negative", [False, True])
def test_module_embeds_columns_and_calls_the_pure_function(tiny_model, make_features, with_negative):
    from tests.training.losses.conftest import sentences

    rows = [
        {"anchor": a, "positive": p, **({"negative": n} if with_negative else {})}
        for a, p, n in zip(sentences(6, 4, 1), sentences(6, 6, 2), sentences(6, 5, 3), strict=True)
    ]
    features, labels = make_features(tiny_model, rows)
    loss_fn = CLIPLoss(tiny_model, temperature=0.1)
    loss = loss_fn(features, labels)

    embeddings = [tiny_model(f)["sentence_embedding"] for f in features]
    negatives = embeddings[2].unsqueeze(1) if with_negative else None
    torch.testing.assert_close(loss, clip_loss(embeddings[0], embeddings[1], 10.0, negatives))
    assert_gradients_flow(loss, [loss_fn.logit_scale.log_scale, *list(tiny_model.parameters())[:3]])


def test_module_refuses_a_single_column(tiny_model, make_features):
    features, labels = make_features(tiny_model, [{"anchor": "the cat"}, {"anchor": "a dog"}])
    with pytest.raises(ValueError, match="at least 2 input columns"):
        CLIPLoss(tiny_model)(features, labels)


def test_an_ensemble_tower_gets_one_loss_per_member():
    """A column whose output carries ``member_embeddings`` (an ensemble of heads) is contrasted
    member by member against the other columns; the loss is the members' mean."""

    class Ensemble(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = torch.nn.Parameter(torch.randn(4, 3, 8))  # (B, K, D) for the image column
            self.text = torch.nn.Parameter(torch.randn(4, 8))

        def forward(self, features: dict) -> dict:
            if features["column"] == "image":
                m = self.members
                return {"sentence_embedding": torch.nn.functional.normalize(m, dim=-1).mean(1), "member_embeddings": m}
            return {"sentence_embedding": self.text}

    model = Ensemble()
    loss_fn = CLIPLoss(model, temperature=0.1)
    loss = loss_fn([{"column": "text"}, {"column": "image"}], None)
    expected = torch.stack([clip_loss(model.text, model.members[:, k], 10.0) for k in range(3)]).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(float(model.members.grad[:, k].abs().sum()) > 0 for k in range(3))  # every member trains
