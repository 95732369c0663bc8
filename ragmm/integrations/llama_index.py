"""ragmm's routed, reranked, multimodal retrieval as a LlamaIndex retriever.

Hits become :class:`~llama_index.core.schema.NodeWithScore` s: text items as ``TextNode``,
images as ``ImageNode`` (the file in ``image_path``), video clips as ``TextNode`` whose
metadata holds the video file and the clip's time span (``t_start``/``t_end``, and the matched
span and modality when the video retriever found one). The score is ragmm's relevancy score.

Example:
    >>> from llama_index.core.query_engine import RetrieverQueryEngine   # doctest: +SKIP
    >>> from ragmm import Pipeline
    >>> retriever = RagmmRetriever(Pipeline.from_config("ragmm.toml"), k=5)
    >>> engine = RetrieverQueryEngine.from_args(retriever, llm=my_llm)
    >>> print(engine.query("How do lighthouses warn ships?"))
"""

from __future__ import annotations

from typing import Any

from llama_index.core.callbacks import CallbackManager
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode

from ragmm.types import Hit, Query


class RagmmRetriever(BaseRetriever):
    """A LlamaIndex retriever over a ragmm pipeline, or over a running ``ragmm serve``.

    Args:
        source: a :class:`~ragmm.pipeline.Pipeline` (in process), a
            :class:`~ragmm.serve.client.RagmmClient`, or a server URL.
        k: evidence items per query (default: the pipeline's ``[retrieve] k``).
        corpora: search only these corpora (default: the router's choice).
        callback_manager: LlamaIndex callbacks.
    """

    def __init__(self, source: Any, k: int | None = None, corpora: list[str] | None = None, callback_manager: CallbackManager | None = None) -> None:
        if isinstance(source, str):
            from ragmm.serve.client import RagmmClient

            source = RagmmClient(source)
        self.source, self.k, self.corpora = source, k, corpora
        super().__init__(callback_manager=callback_manager)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        question = query_bundle.query_str
        hits = self.source.retrieve(Query(question), k=self.k, corpora=self.corpora) if _is_pipeline(self.source) else self.source.retrieve(question, k=self.k, corpora=self.corpora)[0]
        return [NodeWithScore(node=to_node(hit), score=hit.score) for hit in hits]


def _is_pipeline(source: Any) -> bool:
    return hasattr(source, "ask_stream") and hasattr(source, "search")


def to_node(hit: Hit) -> TextNode:
    """The LlamaIndex node of one ragmm hit (its id is the item's point id)."""
    item = hit.item
    metadata: dict[str, Any] = {
        "corpus": item.corpus,
        "source": item.source,
        "modality": item.modality,
        "locator": str(item.locator),
        "scores": dict(hit.scores),
    }
    if item.modality == "image" and item.image_path:
        metadata["image_path"] = item.image_path
        return ImageNode(id_=item.id, text=item.text, image_path=item.image_path, metadata=metadata, excluded_llm_metadata_keys=["scores", "image_path"])
    if item.locator.t_start is not None:
        metadata.update(t_start=item.locator.t_start, t_end=item.locator.t_end)
        if item.metadata.get("path"):
            metadata["video_path"] = str(item.metadata["path"])
        matched = item.metadata.get("matched")
        if isinstance(matched, dict):
            metadata.update({f"matched_{k}": v for k, v in matched.items() if k in ("modality", "t_start", "t_end")})
    return TextNode(id_=item.id, text=item.text, metadata=metadata, excluded_llm_metadata_keys=["scores"])
