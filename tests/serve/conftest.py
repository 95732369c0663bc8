"""A small store shared by the serve tests: four text documents and one image (OCR), with
the session's encoders and the extractive generator. The browser test adds the demo video."""

from __future__ import annotations

import pytest

from tests.conftest import EXAMPLES

SMALL = [EXAMPLES / n for n in ("honeybees.txt", "lighthouses.md", "moon_landing.html", "volcanoes.pdf")] + [EXAMPLES / "images" / "apiary_notice.png"]


def make_pipe(store, text_encoder, image_encoder, **sections):
    from ragmm.config import load_config
    from ragmm.pipeline import Pipeline

    pipe = Pipeline(load_config(None, {"store": {"type": "edge", "path": str(store)}, "generator": {"type": "extractive"}, **sections}))
    pipe.encoders.use("text", text_encoder)
    pipe.encoders.use("image", image_encoder)
    return pipe


@pytest.fixture(scope="session")
def small_pipe(tmp_path_factory, text_encoder, image_encoder):
    """A warm pipeline over the small store (indexed once per session)."""
    pipe = make_pipe(tmp_path_factory.mktemp("serve") / "store", text_encoder, image_encoder)
    pipe.index(SMALL, corpus_root=EXAMPLES.parent, progress=False)
    yield pipe
    pipe.close()


@pytest.fixture
def client(small_pipe):
    """A TestClient of the app over the small store (loopback, token "s3cret")."""
    from fastapi.testclient import TestClient

    from ragmm.serve.app import create_app

    app = create_app(small_pipe, token="s3cret")
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def live_server(small_pipe):
    """The app over the small store on a real uvicorn server on loopback."""
    from ragmm.serve.app import BackgroundServer, create_app

    with BackgroundServer(create_app(small_pipe, token="s3cret")) as server:
        yield server
