"""What components share: the configured encoders (built on first use) and a memo of query
embeddings, so that several corpora searched for one query cost one encode.

Example:
    >>> enc = Encoders({"text": lambda: MyEncoder()})            # doctest: +SKIP
    >>> memo = QueryEmbeddings()
    >>> v = memo.text(enc["text"], "how do bees dance?")           # encoded once...
    >>> v is memo.text(enc["text"], "how do bees dance?")          # ...then remembered
    True
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ragmm.errors import ConfigError
from ragmm.protocols import Encoder


class Encoders(Mapping[str, Encoder]):
    """The configured encoders by modality name; each is built the first time it is asked for.

    Args:
        factories: ``{modality: zero-argument callable building the encoder}``.
        where: the config file, for the error about a missing section.
    """

    def __init__(self, factories: Mapping[str, Callable[[], Encoder]], where: str = "config") -> None:
        self._factories = dict(factories)
        self._built: dict[str, Encoder] = {}
        self._where = where
        self._lock = threading.Lock()

    def __getitem__(self, modality: str) -> Encoder:
        enc = self._built.get(modality)
        if enc is not None:
            return enc
        if modality not in self._factories:
            raise ConfigError(f"{self._where}: no [encoders.{modality}] section; add one to index or search {modality}")
        with self._lock:
            if modality not in self._built:
                self._built[modality] = self._factories[modality]()
            return self._built[modality]

    def __contains__(self, modality: object) -> bool:
        return modality in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    def use(self, modality: str, encoder: Encoder) -> None:
        """Use ``encoder`` (already built) for ``modality``, e.g. one shared by several pipelines."""
        with self._lock:
            self._factories.setdefault(modality, lambda: encoder)
            self._built[modality] = encoder

    def built(self, modality: str) -> bool:
        """Whether the encoder of ``modality`` has been built (nothing is loaded by asking)."""
        return modality in self._built

    def sharing_space(self, encoder: Encoder) -> list[Encoder]:
        """Configured encoders whose outputs live in ``encoder``'s space (an image tower trained
        into the text encoder's space says so with ``text_space``)."""
        out = []
        for modality in self._factories:
            other = self[modality]
            if other is not encoder and getattr(other, "text_space", None) == encoder.name:
                out.append(other)
        return out


class QueryEmbeddings:
    """A bounded memo of query embeddings, keyed by encoder, input kind and input.

    Shared by every retriever (and the trained router) of a pipeline: a text query searched in
    the paragraph, document, image and clip corpora is encoded once per encoder.

    Args:
        size: embeddings kept (least recently used dropped first).
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._memo: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._spent = threading.local()

    def _get(self, key: tuple[str, str, str], make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        t0 = time.perf_counter()
        vec = make()
        self._spent.seconds = self.encode_seconds() + time.perf_counter() - t0
        self._put(key, vec)
        return vec

    def encode_seconds(self) -> float:
        """Seconds this thread has spent encoding queries through the memo: whichever stage
        asks first (the router or a retriever) pays the encode, so the pipeline reports it as
        its own ``encode`` stage."""
        return getattr(self._spent, "seconds", 0.0)

    def _put(self, key: tuple[str, str, str], vec: Any) -> None:
        with self._lock:
            self._memo[key] = vec
            self._memo.move_to_end(key)
            while len(self._memo) > self.size:
                self._memo.popitem(last=False)

    def text(self, encoder: Encoder, text: str) -> Any:
        """``encoder``'s query embedding of ``text``: (D,), or (T, D) token vectors for a
        late-interaction encoder."""
        return self._get((encoder.name, "query", text), lambda: encoder.encode_query([text])[0])

    def image(self, encoder: Encoder, image: str) -> Any:
        """``encoder``'s embedding of the image file ``image`` (as a document: image to image)."""
        return self._get((encoder.name, "image", image), lambda: encoder.encode_document([image])[0])

    def clear(self) -> None:
        """Forget every embedding (benchmarks measure the encode of each question)."""
        with self._lock:
            self._memo.clear()

    def prime(self, encoder: Encoder, texts: Sequence[str], vectors: Sequence[Any]) -> None:
        """Remember query embeddings computed in bulk (evaluation encodes all queries in
        batches first); grows the memo to hold them all."""
        self.size = max(self.size, len(texts) + 16)
        for text, vec in zip(texts, vectors, strict=True):
            self._put((encoder.name, "query", text), vec)
