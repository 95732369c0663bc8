"""`ragmm train retriever` with kind "image-text": a tiny random BERT text tower, a tiny CNN and
coloured shapes drawn with Pillow (checks plumbing and that a toy set is learned, not quality)."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from ragmm.training.config import load_train_config
from ragmm.training.train import train_retriever

from ragmm.errors import InputError, ModelNotFoundError

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (240, 220, 40)}
SHAPES = ("square", "circle", "triangle")
WORDS = ["a", *COLOURS, *SHAPES]


def draw(shape: str, colour: tuple[int, int, int], size: int = 48, mode: str = "RGB") -> Image.Image:
    img = Image.new(mode, (size, size), (255, 255, 255, 0) if mode == "RGBA" else (255, 255, 255))
    d = ImageDraw.Draw(img)
    box = (8, 8, size - 8, size - 8)
    if shape == "square":
        d.rectangle(box, fill=colour)
    elif shape == "circle":
        d.ellipse(box, fill=colour)
    else:
        d.polygon([(size // 2, 6), (size - 6, size - 8), (6, size - 8)], fill=colour)
    return img


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread was 12x faster than two (0.9 s
    against 12 s for the 40-step run below, with other jobs on the cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    """A 1-layer, 32-wide BERT with a word-level vocab, as a sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny-text")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    assert tok("a red square")["input_ids"] == [2, 5, 6, 10, 3]  # real word ids, not [UNK]
    tok.save_pretrained(root / "hf")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    BertModel(config).save_pretrained(root / "hf")
    st = SentenceTransformer(modules=[models.Transformer(str(root / "hf"), max_seq_length=16), models.Pooling(32, "mean"), models.Normalize()])
    st.save(str(root / "st"))
    return root / "st"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """12 captioned images ("a red square", ...) and their training rows."""
    root = tmp_path_factory.mktemp("toy")
    rows = []
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            path = root / f"{colour}_{shape}.png"
            draw(shape, rgb).save(path)
            rows.append({"caption": f"a {colour} {shape}", "image": str(path)})
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return root, rows


def write_config(folder, text_model, train_file, out, *, max_steps=40, lock_text=True, extra="", model_extra=""):
    cfg = folder / "train.toml"
    cfg.write_text(
        f'output = "{out}"\n'
        f'[model]\nkind = "image-text"\nbase = "{text_model}"\nlock_text = {str(lock_text).lower()}\nimage_size = 32\nimage_width = 8\n{model_extra}'
        f'[data]\ntrain = "{train_file}"\nquery_column = "caption"\npositive_column = "image"\n'
        f'[loss]\ntype = "clip"\ntemperature = 0.05\n'
        f"[train]\nmax_steps = {max_steps}\nbatch_size = 12\nlearning_rate = 1e-2\nwarmup_ratio = 0.0\nweight_decay = 0.0\n"
        f'save_steps = 1000\nlogging_steps = 1\nprecision = "fp32"\n{extra}'
    )
    return load_train_config(cfg)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_text, toy):
    """One locked-text training run, shared by the checks below."""
    folder = tmp_path_factory.mktemp("run")
    root, rows = toy
    res = train_retriever(write_config(folder, tiny_text, root / "train.jsonl", folder / "out"), progress=False)
    return res, rows


def logged_losses(out):
    lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r]


def test_locked_run_lowers_the_loss(trained):
    res, _ = trained
    losses = logged_losses(Path(res.output))
    assert res.steps == 40 and len(losses) == 40
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) * 0.5
    assert (Path(res.output) / "image_0_ImageTower" / "model.safetensors").is_file()


def test_locked_text_tower_is_unchanged(trained, tiny_text):
    from safetensors.torch import load_file

    res, _ = trained
    before = load_file(str(tiny_text / "model.safetensors"))
    after = load_file(f"{res.output}/text_0_Transformer/model.safetensors")
    assert before.keys() == after.keys()
    for name, weight in before.items():
        assert np.array_equal(weight.numpy(), after[name].numpy()), name


def test_reload_gives_identical_image_embeddings(trained):
    from ragmm.encoders.image_text import ImageTextEncoder

    res, rows = trained
    paths = [r["image"] for r in rows]
    first = ImageTextEncoder(ImageTextEncoder.Config(model=res.output, precision="fp32"))
    again = ImageTextEncoder(ImageTextEncoder.Config(model=res.output, precision="fp32"))
    a, b = first.encode_document(paths), again.encode_image([Image.open(p) for p in paths])
    assert a.shape == (12, 32) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert first.name == again.name and first.dim == 32 and first.modality == "image"


