"""The OpenAI-compatible API, and ragmm's own `openai` generator talking to it over a real
uvicorn server on loopback."""

from __future__ import annotations

import json

import pytest

from ragmm.generation.openai_chat import EndpointError, OpenAIChatGenerator
from ragmm.serve.openai_api import question_of
from ragmm.types import Hit, Item, Query

Q = "Who walked on the Moon first?"


def test_models(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == "ragmm"


def test_chat_completion_answers_with_rag_and_cites(client):
    body = {"model": "ragmm", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": Q}], "temperature": 0.2, "k": 2}
    r = client.post("/v1/chat/completions", json=body)
    data = r.json()
    assert r.status_code == 200 and data["object"] == "chat.completion" and data["choices"][0]["finish_reason"] == "stop"
    content = data["choices"][0]["message"]["content"]
    assert "Moon" in content and "[1]" in content and "Sources:\n[1] docs/moon_landing.html" in content
    assert data["ragmm"]["citations"][0]["source"] == "docs/moon_landing.html" and len(data["ragmm"]["evidence"]) == 2


def test_chat_completion_streams_server_sent_events(client):
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": Q}]}], "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "Moon" in text and "Sources:" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["ragmm"]["citations"]


def test_chat_completion_needs_a_user_message(client):
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "system", "content": "x"}]})
    assert r.status_code == 422 and "role 'user'" in r.json()["error"]["message"]


def test_openai_generator_against_ragmm_serve(live_server, small_pipe):
    """The `openai` generator streams an answer from ragmm's server over HTTP. The server
    answers the generator's prompt by RAG over its own store: the prompt's ``Question:`` line
    is the question."""
    gen = OpenAIChatGenerator(OpenAIChatGenerator.Config(base_url=live_server.url + "/v1", model="ragmm", images=False))
    item = Item(corpus="paragraph", source="notes.txt", text="Neil Armstrong was the first person to walk on the Moon, in July 1969.")
    pieces = list(gen.stream(Query("What was Apollo 11?"), [Hit(item, 0.9)]))
    text, answer = "".join(pieces[:-1]), pieces[-1]
    served = small_pipe.ask("What was Apollo 11?")
    assert len(pieces) > 2 and text.startswith(served.text) and "Sources:\n[1] docs/moon_landing.html" in text  # streamed in pieces
    assert answer.generator == "openai" and "Apollo 11" in answer.text
    assert [c.hit.item.source for c in answer.citations] == ["notes.txt"]  # the server's [2], [3] are not the caller's evidence


def test_question_of_a_rag_prompt():
    assert question_of("Who designed the lens?") == "Who designed the lens?"
    prompt = "Evidence:\n[1] (a.txt) Question: is this evidence?\n\nQuestion: Who designed the lens?\nAnswer briefly, citing [1]."
    assert question_of(prompt) == "Who designed the lens?"
    assert question_of("Context: ...\nquery (about this image):  what is it?") == "what is it?"


def test_openai_generator_reports_the_servers_refusal(live_server):
    # a wrong base_url: the generator names the URL and the server's JSON error message
    gen = OpenAIChatGenerator(OpenAIChatGenerator.Config(base_url=live_server.url + "/nowhere", retries=0))
    item = Item(corpus="paragraph", source="notes.txt", text="Some evidence.")
    with pytest.raises(EndpointError, match=r"HTTP 404 \(Not Found\)"):
        gen.generate(Query(Q), [Hit(item, 0.9)])
