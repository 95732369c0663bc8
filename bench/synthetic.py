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
