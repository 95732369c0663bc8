"""The head probe's run specs and its Recall@10 (the probe itself needs the cached clipart features)."""

import pytest
import torch

from ragmm.training.head_probe import parse_run, recall_at_10


def test_run_specs_parse_numbers_booleans_and_seeds():
    assert parse_run("epochs=5,heads=3,feature_dropout=0.3,linear=true,seeds=1/2") == {
        "epochs": 5,
        "heads": 3,
        "feature_dropout": 0.3,
        "linear": True,
        "seeds": [1, 2],
    }
    assert parse_run("") == {}
    with pytest.raises(ValueError, match="is not key=value"):
        parse_run("epochs")


def test_recall_at_10_counts_the_share_of_relevant_images_found():
    angles = torch.linspace(0, 3, 12)
    images = torch.stack([angles.cos(), angles.sin()], dim=1)  # ranked 0..11 for the query below
    queries = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    relevant = torch.zeros(2, 12, dtype=torch.bool)
    relevant[0, 9] = True  # 10th nearest: found
    relevant[1, 0] = relevant[1, 11] = True  # nearest and 12th: half found
    assert recall_at_10(images, queries, relevant) == pytest.approx((1.0 + 0.5) / 2)


def _toy_probe(n_captions=6, per_caption=(12, 3, 3, 3, 3, 3), dim=16, classes=1000):
    """A Probe without files: features that say which caption they belong to (one caption
    repeated far more than the rest, as openclipart's star series)."""
    from ragmm.training.head_probe import Probe

    torch.manual_seed(0)
    p = Probe.__new__(Probe)
    centres = torch.randn(n_captions, 32)
    text = torch.nn.functional.normalize(torch.randn(n_captions, dim), dim=-1)
    p.caption = torch.cat([torch.full((k,), c) for c, k in enumerate(per_caption)])
    p.x = centres[p.caption] + 0.1 * torch.randn(len(p.caption), 32)
    p.y = text[p.caption]
    p.logits = torch.randn(len(p.caption), classes)
    p.class_vectors = torch.nn.functional.normalize(torch.randn(classes, dim), dim=-1)
    relevant = p.caption[None, :] == torch.arange(n_captions)[:, None]
    return p, text, relevant


@pytest.mark.parametrize("extra", [{}, {"mask_same": True}, {"cap": 3}, {"cap": 3, "mask_same": True}])
def test_train_head_learns_the_captions_with_capped_or_masked_duplicates(extra):
    p, text, relevant = _toy_probe()
    everything = torch.ones(len(p.caption), dtype=torch.bool)
    before = recall_at_10(torch.randn(len(p.caption), text.shape[1]), text, relevant)
    embed = p.train_head(everything, epochs=60, hidden=32, batch_size=8, lr=3e-3, words=False, seed=1, **extra)
    after = recall_at_10(embed(p.x, p.logits), text, relevant)
    assert after > 0.9 > before


def test_hubness_penalty_lets_an_image_past_hubs_close_to_every_text():
    from ragmm.training.head_probe import hubness

    torch.manual_seed(0)
    texts = torch.eye(4)  # the caption bank: four captions, one axis each
    hubs = torch.tensor([1.0, 0.6, 0.6, 0.6]) + 0.01 * torch.randn(10, 4)  # close to every caption
    target = torch.tensor([[1.0, -0.8, 0.0, 0.0]])
    images = torch.cat([hubs, target])  # the target is the 11th by cosine
    query = torch.tensor([[1.0, 0.3, 0.0, 0.0]])
    relevant = torch.zeros(1, 11, dtype=torch.bool)
    relevant[0, 10] = True
    h = hubness(images, texts, k=3)
    assert bool((h[:10] > h[10]).all())
    assert recall_at_10(images, query, relevant) == 0.0
    assert recall_at_10(images, query, relevant, penalty=h) == 1.0
