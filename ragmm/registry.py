"""One registry for every named implementation (stores, encoders, retrievers, generators...).

Entries are registered as ``"module:attribute"`` strings and imported on first use, so
``import ragmm`` never pulls in torch or transformers. A name can be registered once per
kind; a second registration is refused (as lerobot's factory does). Third-party packages
add entries through the ``ragmm.plugins`` entry-point group: each entry point is a
callable that receives the registry.

Example:
    >>> from ragmm.registry import registry
    >>> registry.register("generator", "echo", "mypkg.gen:EchoGenerator")
    >>> cls = registry.get("generator", "echo")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ragmm.errors import ConfigError

KINDS = ("store", "encoder", "reader", "retriever", "router", "reranker", "generator")


class Registry:
    """Maps ``(kind, name)`` to an implementation class, imported lazily."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, str | type]] = {k: {} for k in KINDS}
        self._plugins_loaded = False

    def register(self, kind: str, name: str, target: str | type | None = None) -> Any:
        """Register ``target`` (a class or ``"module:attr"``) as ``name`` of ``kind``.

        Used without ``target`` it is a class decorator.

        Raises:
            ValueError: the kind is unknown or the name is already taken.
        """
        if kind not in self._entries:
            raise ValueError(f"unknown registry kind {kind!r}; known: {', '.join(KINDS)}")

        def add(obj: str | type) -> str | type:
            if name in self._entries[kind]:
                raise ValueError(f"{kind} {name!r} is already registered ({self._entries[kind][name]!r})")
            if not isinstance(obj, str):
                self.check(kind, name, obj)
            self._entries[kind][name] = obj
            return obj

        if target is None:
            return add
        return add(target)

    def names(self, kind: str) -> list[str]:
        self._load_plugins()
        return sorted(self._entries[kind])

    def get(self, kind: str, name: str) -> type:
        """Return the class registered as ``name``; import it on first use.

        Raises:
            ConfigError: no such name (the message lists the known ones).
        """
        self._load_plugins()
        entries = self._entries[kind]
        if name not in entries:
            raise ConfigError(f"unknown {kind} type {name!r}; known {kind} types: {', '.join(sorted(entries))}")
        target = entries[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self.check(kind, name, target)
            entries[name] = target
        return target

    @staticmethod
    def check(kind: str, name: str, cls: type) -> None:
        """Refuse an implementation that lacks a method of its kind's protocol.

        Raises:
            ConfigError: naming the implementation, the missing methods and the protocol.
        """
        from ragmm.protocols import missing_methods, protocol_of

        missing = missing_methods(kind, cls)
        if missing:
            raise ConfigError(
                f"{kind} {name!r} ({cls.__module__}.{cls.__qualname__}) does not implement {', '.join(f'{m}()' for m in missing)} "
                f"of ragmm.protocols.{protocol_of(kind).__name__}; add them, or register another {kind}"
            )

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group="ragmm.plugins"):
            hook: Callable[[Registry], None] = ep.load()
            hook(self)


registry = Registry()

# Built-in implementations. Strings keep heavy modules unimported until used.
registry.register("store", "edge", "ragmm.stores.edge:EdgeStore")
registry.register("store", "server", "ragmm.stores.server:ServerStore")
registry.register("encoder", "sentence-transformers", "ragmm.encoders.sentence_transformer:SentenceTransformerEncoder")
registry.register("encoder", "image-text", "ragmm.encoders.image_text:ImageTextEncoder")
registry.register("encoder", "ragmm-clipart", "ragmm.encoders.image_text:ImageTextEncoder")
registry.register("encoder", "ragmm-lite0", "ragmm.encoders.image_text:Lite0ImageTextEncoder")
registry.register("encoder", "hf-clip", "ragmm.encoders.hf_clip:HFClipEncoder")
registry.register("encoder", "late-interaction", "ragmm.encoders.late_interaction:LateInteractionEncoder")
registry.register("reader", "text", "ragmm.ingest.text:TextReader")
registry.register("reader", "image", "ragmm.ingest.image_reader:ImageReader")
registry.register("reader", "video", "ragmm.ingest.video:VideoReader")
registry.register("retriever", "dense", "ragmm.retrievers.dense:DenseRetriever")
registry.register("retriever", "image", "ragmm.retrievers.image:ImageCorpusRetriever")
registry.register("retriever", "video", "ragmm.retrievers.video:VideoRetriever")
registry.register("router", "all", "ragmm.routing:AllCorporaRouter")
registry.register("router", "trained", "ragmm.routing.trained:TrainedRouter")
registry.register("router", "llm", "ragmm.routing.llm:LLMRouter")
registry.register("reranker", "none", "ragmm.reranking:ScoreOrderReranker")
registry.register("reranker", "cross-encoder", "ragmm.reranking.cross_encoder:CrossEncoderReranker")
registry.register("reranker", "late-interaction", "ragmm.reranking.late_interaction:LateInteractionReranker")
registry.register("reranker", "llm", "ragmm.reranking.llm:LLMReranker")
registry.register("generator", "extractive", "ragmm.generation.extractive:ExtractiveGenerator")
registry.register("generator", "smollm2", "ragmm.generation.causal_lm:CausalLMGenerator")
registry.register("generator", "hf-causal-lm", "ragmm.generation.causal_lm:CausalLMGenerator")
registry.register("generator", "transformers-vlm", "ragmm.generation.vlm:VisionLanguageGenerator")
registry.register("generator", "openai", "ragmm.generation.openai_chat:OpenAIChatGenerator")
