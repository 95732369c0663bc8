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
