"""ragmm.scores against plain Python loops."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from ragmm import scores
from ragmm.scores import cosine, maxsim, mean_pool, pool_tokens

RNG = np.random.default_rng(0)


def test_doctests():
    assert doctest.testmod(scores).failed == 0


def test_cosine_matches_loop():
    docs = RNG.standard_normal((7, 5))
    qs = RNG.standard_normal((3, 5))
    ref = [[sum(a * b for a, b in zip(q, d)) / math.sqrt(sum(a * a for a in q) * sum(b * b for b in d)) for d in docs] for q in qs]
    np.testing.assert_allclose(cosine(qs, docs), ref, rtol=1e-12)
    np.testing.assert_allclose(cosine(qs[1], docs), ref[1], rtol=1e-12)
    with pytest.raises(ValueError, match="same D"):
        cosine(qs[:, :4], docs)


def _maxsim_loop(q, doc):
    return sum(max(sum(a * b for a, b in zip(qt, dt)) for dt in doc) for qt in q)


def test_maxsim_matches_loop_ragged_and_dense():
    q = RNG.standard_normal((4, 6)).astype(np.float32)
    ragged = [RNG.standard_normal((int(n), 6)).astype(np.float32) for n in RNG.integers(1, 9, size=11)]
    np.testing.assert_allclose(maxsim(q, ragged), [_maxsim_loop(q, d) for d in ragged], rtol=1e-5)
    dense = RNG.standard_normal((5, 3, 6))
    np.testing.assert_allclose(maxsim(q, dense), [_maxsim_loop(q, d) for d in dense], rtol=1e-5)
    assert maxsim(q, []).shape == (0,)
    with pytest.raises(ValueError, match="6-d"):
        maxsim(q, [RNG.standard_normal((2, 5))])


def test_mean_pool_is_unit_mean():
    v = RNG.standard_normal((9, 4))
    m = [sum(row[j] for row in v) / len(v) for j in range(4)]
    norm = math.sqrt(sum(x * x for x in m))
    np.testing.assert_allclose(mean_pool(v), [x / norm for x in m], rtol=1e-12)


def test_pool_tokens_groups_clustered_tokens():
    # three tight groups of tokens (5, 4 and 3 of them) around orthogonal centres
    centres = np.eye(8)[:3]
    sizes = [5, 4, 3]
    tokens = np.concatenate([c + 0.01 * RNG.standard_normal((n, 8)) for c, n in zip(centres, sizes)]).astype(np.float32)
    pooled = pool_tokens(tokens, 4)  # ceil(12 / 4) = 3 clusters: exactly the groups
    assert pooled.shape == (3, 8) and pooled.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1, rtol=1e-5)
    start = 0
    expected = []
    for n in sizes:
        group = tokens[start : start + n]
        mean = [sum(row[j] for row in group) / n for j in range(8)]
        norm = math.sqrt(sum(x * x for x in mean))
        expected.append([x / norm for x in mean])
        start += n
    order = np.argsort(pooled[:, :3].argmax(axis=1))  # pooled rows in the order of their groups' centres
    np.testing.assert_allclose(pooled[order], expected, atol=1e-5)


def test_pool_tokens_sizes_and_identity():
    v = RNG.standard_normal((32, 16))
    for factor, rows in [(1, 32), (2, 16), (3, 11), (4, 8), (100, 1)]:
        assert pool_tokens(v, factor).shape == (rows, 16)
    assert pool_tokens(v, 1) is v
    short = v[:2]
    assert pool_tokens(short, 4) is short
    with pytest.raises(ValueError, match="pool_factor"):
        pool_tokens(v, 0)
