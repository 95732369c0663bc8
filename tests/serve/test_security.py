"""Loopback by default, tokens, media only of indexed sources (no path traversal), request
size and rate limits, and errors as JSON with a message, never a stack trace."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from ragmm.errors import RagmmError
from ragmm.serve.app import create_app
from ragmm.serve.guards import RateLimiter, is_loopback
from ragmm.serve.settings import ServeSettings

ASK = {"question": "Who walked on the Moon first?", "k": 2, "stream": False}


def raw_get(server, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (HTTP clients would remove ``..`` segments first)."""
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "target",
    [
        "/media/../../../../etc/passwd",
        "/media/docs/images/../../../../../../etc/passwd",
        "/media/docs/images/../honeybees.txt",
        "/media/docs/images/../images/apiary_notice.png",  # even an indexed file, named through ..
        "/media/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/media/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/media/docs%2fimages%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/media/%252e%252e%252fetc%252fpasswd",
        "/media//etc/passwd",
        "/media/%2fetc%2fpasswd",
    ],
)
def test_no_path_traversal(live_server, target):
    status, body = raw_get(live_server, target)
    assert status in (400, 404), (target, status)
    assert body.startswith(b'{"error":'), body[:80]  # a JSON error, never a file


def test_indexed_media_is_served(live_server):
    status, body = raw_get(live_server, "/media/docs/images/apiary_notice.png")
    assert status == 200 and body.startswith(b"\x89PNG")


def test_public_bind_needs_a_token(small_pipe):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    with pytest.raises(RagmmError, match="--token"):
        create_app(small_pipe, host="0.0.0.0")
    app = create_app(small_pipe, token="s3cret", host="0.0.0.0")
    with TestClient(app, base_url="http://example.org", raise_server_exceptions=False) as c:
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
        for method, path in (("post", "/ask"), ("post", "/retrieve"), ("get", "/corpora"), ("post", "/v1/chat/completions"), ("get", "/media/docs/images/apiary_notice.png")):
            r = getattr(c, method)(path, json=ASK) if method == "post" else c.get(path)
            assert r.status_code == 401 and "token" in r.json()["error"]["message"], path
        auth = {"Authorization": "Bearer s3cret"}
        assert c.post("/ask", json=ASK, headers=auth).status_code == 200
        # <img> and <video> carry the token as the page's cookie, for reads only
        assert c.get("/media/docs/images/apiary_notice.png", cookies={"ragmm_token": "s3cret"}).status_code == 200
        c.cookies.clear()
        assert c.post("/ask", json=ASK, cookies={"ragmm_token": "s3cret"}).status_code == 401


def test_loopback_refuses_other_host_names(client):
    r = client.get("/health", headers={"Host": "attacker.example"})
    assert r.status_code == 400


def test_request_size_limit(small_pipe):
    app = create_app(small_pipe, ServeSettings(max_body_kb=1))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.post("/ask", json={**ASK, "question": "x" * 2000})
        assert r.status_code == 413 and "max_body_kb" in r.json()["error"]["message"]

        def chunks():  # no Content-Length: the body is counted as it arrives
            yield b'{"question": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        r = c.post("/ask", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "max_body_kb" in r.json()["error"]["message"]


def test_long_question_refused(client):
    r = client.post("/ask", json={**ASK, "question": "why " * 2000})
    assert r.status_code == 422 and "max_question_chars" in r.json()["error"]["message"]


def test_rate_limit(small_pipe):
    app = create_app(small_pipe, ServeSettings(rate=0.5, burst=2))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert [c.get("/corpora").status_code for _ in range(3)] == [200, 200, 429]
        r = c.get("/corpora")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "too many requests" in r.json()["error"]["message"]
        assert c.get("/health").status_code == 200  # probes and the page are not limited


def test_rate_limiter_refills():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.allow("a") == pytest.approx(0.5)
    assert limiter.allow("b") == 0.0  # per client
    now[0] += 0.5
    assert limiter.allow("a") == 0.0 and limiter.allow("a") > 0


def test_errors_are_json_without_a_stack_trace(client, small_pipe, monkeypatch):
    r = client.post("/ask", json={"k": 3})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("question: Field required")
    r = client.post("/retrieve", json={**ASK, "colour": "blue"})
    assert r.status_code == 422 and "colour" in r.json()["error"]["message"]
    r = client.post("/ask", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()
    assert client.get("/nowhere").json()["error"]["message"] == "Not Found"

    def broken(*args, **kwargs):
        raise RuntimeError("secret detail /home/someone")

    monkeypatch.setattr(small_pipe, "search", broken)
    for path in ("/retrieve", "/ask"):
        r = client.post(path, json=ASK)
        message = r.json()["error"]["message"]
        assert r.status_code == 500 and "RuntimeError" in message and "secret" not in message and "Traceback" not in r.text, path
    r = client.post("/ask", json={**ASK, "stream": True})
    assert r.status_code == 500 and "secret" not in r.text


class Breaks:
    """A generator that writes one piece, then fails."""

    name = "breaks"

    def stream(self, query, evidence):
        yield "Half an answer"
        raise RuntimeError("model crashed at /secret/weights")


def test_error_while_streaming_is_a_line(client, small_pipe, monkeypatch):
    monkeypatch.setitem(small_pipe._parts, "generator", Breaks())
    with client.stream("POST", "/ask", json={**ASK, "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert '"Half an answer"' in lines[0] and '"type": "error"' in lines[-1]
    assert "RuntimeError" in lines[-1] and "secret" not in lines[-1]
