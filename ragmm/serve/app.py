"""The ``ragmm serve`` app: ragmm's API, an OpenAI-compatible chat-completions API and the web
page, over one warm :class:`~ragmm.pipeline.Pipeline`.

Retrieval runs on the server's thread pool, concurrently. Answers (and indexing) run one at a
time on a single worker thread: a generator holds one model and is not safe to call from two
threads at once, and on a CPU a second answer at the same time only slows both down.

Example:
    >>> from ragmm.pipeline import Pipeline                         # doctest: +SKIP
    >>> app = create_app(Pipeline.from_config("ragmm.toml"))       # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, port=8337)                 # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ragmm.errors import RagmmError
from ragmm.ingest.ledger import LEDGER
from ragmm.serve.guards import BodyLimit, MediaFiles, RateLimiter, is_loopback, media_path, token_matches
from ragmm.serve.openai_api import add_openai_routes
from ragmm.serve.settings import ServeSettings
from ragmm.serve.wire import answer_to_wire, hit_to_wire
from ragmm.types import Answer, Hit, Query

log = logging.getLogger("ragmm.serve")

STATIC = Path(__file__).parent / "static"
# Paths that neither need a token nor count against the rate limit: the page, its files, the
# liveness probe. Media need the token on a public bind (a cookie, as <img> sends no header).
_OPEN = ("/", "/health", "/favicon.ico")


class AskRequest(BaseModel):
    """``POST /ask`` and ``POST /retrieve``."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, description="the question")
    k: int | None = Field(None, gt=0, le=100, description="evidence items (default: [retrieve] k)")
    corpora: list[str] | None = Field(None, description="search only these corpora")
    image: str | None = Field(None, description="a query image, base64 or a data: URL")
    stream: bool = Field(True, description="/ask: NDJSON lines as the answer is written; false: one JSON answer")


