"""`ragmm train retriever` plumbing on a tiny random model (checks plumbing, not quality)."""

import json

import numpy as np
import pytest
from ragmm.training.config import load_train_config
from ragmm.training.train import train_retriever

from ragmm.errors import ConfigError

WORDS = "red blue green cat dog bird runs flies swims fast slow big small tree river sky sea".split()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 2-layer, 32-wide BERT with a word-level vocab, as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    assert tok("red cat")["input_ids"] == [2, 5, 8, 3]
    tok.save_pretrained(root / "hf")
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(root / "hf")
    st = SentenceTransformer(modules=[models.Transformer(str(root / "hf"), max_seq_length=32), models.Pooling(32, "mean"), models.Normalize()])
    st.save(str(root / "st"))
    return root / "st"


@pytest.fixture
def train_files(tmp_path, tiny_model):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(32):
        a, b = rng.choice(WORDS, 2, replace=False)
        rows.append({"query": f"{a} {b}", "positive": f"{a} {b} {a}", "id": i})
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps({"id": f"q{i}", "text": r["query"]}) for i, r in enumerate(rows[:8])))
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"id": f"d{i}", "text": r["positive"]}) for i, r in enumerate(rows[:8])))
    (tmp_path / "qrels.tsv").write_text("".join(f"q{i}\t0\td{i}\t1\n" for i in range(8)))

    def write(max_steps=30, extra=""):
        cfg = tmp_path / "train.toml"
        cfg.write_text(
            f'output = "{tmp_path / "out"}"\n[model]\nbase = "{tiny_model}"\n[data]\ntrain = "train.jsonl"\n'
            f'[loss]\ntype = "clip"\ntemperature = 0.1\n[train]\nmax_steps = {max_steps}\nbatch_size = 8\nlearning_rate = 3e-3\n'
            f"warmup_ratio = 0.0\nsave_steps = 2\nlogging_steps = 1\nprecision = \"fp32\"\n{extra}"
        )
        return cfg

    return write


def logged_losses(out):
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines() if "loss" in json.loads(line)]


def test_tiny_run_lowers_the_loss_and_reloads_identically(tmp_path, train_files):
    from sentence_transformers import SentenceTransformer

    cfg = load_train_config(train_files(max_steps=30))
    res = train_retriever(cfg, progress=False)
    losses = logged_losses(tmp_path / "out")
    assert res.steps == 30 and len(losses) == 30
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) * 0.8
    model = SentenceTransformer(res.output)
    texts = ["red cat", "blue sea flies"]
    assert np.allclose(model.encode(texts), model.encode(texts))
    again = SentenceTransformer(res.output)
    np.testing.assert_allclose(model.encode(texts), again.encode(texts), rtol=0, atol=1e-6)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## ragmm training" in card and "`clip`" in card and "steps: 30" in card
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_resume_continues_at_the_saved_step(tmp_path, train_files):
    first = train_retriever(load_train_config(train_files(max_steps=4)), progress=False)
    assert first.steps == 4
    assert (tmp_path / "out" / "checkpoints" / "checkpoint-4").is_dir()
    resumed = train_retriever(load_train_config(train_files(max_steps=6)), resume=True, progress=False)
    assert resumed.steps == 6
    steps = [json.loads(line)["step"] for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert steps[:4] == [1, 2, 3, 4] and 5 in steps[4:] and 1 not in steps[4:]


def test_mining_and_eval_before_after(tmp_path, train_files):
    extra = '[mine]\nnegatives = 1\nmax_score_ratio = 1.0\n[eval]\nqueries = "q.jsonl"\nqrels = "qrels.tsv"\ncorpus_file = "c.jsonl"\n'
    res = train_retriever(load_train_config(train_files(max_steps=3, extra=extra)), mine=True, progress=False)
    assert res.extra["mined"] and res.extra["rows"] > 0
    assert set(res.eval_before) == set(res.eval_after) == {"recall@1", "recall@5", "recall@10", "ndcg@10", "mrr@10"}
    assert (tmp_path / "out" / "eval" / "after" / "recall_at_k.png").is_file()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('[data]\ntrain = "x.jsonl"\n[loss]\ntype = "nope"\n', "unknown loss"),
        ('[data]\ntrain = "x.jsonl"\n[train]\nbatch_size = 1\n', "train.batch_size"),
        ("[loss]\n", "field 'data'"),
        ('[data]\ntrain = "x.jsonl"\n[loss]\ntype = "symile"\ngather_across_devices = true\n', "loss.gather_across_devices"),
    ],
)
def test_bad_train_config(tmp_path, body, needle):
    path = tmp_path / "t.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=needle):
        load_train_config(path)
