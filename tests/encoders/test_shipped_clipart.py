"""The shipped image tower `ragmm-clipart` loads offline from the package and shares MiniLM's space."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ragmm.encoders.image_text import SHIPPED, TOWER_ONLY_FILE, ImageTextEncoder, shipped_path


def test_shipped_weights_are_small_and_documented():
    folder = shipped_path()
    info = json.loads((folder / TOWER_ONLY_FILE).read_text())
    assert info["text_model"] == "all-MiniLM-L6-v2"
    assert "training/configs/clipart-lit" in info["trained_with"]
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 8_000_000  # a few MB of fp16 safetensors


@pytest.mark.slow
def test_shipped_encoder_embeds_images_in_the_text_space(text_encoder, tmp_path):
    enc = ImageTextEncoder(ImageTextEncoder.Config())
    assert enc.name == SHIPPED and enc.text_space == text_encoder.name
    red = tmp_path / "red.png"
    Image.new("RGB", (80, 80), (220, 30, 30)).save(red)
    img = enc.encode_image([str(red)])
    assert img.shape == (1, text_encoder.dim) and abs(float(np.linalg.norm(img)) - 1) < 1e-5
    # its text tower is the packaged MiniLM: the same query vectors as ragmm's text encoder
    q = ["a lighthouse on a rocky coast"]
    assert float((enc.encode_text(q) @ text_encoder.encode_query(q).T)[0, 0]) > 0.999  # bf16 autocast where the CPU has it
