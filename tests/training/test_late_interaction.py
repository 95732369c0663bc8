"""`ragmm train retriever` with ``[model] kind = "late-interaction"`` on a tiny random BERT.

One short run (module scope, about 1 s) trains a ColBERT head on a plain Hugging Face checkpoint
with ragmm's ``maxsim`` loss, on a toy task the untrained model cannot do; the tests check the loss
fell, the saved model reloads through :class:`LateInteractionEncoder` with the trained token
vectors, and those vectors find each query's document in a multivector collection of the store.
"""

import itertools
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from ragmm.training.config import load_train_config

WORDS = "red blue green cat dog bird runs flies swims fast slow big small tree river sky sea".split()
STEPS = 30


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: the model is tiny, and a second thread on 2 shared cores only waits."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A plain Hugging Face BERT folder (2 layers, 32 wide, word-level vocab): no ColBERT head yet."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    # transformers v5: BertTokenizerFast(vocab_file=...) maps every word to [UNK]; a dict does not.
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    assert tok("red cat sea")["input_ids"] == [2, 5, 8, 21, 3]
    tok.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


# Queries and documents use disjoint words: each of the first eight words has a partner among
# the next eight that a document uses instead. An untrained model has nothing to match on; a
# trained one must learn the pairing (one shared encoder can: the pairing is symmetric).
PARTNER = dict(zip(WORDS[:8], WORDS[8:16]))


def toy_rows() -> list[dict[str, str]]:
    """Queries "a b" (every pair of the first eight words once, in random order) whose positive
    is "partner(a) partner(b)"."""
    rng = np.random.default_rng(0)
    pairs = [tuple(rng.permutation(p)) for p in itertools.combinations(WORDS[:8], 2)]
    return [{"query": f"{a} {b}", "positive": f"{PARTNER[a]} {PARTNER[b]}"} for a, b in (pairs[i] for i in rng.permutation(len(pairs)))]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    """Run the training once; keep the in-memory model the trainer updated, for comparison."""
    from ragmm.training.kinds.late_interaction import LateInteraction
    from ragmm.training.train import train_retriever

    root = tmp_path_factory.mktemp("li-train")
    rows = toy_rows()
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = root / "train.toml"
    # scale 10: a 4-token query's MaxSim spans at most about 4, too flat a softmax at scale 1 to
    # separate 8 documents in 30 steps (ColBERT's longer queries need no scale).
    cfg.write_text(
        f'output = "{root / "out"}"\n[model]\nkind = "late-interaction"\nbase = "{tiny_bert}"\n[data]\ntrain = "train.jsonl"\n'
        f'[loss]\ntype = "maxsim"\nscale = 10.0\n[train]\nmax_steps = {STEPS}\nbatch_size = 8\nlearning_rate = 3e-3\n'
        f'warmup_ratio = 0.0\nsave_steps = {STEPS}\nlogging_steps = 1\nprecision = "fp32"\n'
    )
    models = []
    load = LateInteraction.load

    def load_and_keep(self, c):
        models.append(load(self, c))
        return models[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LateInteraction, "load", load_and_keep)
        res = train_retriever(load_train_config(cfg), progress=False)
    return res, models[0], rows


def logged_losses(out):
    return [rec["loss"] for rec in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in rec]


def test_plain_bert_gets_a_colbert_head(tiny_bert):
    from ragmm.training.config import TrainConfig
    from ragmm.training.kinds import get_kind
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    cfg = TrainConfig.model_validate({"model": {"kind": "late-interaction", "base": str(tiny_bert), "max_seq_length": 16}, "data": {"train": "x.jsonl"}})
    model = get_kind("late-interaction").load(cfg)
    assert [type(m) for m in model] == [Transformer, Dense, MultiVectorMask, Normalize]
    assert model[1].linear.weight.shape == (128, 32) and model[1].linear.bias is None
    assert model.get_embedding_dimension() == 128 and model.max_seq_length == 16


def test_training_lowers_the_maxsim_loss(trained):
    res, _, _ = trained
    losses = logged_losses(Path(res.output))
    assert res.steps == STEPS and len(losses) == STEPS
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) * 0.8, losses
    assert res.extra["loss"] == "maxsim"
    assert json.loads((Path(res.output) / "config_sentence_transformers.json").read_text())["model_type"] == "MultiVectorEncoder"


