import numpy as np
import pytest

from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder, resolve_model
from ragmm.errors import ModelNotFoundError


def test_single_query_path_matches_sentence_transformers_encode(text_encoder):
    texts = ["what is a lighthouse for?", "bees dance to share where flowers are"]
    fast = np.stack([text_encoder.encode_query([t])[0] for t in texts])
    reference = text_encoder.model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(fast, reference, atol=1e-5)
    assert fast.dtype == np.float32 and np.allclose(np.linalg.norm(fast, axis=1), 1, atol=1e-5)


def test_batches_stay_close_to_fp32(text_encoder):
    texts = [f"paragraph {i} about volcanoes and lava" for i in range(32)]
    fp32 = SentenceTransformerEncoder(SentenceTransformerEncoder.Config(precision="fp32"))
    fp32._model = text_encoder.model  # same weights, no second load
    cos = (text_encoder.encode_document(texts) * fp32.encode_document(texts)).sum(axis=1)
    assert cos.min() > 0.999


def test_model_resolution_and_errors(tmp_path):
    load_from, name = resolve_model("all-MiniLM-L6-v2")
    assert name == "sentence-transformers/all-MiniLM-L6-v2" and load_from.endswith("model")
    assert resolve_model("org/some-model") == ("org/some-model", "org/some-model")
    with pytest.raises(ModelNotFoundError, match="model folder not found"):
        resolve_model("./no/such/folder")
    (tmp_path / "file.bin").write_text("x")
    with pytest.raises(ModelNotFoundError, match="must be a folder"):
        resolve_model(str(tmp_path / "file.bin"))