def test_text_to_image_retrieval_on_the_toy_set(trained):
    from ragmm.encoders.image_text import ImageTextEncoder

    res, rows = trained
    enc = ImageTextEncoder(ImageTextEncoder.Config(model=res.output, precision="fp32"))
    scores = enc.encode_query([r["caption"] for r in rows]) @ enc.encode_document([r["image"] for r in rows]).T  # (12, 12)
    top1 = (scores.argmax(axis=1) == np.arange(len(rows))).mean()
    assert top1 >= 0.75, scores.round(2)


def test_unlocked_text_tower_trains(tmp_path, tiny_text, toy):
    from safetensors.torch import load_file

    root, _ = toy
    res = train_retriever(write_config(tmp_path, tiny_text, root / "train.jsonl", tmp_path / "out", max_steps=2, lock_text=False), progress=False)
    before = load_file(str(tiny_text / "model.safetensors"))
    after = load_file(f"{res.output}/text_0_Transformer/model.safetensors")
    assert any(not np.array_equal(w.numpy(), after[n].numpy()) for n, w in before.items())


def test_a_corrupt_image_stops_training_naming_the_file(tmp_path, tiny_text, toy):
    _, rows = toy
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [*rows[:4], {"caption": "a red circle", "image": str(bad)}]))
    with pytest.raises(InputError, match="broken.png: not an image Pillow can read"):
        train_retriever(write_config(tmp_path, tiny_text, data, tmp_path / "out", max_steps=1), progress=False)


def test_oversized_images_are_skipped_with_a_count(tmp_path, toy, monkeypatch, caplog):
    from datasets import Dataset
    from ragmm.training.kinds.image_text import screen_images

    _, rows = toy
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300), "white").save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 300 x 300 is over twice the limit: a bomb
    ds = Dataset.from_list([{"query": r["caption"], "positive": r["image"]} for r in rows[:3]] + [{"query": "a big one", "positive": str(big)}])
    with caplog.at_level(logging.WARNING):
        kept = screen_images(ds, ["positive"])
    assert kept["query"] == [r["caption"] for r in rows[:3]]
    assert "skipped 1 of 4 training rows" in caplog.text and "big.png" in caplog.text


def test_encoder_names_bad_files(trained, tmp_path):
    from ragmm.encoders.image_text import ImageTextEncoder
    from ragmm.encoders.image_tower import ImageTooLargeError

    res, rows = trained
    enc = ImageTextEncoder(ImageTextEncoder.Config(model=res.output))
    truncated = tmp_path / "truncated.png"
    data = Path(rows[0]["image"]).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated.png: corrupt image data"):
        enc.encode_document([rows[1]["image"], str(truncated)])
    with pytest.raises(InputError, match="missing.png: image file not found"):
        enc.encode_document([str(tmp_path / "missing.png")])
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(big)
    import PIL.Image

    old = PIL.Image.MAX_IMAGE_PIXELS
    PIL.Image.MAX_IMAGE_PIXELS = 20_000
    try:
        with pytest.raises(ImageTooLargeError, match="big.png: too large"):
            enc.encode_document([str(big)])
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = old


def test_load_image_composites_alpha_on_white_and_letterboxes():
    from ragmm.encoders.image_tower import load_image

    wide = draw("circle", (255, 0, 0), size=40, mode="RGBA").resize((80, 40))
    out = load_image(wide, 32)
    assert out.mode == "RGB" and out.size == (32, 32)
    px = np.asarray(out)
    assert tuple(px[0, 0]) == (255, 255, 255)  # letterbox band
    assert tuple(px[16, 2]) == (255, 255, 255)  # transparent corner of the shape, on white
    assert px[16, 16, 0] > 200 and px[16, 16, 1] < 60  # the red disc
    palette = draw("square", (0, 0, 255), size=64).convert("P", palette=Image.Palette.ADAPTIVE)
    assert load_image(palette, 32).size == (32, 32)
    assert load_image(np.zeros((3, 10, 20), dtype=np.float32), 32).size == (32, 32)  # (C, H, W) floats


def test_a_text_model_is_not_an_image_text_checkpoint(tiny_text):
    from ragmm.encoders.image_text import load_image_text_model

    with pytest.raises(ModelNotFoundError, match="does not read images"):
        load_image_text_model(tiny_text)


def test_save_and_reload_before_training(tmp_path, tiny_text, toy):
    """The untrained model round-trips too (what --resume and eval before training rely on)."""
    from sentence_transformers import SentenceTransformer

    from ragmm.encoders.image_text import build_image_text_model, load_image_text_model

    _, rows = toy
    model = build_image_text_model(SentenceTransformer(str(tiny_text)), image_size=32, width=8)
    paths = [r["image"] for r in rows[:4]]
    before = model.encode_document(paths)
    model.save(str(tmp_path / "m"))
    again = load_image_text_model(tmp_path / "m")
    np.testing.assert_allclose(before, again.encode_document(paths), rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.encode_query(["a red square"]), again.encode_query(["a red square"]), rtol=0, atol=1e-6)


