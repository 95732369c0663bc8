"""A tiny random sentence-transformers model, built from a config (nothing is downloaded).

BERT with hidden size 32 and 2 layers, a 60-word WordPiece vocabulary written to a temporary
folder, wrapped as sentence-transformers ``Transformer`` + mean ``Pooling``. Dropout is off so
that two forwards of the same batch agree (the equality tests compare losses run separately).
Batches are built the way the trainer builds them: the sentence-transformers data collator,
then the trainer's split into one feature dict per column.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

WORDS = (
    "the a cat dog bird fish sat ran flew swam on in under over mat park sky sea sun moon is was hot cold "
    "blue red green car bus train drove rode road rail city town river lake tree house big small old new "
    "fast slow runs sleeps eats reads book paper"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    """One intra-op thread: these models are tiny, and on 2 shared cores a second OpenMP thread
    waits on a busy core (steps of 5 ms took 0.7 s with 2 threads under load)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + WORDS) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(vocab))
    config = BertConfig(
        vocab_size=len(SPECIAL) + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_model(tiny_model_dir):
    """A fresh (same initial weights every time) tiny SentenceTransformer."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    torch.manual_seed(0)
    transformer = Transformer(str(tiny_model_dir), max_seq_length=32)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")


def sentences(n: int, length: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(length)) for _ in range(n)]


@pytest.fixture
def make_features():
    """``make_features(model, rows)``: trainer-style inputs for a list of row dicts.

    Returns ``(sentence_features, labels)`` as ``SentenceTransformerTrainer.compute_loss`` hands them
    to a loss: the data collator tokenizes each column, then the trainer's ``collect_features``
    splits the batch into one feature dict per column.
    """
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    def make(model, rows: list[dict]):
        from sentence_transformers.base.trainer import BaseTrainer

        batch = SentenceTransformerDataCollator(preprocess_fn=model.preprocess)(rows)
        # The trainer's own split (it reads nothing from the trainer instance).
        return BaseTrainer.collect_features(None, batch)

    return make
