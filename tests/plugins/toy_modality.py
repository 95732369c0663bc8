"""A modality written outside ragmm, as a third-party package would: a reader for ``.toy``
files (one item per line), a bag-of-words hashing encoder, and a retriever. It imports only
ragmm's public records and protocols, and reaches the pipeline through the registry."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragmm.errors import InputError
from ragmm.protocols import DENSE, CollectionSpec, Encoded, SearchRequest, SourceFile, StoredPoint, VectorSpec, Where
from ragmm.types import Hit, Item, Locator, Query

CORPUS = "toy-lines"


class HashingEncoder:
    """Words hashed into 64 buckets, L2-normalised: the same vector for the same words."""

    name = "toy-hashing-64"
    dim = 64
    modality = "toy"

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def encode_query(self, inputs: Sequence[str]) -> np.ndarray:
        return self._encode(inputs)

    def encode_document(self, inputs: Sequence[str]) -> np.ndarray:
        return self._encode(inputs)


class ToyReader:
    modality = "toy"
    suffixes = frozenset({".toy"})
    streams = False
    buffer = 16

    def __init__(self, encoders: Any, **_: Any) -> None:
        self.encoders = encoders

    @classmethod
    def from_config(cls, config: Any, **deps: Any) -> ToyReader:
        return cls(**deps)

    def collections(self) -> list[CollectionSpec]:
        enc = self.encoders["toy"]
        return [CollectionSpec(CORPUS, {DENSE: VectorSpec(enc.dim)}, encoder=enc.name, modality="toy")]

    def read(self, source: SourceFile) -> list[Item]:
        lines = [line.strip() for line in source.data.decode("utf-8", "replace").splitlines() if line.strip()]
        if not lines:
            raise InputError(str(source.path), "no lines; write one fact per line")
        return [Item(CORPUS, source.key, line, Locator(section=i), modality="toy", source_hash=source.digest) for i, line in enumerate(lines)]

    def size(self, parsed: list[Item]) -> int:
        return len(parsed)

    def encode(self, batch: Sequence[list[Item]]) -> list[Encoded]:
        vectors = self.encoders["toy"].encode_document([item.text for items in batch for item in items])
        out, offset = [], 0
        for items in batch:
            points = [StoredPoint(item.id, item.to_payload(), {DENSE: vectors[offset + i]}) for i, item in enumerate(items)]
            offset += len(items)
            out.append(Encoded(items[0].source, items[0].source_hash, {CORPUS: points}))
        return out


class ToyRetriever:
    def __init__(self, store: Any, encoders: Any, embeddings: Any, **_: Any) -> None:
        self.store, self.encoders, self.embeddings = store, encoders, embeddings

    @classmethod
    def from_config(cls, config: Any, **deps: Any) -> ToyRetriever:
        return cls(**deps)

    def query_vectors(self, query: Query) -> dict[str, Any]:
        return {} if query.image else {DENSE: self.embeddings.text(self.encoders["toy"], query.text)}

    def retrieve(self, query: Query, corpus: str, k: int, where: Where | None = None) -> list[Hit]:
        vectors = self.query_vectors(query)
        if not vectors:
            return []
        points = self.store.query(corpus, SearchRequest(vectors[DENSE], DENSE, k, where))
        return [Hit(Item.from_payload(p.payload), p.score, {"toy": p.score}) for p in points]


def register(registry: Any) -> None:
    """The ``ragmm.plugins`` entry point: what a third-party package declares."""
    registry.register("encoder", "toy-hashing", HashingEncoder)
    registry.register("reader", "toy", ToyReader)
    registry.register("retriever", "toy", ToyRetriever)
