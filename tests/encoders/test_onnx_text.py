"""The ONNX query path: same vectors as sentence-transformers, no torch at query time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragmm.encoders.onnx_text import MANIFEST_FILE, OnnxTextEncoder, QueryPlan, export_key, find_export, prune_exports
from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder, packaged_minilm_path

TEXTS = [
    "Who designed the lighthouse lens?",
    "a",
    "Émile Zola wrote twenty novels; 3.5 knots [12].",
    "Bees dance to tell the hive where the flowers are. " * 60,  # past the 256-token limit
]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGMM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny_st_folder(folder: Path, pooling: str = "mean") -> Path:
    """A tiny random BERT saved as a sentence-transformers folder, with MiniLM's tokenizer."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    import torch

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_minilm_path()))
    bert = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    raw = folder / "raw"
    bert.save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    body = models.Transformer(str(raw), max_seq_length=48)
    pool = models.Pooling(32, pooling_mode=pooling)
    SentenceTransformer(modules=[body, pool, models.Normalize()], device="cpu").save(str(folder / "st"))
    return folder / "st"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_st_folder(tmp_path_factory.mktemp("tiny-st"))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_tiny_model_matches_sentence_transformers(tmp_path, cache, pooling):
    from sentence_transformers import SentenceTransformer

    folder = tiny_st_folder(tmp_path, pooling)
    plan = QueryPlan.read(folder)
    assert plan is not None and plan.pooling == pooling and plan.max_seq_length == 48 and plan.dim == 32
    onnx = OnnxTextEncoder.load(folder)  # exports into the temporary cache
    assert find_export(folder) is not None and str(cache) in str(find_export(folder))
    reference = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)
    got = onnx.encode(TEXTS)
    assert got.shape == (len(TEXTS), 32) and got.dtype == np.float32
    assert (got * reference).sum(axis=1).min() >= 0.9999


def test_encoder_routes_few_queries_to_onnx_and_documents_to_sentence_transformers(tiny_model, cache):
    enc = SentenceTransformerEncoder(SentenceTransformerEncoder.Config(model=str(tiny_model), query_prompt="query: "))
    docs = enc.encode_document(["bees dance", "lighthouses warn ships"])  # exports for later queries
    assert find_export(tiny_model) is not None
    fresh = SentenceTransformerEncoder(SentenceTransformerEncoder.Config(model=str(tiny_model), query_prompt="query: "))
    q = fresh.encode_query(["bees dance"])
    assert fresh._model is None and fresh.query_runtime() is not None  # sentence-transformers never loaded
    assert fresh.dim == 32 and fresh._model is None
    reference = enc.model.encode(["query: bees dance"], normalize_embeddings=True)
    assert float(q[0] @ reference[0]) >= 0.9999
    assert float(q[0] @ docs[0]) < 0.9999  # the prompt reached the ONNX path
    batch = fresh.encode_query([f"q {i}" for i in range(8)])  # a batch: sentence-transformers
    assert batch.shape == (8, 32) and fresh._model is not None


