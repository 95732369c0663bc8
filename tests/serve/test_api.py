"""ragmm's own API: ask (streamed and whole), retrieve, corpora, health, index, media."""

from __future__ import annotations

import json

from ragmm.serve.wire import answer_from_wire

from tests.conftest import EXAMPLES

Q = "Who walked on the Moon first?"


def lines(response):
    return [json.loads(line) for line in response.iter_lines() if line.strip()]


def test_health_and_corpora(client, small_pipe):
    health = client.get("/health").json()
    assert health["service"] == "ragmm" and health["generator"] == "extractive"
    assert health["store"] == small_pipe.config.store.options()["path"]
    corpora = {c["name"]: c for c in client.get("/corpora").json()}
    assert corpora["paragraph"]["items"] > 0 and corpora["image"]["items"] == 1


def test_ask_streams_pieces_then_the_answer(client, small_pipe):
    with client.stream("POST", "/ask", json={"question": Q, "k": 3}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        events = lines(r)
    assert [e["type"] for e in events[:-1]] == ["text"] * (len(events) - 1) and events[-1]["type"] == "answer"
    wire = events[-1]["answer"]
    assert "".join(e["text"] for e in events[:-1]).strip() == wire["answer"].strip()
    assert wire["citations"][0]["source"].endswith("moon_landing.html")
    # the same answer as the pipeline gives in process, rebuilt record for record
    local = small_pipe.ask(Q, k=3).to_dict()
    remote = answer_from_wire(wire).to_dict()
    for d in (local, remote):
        d.pop("timings")
    assert remote == local


def test_ask_whole_and_retrieve(client):
    whole = client.post("/ask", json={"question": Q, "k": 2, "stream": False}).json()
    assert whole["answer"] and len(whole["evidence"]) == 2 and {"retrieve", "generate", "total"} <= set(whole["timings"])
    got = client.post("/retrieve", json={"question": "When can visitors come to the apiary?", "k": 3}).json()
    top = got["hits"][0]
    assert top["corpus"] == "image" and top["media"] == "/media/docs/images/apiary_notice.png"
    assert [s["kind"] for s in got["trace"]["steps"]][0] == "route"


def test_media_of_indexed_images_only(client):
    r = client.get("/media/docs/images/apiary_notice.png")
    assert r.status_code == 200 and r.content == (EXAMPLES / "images" / "apiary_notice.png").read_bytes()
    # a file that exists but is no indexed image, a text source, and missing ones
    for path in ("/media/docs/honeybees.txt", "/media/make_pdf.py", "/media/nothing.png"):
        r = client.get(path)
        assert r.status_code == 404 and "only from indexed sources" in r.json()["error"]["message"], path


def test_index_needs_the_token(client, tmp_path):
    doc = tmp_path / "otters.txt"
    doc.write_text("Sea otters hold hands while they sleep so that they do not drift apart.\n")
    r = client.post("/index", json={"paths": [str(doc)]})
    assert r.status_code == 401 and "token" in r.json()["error"]["message"]
    r = client.post("/index", json={"paths": [str(doc)]}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = client.post("/index", json={"paths": [str(doc)]}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["files_indexed"] == 1
    hits = client.post("/retrieve", json={"question": "Why do sea otters hold hands?", "k": 1}).json()["hits"]
    assert hits[0]["source"].endswith("otters.txt")


def test_index_off_without_a_token(small_pipe):
    from fastapi.testclient import TestClient

    from ragmm.serve.app import create_app

    with TestClient(create_app(small_pipe), base_url="http://127.0.0.1") as c:
        r = c.post("/index", json={"paths": ["/etc"]}, headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "--token" in r.json()["error"]["message"]
        assert c.post("/ask", json={"question": Q, "stream": False}).status_code == 200  # loopback: asking needs none


def test_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and '<form id="ask">' in r.text
    assert client.get("/static/app.js").status_code == 200


def test_query_image_in_the_body(client):
    import base64

    data = base64.b64encode((EXAMPLES / "images" / "apiary_notice.png").read_bytes()).decode()
    got = client.post("/retrieve", json={"question": "What is this?", "k": 2, "image": f"data:image/png;base64,{data}"}).json()
    assert got["hits"][0]["source"] == "docs/images/apiary_notice.png"  # the same picture, found by its pixels
    r = client.post("/retrieve", json={"question": "What is this?", "image": "not base64!"})
    assert r.status_code == 400 and "base64" in r.json()["error"]["message"]
