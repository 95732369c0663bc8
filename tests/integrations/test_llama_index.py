"""RagmmRetriever in a LlamaIndex RetrieverQueryEngine (MockLLM: no model download), over a
pipeline in process and over a running server."""

from __future__ import annotations

import pytest
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, TextNode

from ragmm.integrations.llama_index import RagmmRetriever, to_node
from ragmm.types import Hit, Item, Locator

from tests.conftest import EXAMPLES


@pytest.fixture(scope="module")
def pipe(tmp_path_factory, text_encoder, image_encoder):
    from ragmm.config import load_config
    from ragmm.pipeline import Pipeline

    pipe = Pipeline(load_config(None, {"store": {"type": "edge", "path": str(tmp_path_factory.mktemp("li") / "store")}, "generator": {"type": "extractive"}}))
    pipe.encoders.use("text", text_encoder)
    pipe.encoders.use("image", image_encoder)
    pipe.index([EXAMPLES / "lighthouses.md", EXAMPLES / "images" / "apiary_notice.png"], corpus_root=EXAMPLES, progress=False)
    yield pipe
    pipe.close()


def check_engine(retriever):
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query("When can visitors come to the apiary?")
    nodes = response.source_nodes
    assert len(nodes) == 3 and nodes[0].score >= nodes[1].score >= nodes[2].score
    top = nodes[0].node
    assert isinstance(top, ImageNode) and top.image_path == str((EXAMPLES / "images" / "apiary_notice.png").resolve())
    assert "Saturdays" in top.text and top.metadata["corpus"] == "image"
    assert any(isinstance(n.node, TextNode) and not isinstance(n.node, ImageNode) and n.node.metadata["source"] == "lighthouses.md" for n in nodes)
    # MockLLM echoes its prompt: the retrieved evidence reached the LLM through the engine
    assert "Saturdays" in str(response)


def test_query_engine_in_process(pipe):
    check_engine(RagmmRetriever(pipe, k=3))


def test_query_engine_through_a_server(pipe):
    from ragmm.serve.app import BackgroundServer, create_app

    with BackgroundServer(create_app(pipe)) as server:
        check_engine(RagmmRetriever(server.url, k=3))


def test_clip_node_has_its_time_span():
    item = Item(
        corpus="clip",
        source="videos/talk.mp4",
        text="Speech: the pump will be repaired in May.",
        locator=Locator(t_start=12.0, t_end=31.5),
        modality="video",
        metadata={"path": "/data/videos/talk.mp4", "matched": {"modality": "speech", "t_start": 14.2, "t_end": 19.0}},
    )
    node = to_node(Hit(item, 0.71, {"speech": 0.71}))
    assert type(node) is TextNode and node.id_ == item.id and node.text == item.text
    assert node.metadata["t_start"] == 12.0 and node.metadata["t_end"] == 31.5 and node.metadata["video_path"] == "/data/videos/talk.mp4"
    assert node.metadata["matched_modality"] == "speech" and node.metadata["matched_t_start"] == 14.2
