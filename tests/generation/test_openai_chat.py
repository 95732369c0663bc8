"""The openai generator against a real chat-completions server on loopback (Python's
http.server speaking the streaming format), not a mock of the client."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ragmm.generation.openai_chat import EndpointError, OpenAIChatGenerator
from ragmm.registry import registry
from ragmm.types import Answer, Hit, Item, Query


class ChatServer(ThreadingHTTPServer):
    """Answers POST /v1/chat/completions with ``reply`` in SSE chunks; ``script`` lists the
    HTTP status of each request in turn (200 once it runs out), ``delay`` stalls each reply."""

    daemon_threads = True

    def __init__(self, reply: list[str], script: list[int] | None = None, delay: float = 0.0, sse: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.reply, self.script, self.delay, self.sse = reply, list(script or []), delay, sse
        self.requests: list[tuple[dict, dict]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        try:
            self.answer()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)

    def answer(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((dict(self.headers), body))
        status = self.server.script.pop(0) if self.server.script else 200
        if self.path != "/v1/chat/completions":
            status = 404
        if status != 200:
            payload = json.dumps({"error": {"message": f"scripted failure {status}"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        time.sleep(self.server.delay)
        if not self.server.sse:
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": "".join(self.server.reply)}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b": keep-alive\n\n")
        for piece in self.server.reply:
            chunk = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture()
def serve():
    servers = []

    def start(*args, **kwargs) -> ChatServer:
        server = ChatServer(*args, **kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def evidence(tmp_path: Path) -> list[Hit]:
    from PIL import Image

    Image.new("RGB", (1200, 600), (200, 30, 30)).save(tmp_path / "red.png")
    return [
        Hit(Item("paragraph", "docs/lens.md", "In 1822 Augustin Fresnel designed a lens of glass prisms."), 0.9),
        Hit(Item("image", "docs/red.png", "red.png: a red square", modality="image", metadata={"path": str(tmp_path / "red.png")}), 0.5),
    ]


def gen(url: str, **kw) -> OpenAIChatGenerator:
    return OpenAIChatGenerator(OpenAIChatGenerator.Config(base_url=url, model="tiny", backoff=0.01, **kw))


def test_streams_the_answer_and_sends_evidence_with_images(serve, evidence, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server = serve(["Augustin ", "Fresnel designed it ", "[1][5]."])
    pieces = list(gen(server.base_url).stream(Query("Who designed the lens?"), evidence))
    assert pieces[:-1] == ["Augustin ", "Fresnel designed it ", "[1][5]."]
    answer = pieces[-1]
    assert isinstance(answer, Answer) and answer.generator == "openai"
    assert answer.text == "Augustin Fresnel designed it [1]."  # [5] was never given
    assert [c.n for c in answer.citations] == [1] and answer.citations[0].hit is evidence[0]
    headers, body = server.requests[0]
    assert headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "tiny" and body["stream"] is True
    system, user = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    text = "".join(p["text"] for p in user["content"] if p["type"] == "text")
    assert "[1] (lens.md, whole) In 1822 Augustin Fresnel" in text and "Question: Who designed the lens?" in text
    urls = [p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url"]
    assert len(urls) == 1 and urls[0].startswith("data:image/jpeg;base64,")
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(urls[0].split(",", 1)[1])))
    assert max(image.size) == 768  # shrunk before sending


def test_text_only_and_plain_json_answers(serve, evidence):
    server = serve(["Fresnel designed the lens."], sse=False)
    answer = gen(server.base_url, images=False).generate(Query("Who designed the lens?"), evidence)
    assert answer.text == "Fresnel designed the lens. [1]"  # cited by grounding: the model cited nothing
    assert isinstance(server.requests[0][1]["messages"][1]["content"], str)


def test_retries_a_busy_server_then_answers(serve, evidence):
    server = serve(["Fresnel [1]."], script=[503, 429])
    assert gen(server.base_url, retries=2).generate(Query("Who?"), evidence).text == "Fresnel [1]."
    assert len(server.requests) == 3


def test_refusal_is_one_line_naming_url_status_and_message(serve, evidence):
    server = serve(["unused"], script=[401])
    with pytest.raises(EndpointError) as err:
        gen(server.base_url).generate(Query("Who?"), evidence)
    message = str(err.value)
    assert "\n" not in message and "HTTP 401" in message and "scripted failure 401" in message and server.base_url in message
    assert len(server.requests) == 1  # a refusal is not retried


def test_server_down_is_one_line_after_retries(evidence):
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(EndpointError, match=r"cannot connect .*is the server running") as err:
        gen(url, retries=1, connect_timeout=1).generate(Query("Who?"), evidence)
    assert "\n" not in str(err.value) and url in str(err.value)


def test_slow_server_times_out(serve, evidence):
    server = serve(["late"], delay=1.0)
    with pytest.raises(EndpointError, match="timed out"):
        gen(server.base_url, timeout=0.2, retries=0).generate(Query("Who?"), evidence)


def test_no_evidence_sends_nothing_and_registered(serve):
    server = serve(["unused"])
    assert gen(server.base_url).generate(Query("Who?"), []).citations == []
    assert server.requests == []
    assert registry.get("generator", "openai") is OpenAIChatGenerator