def test_locked_run_also_writes_a_tower_only_checkpoint(trained, tiny_text):
    """What ragmm-clipart ships: the image tower alone (fp16), loaded next to the named text model."""
    from ragmm.encoders.image_text import TOWER_ONLY_FILE, ImageTextEncoder

    res, rows = trained
    folder = Path(res.output) / "tower-only"
    info = json.loads((folder / TOWER_ONLY_FILE).read_text())
    assert info["text_model"] == str(tiny_text) and "ragmm train retriever" in info["trained_with"]
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 200_000  # a width-8 tower, no text weights
    paths = [r["image"] for r in rows]
    full = ImageTextEncoder(ImageTextEncoder.Config(model=res.output, precision="fp32"))
    tower_only = ImageTextEncoder(ImageTextEncoder.Config(model=str(folder), precision="fp32"))
    a, b = full.encode_image(paths), tower_only.encode_image(paths)
    assert np.min(np.sum(a * b, axis=1)) > 0.999  # fp16 weights: the same vectors to rounding
    np.testing.assert_allclose(full.encode_text(["a red square"]), tower_only.encode_text(["a red square"]), atol=1e-6)
    assert tower_only.text_space == str(Path(tiny_text).resolve()) and full.text_space is None


def test_augmentation_only_in_training_mode():
    import torch

    from ragmm.encoders.image_tower import ImageTower, _random_zoom_shift_flip

    torch.manual_seed(0)
    tower = ImageTower(out_dim=16, image_size=32, width=8, depths=(1, 1, 1, 1), augment=True)
    pixels = {"pixel_values": torch.from_numpy(np.array(draw("circle", (220, 30, 30), size=32))).permute(2, 0, 1)[None].repeat(4, 1, 1, 1)}
    tower.eval()
    e1 = tower({**pixels})["sentence_embedding"]
    e2 = tower({**pixels})["sentence_embedding"]
    assert torch.equal(e1, e2)  # no randomness at inference
    tower.train()
    t1 = tower({**pixels})["sentence_embedding"]
    assert not torch.allclose(t1, e1)
    # the transform keeps the value range, and pads with white (1.0 in [-1, 1] pixels)
    white = torch.ones(2, 3, 32, 32)
    out = _random_zoom_shift_flip(white)
    assert torch.allclose(out, white, atol=1e-5)
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    y = _random_zoom_shift_flip(x)
    assert y.shape == x.shape and y.min() >= -1.0001 and y.max() <= 1.0001


@pytest.mark.slow
def test_frozen_trunk_run_lowers_the_loss_from_cached_features(tmp_path, tiny_text, toy, monkeypatch):
    """The pretrained-trunk tower, frozen, no augmentation: features are computed once and cached,
    the head learns the toy set, and the exported tower-only folder loads and labels images."""
    from ragmm.encoders.image_text import TOWER_ONLY_FILE, ImageTextEncoder

    monkeypatch.setenv("RAGMM_CACHE", str(tmp_path / "cache"))
    root, rows = toy
    extra = '[model.image_trunk]\ntrunk = "efficientnet-lite0"\nhead = "linear"\ndropout = 0.0\n'
    cfg = write_config(tmp_path, tiny_text, root / "train.jsonl", tmp_path / "out", max_steps=30, extra=extra, model_extra="image_augment = false\n")
    res = train_retriever(cfg, progress=False)
    losses = logged_losses(Path(res.output))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) * 0.7
    assert len(list((tmp_path / "cache" / "trunks" / "features" / "efficientnet-lite0-32").glob("*.npy"))) == len(rows)  # one per image
    tower_only = Path(res.output) / "tower-only"
    assert (tower_only / TOWER_ONLY_FILE).is_file()
    enc = ImageTextEncoder(ImageTextEncoder.Config(model=str(tower_only), precision="fp32"))
    paths = [r["image"] for r in rows[:3]]
    vecs, labels = enc.encode_document_with_labels(paths)
    assert vecs.shape == (3, enc.dim) and len(labels) == 3 and all(isinstance(x, str) for x in labels)
    np.testing.assert_allclose(vecs, enc.encode_document(paths), atol=1e-5)


def test_trunk_settings_are_checked(tmp_path, tiny_text, toy):
    from ragmm.training.kinds.image_text import trunk_settings

    from ragmm.errors import ConfigError

    root, _ = toy
    cfg = write_config(tmp_path, tiny_text, root / "train.jsonl", tmp_path / "out", extra='[model.image_trunk]\nhead = "transformer"\n')
    with pytest.raises(ConfigError, match=r"\[model.image_trunk\] head"):
        trunk_settings(cfg)
