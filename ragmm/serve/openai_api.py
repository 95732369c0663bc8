"""The OpenAI-compatible API: ``POST /v1/chat/completions`` (streamed as server-sent events,
or whole) and ``GET /v1/models``, answering with RAG so any OpenAI client or chat UI can use
ragmm. The answer ends with its sources; ``ragmm`` in the response carries the citations.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from ragmm.types import Answer

MODEL_ID = "ragmm"


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's request; sampling fields are accepted and
    ignored (the configured generator decides), ``k`` is ragmm's own."""

    model_config = ConfigDict(extra="allow")

    model: str = MODEL_ID
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    k: int | None = Field(None, gt=0, le=100)


def add_openai_routes(
    app: FastAPI,
    answer_stream: Callable[[str, int | None, str | None], AsyncIterator[str | Answer]],
    wire_answer: Callable[[Answer], dict[str, Any]],
    check_question: Callable[[str], None],
    stream_error: Callable[[Exception], str],
) -> None:
    """Add the two routes to ``app``.

    Args:
        app: the server's app.
        answer_stream: ``(question, k, image data URL)`` -> the pipeline's pieces, then its Answer.
        wire_answer: an Answer as the JSON of ragmm's own API.
        check_question: raises an HTTP error for a question the server refuses.
        stream_error: the message for an error raised after the response started.
    """

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "ragmm"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest) -> Any:
        question, image = last_user_message(body.messages)
        check_question(question)
        pieces = answer_stream(question, body.k, image)
        created, cid = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if not body.stream:
            answer = [p async for p in pieces if isinstance(p, Answer)][-1]
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text + sources_footer(answer)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "ragmm": wire_answer(answer),
            }
        first = await anext(pieces)

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            event = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()

        async def events() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            piece = first
            while True:
                if isinstance(piece, Answer):
                    footer = sources_footer(piece)
                    if footer:
                        yield chunk({"content": footer})
                    yield chunk({}, "stop", ragmm=wire_answer(piece))
                else:
                    yield chunk({"content": piece})
                try:
                    piece = await anext(pieces)
                except StopAsyncIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - OpenAI's in-stream error shape
                    yield f"data: {json.dumps({'error': {'message': stream_error(exc), 'type': 'server_error'}})}\n\n".encode()
                    break
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# A RAG prompt sent by another framework (ragmm's own `openai` generator, LlamaIndex, LangChain)
# puts its context first and the question on a line of its own: that line is what to retrieve
# with, as the whole prompt shares too few words with any one passage.
_QUESTION_LINE = re.compile(r"^\s*(?:question|query)\s*(?:\([^)]*\))?\s*:\s*(\S.*)$", re.IGNORECASE | re.MULTILINE)


def question_of(text: str) -> str:
    """The question in a user message: its last ``Question: ...`` (or ``Query: ...``) line
    when it has one, else the whole message."""
    found = _QUESTION_LINE.findall(text)
    return found[-1].strip() if found else text


def last_user_message(messages: list[dict[str, Any]]) -> tuple[str, str | None]:
    """The question (see :func:`question_of`) and first image, as a data URL, of the last user
    message."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return question_of(content), None
        texts, image = [], None
        for part in content or []:
            if part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif part.get("type") == "image_url" and image is None:
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if isinstance(url, str) and url.startswith("data:"):
                    image = url
        return question_of("".join(texts)), image
    raise HTTPException(422, "messages: no message with role 'user'; the last user message is the question")


def sources_footer(answer: Answer) -> str:
    """The cited evidence as lines a chat UI shows under the answer."""
    if not answer.citations:
        return ""
    lines = [f"[{c.n}] {c.hit.item.source} ({c.hit.item.locator})" for c in answer.citations]
    return "\n\nSources:\n" + "\n".join(lines)
