"""The Python API: ``Pipeline`` ties index -> store -> route -> retrieve -> rerank -> generate.

Example:
    >>> from ragmm import Pipeline
    >>> with Pipeline() as pipe:                       # doctest: +SKIP
    ...     pipe.index(["examples/"])
    ...     for hit in pipe.retrieve("how do lighthouses warn ships?", k=3):
    ...         print(hit.score, hit.item.source, hit.item.locator)
    ...     print(pipe.ask("how do lighthouses warn ships?").text)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ragmm.config import ComponentSpec, Config, load_config
from ragmm.ingest.ledger import LEDGER
from ragmm.registry import registry
from ragmm.types import Answer, CorpusInfo, Hit, IndexReport, Query

NOTHING_INDEXED = "Nothing indexed yet: run `ragmm index PATH` first."


class Pipeline:
    """Multimodal RAG over the corpora of one store.

    Components are built from the config through the registry when first used, so creating
    a pipeline is cheap and ``ragmm corpora`` never loads a model.

    Args:
        config: a :class:`~ragmm.config.Config`; ``None`` loads ``./ragmm.toml`` when present,
            else the defaults.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else load_config()
        self._parts: dict[str, Any] = {}

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> Pipeline:
        """Build from a TOML file; keyword arguments override whole sections
        (``store={"type": "edge", "path": "/tmp/s"}``)."""
        return cls(load_config(path, overrides or None))

    # -- components ---------------------------------------------------------------------
    def _build(self, kind: str, spec: ComponentSpec, where: str, **deps: Any) -> Any:
        cls = registry.get(kind, spec.type)
        cfg = self.config.component_config(kind, spec, where)
        factory = getattr(cls, "from_config", None)
        return factory(cfg, **deps) if factory is not None else cls(**deps)

    def _part(self, name: str, make: Any) -> Any:
        if name not in self._parts:
            self._parts[name] = make()
        return self._parts[name]

    @property
    def store(self) -> Any:
        return self._part("store", lambda: self._build("store", self.config.store, "store"))

    def encoder(self, modality: str = "text") -> Any:
        spec = self.config.encoders.get(modality)
        if spec is None:
            from ragmm.errors import ConfigError

            raise ConfigError(f"{self.config.source or 'config'}: no [encoders.{modality}] section; add one to index or search {modality}")
        return self._part(f"encoder.{modality}", lambda: self._build("encoder", spec, f"encoders.{modality}"))

    @property
    def retriever(self) -> Any:
        return self._part(
            "retriever",
            lambda: self._build(
                "retriever", self.config.retriever, "retriever", store=self.store, encoder=self.encoder("text"), hnsw_ef=self.config.retrieve.hnsw_ef
            ),
        )

    @property
    def image_retriever(self) -> Any:
        """Searches the image corpus (needs ``[encoders.image]``)."""

        def make() -> Any:
            spec = self.config.image_retriever
            cls = registry.get("retriever", spec.type)
            cfg = self.config.component_config("retriever", spec, "image_retriever")
            return cls(
                self.store, self.encoder("text"), self.encoder("image"), text_query=self.retriever.embed, hnsw_ef=self.config.retrieve.hnsw_ef, **cfg.model_dump()
            )

        return self._part("image_retriever", make)

    @property
    def router(self) -> Any:
        return self._part("router", lambda: self._build("router", self.config.router, "router"))

    @property
    def reranker(self) -> Any:
        return self._part("reranker", lambda: self._build("reranker", self.config.reranker, "reranker"))

    @property
    def generator(self) -> Any:
        return self._part("generator", lambda: self._build("generator", self.config.generator, "generator"))

    @property
    def indexer(self) -> Any:
        from ragmm.ingest.indexer import Indexer

        image = (lambda: self.encoder("image")) if "image" in self.config.encoders else None
        return self._part("indexer", lambda: Indexer(self.store, self.encoder("text"), self.config.index, image_encoder=image))

    # -- operations ---------------------------------------------------------------------
    def index(self, paths: Iterable[str | os.PathLike[str]], corpus_root: str | os.PathLike[str] | None = None, progress: bool = True) -> IndexReport:
        """Index files and folders; see :class:`~ragmm.ingest.indexer.Indexer`."""
        return self.indexer.index(list(paths), corpus_root=corpus_root, progress=progress)

    def available_corpora(self) -> list[str]:
        """Configured corpora that exist in the store. Listing opens nothing; an exact count
        costs milliseconds at 100k points, so it is left to :meth:`ask`, and only when
        nothing was found."""
        existing = set(self.store.collections())
        return [c for c in self.config.retrieve.corpora if c in existing]

    def retrieve(self, query: str | Query, k: int | None = None, corpora: Sequence[str] | None = None, image: str | os.PathLike[str] | None = None) -> list[Hit]:
        """The best ``k`` hits over the corpora the router picks, best first.

        With ``image`` (or ``Query.image``) retrieval is by that image: image-to-image in the
        image corpus, and image-to-text in text corpora when the image encoder shares the text
        encoder's space (``ragmm-clipart`` does); other text corpora are then left out.
        """
        q = _query(query, k, corpora, image)
        k = k or q.k or self.config.retrieve.k
        available = self.available_corpora()
        if not available:
            return []
        targets = self.router.route(q, available)
        per_corpus = max(k, self.config.retrieve.candidates)
        # No BLAS call sits on this path (torch encodes, Qdrant searches natively), so nothing
        # here competes with torch for the cores. Re-limiting OpenBLAS per query (threadpoolctl)
        # measured 5 ms of p50 in bench/retrieve_latency.py, for nothing.
        hits = [h for corpus in targets for h in self._retrieve_corpus(q, corpus, per_corpus)]
        return self.reranker.rerank(q, hits, k)

    def _retrieve_corpus(self, q: Query, corpus: str, n: int) -> list[Hit]:
        spec = self.store.get_spec(corpus)
        if spec is None:
            return []
        if spec.modality == "image":
            return self.image_retriever.retrieve(q, corpus, n)
        if q.image is None:
            return self.retriever.retrieve(q, corpus, n)
        if not self.image_retriever.shared_space:
            return []  # this image encoder's space is not the text corpora's: nothing to compare
        vec = self.image_retriever.query_vectors(q)["image"]
        return self.retriever.retrieve(q, corpus, n, vector=vec)

    def ask(self, query: str | Query, k: int | None = None, corpora: Sequence[str] | None = None, image: str | os.PathLike[str] | None = None) -> Answer:
        """Retrieve evidence and have the generator answer from it, citing ``[n]``."""
        q = _query(query, k, corpora, image)
        t0 = time.perf_counter()
        hits = self.retrieve(q, k)
        if not hits and not any(self.store.count(c) for c in self.available_corpora()):
            return Answer(text=NOTHING_INDEXED, timings={"total": time.perf_counter() - t0})
        t1 = time.perf_counter()
        answer = self.generator.generate(q, hits)
        t2 = time.perf_counter()
        answer.evidence = list(hits)
        answer.timings = {**answer.timings, "retrieve": t1 - t0, "generate": t2 - t1, "total": t2 - t0}
        return answer

    def remove(self, path: str | os.PathLike[str], corpus_root: str | os.PathLike[str] | None = None) -> list[str]:
        """Drop every item of a source (or of every source under a folder)."""
        from ragmm.ingest.indexer import remove_sources

        return remove_sources(self.store, Path(path), corpus_root)

    def corpora(self) -> list[CorpusInfo]:
        """Each corpus with its item count, source count and encoder."""
        from ragmm.ingest.ledger import Ledger

        sources: dict[str, int] = {}
        for record in Ledger(self.store).records():
            for corpus, n in record.items.items():
                sources[corpus] = sources.get(corpus, 0) + (n > 0)
        out = []
        for name in sorted(self.store.collections()):
            if name == LEDGER:
                continue
            spec = self.store.get_spec(name)
            if spec is None:
                continue
            dense = next(iter(spec.vectors.values()))
            out.append(CorpusInfo(name=name, modality=spec.modality, items=self.store.count(name), sources=sources.get(name, 0), encoder=spec.encoder, dim=dense.size))
        return out

    def close(self) -> None:
        if "store" in self._parts:
            self._parts["store"].close()
        self._parts.clear()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _query(query: str | Query, k: int | None, corpora: Sequence[str] | None, image: str | os.PathLike[str] | None) -> Query:
    """A :class:`Query`; arguments given explicitly override those of a ``Query`` passed in."""
    import dataclasses

    q = query if isinstance(query, Query) else Query(text=query)
    changes: dict[str, Any] = {}
    if k is not None:
        changes["k"] = k
    if corpora:
        changes["corpora"] = tuple(corpora)
    if image is not None:
        changes["image"] = str(image)
    return dataclasses.replace(q, **changes) if changes else q
