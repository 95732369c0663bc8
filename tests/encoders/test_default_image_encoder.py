"""The default image encoder is the shipped ``ragmm-lite0``; ``ragmm-clipart`` still loads by name,
and a store built with it under the old default fails in one actionable line with the new one."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from ragmm.config import Config, load_config
from ragmm.errors import EncoderMismatchError
from ragmm.pipeline import Pipeline

NO_OCR = {"index": {"ocr": False}, "generator": {"type": "extractive"}}
CLIPART = {"encoders": {"image": {"type": "ragmm-clipart"}}}


def test_default_is_lite0_and_clipart_loads_by_name():
    config = Config()
    assert config.encoders["image"].type == "ragmm-lite0"
    clipart = Config.model_validate(CLIPART)
    assert clipart.encoders["image"].type == "ragmm-clipart" and clipart.encoders["text"].type == "sentence-transformers"
    clipart.validate_components()


def _gallery(root):
    root.mkdir()
    for name, colour in (("0001.png", (220, 30, 30)), ("0002.png", (30, 60, 220))):
        img = Image.new("RGB", (48, 40), "white")
        ImageDraw.Draw(img).ellipse((6, 5, 42, 35), fill=colour)
        img.save(root / name)
    return root


@pytest.fixture
def clipart_store(tmp_path, text_encoder):
    """A store whose image corpus ``ragmm-clipart`` built (the default before ``ragmm-lite0``)."""
    store = tmp_path / "store"
    with Pipeline(load_config(None, {"store": {"type": "edge", "path": str(store)}, **NO_OCR, **CLIPART})) as pipe:
        pipe.encoders.use("text", text_encoder)
        report = pipe.index([_gallery(tmp_path / "gallery")], progress=False)
        assert report.items == {"image": 2}
        assert {c.name: c.encoder for c in pipe.corpora()}["image"] == "ragmm-clipart"
    return store


def _default_pipeline(store, text_encoder, **overrides):
    pipe = Pipeline(load_config(None, {"store": {"type": "edge", "path": str(store)}, **NO_OCR, **overrides}))
    pipe.encoders.use("text", text_encoder)
    return pipe


@pytest.mark.slow
def test_old_clipart_store_with_the_default_config(clipart_store, tmp_path, text_encoder):
    more = tmp_path / "more"
    more.mkdir()
    Image.new("RGB", (40, 40), (30, 180, 60)).save(more / "0003.png")
    with _default_pipeline(clipart_store, text_encoder) as pipe:
        assert pipe.config.encoders["image"].type == "ragmm-lite0"
        # asking: the image corpus refuses the new default before anything is searched
        with pytest.raises(EncoderMismatchError) as asked:
            pipe.ask("a red ball")
        # indexing more files: the corpus is checked before the first file is written
        with pytest.raises(EncoderMismatchError) as indexed:
            pipe.index([more], progress=False)
        assert {c.name: c.items for c in pipe.corpora()} == {"image": 2}
    for exc in (asked.value, indexed.value):
        message = str(exc)
        assert "\n" not in message
        assert f"collection 'image' in {clipart_store} was built with image encoder 'ragmm-clipart', but 'ragmm-lite0' is configured" in message
        assert '[encoders.image] type = "ragmm-clipart"' in message and f"delete {clipart_store}" in message

    # the fix the message names: configure ragmm-clipart again, and the store works as built
    with _default_pipeline(clipart_store, text_encoder, **CLIPART) as pipe:
        pipe.index([more], progress=False)
        assert pipe.retrieve("a green square", k=3)
        assert {c.name: c.items for c in pipe.corpora()} == {"image": 3}


@pytest.mark.slow
def test_cli_names_the_collection_and_the_fix(clipart_store, tmp_path, monkeypatch):
    from ragmm.cli.app import app

    monkeypatch.setenv("RAGMM_SERVER", "off")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ragmm.toml").write_text('[generator]\ntype = "extractive"\n[index]\nocr = false\n')
    runner = CliRunner(env={"COLUMNS": "400"})
    for args in (["ask", "a red ball", "--store", str(clipart_store)], ["index", "gallery", "--store", str(clipart_store), "--quiet"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 1, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: collection 'image'"), res.output
        assert 'set [encoders.image] type = "ragmm-clipart"' in lines[0]


@pytest.mark.slow
def test_channels_last_tower_gives_the_same_vectors(tmp_path):
    import numpy as np
    import torch

    from ragmm.encoders.image_text import Lite0ImageTextEncoder, image_tower

    paths = [str(p) for p in sorted(_gallery(tmp_path / "g").iterdir())]
    enc = Lite0ImageTextEncoder(Lite0ImageTextEncoder.Config(precision="fp32"))
    tower = image_tower(enc.model)
    assert next(p for p in tower.parameters() if p.ndim == 4).is_contiguous(memory_format=torch.channels_last)
    fast, labels = enc.encode_document_with_labels(paths)
    tower.to(memory_format=torch.contiguous_format)
    plain, plain_labels = enc.encode_document_with_labels(paths)
    np.testing.assert_allclose(fast, plain, atol=1e-5)
    assert labels == plain_labels
