"""A few optimizer steps with every loss on ~32 examples: the loss goes down.

The batch is built by sentence-transformers' data collator and split by the trainer's
``collect_features``, and the optimizer covers ``loss.parameters()`` (the model's and the loss's
own, e.g. the temperature), which is what ``SentenceTransformerTrainer`` does. A real
``SentenceTransformerTrainer`` run follows, when the ``datasets`` package it needs is installed.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
from ragmm.training.losses import LOSSES, cwcl_weights

from tests.training.losses.conftest import WORDS

N = 32
STEPS = 5


def _rows(kind: str) -> list[dict]:
    rng = random.Random(0)

    def text(n):
        return " ".join(rng.choice(WORDS) for _ in range(n))

    rows = []
    for i in range(N):
        anchor = text(4)
        # The positive shares the anchor's words, so there is something to learn beyond memorising.
        positive = " ".join(rng.sample(anchor.split(), 4)) + " " + text(2)
        if kind == "pairs":
            rows.append({"anchor": anchor, "positive": positive})
        elif kind == "triplets":
            rows.append({"anchor": anchor, "positive": positive, "negative": text(5)})
        elif kind == "modalities":
            rows.append({"text": anchor, "image": positive, "audio": " ".join(rng.sample(anchor.split(), 3))})
        elif kind == "views":
            answer = i % 3
            views = [text(4) for _ in range(3)]
            views[answer] = positive
            rows.append({"query": anchor, "frames": views[0], "speech": views[1], "ocr": views[2], "label": answer})
    return rows


CASES = {
    "clip": ("triplets", {}),
    "clip-uniformity-alignment": ("pairs", {}),
    "maxsim": ("triplets", {}),
    "clamr": ("views", {"scale": 2.0}),
    # CWCL's weights come from a frozen encoder of the positive column, as in the paper.
    "cwcl": ("pairs", {"target_model": "frozen copy"}),
    "symile": ("modalities", {"negative_sampling": "n_squared"}),
    "gram": ("modalities", {}),
    "cached-clip": ("triplets", {"mini_batch_size": 16}),
}


def cwcl_floor(target_model, features) -> float:
    """The entropy of CWCL's soft targets: the loss's minimum (it is that plus a KL term)."""
    with torch.no_grad():
        weights = cwcl_weights(target_model(dict(features[1]))["sentence_embedding"])
        weights = weights / weights.sum(dim=1, keepdim=True)
        return float(-(weights * weights.log()).sum(dim=1).mean())


def test_every_registered_loss_has_a_training_case():
    assert set(CASES) == set(LOSSES)


@pytest.mark.parametrize("name", list(CASES))
def test_a_few_steps_reduce_the_loss(name, tiny_model, make_features):
    kind, kwargs = CASES[name]
    torch.manual_seed(0)
    features, labels = make_features(tiny_model, _rows(kind))
    floor = 0.0
    if "target_model" in kwargs:
        kwargs = {**kwargs, "target_model": copy.deepcopy(tiny_model)}
        floor = cwcl_floor(kwargs["target_model"], features)
    loss_fn = LOSSES[name](tiny_model, **kwargs)
    optimizer = torch.optim.AdamW(loss_fn.parameters(), lr=3e-3)
    temperature = getattr(loss_fn, "temperature", None)

    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn([dict(f) for f in features], labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = loss_fn([dict(f) for f in features], labels).item()

    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    assert final - floor < 0.9 * (losses[0] - floor), f"{name}: {losses[0]:.3f} -> {final:.3f} ({losses})"
    if temperature is not None:
        assert loss_fn.temperature != pytest.approx(temperature), "the temperature was not trained"


@pytest.mark.parametrize(("name", "options"), [("clip", {}), ("cached-clip", {"mini_batch_size": 4})])
def test_sentence_transformer_trainer_trains_with_a_ragmm_loss(tiny_model, tmp_path, name, options):
    datasets = pytest.importorskip("datasets", reason="SentenceTransformerTrainer needs the datasets package")
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    dataset = datasets.Dataset.from_list(_rows("triplets"))
    loss_fn = LOSSES[name](tiny_model, **options)
    temperature = loss_fn.temperature
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,  # scales the loss: the cached loss must pass that to its temperature
        num_train_epochs=4,
        learning_rate=3e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = SentenceTransformerTrainer(model=tiny_model, args=args, train_dataset=dataset, loss=loss_fn)
    trainer.train()
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 8 and logged[-1] < logged[0]
    # The trainer optimises the loss's own parameters: the temperature moved.
    assert loss_fn.temperature != pytest.approx(temperature)