def test_switched_off_or_unsupported_models_stay_on_sentence_transformers(tmp_path, tiny_model, cache):
    off = SentenceTransformerEncoder(SentenceTransformerEncoder.Config(model=str(tiny_model), onnx_queries=False))
    assert off.query_runtime() is None
    dense = tmp_path / "dense"
    shutil.copytree(tiny_model, dense)
    modules = json.loads((dense / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (dense / "modules.json").write_text(json.dumps(modules))
    assert QueryPlan.read(dense) is None
    assert SentenceTransformerEncoder(SentenceTransformerEncoder.Config(model=str(dense))).query_runtime() is None
    assert QueryPlan.read(tmp_path / "missing") is None


def test_export_key_follows_the_model_files_and_prune_drops_orphans(tmp_path, tiny_model, cache):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    before = export_key(model)
    assert export_key(model) == before
    config = model / "config.json"
    config.write_text(config.read_text() + " ")
    os.utime(config, ns=(1, 1))
    assert export_key(model) != before  # a changed model is exported again
    OnnxTextEncoder.load(model)
    assert find_export(model) is not None
    shutil.rmtree(model)
    removed = prune_exports()
    assert len(removed) == 1 and not removed[0].exists() and not list(cache.glob(f"onnx/*/{MANIFEST_FILE}"))


def test_no_export_without_permission(tiny_model, cache):
    from ragmm.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="no ONNX export"):
        OnnxTextEncoder.load(tiny_model, export=False)


@pytest.mark.slow
def test_packaged_minilm_onnx_matches_sentence_transformers_and_imports_no_torch(text_encoder, cache):
    """The default encoder's query path: cosine >= 0.9999 to sentence-transformers, and a
    fresh process encodes a query without importing torch, transformers, sklearn or
    sentence-transformers."""
    folder = packaged_minilm_path()
    onnx = OnnxTextEncoder.load(folder)
    reference = text_encoder.model.encode(TEXTS, normalize_embeddings=True)
    assert (onnx.encode(TEXTS) * reference).sum(axis=1).min() >= 0.9999
    code = (
        "import sys\n"
        "from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder\n"
        "v = SentenceTransformerEncoder().encode_query(['Who designed the lighthouse lens?'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'sklearn', 'sentence_transformers') if m in sys.modules]\n"
        "print(v.shape, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "RAGMM_CACHE": str(cache)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 384) []"


def test_token_vectors_match_the_torch_token_vectors(tiny_model, cache):
    """The late-interaction reranker's token vectors on ONNX: the same tokens (special and
    padding ones left out) and the same vectors as on sentence-transformers."""
    from sentence_transformers import SentenceTransformer

    from ragmm.reranking.late_interaction import token_vectors

    onnx = OnnxTextEncoder.load(tiny_model)
    reference = token_vectors(SentenceTransformer(str(tiny_model), device="cpu"), TEXTS)
    got = onnx.token_vectors(TEXTS, batch_size=3)  # two batches, padded differently
    assert len(got) == len(TEXTS)
    for g, r in zip(got, reference, strict=True):
        assert g.shape == r.shape and g.dtype == np.float32
        assert (g * r).sum(axis=1).min() >= 0.9999


def test_a_question_runs_the_model_once_for_its_vector_and_its_tokens(tiny_model, cache):
    onnx = OnnxTextEncoder.load(tiny_model)
    runs = []
    run_batch = onnx._run_batch
    onnx._run_batch = lambda texts: runs.append(list(texts)) or run_batch(texts)
    vec = onnx.encode([TEXTS[0]])
    tokens = onnx.token_vectors([TEXTS[0]])
    assert runs == [[TEXTS[0]]]  # the second call reused the first run
    fresh = OnnxTextEncoder.load(tiny_model)
    np.testing.assert_array_equal(tokens[0], fresh.token_vectors([TEXTS[0]])[0])
    np.testing.assert_array_equal(vec, fresh.encode([TEXTS[0]]))
    onnx.encode(TEXTS[:2])  # batches are not remembered
    assert runs[-1] == TEXTS[:2]


def test_tokens_and_embeddings_come_from_one_run(tiny_model, cache):
    """The feature-calibrated late-interaction reranker reads both from one run: the same
    token vectors as token_vectors and the same embeddings as encode (and as torch's)."""
    from sentence_transformers import SentenceTransformer

    from ragmm.reranking.late_interaction import text_vectors

    onnx = OnnxTextEncoder.load(tiny_model)
    runs = []
    run_batch = onnx._run_batch
    onnx._run_batch = lambda texts: runs.append(list(texts)) or run_batch(texts)
    tokens, dense = onnx.tokens_and_embeddings(TEXTS, batch_size=3)
    assert len(runs) == 2 and dense.shape == (len(TEXTS), onnx.dim)
    fresh = OnnxTextEncoder.load(tiny_model)
    np.testing.assert_allclose(dense, fresh.encode(TEXTS), atol=1e-5)
    for a, b in zip(tokens, fresh.token_vectors(TEXTS), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    reference = text_vectors(SentenceTransformer(str(tiny_model), device="cpu"), TEXTS)
    assert min(float(r.dense @ d) for r, d in zip(reference, dense, strict=True)) >= 0.9999
