"""Deterministic synthetic text for the benchmarks: a corpus of topical paragraphs, and queries.

There is no ``/usr/share/dict/words`` on the benchmark machine, so when it is missing the
vocabulary is the whole-word part of the packaged all-MiniLM-L6-v2 WordPiece vocabulary
(about 20k real English words). Word frequencies follow a Zipf law, and every file has a
topic: a few hundred words drawn more often in it, so that nearest neighbours have
structure (paragraphs of one file sit closer to each other than to the rest), as in a real
corpus.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_DICT = Path("/usr/share/dict/words")
_FUNCTION_TEXT = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were "
    "her she there been one all we their has would when if so no will can more out into about than then them these its"
)
_FUNCTION_WORDS = _FUNCTION_TEXT.split()
_WORD = re.compile(r"^[a-z]{3,14}$")


def vocabulary() -> list[str]:
    """Real English words, most frequent first where the source is frequency ordered."""
    if _DICT.is_file():
        words = [w for w in _DICT.read_text(encoding="utf-8", errors="ignore").split() if _WORD.match(w)]
    else:
        from ragmm.encoders.sentence_transformer import packaged_minilm_path

        # WordPiece vocab.txt is roughly frequency ordered after the special and single-char tokens.
        words = [w for w in (packaged_minilm_path() / "vocab.txt").read_text(encoding="utf-8").split("\n") if _WORD.match(w)]
    seen: set[str] = set()
    out = [w for w in words if not (w in seen or seen.add(w)) and w not in _FUNCTION_WORDS]
    if len(out) < 2000:
        raise RuntimeError(f"only {len(out)} usable words found; the benchmark needs a vocabulary of at least 2000")
    return out


@dataclass
class TextFactory:
    """Sentences, paragraphs and queries from a seeded generator.

    Args:
        seed: the random seed; the same seed gives the same text.
        topic_words: words per topic that are drawn more often in that topic.
    """

    seed: int = 0
    topic_words: int = 300

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.words = vocabulary()
        ranks = np.arange(1, len(self.words) + 1)
        p = 1.0 / (ranks + 20.0)
        self.p = p / p.sum()
        self._cdf = np.cumsum(self.p)
        tp = 1.0 / (np.arange(1, self.topic_words + 1) + 10.0)
        self._topic_cdf = np.cumsum(tp / tp.sum())

    def topic(self) -> np.ndarray:
        """Indices of the words one topic favours (its most favoured first)."""
        return self.rng.choice(len(self.words), size=self.topic_words, replace=False, p=self.p)

    def _content_words(self, topic: np.ndarray, n: int) -> list[str]:
        rng = self.rng
        general = np.minimum(np.searchsorted(self._cdf, rng.random(n)), len(self.words) - 1)
        topical = topic[np.minimum(np.searchsorted(self._topic_cdf, rng.random(n)), len(topic) - 1)]
        idx = np.where(rng.random(n) < 0.45, topical, general)
        return [self.words[i] for i in idx]

    def sentence(self, topic: np.ndarray, n_words: int) -> str:
        rng = self.rng
        content = self._content_words(topic, n_words)
        function = rng.integers(0, len(_FUNCTION_WORDS), n_words)
        use_content = rng.random(n_words) < 0.6
        use_content[0] = True
        commas = rng.random(n_words) < 0.06
        out = []
        for i in range(n_words):
            w = content[i] if use_content[i] else _FUNCTION_WORDS[function[i]]
            out.append(w + "," if commas[i] and 0 < i < n_words - 1 else w)
        out[0] = out[0].capitalize()
        return " ".join(out) + ("?" if rng.random() < 0.04 else ".")

    def paragraph(self, topic: np.ndarray) -> str:
        """2-4 sentences, 40-80 words in all."""
        total = int(self.rng.integers(40, 81))
        n = int(self.rng.integers(2, 5))
        cuts = np.sort(self.rng.choice(np.arange(8, total - 7), size=n - 1, replace=False)) if n > 1 else []
        bounds = [0, *[int(c) for c in cuts], total]
        # Keep every sentence at least 6 words long.
        lengths = [max(6, b - a) for a, b in itertools.pairwise(bounds)]
        return " ".join(self.sentence(topic, k) for k in lengths)

    def document(self, topic: np.ndarray, paragraphs: int) -> tuple[str, list[str]]:
        """A titled document of ``paragraphs`` paragraphs separated by blank lines."""
        title = " ".join(self._content_words(topic, 4)).title()
        paras = [self.paragraph(topic) for _ in range(paragraphs)]
        return title + "\n\n" + "\n\n".join(paras) + "\n", paras

    def query(self, topic: np.ndarray) -> str:
        """A short question over a topic's words, as a user would type it."""
        lead = self.rng.choice(["what is", "how does", "why do", "where is", "when did", "explain", "which", "who"])
        body = " ".join(self._content_words(topic, int(self.rng.integers(3, 9))))
        return f"{lead} {body}?"


