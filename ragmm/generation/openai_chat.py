"""Answers from any OpenAI-compatible chat-completions endpoint: vLLM, Ollama, llama.cpp's
server, LM Studio, hosted APIs.

The evidence goes as the same numbered messages the local generators read (see
:mod:`ragmm.generation.messages`), image evidence and clip frames as JPEG ``data:`` URLs when
``images`` is on; the answer streams back as server-sent events. Connection failures, timeouts
and 429/5xx answers are retried with backoff before any text has arrived; then the error says,
in one line, which URL failed and what to check.

Example:
    >>> gen = OpenAIChatGenerator(OpenAIChatGenerator.Config(base_url="http://127.0.0.1:11434/v1", model="llama3.2"))  # doctest: +SKIP
    >>> print(gen.generate(Query("What warns ships?"), hits).text)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import RagmmError
from ragmm.generation.base import collect, finish_answer
from ragmm.generation.messages import DEFAULT_IMAGE_SIDE, Message, evidence_messages, limit_media, to_openai
from ragmm.generation.prompt import DEFAULT_EVIDENCE_CHARS, NO_EVIDENCE_ANSWER
from ragmm.generation.vlm import ANSWER_INSTRUCTION, DEFAULT_SYSTEM_PROMPT
from ragmm.types import Answer, Hit, Query

# Worth another try: the server is starting, overloaded or briefly away.
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class EndpointError(RagmmError):
    """The chat-completions endpoint is down, timed out or refused the request."""


class OpenAIChatGenerator:
    """An OpenAI-compatible chat-completions endpoint as a ragmm generator.

    Raises:
        EndpointError: the endpoint cannot be reached, times out or refuses (after retries).
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        base_url: str = Field("http://127.0.0.1:8000/v1", description="the API root; requests go to {base_url}/chat/completions")
        model: str = Field("default", description="model name the server knows (e.g. the name `ollama list` shows)")
        api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key (sent as a Bearer token when set)")
        max_tokens: int = Field(300, gt=0, description="most tokens per answer")
        temperature: float = Field(0.0, ge=0, description="0 = the server's most likely answer")
        images: bool = Field(True, description="send image evidence and clip frames as data URLs (the model must accept images)")
        max_images: int = Field(4, ge=0, description="most images per request; best-ranked evidence first")
        max_clip_frames: int = Field(4, ge=1, description="most frames of one video clip")
        image_side: int = Field(DEFAULT_IMAGE_SIDE, ge=32, description="images are shrunk to this many pixels on their longer side")
        max_evidence_chars: int = Field(DEFAULT_EVIDENCE_CHARS, ge=40, description="characters of each evidence text sent")
        connect_timeout: float = Field(5.0, gt=0, description="seconds to wait for a connection")
        timeout: float = Field(120.0, gt=0, description="seconds to wait for each piece of the answer (a large model's first token can be slow)")
        retries: int = Field(2, ge=0, description="extra attempts after a connection failure, timeout or 429/5xx, before any text arrived")
        backoff: float = Field(0.5, ge=0, description="seconds before the first retry; doubled for each next one")
        system_prompt: str = DEFAULT_SYSTEM_PROMPT
        min_support: float = Field(0.25, ge=0, le=1, description="least token F1 for an uncited answer sentence to be given a citation")

    name = "openai"

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()
        self.url = self.config.base_url.rstrip("/") + "/chat/completions"

    @classmethod
    def from_config(cls, config: Config, **_: Any) -> OpenAIChatGenerator:
        return cls(config)

    def generate(self, query: Query, evidence: Sequence[Hit]) -> Answer:
        """Answer ``query`` from ``evidence``; citations point into ``evidence``."""
        return collect(self.stream(query, evidence))

    def messages(self, query: Query, evidence: Sequence[Hit]) -> list[Message]:
        """The system and user messages sent (media limited to ``max_images``)."""
        c = self.config
        system, user = evidence_messages(
            query, evidence, system_prompt=c.system_prompt, instruction=ANSWER_INSTRUCTION, max_chars=c.max_evidence_chars, media=c.images, max_clip_frames=c.max_clip_frames
        )
        return [system, limit_media(user, c.max_images)]

    def request_body(self, query: Query, evidence: Sequence[Hit]) -> dict[str, Any]:
        """The JSON body of the chat-completions request."""
        c = self.config
        return {
            "model": c.model,
            "messages": to_openai(self.messages(query, evidence), c.image_side),
            "max_tokens": c.max_tokens,
            "temperature": c.temperature,
            "stream": True,
        }

    def stream(self, query: Query, evidence: Sequence[Hit]) -> Iterator[str | Answer]:
        """Yield the answer's text as the endpoint streams it, then the finished :class:`Answer`."""
        evidence = list(evidence)
        if not evidence:
            yield NO_EVIDENCE_ANSWER
            yield Answer(text=NO_EVIDENCE_ANSWER, generator=self.name)
            return
        start = time.perf_counter()
        body = self.request_body(query, evidence)
        pieces = []
        for piece in self._post(body):
            pieces.append(piece)
            yield piece
        timings = {"generate": time.perf_counter() - start}
        yield finish_answer("".join(pieces), evidence, len(evidence), min_support=self.config.min_support, name=self.name, timings=timings)

    def _post(self, body: dict[str, Any]) -> Iterator[str]:
        import httpx

        c = self.config
        headers = {"Accept": "text/event-stream"}
        key = os.environ.get(c.api_key_env) if c.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(c.timeout, connect=c.connect_timeout)
        with httpx.Client(timeout=timeout) as client:
            for attempt in range(c.retries + 1):
                last = attempt == c.retries
                started = False
                try:
                    with client.stream("POST", self.url, json=body, headers=headers) as response:
                        if response.status_code in _RETRY_STATUS and not last:
                            time.sleep(c.backoff * 2**attempt)
                            continue
                        if response.status_code >= 400:
                            response.read()
                            raise EndpointError(f"{self.url} refused the request: HTTP {response.status_code} {_server_message(response)}; check [generator] model, the API key in ${c.api_key_env}, and the server's log")
                        for piece in _read_events(response):
                            started = True
                            yield piece
                        return
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    if last:
                        raise EndpointError(f"{self.url}: cannot connect ({exc.__class__.__name__}); is the server running? check [generator] base_url") from None
                except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                    if started or last:
                        what = "timed out" if isinstance(exc, httpx.ReadTimeout) else f"broke off ({exc.__class__.__name__})"
                        raise EndpointError(f"{self.url} {what} {'while answering' if started else 'before answering'}; raise [generator] timeout or check the server's log") from None
                time.sleep(c.backoff * 2**attempt)


def _read_events(response: Any) -> Iterator[str]:
    """Text pieces of a streamed (server-sent events) or plain JSON chat completion."""
    if "text/event-stream" not in response.headers.get("content-type", ""):
        response.read()
        message = _json(response.text).get("choices", [{}])[0].get("message", {})
        if message.get("content"):
            yield message["content"]
        return
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # comments, event names, keep-alives
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = _json(data)
        if "error" in event:
            raise EndpointError(f"{response.url} failed while answering: {_error_text(event)}")
        for choice in event.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                yield content


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_text(body: dict[str, Any]) -> str:
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or body.get("detail") or body)


def _server_message(response: Any) -> str:
    body = _json(response.text)
    text = _error_text(body) if body else response.text
    text = " ".join(text.split())
    return f"({text[:200]})" if text else ""
