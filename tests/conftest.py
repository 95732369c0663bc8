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


@pytest.fixture
def make_pipeline(tmp_path, text_encoder):
    """Build pipelines on a store in ``tmp_path`` with the extractive generator, sharing the
    session's encoder so tests do not reload it."""
    from ragmm.config import load_config
    from ragmm.pipeline import Pipeline

    made = []

    def make(store_path: Path | None = None, **overrides):
        sections = {"store": {"type": "edge", "path": str(store_path or tmp_path / "store")}, "generator": {"type": "extractive"}, **overrides}
        pipe = Pipeline(load_config(None, sections))
        pipe._parts["encoder.text"] = text_encoder
        made.append(pipe)
        return pipe

    yield make
    for pipe in made:
        pipe.close()
