"""Shared fixtures. Nothing here downloads: models come from installed packages or are built
tiny and random from configs."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "docs"


def _load_make_pdf():
    spec = importlib.util.spec_from_file_location("make_pdf", ROOT / "examples" / "make_pdf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_text_pdf


write_text_pdf = _load_make_pdf()


@pytest.fixture(scope="session")
def text_encoder():
    """The packaged all-MiniLM-L6-v2 (offline, ~1 s to load), shared by the session."""
    from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder

    return SentenceTransformerEncoder()


def write_tiny_tower_only(folder: Path, text_model: str = "all-MiniLM-L6-v2", out_dim: int = 384, seed: int = 0) -> Path:
    """A tower-only image-text checkpoint: a tiny random image tower (width 8, 32 px) meant for
    ``text_model``'s space. Checks plumbing, never quality."""
    import json

    import torch

    from ragmm.encoders.image_text import TOWER_DIR, TOWER_ONLY_FILE
    from ragmm.encoders.image_tower import ImageTower

    torch.manual_seed(seed)
    ImageTower(out_dim=out_dim, image_size=32, width=8, depths=(1, 1, 1, 1)).save(str(folder / TOWER_DIR))
    (folder / TOWER_ONLY_FILE).write_text(json.dumps({"text_model": text_model, "max_seq_length": 32, "image_tower": TOWER_DIR}))
    return folder


@pytest.fixture(scope="session")
def image_encoder(tmp_path_factory):
    """An image-text encoder with a tiny random image tower in all-MiniLM-L6-v2's space."""
    from ragmm.encoders.image_text import ImageTextEncoder

    folder = write_tiny_tower_only(tmp_path_factory.mktemp("tiny-tower"))
    return ImageTextEncoder(ImageTextEncoder.Config(model=str(folder), precision="fp32"))


@pytest.fixture
def make_pipeline(tmp_path, text_encoder, image_encoder):
    """Build pipelines on a store in ``tmp_path`` with the extractive generator, sharing the
    session's encoder so tests do not reload it."""
    from ragmm.config import load_config
    from ragmm.pipeline import Pipeline

    made = []

    def make(store_path: Path | None = None, **overrides):
        sections = {"store": {"type": "edge", "path": str(store_path or tmp_path / "store")}, "generator": {"type": "extractive"}, **overrides}
        pipe = Pipeline(load_config(None, sections))
        pipe.encoders.use("text", text_encoder)
        if "encoders" not in overrides:
            pipe.encoders.use("image", image_encoder)
        made.append(pipe)
        return pipe

    yield make
    for pipe in made:
        pipe.close()
