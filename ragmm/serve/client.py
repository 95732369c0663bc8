"""The thin client of a running ``ragmm serve``: what ``ragmm ask`` uses when a server is up.

Standard library only (``http.client``, ``json``), plus :mod:`ragmm.types`: asking a warm
server must not pay for importing torch, transformers or even httpx.

Example:
    >>> client = RagmmClient("http://127.0.0.1:8337")             # doctest: +SKIP
    >>> for piece in client.ask_stream("Who designed the lens?"):  # doctest: +SKIP
    ...     print(piece if isinstance(piece, str) else piece.citations)
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ragmm.errors import RagmmError
from ragmm.serve import DEFAULT_PORT, SERVER_ENV, TOKEN_ENV
from ragmm.serve.wire import answer_from_wire, hit_from_wire, trace_from_wire
from ragmm.types import Answer, CorpusInfo, Hit, Trace

# Connecting to a port nobody listens on fails at once on loopback; a server that accepts
# but does not answer /health this fast is busy or not ragmm, and is passed over.
PROBE_TIMEOUT_S = 0.5


class ServerError(RagmmError):
    """The server refused the request or could not be reached."""


class RagmmClient:
    """ragmm's API of a server at ``url``.

    Args:
        url: the server's root, e.g. ``http://127.0.0.1:8337``.
        token: sent as a Bearer token (default: ``$RAGMM_TOKEN``).
        timeout: seconds to wait for each read (an answer by a local language model can be slow).
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 300.0) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"{url}: not a server URL; give one like http://127.0.0.1:{DEFAULT_PORT}")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._parts = parts
        self.prefix = parts.path.rstrip("/")
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.timeout = timeout

    # -- requests -----------------------------------------------------------------------
    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        return cls(self._parts.hostname, self._parts.port, timeout=timeout)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> http.client.HTTPResponse:
        conn = self._connect(self.timeout if timeout is None else timeout)
        headers = {"Accept": "application/json, application/x-ndjson"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, self.prefix + path, body=data, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:  # refused, timed out, or not speaking HTTP
            conn.close()
            why = " ".join(str(exc).split())
            raise ServerError(f"{self.url}: cannot reach the ragmm server ({exc.__class__.__name__}: {why}); is `ragmm serve` running?") from None
        if response.status >= 400:
            message = _error_message(response.read())
            conn.close()
            raise ServerError(f"{self.url}{path}: HTTP {response.status}: {message}")
        return response

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        response = self._request(method, path, body, timeout)
        try:
            return json.loads(response.read())
        finally:
            response.close()

    # -- API ----------------------------------------------------------------------------
    def health(self, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
        """``GET /health``: the server's store, generator and version."""
        return self._json("GET", "/health", timeout=timeout)

    def corpora(self) -> list[CorpusInfo]:
        """The server's corpora."""
        return [CorpusInfo(**c) for c in self._json("GET", "/corpora")]

    def retrieve(self, question: str, k: int | None = None, corpora: Sequence[str] | None = None, image: str | os.PathLike[str] | None = None) -> tuple[list[Hit], Trace | None]:
        """The server's evidence for ``question`` and the trace of its search."""
        data = self._json("POST", "/retrieve", _ask_body(question, k, corpora, image, stream=False))
        return [hit_from_wire(h) for h in data["hits"]], trace_from_wire(data.get("trace"))

    def ask_stream(self, question: str, k: int | None = None, corpora: Sequence[str] | None = None, image: str | os.PathLike[str] | None = None) -> Iterator[str | Answer]:
        """The answer's text pieces as the server streams them, then the :class:`Answer`
        (as :meth:`ragmm.pipeline.Pipeline.ask_stream` yields them).

        Raises:
            ServerError: the server refused the question or failed while answering.
        """
        response = self._request("POST", "/ask", _ask_body(question, k, corpora, image, stream=True))
        try:
            for line in response:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "text":
                    yield event["text"]
                elif event["type"] == "answer":
                    yield answer_from_wire(event["answer"])
                elif event["type"] == "error":
                    raise ServerError(f"{self.url}/ask: {event['message']}")
        finally:
            response.close()

    def ask(self, question: str, k: int | None = None, corpora: Sequence[str] | None = None, image: str | os.PathLike[str] | None = None) -> Answer:
        """The server's :class:`Answer` to ``question``."""
        return answer_from_wire(self._json("POST", "/ask", _ask_body(question, k, corpora, image, stream=False)))

    def index(self, paths: Sequence[str | os.PathLike[str]], corpus_root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Index files on the server's machine (needs the server's token)."""
        return self._json("POST", "/index", {"paths": [str(p) for p in paths], "corpus_root": str(corpus_root) if corpus_root else None})


def _ask_body(question: str, k: int | None, corpora: Sequence[str] | None, image: str | os.PathLike[str] | None, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"question": question, "k": k, "corpora": list(corpora) if corpora else None, "stream": stream}
    if image is not None:
        path = Path(image)
        body["image"] = f"data:image/{path.suffix.lstrip('.').lower() or 'png'};base64," + base64.b64encode(path.read_bytes()).decode()
    return body


def _error_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return " ".join(raw.decode(errors="replace").split())[:200] or "no message"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message"))
    return str(data)[:200]


# find_server's answers for the command line, by (config, store, generator, cwd, $RAGMM_SERVER):
# the thin path in ragmm.cli.fast probes first and the typer command must not probe again.
_answers: dict[tuple[str | None, ...], RagmmClient | None] = {}


def find_server(config: str | os.PathLike[str] | None = None, store: str | os.PathLike[str] | None = None, generator: str | None = None, remember: bool = False) -> RagmmClient | None:
    """The server ``ragmm ask`` should use, or ``None`` to answer in process.

    A server is used when ``$RAGMM_SERVER`` or ``[serve] url`` names one and it answers, or
    when one answers on the default port and serves the same store as the local config (a
    server of another project on this machine must not answer this one's questions). With
    ``generator``, the server must run that generator. ``$RAGMM_SERVER=off`` never uses one.

    Reads the config file as plain TOML (validating it would import the whole config model).
    With ``remember``, an earlier answer to the same question in this process is reused.
    """
    key = (str(config) if config is not None else None, str(store) if store is not None else None, generator, os.getcwd(), os.environ.get(SERVER_ENV))
    if remember and key in _answers:
        return _answers[key]
    found = _find_server(config, store, generator)
    if remember:
        _answers[key] = found
    return found


def _find_server(config: str | os.PathLike[str] | None, store: str | os.PathLike[str] | None, generator: str | None) -> RagmmClient | None:
    env = os.environ.get(SERVER_ENV, "").strip()
    if env.lower() in ("off", "0", "no", "none"):
        return None
    data = _raw_config(config)
    serve = data.get("serve") or {}
    configured = env or serve.get("url")
    url = configured or f"http://127.0.0.1:{int(serve.get('port', DEFAULT_PORT))}"
    try:
        client = RagmmClient(url)
        health = client.health()
    except (ServerError, ValueError):
        if configured:
            import sys

            print(f"ragmm: the server at {url} does not answer; answering in process", file=sys.stderr)
        return None
    if health.get("service") != "ragmm":
        return None
    if generator is not None and health.get("generator") != generator:
        return None
    if not configured and health.get("store") != _local_store(data, store):
        return None
    return client


def _raw_config(config: str | os.PathLike[str] | None) -> dict[str, Any]:
    path = Path(config) if config is not None else Path("ragmm.toml")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}  # no file, or a broken one: the in-process path reports it properly


def _local_store(data: dict[str, Any], store: str | os.PathLike[str] | None) -> str:
    """The store the local config names, as the server's ``/health`` names its own."""
    if store is not None:
        return os.path.realpath(store)
    section = data.get("store") or {}
    if section.get("type", "edge") == "edge":
        return os.path.realpath(section.get("path", ".ragmm"))
    return str(section.get("url") or section.get("type"))
