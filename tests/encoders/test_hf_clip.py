"""HFClipEncoder over tiny random CLIP, SigLIP and SigLIP2 checkpoints built here: plumbing, not quality."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from ragmm.encoders.hf_clip import HFClipEncoder
from ragmm.errors import ConfigError, InputError, ModelNotFoundError

WORDS = ["<pad>", "</s>", "<unk>", "a", "red", "blue", "square", "circle", "photo", "of"]
TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
TEXTS = ["a red square", "a photo of a blue circle", "circle"]
FAMILIES = ["clip", "siglip", "siglip2"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _word_tokenizer():
    """A word-level fast tokenizer built in memory (SigLIP's own needs sentencepiece)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _save_clip(folder: Path) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch] = len(vocab)
        vocab[f"{ch}</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])  # no merges: one token per character
    text = {**TOWER, "vocab_size": len(vocab), "max_position_embeddings": 32, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    config = CLIPConfig(text_config=text, vision_config={**TOWER, "image_size": 32, "patch_size": 8}, projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def _save_siglip(folder: Path) -> None:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    text = {**TOWER, "vocab_size": len(WORDS), "max_position_embeddings": 8, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1}
    SiglipModel(SiglipConfig(text_config=text, vision_config={**TOWER, "image_size": 32, "patch_size": 8})).save_pretrained(folder)
    SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer=_word_tokenizer()).save_pretrained(
        folder
    )


def _save_siglip2(folder: Path) -> None:
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor

    text = {**TOWER, "vocab_size": len(WORDS), "max_position_embeddings": 8, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1}
    Siglip2Model(Siglip2Config(text_config=text, vision_config={**TOWER, "num_patches": 16, "patch_size": 8})).save_pretrained(folder)
    image_processor = Siglip2ImageProcessor(patch_size=8, max_num_patches=16)  # NaFlex: 16 patches of 8 px, no fixed size
    Siglip2Processor(image_processor=image_processor, tokenizer=_word_tokenizer()).save_pretrained(folder)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_clip")
    folders = {}
    for family, save in zip(FAMILIES, (_save_clip, _save_siglip, _save_siglip2), strict=True):
        save(folders.setdefault(family, root / family))
    return folders


@pytest.fixture(scope="module")
def encoders(checkpoints) -> dict[str, HFClipEncoder]:
    return {f: HFClipEncoder(HFClipEncoder.Config(model=str(p), precision="fp32", device="cpu")) for f, p in checkpoints.items()}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, object]:
    """A red square as a PNG path, a blue circle as a PIL image (RGBA), a gradient as an array."""
    root = tmp_path_factory.mktemp("images")
    red = root / "red.png"
    Image.new("RGB", (40, 24), (220, 30, 30)).save(red)
    circle = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    circle.paste((30, 30, 220, 255), (4, 4, 16, 16))
    gradient = np.linspace(0, 1, 18 * 30 * 3, dtype=np.float32).reshape(18, 30, 3)
    return {"path": str(red), "pil": circle, "array": gradient}


def test_config_rejects_unknown_fields():
    with pytest.raises(ValidationError, match="modle"):
        HFClipEncoder.Config(model="x", modle="y")
    assert HFClipEncoder.Config(model="x").local_files_only is True


@pytest.mark.parametrize("family", FAMILIES)
def test_texts_and_images_embed_to_unit_vectors(encoders, images, family):
    enc = encoders[family]
    expected_dim = 16 if family == "clip" else 32  # CLIP: projection_dim; SigLIP: the towers' hidden size
    assert enc.dim == expected_dim and enc.modality == "image" and enc.text_space is None
    for out, n in ((enc.encode_text(TEXTS), len(TEXTS)), (enc.encode_image(list(images.values())), len(images))):
        assert out.shape == (n, enc.dim) and out.dtype == np.float32 and out.flags.c_contiguous
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(enc.encode_query(TEXTS), enc.encode_text(TEXTS))
    np.testing.assert_array_equal(enc.encode_document([images["path"]]), enc.encode_image([images["path"]]))
    assert enc.encode_text([]).shape == (0, enc.dim) and enc.encode_image([]).shape == (0, enc.dim)


@pytest.mark.parametrize("family", FAMILIES)
def test_batches_match_single_inputs(encoders, images, family):
    enc = encoders[family]
    batch = enc.encode_text(TEXTS, batch_size=3)
    single = np.concatenate([enc.encode_text([t]) for t in TEXTS])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    pictures = list(images.values())
    np.testing.assert_allclose(enc.encode_image(pictures, batch_size=3), enc.encode_image(pictures, batch_size=1), atol=1e-5)


def test_path_and_pil_image_give_the_same_vector(encoders, images):
    enc = encoders["clip"]
    with Image.open(images["path"]) as img:
        from_pil = enc.encode_image([img])
    np.testing.assert_allclose(enc.encode_image([Path(images["path"])]), from_pil, atol=1e-6)


def test_bf16_stays_close_to_fp32(checkpoints, encoders, images):
    bf16 = HFClipEncoder(HFClipEncoder.Config(model=str(checkpoints["clip"]), precision="bf16", device="cpu"))
    fp32 = encoders["clip"]
    for a, b in (
        (bf16.encode_text(TEXTS), fp32.encode_text(TEXTS)),
        (bf16.encode_image([images["path"]]), fp32.encode_image([images["path"]])),
    ):
        assert a.dtype == np.float32 and (a * b).sum(axis=1).min() > 0.99


def test_name_is_the_resolved_folder(checkpoints, monkeypatch):
    monkeypatch.chdir(checkpoints["clip"].parent)
    enc = HFClipEncoder.from_config(HFClipEncoder.Config(model="./clip"))
    assert enc.name == str(checkpoints["clip"].resolve()) and enc._model is None  # nothing loaded yet


def test_missing_folder_and_uncached_hub_id_fail_when_built(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="model folder not found") as err:
        HFClipEncoder(HFClipEncoder.Config(model=str(tmp_path / "nowhere")))
    assert "nowhere" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelNotFoundError, match="some-org/not-there: not in the local Hugging Face cache") as err:
        HFClipEncoder(HFClipEncoder.Config(model="some-org/not-there"))
    assert "[encoders.image] model" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.timeout(60)
def test_uncached_hub_id_with_downloads_allowed_fails_on_load_when_offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import
    enc = HFClipEncoder(HFClipEncoder.Config(model="some-org/not-there", local_files_only=False))
    assert enc.name == "some-org/not-there"
    with pytest.raises(ModelNotFoundError, match="some-org/not-there: cannot load the model"):
        enc.encode_text(["a"])


def test_corrupt_image_raises_input_error_naming_the_file(encoders, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(InputError, match="broken.png") as err:
        encoders["clip"].encode_image([str(bad)])
    assert err.value.path == str(bad)


def test_other_models_are_refused_naming_their_type(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=10, **TOWER, max_position_embeddings=8)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelNotFoundError, match="model type 'bert' is not a CLIP/SigLIP"):
        HFClipEncoder(HFClipEncoder.Config(model=str(tmp_path / "bert")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        HFClipEncoder(HFClipEncoder.Config(model=str(tmp_path / "empty")))


def test_import_stays_light():
    code = "import sys, ragmm.encoders.hf_clip; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(importlib.util.find_spec("sentencepiece") is not None, reason="sentencepiece is installed")
def test_missing_tokenizer_package_is_a_config_error(checkpoints, tmp_path):
    """Real SigLIP checkpoints ship a sentencepiece tokenizer only (spiece.model)."""
    folder = tmp_path / "siglip"
    shutil.copytree(checkpoints["siglip"], folder)
    (folder / "tokenizer.json").unlink()
    (folder / "spiece.model").write_bytes(b"\0" * 64)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "SiglipTokenizer"}))
    enc = HFClipEncoder(HFClipEncoder.Config(model=str(folder)))
    with pytest.raises(ConfigError, match="pip install sentencepiece"):
        enc.encode_text(["a"])


