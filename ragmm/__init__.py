"""ragmm: multimodal retrieval-augmented generation on contrastive retrievers.

``import ragmm`` is light: the pipeline, torch and the models load on first use.

Example:
    >>> from ragmm import Pipeline              # doctest: +SKIP
    >>> pipe = Pipeline()                       # defaults, store in ./.ragmm
    >>> pipe.index(["examples/"])
    >>> print(pipe.ask("What is a lighthouse for?").text)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragmm.types import Answer, Citation, Hit, IndexReport, Item, Locator, Query

__version__ = "0.1.0"
__all__ = ["Answer", "Citation", "Config", "Hit", "IndexReport", "Item", "Locator", "Pipeline", "Query", "load_config", "registry"]

if TYPE_CHECKING:
    from ragmm.config import Config, load_config
    from ragmm.pipeline import Pipeline
    from ragmm.registry import registry


def __getattr__(name: str) -> Any:
    if name == "Pipeline":
        from ragmm.pipeline import Pipeline

        return Pipeline
    if name in ("Config", "load_config"):
        from ragmm import config

        return getattr(config, name)
    if name == "registry":
        from ragmm.registry import registry

        return registry
    raise AttributeError(f"module 'ragmm' has no attribute {name!r}")
