"""Similarity scores and token pooling, written once and used by losses, stores' references,
evaluation and benches alike (PyLate's ``scores/colbert.py`` idea). numpy only: no torch.

Shapes: ``D`` is the embedding dimension, ``N`` the number of documents, ``Q`` of queries,
``T`` of token vectors in one multivector.

Example:
    >>> import numpy as np
    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])                  # (Tq=2, D=2)
    >>> docs = [np.array([[1.0, 0.0]]), np.array([[0.6, 0.8], [0.0, 1.0]])]
    >>> maxsim(q, docs).round(2).tolist()                       # (N=2,)
    [1.0, 1.6]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["cosine", "maxsim", "mean_pool", "normalize", "pool_tokens"]


def normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` scaled to unit L2 norm along ``axis`` (zero rows stay zero).

    Example:
        >>> normalize(np.array([3.0, 4.0])).tolist()
        [0.6, 0.8]
    """
    x = np.asarray(x)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


def cosine(q: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """Cosine similarity of one query (or several) with every document.

    Args:
        q: (D,) one query, or (Q, D) several.
        docs: (N, D) document vectors.

    Returns:
        (N,) for one query, (Q, N) for several.

    Example:
        >>> cosine(np.array([1.0, 0.0]), np.array([[2.0, 0.0], [1.0, 1.0], [0.0, -3.0]])).round(3).tolist()
        [1.0, 0.707, 0.0]
    """
    q, docs = np.asarray(q), np.asarray(docs)
    if docs.ndim != 2 or q.ndim not in (1, 2) or q.shape[-1] != docs.shape[1]:
        raise ValueError(f"cosine: expected q (D,) or (Q, D) and docs (N, D) with the same D; got {q.shape} and {docs.shape}")
    return normalize(q) @ normalize(docs).T  # (N,) or (Q, N)


def maxsim(q: np.ndarray, docs: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """ColBERT's late-interaction score: for each query token the best dot product with any
    of a document's tokens, summed over the query tokens.

    Vectors are used as given (ColBERT models L2-normalise their token vectors, so the dot
    product is their cosine).

    Args:
        q: (Tq, D) query token vectors.
        docs: (N, Td, D) array, or a sequence of N arrays (Td_i, D) of varying length.

    Returns:
        (N,) scores (float32 or float64 as the inputs).

    Example:
        >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> maxsim(q, np.array([[[1.0, 0.0], [0.0, 0.5]]])).tolist()   # 1.0 + 0.5
        [1.5]
    """
    q = np.asarray(q)
    if q.ndim != 2:
        raise ValueError(f"maxsim: expected query tokens (Tq, D); got shape {q.shape}")
    if isinstance(docs, np.ndarray) and docs.ndim == 3:
        if docs.shape[2] != q.shape[1]:
            raise ValueError(f"maxsim: query tokens are {q.shape[1]}-d but documents' are {docs.shape[2]}-d")
        n, td, d = docs.shape
        sims = (docs.reshape(n * td, d) @ q.T).reshape(n, td, len(q))  # one BLAS product: (N, Td, Tq)
        return sims.max(axis=1).sum(axis=1)  # (N, Tq) -> (N,)
    if len(docs) == 0:
        return np.zeros(0, dtype=np.result_type(q.dtype, np.float32))
    lengths = [len(d) for d in docs]
    flat = np.concatenate([np.asarray(d) for d in docs])  # (sum Td_i, D)
    if flat.ndim != 2 or flat.shape[1] != q.shape[1]:
        raise ValueError(f"maxsim: query tokens are {q.shape[1]}-d but documents' are of shape {flat.shape[1:]}")
    sims = q @ flat.T  # (Tq, sum Td_i)
    starts = np.cumsum([0, *lengths[:-1]])
    if min(lengths) == 0:
        raise ValueError("maxsim: a document has no token vectors")
    return np.maximum.reduceat(sims, starts, axis=1).sum(axis=0)  # (Tq, N) -> (N,)


def mean_pool(vectors: np.ndarray) -> np.ndarray:
    """The L2-normalised mean of a multivector: the pooled dense vector a two-stage search
    prefetches candidates with.

    Args:
        vectors: (T, D) token vectors.

    Returns:
        (D,) unit vector.

    Example:
        >>> mean_pool(np.array([[1.0, 0.0], [0.0, 1.0]])).round(4).tolist()
        [0.7071, 0.7071]
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"mean_pool: expected token vectors (T, D) with T >= 1; got shape {vectors.shape}")
    return normalize(vectors.mean(axis=0))


def pool_tokens(vectors: np.ndarray, pool_factor: int) -> np.ndarray:
    """Fewer token vectors for a document: Ward hierarchical clustering into
    ``ceil(T / pool_factor)`` clusters, each replaced by its L2-normalised mean (PyLate's
    ``pool_factor``; storage and MaxSim cost fall by about ``pool_factor``).

    Args:
        vectors: (T, D) token vectors of one document.
        pool_factor: 1 keeps every token; 2 halves them, and so on.

    Returns:
        (ceil(T / pool_factor), D) pooled vectors (fewer rows only when tokens coincide, so
        that clusters tie); the input itself when ``pool_factor`` is 1 or ``T <= 2``.

    Example:
        >>> v = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
        >>> pool_tokens(v, 2).shape
        (2, 2)
    """
    if not isinstance(pool_factor, int) or pool_factor < 1:
        raise ValueError(f"pool_tokens: pool_factor must be an integer >= 1; got {pool_factor!r}")
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"pool_tokens: expected token vectors (T, D); got shape {vectors.shape}")
    t = len(vectors)
    if pool_factor == 1 or t <= 2:
        return vectors
    from scipy.cluster.hierarchy import fcluster, linkage

    k = max(1, math.ceil(t / pool_factor))
    # Ward on float64: its merge distances are sums of squares that float32 rounds into ties.
    labels = fcluster(linkage(vectors.astype(np.float64), method="ward"), t=k, criterion="maxclust")  # (T,) in 1..k
    pooled = np.stack([vectors[labels == c].mean(axis=0) for c in np.unique(labels)])  # (k, D)
    return normalize(pooled).astype(vectors.dtype, copy=False)