def test_pipeline_indexes_and_searches_with_hf_clip(checkpoints, tmp_path, text_encoder):
    """`[encoders.image] type = "hf-clip"` end to end: its own text space, so an image query
    searches only the image corpus, and a text query embeds itself with CLIP's text tower."""
    from PIL import Image

    from ragmm.config import load_config
    from ragmm.pipeline import Pipeline
    from ragmm.types import Query

    photos = tmp_path / "photos"
    photos.mkdir()
    for name, colour in (("red.png", (220, 30, 30)), ("blue.png", (30, 30, 220))):
        Image.new("RGB", (40, 40), colour).save(photos / name)
    (photos / "note.txt").write_text("A note about red things and blue things.\n")
    cfg = load_config(
        None,
        {
            "store": {"type": "edge", "path": str(tmp_path / "store")},
            "encoders": {"image": {"type": "hf-clip", "model": str(checkpoints["clip"]), "precision": "fp32"}},
            "index": {"ocr": False},
            "generator": {"type": "extractive"},
        },
    )
    with Pipeline(cfg) as pipe:
        pipe.encoders.use("text", text_encoder)
        report = pipe.index([photos], progress=False)
        assert report.items["image"] == 2 and report.items["paragraph"] == 1
        assert pipe.store.get_spec("image").encoder_of("image") == str(checkpoints["clip"].resolve())
        hits = pipe.retrieve(Query("", image=str(photos / "red.png")), k=5, corpora=["image", "paragraph"])
        assert {h.item.corpus for h in hits} == {"image"} and hits[0].item.source.endswith("red.png")
        assert len(pipe.retrieve("red", k=2, corpora=["image"])) == 2


def test_stock_sentence_transformers_clip_loads_as_image_text(checkpoints, tmp_path):
    """`[encoders.image] type = "image-text"` with any sentence-transformers model that reads
    images (here a tiny CLIP saved by sentence-transformers): paths are opened by ragmm."""
    import numpy as np
    from PIL import Image
    from sentence_transformers import SentenceTransformer

    from ragmm.encoders.image_text import ImageTextEncoder
    from ragmm.errors import InputError

    SentenceTransformer(str(checkpoints["clip"]), device="cpu").save(str(tmp_path / "st-clip"))
    enc = ImageTextEncoder(ImageTextEncoder.Config(model=str(tmp_path / "st-clip"), precision="fp32"))
    Image.new("RGB", (50, 30), (200, 0, 0)).save(tmp_path / "red.png")
    by_path = enc.encode_image([str(tmp_path / "red.png")])
    by_pil = enc.encode_image([Image.open(tmp_path / "red.png")])
    assert by_path.shape == (1, enc.dim) and np.allclose(by_path, by_pil, atol=1e-5)
    assert enc.encode_text(["a red square"]).shape == (1, enc.dim) and enc.text_space is None
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.png"):
        enc.encode_image([str(tmp_path / "bad.png")])
