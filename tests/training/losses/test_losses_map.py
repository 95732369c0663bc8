from __future__ import annotations

import subprocess
import sys

import pytest
from ragmm.training.losses import LOSSES
from torch import nn

NAMES = ["clip", "clip-uniformity-alignment", "maxsim", "clamr", "cwcl", "symile", "gram", "cached-clip"]


def test_the_training_config_names():
    assert list(LOSSES) == NAMES
    for name in NAMES:
        cls = LOSSES[name]
        assert issubclass(cls, nn.Module)
        assert "sentence_features" in cls.forward.__code__.co_varnames
        assert cls.__doc__


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="known losses: cached-clip, clamr, clip, "):
        LOSSES["infonce"]


def test_importing_the_losses_does_not_import_sentence_transformers():
    # Only CachedCLIPLoss needs sentence-transformers (seconds to import); it loads on first use.
    code = (
        "import sys, ragmm.training.losses as L; assert 'sentence_transformers' not in sys.modules; "
        "L.CachedCLIPLoss; assert 'sentence_transformers' in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