def write_corpus(root: Path, files: int, paragraphs_per_file: int, seed: int = 0) -> tuple[int, int, list[np.ndarray], TextFactory]:
    """Write ``files`` .txt files of ``paragraphs_per_file`` paragraphs under ``root``.

    Returns:
        (paragraphs written, words written, the topic of each file, the factory).
    """
    f = TextFactory(seed)
    root.mkdir(parents=True, exist_ok=True)
    n_par = n_words = 0
    topics = []
    for i in range(files):
        topic = f.topic()
        topics.append(topic)
        text, paras = f.document(topic, paragraphs_per_file)
        (root / f"doc{i // 100:03d}" / f"file{i:05d}.txt").parent.mkdir(exist_ok=True)
        (root / f"doc{i // 100:03d}" / f"file{i:05d}.txt").write_text(text, encoding="utf-8")
        n_par += len(paras)
        n_words += sum(len(p.split()) for p in paras)
    return n_par, n_words, topics, f


# -- vectors without an encoder ---------------------------------------------------------------


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm, float32."""
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def sentence_like(n: int, dim: int = 384, latent: int = 48, noise: float = 0.6, topics: int = 1000, seed: int = 0) -> np.ndarray:
    """(n, dim) unit vectors shaped like sentence embeddings, for store benchmarks at sizes no
    CPU encoder reaches: a ``latent``-dimensional topic structure (each point = its topic's
    centre + a per-point latent offset) mapped into ``dim`` dimensions, plus isotropic
    ``noise``. Real MiniLM embeddings concentrate in a low-dimensional subspace the same way;
    this mix is harder for HNSW than real text (less clustered), so recall measured on it is
    a lower bound.

    Generated in blocks of 50k rows so that 1M x 384 needs no more than the output array.
    """
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)  # (L, D)
    centres = rng.standard_normal((topics, latent)).astype(np.float32)  # (C, L)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        z = centres[rng.integers(0, topics, m)] + 0.8 * rng.standard_normal((m, latent)).astype(np.float32)  # (m, L)
        x = z @ basis  # (m, D)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x += noise / np.sqrt(dim) * rng.standard_normal((m, dim)).astype(np.float32)
        out[start : start + m] = unit_rows(x)
    return out


def late_interaction_corpus(
    n_docs: int, tokens: int = 32, dim: int = 128, query_tokens: int = 8, n_queries: int = 200, seed: int = 0
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Token vectors of documents and queries, structured like a ColBERT index.

    Each document sits near one of ``n_docs // 50`` topics in a 32-dimensional latent space;
    its tokens are drawn around 6 "term" centres of its own (tokens of one term cluster,
    as a ColBERT model's vectors for one word in one context do). A query targets one
    document: ``query_tokens`` of its tokens plus noise, so its exact MaxSim best is usually
    (not always) the target, and documents of the same topic compete.

    Returns:
        docs (n_docs, tokens, dim) float32 unit rows; queries, each (query_tokens, dim); and
        the target document of each query.
    """
    rng = np.random.default_rng(seed)
    latent = 32
    basis = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)  # (L, D)
    topics = rng.standard_normal((max(1, n_docs // 50), latent)).astype(np.float32)  # (C, L)
    docs = np.empty((n_docs, tokens, dim), dtype=np.float32)
    for start in range(0, n_docs, 2000):
        m = min(2000, n_docs - start)
        centre = topics[rng.integers(0, len(topics), m)] + 0.7 * rng.standard_normal((m, latent)).astype(np.float32)  # (m, L)
        terms = centre[:, None, :] + 0.9 * rng.standard_normal((m, 6, latent)).astype(np.float32)  # (m, 6, L)
        term_of = rng.integers(0, 6, (m, tokens))  # (m, T)
        z = np.take_along_axis(terms, term_of[:, :, None], axis=1) + 0.35 * rng.standard_normal((m, tokens, latent)).astype(np.float32)
        x = z @ basis + 0.25 / np.sqrt(dim) * rng.standard_normal((m, tokens, dim)).astype(np.float32)  # (m, T, D)
        docs[start : start + m] = unit_rows(x)
    targets = rng.integers(0, n_docs, n_queries)
    queries = []
    for t in targets:
        picked = docs[t][rng.choice(tokens, size=query_tokens, replace=False)]  # (Tq, D)
        # noise of norm ~0.8 per token: a query token keeps cosine ~0.8 with the token it came from
        queries.append(unit_rows(picked + 0.8 / np.sqrt(dim) * rng.standard_normal(picked.shape).astype(np.float32)))
    return docs, queries, targets


def synthesise(real: Any, total: int, noise: float, rng: Any) -> tuple[Any, Any]:
    """(total, D) float32 unit vectors: ``real`` then neighbours of random real vectors.

    Each neighbour is ``normalise(v + noise * u)``, ``u`` the unit sum of 4 differences of
    random real vectors (noise shaped like the data). Returns the vectors and, per row,
    the index of the real vector it came from.
    """
    n_real, dim = real.shape
    out = np.empty((total, dim), dtype=np.float32)
    origin = np.empty(total, dtype=np.int64)
    out[:n_real], origin[:n_real] = real, np.arange(n_real)
    step = 10_000
    for start in range(n_real, total, step):
        m = min(step, total - start)
        base = rng.integers(0, n_real, m)
        a, b = rng.integers(0, n_real, (m, 4)), rng.integers(0, n_real, (m, 4))
        u = (real[a] - real[b]).sum(axis=1)  # (m, D)
        u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
        x = real[base] + noise * u
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        origin[start : start + m] = base
    return out, origin


def nn_cosine(vectors: Any, sample: Any, exclude_self: bool = True) -> Any:
    """Cosine of each sampled row's nearest other row."""
    s = vectors[sample] @ vectors.T  # (S, N)
    if exclude_self:
        s[np.arange(len(sample)), sample] = -np.inf
    return s.max(axis=1)


def neighbour_cloud(n: int, dim: int = 384, base: int = 10_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) unit vectors by bench/retrieve_latency.py's synthetic-neighbour method without
    an encoder: ``base`` sentence-like vectors, then neighbours of them moved by data-shaped
    noise sized so a neighbour sits about as far from its origin as a base vector sits from
    its nearest other base vector. Clusters of near-duplicates with close scores: the case
    that made HNSW recall drop in retrieve_latency.py.

    Returns:
        the vectors and, per row, the base vector it came from.
    """
    rng = np.random.default_rng(seed)
    real = sentence_like(base, dim, seed=seed)
    sample = rng.choice(base, size=min(1000, base), replace=False)
    c = float(np.median(nn_cosine(real, sample)))
    return synthesise(real, n, float(np.sqrt(max(1.0 / c**2 - 1.0, 1e-4))), rng)

