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

import inspect
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmm.agent import RetrievalLoop, llm_rewriter, rules_rewrite
from ragmm.config import ComponentSpec, Config, load_config
from ragmm.encoders.shared import Encoders, QueryEmbeddings
from ragmm.ingest.ledger import LEDGER
from ragmm.protocols import Encoder, Generator, Reader, Reranker, Retriever, Router, Store
from ragmm.registry import registry
from ragmm.types import Answer, CorpusInfo, Hit, IndexReport, Query, Step, Trace

if TYPE_CHECKING:
    from ragmm.ingest.indexer import Indexer

NOTHING_INDEXED = "Nothing indexed yet: run `ragmm index PATH` first."


class Pipeline:
    """Multimodal RAG over the corpora of one store.

    Components are built from the config through the registry when first used, so creating
    a pipeline is cheap and ``ragmm corpora`` never loads a model. A corpus is searched by the
    retriever of its modality (``[retrievers.<modality>]``) and files are read by the reader
    that claims their type (``[readers.<modality>]``): the pipeline names no modality.

    Args:
        config: a :class:`~ragmm.config.Config`; ``None`` loads ``./ragmm.toml`` when present,
            else the defaults.
        store: an open store to use instead of building ``[store]`` (an embedded store's
            files can be open once per process: pipelines that differ in other sections
            share it this way).
    """

    def __init__(self, config: Config | None = None, store: Store | None = None) -> None:
        self.config = config if config is not None else load_config()
        self._parts: dict[str, Any] = {} if store is None else {"store": store}
        self._lock = threading.RLock()

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> Pipeline:
        """Build from a TOML file; keyword arguments override whole sections
        (``store={"type": "edge", "path": "/tmp/s"}``)."""
        return cls(load_config(path, overrides or None))

    # -- components ---------------------------------------------------------------------
    def _build(self, kind: str, spec: ComponentSpec, where: str, **deps: Any) -> Any:
        """``cls.from_config(config, **deps)``, passing only the dependencies it takes by name
        (or all of them when it takes ``**kwargs``)."""
        cls = registry.get(kind, spec.type)
        cfg = self.config.component_config(kind, spec, where)
        factory = getattr(cls, "from_config", None)
        if factory is None:
            return cls()
        params = inspect.signature(factory).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            deps = {name: value for name, value in deps.items() if name in params}
        return factory(cfg, **deps)

    def _part(self, name: str, make: Any) -> Any:
        part = self._parts.get(name)
        if part is None:
            with self._lock:  # two threads asking at once build a part once
                if name not in self._parts:
                    self._parts[name] = make()
                part = self._parts[name]
        return part

    @property
    def store(self) -> Store:
        return self._part("store", lambda: self._build("store", self.config.store, "store"))

    @property
    def encoders(self) -> Encoders:
        """The configured encoders by modality, each built when first asked for."""

        def make() -> Encoders:
            factories = {m: (lambda m=m, spec=spec: self._build("encoder", spec, f"encoders.{m}")) for m, spec in self.config.encoders.items()}
            return Encoders(factories, self.config.source or "config")

        return self._part("encoders", make)

    def encoder(self, modality: str) -> Encoder:
        """The encoder of ``modality`` (``[encoders.<modality>]``)."""
        return self.encoders[modality]

    @property
    def embeddings(self) -> QueryEmbeddings:
        """Query embeddings shared by every retriever and the router."""
        return self._part("embeddings", QueryEmbeddings)

    def _deps(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "encoders": self.encoders,
            "embeddings": self.embeddings,
            "hnsw_ef": self.config.retrieve.hnsw_ef,
            "settings": self.config.index,
            "generator_factory": lambda: self.generator,
        }

    def retriever(self, modality: str) -> Retriever | None:
        """The retriever of ``modality``'s corpora, or ``None`` when none is configured."""
        spec = self.config.retrievers.get(modality)
        if spec is None:
            return None
        return self._part(f"retriever.{modality}", lambda: self._build("retriever", spec, f"retrievers.{modality}", **self._deps()))

    @property
    def readers(self) -> list[Reader]:
        """One reader per configured modality, in config order."""
        return self._part("readers", lambda: [self._build("reader", spec, f"readers.{m}", **self._deps()) for m, spec in self.config.readers.items()])

    @property
    def router(self) -> Router:
        return self._part("router", lambda: self._build("router", self.config.router, "router", **self._deps()))

    @property
    def reranker(self) -> Reranker:
        return self._part("reranker", lambda: self._build("reranker", self.config.reranker, "reranker", **self._deps()))

    @property
    def generator(self) -> Generator:
        return self._part("generator", lambda: self._build("generator", self.config.generator, "generator", **self._deps()))

    @property
    def indexer(self) -> Indexer:
        from ragmm.ingest.indexer import Indexer

        return self._part("indexer", lambda: Indexer(self.store, self.readers, self.config.index))

    # -- operations ---------------------------------------------------------------------
    def index(self, paths: Iterable[str | os.PathLike[str]], corpus_root: str | os.PathLike[str] | None = None, progress: bool = True) -> IndexReport:
        """Index files and folders; see :class:`~ragmm.ingest.indexer.Indexer`."""
        try:
            return self.indexer.index(list(paths), corpus_root=corpus_root, progress=progress)
        finally:
            self._parts.pop("counts", None)

    def available_corpora(self) -> list[str]:
        """The corpora to search: ``[retrieve] corpora`` (default: all) that hold items, so a
        router never chooses an empty one. Counts are read once (an exact count costs
        milliseconds at 100k points) and again after this pipeline indexes or removes."""
        counts = self._part("counts", lambda: {c: self.store.count(c) for c in self.store.collections() if c != LEDGER})
        wanted = self.config.retrieve.corpora
        return [c for c in (sorted(counts) if wanted is None else wanted) if counts.get(c, 0) > 0]

    def retrieve(self, query: str | Query, k: int | None = None, corpora: Sequence[str] | None = None, image: str | os.PathLike[str] | None = None) -> list[Hit]:
        """The relevant hits (at most ``k``) over the corpora the router picks, best first.

        With ``image`` (or ``Query.image``) retrieval is by that image: each corpus's retriever
        searches with the image's embedding where an encoder puts images into that corpus's
        space (image to image, and image to text with the shipped ``ragmm-lite0``), and leaves
        the corpus out otherwise.
        """
        return self.search(_query(query, k, corpora, image))[0]

    @property
    def loop(self) -> RetrievalLoop:
        """Route -> search -> rerank, with fallback routes and a rewrite (``[agent]``)."""

        def make() -> RetrievalLoop:
            settings = self.config.agent
            rewrite = {"off": None, "rules": rules_rewrite, "llm": llm_rewriter(lambda: self.generator)}[settings.rewrite]
            return RetrievalLoop(self.router, self.reranker, self.retrieve_corpus, settings, rewrite, encode_clock=self.embeddings.encode_seconds)

        return self._part("loop", make)

    def search(self, q: Query, timings: dict[str, float] | None = None) -> tuple[list[Hit], Trace]:
        """The evidence for ``q`` and the trace of the loop that found it."""
        k = q.k or self.config.retrieve.k
        available = self.available_corpora()
        if not available:
            return [], Trace([Step("stop", q.text, note="the store holds no corpus")])
        per_corpus = max(k, self.config.retrieve.candidates)
        return self.loop.run(q, available, k, per_corpus, timings)

    def retrieve_corpus(self, q: Query, corpus: str, n: int) -> list[Hit]:
        """Up to ``n`` hits of one corpus, by the retriever of its modality."""
        spec = self.store.get_spec(corpus)
        retriever = None if spec is None else self.retriever(spec.modality)
        if retriever is None:
            return []
        return retriever.retrieve(q, corpus, n)

    def ask(self, query: str | Query, k: int | None = None, corpora: Sequence[str] | None = None, image: str | os.PathLike[str] | None = None) -> Answer:
        """Retrieve evidence and have the generator answer from it, citing ``[n]``."""
        answer = None
        for piece in self.ask_stream(query, k, corpora, image):
            if isinstance(piece, Answer):
                answer = piece
        assert answer is not None
        return answer

    def ask_stream(
        self, query: str | Query, k: int | None = None, corpora: Sequence[str] | None = None, image: str | os.PathLike[str] | None = None
    ) -> Iterator[str | Answer]:
        """:meth:`ask`, streamed: the answer's text in pieces as the generator writes it, then
        the finished :class:`~ragmm.types.Answer` (with citations, evidence and timings)."""
        q = _query(query, k, corpora, image)
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        hits, trace = self.search(q, timings)
        if not hits and not self.available_corpora():
            yield NOTHING_INDEXED
            yield Answer(text=NOTHING_INDEXED, timings={"total": time.perf_counter() - t0}, trace=trace)
            return
        t1 = time.perf_counter()
        for piece in self.generator.stream(q, hits):
            if isinstance(piece, Answer):
                t2 = time.perf_counter()
                piece.evidence = list(hits)
                piece.trace = trace
                piece.timings = {**piece.timings, **timings, "generate": t2 - t1, "total": t2 - t0}
            yield piece

    def remove(self, path: str | os.PathLike[str], corpus_root: str | os.PathLike[str] | None = None) -> list[str]:
        """Drop every item of a source (or of every source under a folder)."""
        from ragmm.ingest.indexer import remove_sources

        try:
            return remove_sources(self.store, Path(path), corpus_root)
        finally:
            self._parts.pop("counts", None)

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
    return dataclasses.replace(
        q,
        k=q.k if k is None else k,
        corpora=tuple(corpora) if corpora else q.corpora,
        image=q.image if image is None else str(image),
    )
