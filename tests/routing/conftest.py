"""A fake text encoder whose query vectors are keyword indicators, so routers can be checked
without a model."""

from __future__ import annotations

import numpy as np
import pytest

KEYWORDS = ("hello", "define", "summarize", "picture", "moment", "film")


class KeywordEncoder:
    """Vector i is 1 when ``KEYWORDS[i]`` is in the text (then L2-normalised)."""

    name = "keyword-encoder"
    dim = len(KEYWORDS)
    modality = "text"

    def __init__(self) -> None:
        self.calls = 0

    def encode_query(self, texts):
        self.calls += 1
        rows = np.array([[float(k in t.lower()) for k in KEYWORDS] for t in texts], dtype=np.float32)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.maximum(norms, 1e-6)

    encode_document = encode_query


@pytest.fixture
def keyword_encoder():
    return KeywordEncoder()