class IndexRequest(BaseModel):
    """``POST /index``: files and folders on the server's machine."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(min_length=1)
    corpus_root: str | None = None


class Worker:
    """One thread that runs answers and indexing one at a time, handing pieces to the event loop."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragmm-answer")

    async def call(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def stream(self, make: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
        """The items of ``make()``, iterated on the worker thread. Leaving early (a client that
        went away) closes the iterator after its current piece, which stops a model's generation."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the loop is gone (server shutting down)
                stop.set()

        def run() -> None:
            iterator = None
            try:
                iterator = make()
                for piece in iterator:
                    if stop.is_set():
                        break
                    put("piece", piece)
            except Exception as exc:  # noqa: BLE001 - handed to the request's coroutine
                put("error", exc)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
                put("end", None)

        self._pool.submit(run)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()


def create_app(pipeline: Any, settings: ServeSettings | None = None, token: str | None = None, host: str = "127.0.0.1") -> FastAPI:
    """The app serving ``pipeline``.

    Args:
        pipeline: a :class:`~ragmm.pipeline.Pipeline` (warm it first with :func:`warm_up`).
        settings: limits (default: ``pipeline.config.serve``).
        token: the secret ``/index`` needs, and every API call on a bind that is not loopback.
        host: the address the server binds; on loopback, only requests naming a loopback
            host are served (a web page elsewhere cannot reach the API by DNS rebinding).

    Raises:
        RagmmError: ``host`` is not loopback and there is no token.
    """
    settings = settings or pipeline.config.serve
    public = not is_loopback(host)
    if public and not token:
        raise RagmmError(f"binding {host} exposes the server beyond this machine: give --token or set $RAGMM_TOKEN")
    limiter = RateLimiter(settings.rate, settings.burst)
    worker = Worker()
    media = MediaFiles(lambda: _scan_media(pipeline))

    app = FastAPI(title="ragmm", version=_version(), docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pipeline, app.state.worker, app.state.media = pipeline, worker, media

    def media_url(hit: Hit) -> str | None:
        return "/media/" + quote(hit.item.source, safe="/") if media_path(hit) else None

    def wire_hits(hits: list[Hit]) -> list[dict[str, Any]]:
        media.add(hits)
        return [hit_to_wire(h, media_url) for h in hits]

    def wire_answer(answer: Answer) -> dict[str, Any]:
        media.add(answer.evidence)
        return answer_to_wire(answer, media_url)

    def authorize(request: Request, needed: bool) -> None:
        if not needed:
            return
        if token is None:
            raise HTTPException(403, "indexing over HTTP is off: start `ragmm serve --token TOKEN` (or set $RAGMM_TOKEN) and send it as 'Authorization: Bearer TOKEN'")
        given = request.headers.get("authorization", "")
        bearer = given[7:] if given.lower().startswith("bearer ") else None
        # <img> and <video> cannot send a header: the page sets a SameSite cookie, taken for reads only.
        cookie = request.cookies.get("ragmm_token") if request.method == "GET" else None
        if not (token_matches(bearer, token) or token_matches(cookie, token)):
            raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' (the server's --token or $RAGMM_TOKEN)")

    def refuse(request: Request) -> JSONResponse | None:
        """The error for a request over the rate limit or without a needed token, else None."""
        path = request.url.path
        if path in _OPEN or path.startswith("/static/"):
            return None
        try:
            if not path.startswith("/media/"):
                wait = limiter.allow(request.client.host if request.client else "?")
                if wait:
                    return _error(429, f"too many requests: over {settings.rate:g}/s (burst {settings.burst}); retry in {wait:.1f}s", headers={"Retry-After": str(max(1, round(wait)))})
            authorize(request, public)
        except HTTPException as exc:
            return _error(exc.status_code, str(exc.detail))
        return None

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc))

    @app.exception_handler(RagmmError)
    async def user_error(request: Request, exc: RagmmError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error ({exc.__class__.__name__}) answering {request.url.path}; the server's log has the details")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "service": "ragmm",
            "version": _version(),
            "store": store_id(pipeline.config),
            "generator": pipeline.config.generator.type,
            "token_required": "all" if public else ("index" if token else "index (disabled: no token)"),
        }

    @app.get("/corpora")
    def corpora() -> list[dict[str, Any]]:
        return [asdict(c) for c in pipeline.corpora()]

    @app.post("/retrieve")
    def retrieve(body: AskRequest) -> dict[str, Any]:
        _check_question(body.question, settings)
        with _query_image(body.image) as image:
            t0 = time.perf_counter()
            hits, trace = pipeline.search(Query(body.question, k=body.k, corpora=tuple(body.corpora) if body.corpora else None, image=image))
        return {"hits": wire_hits(hits), "trace": trace.to_dict(), "timings": {"retrieve": time.perf_counter() - t0}}

    @app.post("/ask", response_model=None)
    async def ask(body: AskRequest) -> Any:
        _check_question(body.question, settings)
        pieces = worker.stream(_asking(pipeline, body.question, body.k, body.corpora, body.image))
        if not body.stream:
            answer = [p async for p in pieces if isinstance(p, Answer)][-1]
            return wire_answer(answer)
        first = await anext(pieces)  # errors before the first piece become a JSON error with its status

        async def lines() -> AsyncIterator[bytes]:
            piece = first
            while True:
                if isinstance(piece, Answer):
                    yield _line({"type": "answer", "answer": wire_answer(piece)})
                else:
                    yield _line({"type": "text", "text": piece})
                try:
                    piece = await anext(pieces)
                except StopAsyncIteration:
                    return
                except Exception as exc:  # noqa: BLE001 - the status line is sent: say it in the stream
                    yield _line({"type": "error", "message": _stream_error(exc)})
                    return

        return StreamingResponse(lines(), media_type="application/x-ndjson", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/index")
    async def index(body: IndexRequest, request: Request) -> dict[str, Any]:
        authorize(request, True)
        report = await worker.call(lambda: pipeline.index(body.paths, corpus_root=body.corpus_root, progress=False))
        media.invalidate()
        return report.to_dict()

    @app.get("/media/{source:path}", include_in_schema=False)
    def media_file(source: str) -> FileResponse:
        path = media.get(source)
        if path is None:
            raise HTTPException(404, f"{source}: not an indexed image or video; media are served only from indexed sources")
        return FileResponse(path)

    add_openai_routes(
        app,
        lambda question, k, image: worker.stream(_asking(pipeline, question, k, None, image)),
        wire_answer,
        lambda question: _check_question(question, settings),
        _stream_error,
    )

    if not public:
        # Loopback only: a browser page on another site that resolves its own name to
        # 127.0.0.1 (DNS rebinding) sends that name as Host, and is refused.
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "::1", "[::1]"])
    app.add_middleware(_Guard, refuse=refuse)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_kb * 1024)
    return app


class _Guard:
    """ASGI middleware answering with ``refuse(request)`` when it returns a response. Plain
    ASGI rather than ``@app.middleware``: that wraps every request in a task group and a
    streamed body, about a millisecond each on a busy CPU."""

    def __init__(self, app: Any, refuse: Callable[[Request], JSONResponse | None]) -> None:
        self.app, self.refuse = app, refuse

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            response = self.refuse(Request(scope))
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def warm_up(pipeline: Any) -> float:
    """Load the store, encoders, generator (and run one search) before the first request.

    Returns:
        seconds it took.
    """
    t0 = time.perf_counter()
    pipeline.generator  # noqa: B018 - builds and caches it
    if pipeline.available_corpora():
        pipeline.search(Query("warm up", k=1))
    return time.perf_counter() - t0


def store_id(config: Any) -> str:
    """What identifies a store across processes: an embedded store's real path, a server's URL."""
    options = config.store.options()
    if config.store.type == "edge":
        return os.path.realpath(options.get("path", ".ragmm"))
    return str(options.get("url") or config.store.type)


def _asking(pipeline: Any, question: str, k: int | None, corpora: list[str] | None, image: str | None) -> Callable[[], Iterator[str | Answer]]:
    def run() -> Iterator[str | Answer]:
        with _query_image(image) as path:
            yield from pipeline.ask_stream(question, k=k, corpora=corpora, image=path)

    return run


class _query_image:  # noqa: N801 - used as a context manager
    """A query image sent in the body, written to a temporary file for the pipeline."""

    def __init__(self, data: str | None) -> None:
        self.data, self.path = data, None

    def __enter__(self) -> str | None:
        if self.data is None:
            return None
        text, suffix = self.data, ".png"
        if text.startswith("data:"):
            header, _, text = text.partition(",")
            suffix = "." + header[5:].split(";")[0].partition("/")[2].replace("jpeg", "jpg") if "/" in header else suffix
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RagmmError("image: not base64 data; send the image file's bytes base64-encoded, or a data: URL") from None
        fd, self.path = tempfile.mkstemp(prefix="ragmm-query-", suffix=suffix if len(suffix) <= 6 else ".img")
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            os.unlink(self.path)


def _check_question(question: str, settings: ServeSettings) -> None:
    if not question.strip():
        raise HTTPException(422, "question: empty; send the question as text")
    if len(question) > settings.max_question_chars:
        raise HTTPException(422, f"question: {len(question)} characters, over the server's limit of {settings.max_question_chars}; raise [serve] max_question_chars")


def _line(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False) + "\n").encode()


def _stream_error(exc: Exception) -> str:
    if isinstance(exc, RagmmError):
        return str(exc)
    log.error("answer failed while streaming", exc_info=exc)
    return f"internal error ({exc.__class__.__name__}) while answering; the server's log has the details"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every error, in OpenAI's shape (so OpenAI clients show the message)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(problems) + " (see the API in the README, section Serving)"


def _scan_media(pipeline: Any) -> Iterator[tuple[str, str]]:
    """``(source, file)`` of every image and video item in the store."""
    store = pipeline.store
    for name in store.collections():
        spec = store.get_spec(name) if name != LEDGER else None
        if spec is None or spec.modality == "text":
            continue
        seen: set[str] = set()
        for point in store.scroll(name):
            source, path = point.payload.get("source"), (point.payload.get("metadata") or {}).get("path")
            if source and path and source not in seen:
                seen.add(source)
                yield source, str(path)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ragmm")
    except PackageNotFoundError:
        return "0"


class BackgroundServer:
    """``app`` served by uvicorn on a thread of this process (tests, benchmarks, notebooks).

    Example:
        >>> with BackgroundServer(create_app(pipe)) as server:     # doctest: +SKIP
        ...     RagmmClient(server.url).ask("What warns ships?")

    Args:
        app: the ASGI app.
        host: address to bind.
        port: 0 picks a free port.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, name="ragmm-serve", daemon=True)
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RagmmError(f"the server did not start on {self.host}:{self.port}; is the port taken?")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