def test_checkpoint_reloads_with_the_trained_token_vectors(trained):
    from ragmm.training.kinds import get_kind

    from ragmm.encoders.late_interaction import LateInteractionEncoder
    from ragmm.protocols import Encoder
    from ragmm.registry import registry

    res, model, _ = trained
    enc = get_kind("late-interaction").eval_encoder(res.output)
    assert isinstance(enc, LateInteractionEncoder) and registry.get("encoder", "late-interaction") is LateInteractionEncoder
    assert isinstance(enc, Encoder) and enc.multivector and enc.modality == "text" and enc.dim == 128
    texts = ["red cat", "blue sea flies"]
    for side in ("query", "document"):
        got = getattr(enc, f"encode_{side}")(texts)
        want = getattr(model, f"encode_{side}")(texts, convert_to_numpy=True)
        assert [g.shape for g in got] == [(4, 128), (5, 128)]  # [CLS] words [SEP]
        assert all(g.dtype == np.float32 for g in got)
        np.testing.assert_allclose(np.linalg.norm(np.concatenate(got), axis=1), 1.0, atol=1e-5)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)
    assert enc.encode_query([]) == []


def test_token_vectors_search_a_multivector_collection(trained, tmp_path):
    from ragmm.encoders.late_interaction import LateInteractionEncoder
    from ragmm.protocols import CollectionSpec, StoredPoint, VectorSpec
    from ragmm.stores.edge import EdgeStore

    res, _, rows = trained
    enc = LateInteractionEncoder.from_config(LateInteractionEncoder.Config(model=res.output, precision="fp32"))
    docs = enc.encode_document([r["positive"] for r in rows])  # each (T_i, 128)
    store = EdgeStore(tmp_path / "store")
    store.create_collection(CollectionSpec("toy", {"tokens": VectorSpec(size=enc.dim, distance="dot", multivector=True)}, encoder=enc.name))
    store.upsert("toy", [StoredPoint(id=str(uuid.UUID(int=i + 1)), payload={"i": i}, vectors={"tokens": d}) for i, d in enumerate(docs)])
    try:
        for i, q in enumerate(enc.encode_query([r["query"] for r in rows])):
            hits = store.search("toy", q, using="tokens", limit=3)
            ref = np.array([(q @ d.T).max(axis=1).sum() for d in docs])  # MaxSim, (N,)
            assert [h.payload["i"] for h in hits] == list(np.argsort(-ref)[:3])
            np.testing.assert_allclose([h.score for h in hits], np.sort(ref)[::-1][:3], atol=1e-4)
            assert hits[0].payload["i"] == i, (rows[i]["query"], [rows[h.payload["i"]]["positive"] for h in hits])
    finally:
        store.close()


def test_the_untrained_model_does_not_find_them(tiny_bert, trained, caplog):
    """The search test above is earned: the base checkpoint with its fresh head mostly misses."""
    from ragmm.encoders.late_interaction import LateInteractionEncoder

    _, _, rows = trained
    torch.manual_seed(0)
    enc = LateInteractionEncoder(LateInteractionEncoder.Config(model=str(tiny_bert), precision="fp32"))
    with caplog.at_level("WARNING", logger="ragmm.encoders.late_interaction"):
        docs = enc.encode_document([r["positive"] for r in rows])  # loads the model
    queries = enc.encode_query([r["query"] for r in rows])
    assert "not a multi-vector checkpoint" in caplog.text
    top1 = [int(np.argmax([(q @ d.T).max(axis=1).sum() for d in docs])) for q in queries]
    assert np.mean(np.array(top1) == np.arange(len(rows))) < 0.5


def test_mining_and_eval_with_a_late_interaction_model(tmp_path, tiny_bert):
    """--mine-negatives searches a MaxSim collection and [eval] scores a multivector corpus."""
    from ragmm.training.train import train_retriever

    rows = toy_rows()
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps({"id": f"q{i}", "text": r["query"]}) for i, r in enumerate(rows[:8])))
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"id": f"d{i}", "text": r["positive"]}) for i, r in enumerate(rows[:8])))
    (tmp_path / "qrels.tsv").write_text("".join(f"q{i} 0 d{i} 1\n" for i in range(8)))
    cfg = tmp_path / "train.toml"
    cfg.write_text(
        f'output = "{tmp_path / "out"}"\n[model]\nkind = "late-interaction"\nbase = "{tiny_bert}"\n[data]\ntrain = "train.jsonl"\n'
        f'[loss]\ntype = "maxsim"\nscale = 10.0\n[train]\nmax_steps = 3\nbatch_size = 8\nsave_steps = 3\nprecision = "fp32"\n'
        '[mine]\nnegatives = 1\nmax_score_ratio = 1.0\n[eval]\nqueries = "q.jsonl"\nqrels = "qrels.tsv"\ncorpus_file = "c.jsonl"\n'
    )
    res = train_retriever(load_train_config(cfg), mine=True, progress=False)
    assert res.extra["mined"] and res.extra["rows"] > 0
    assert set(res.eval_after) == {"recall@1", "recall@5", "recall@10", "ndcg@10", "mrr@10"}
    assert (tmp_path / "out" / "eval" / "after" / "modality_gap.png").is_file()
