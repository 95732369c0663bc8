"""What keeps a server safe to leave running: tokens, the rate limit, and the list of media
files it may serve. Standard-library code, so it tests without a server.
"""

from __future__ import annotations

import hmac
import json
import ipaddress
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ragmm.types import Hit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (a timing difference would let a client guess the token)."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class RateLimiter:
    """A token bucket per client address: ``burst`` requests at once, then ``rate`` per second.

    Args:
        rate: requests per second refilled.
        burst: bucket size.
        clock: seconds (for tests).
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> float:
        """0 when ``client`` may make a request now (and it is counted), else the seconds to wait."""
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                if len(self._buckets) > 10_000:  # forget clients idle long enough to be full again
                    full = now - self.burst / self.rate
                    self._buckets = {c: b for c, b in self._buckets.items() if b[1] > full}
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with a JSON 413, whether the
    client declares the length or streams the body in chunks (then counted as it arrives)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen, refused = 0, False

        async def counted() -> dict[str, Any]:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer now; the app sees a client that went away, and what it would
                    # answer to that is dropped.
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: dict[str, Any]) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, unless_refused)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"error": {"message": body_limit_message(self.max_bytes), "type": "invalid_request_error", "code": 413}}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def body_limit_message(max_bytes: int) -> str:
    return f"request body over the server's limit of {max_bytes} bytes; raise [serve] max_body_kb"


def media_path(hit: Hit) -> str | None:
    """The file an evidence item shows: an image, or the video a clip is cut from."""
    item = hit.item
    if item.modality == "text":
        return None
    path = item.metadata.get("path")
    return str(path) if path else None


class MediaFiles:
    """The media files a server may send: only those of indexed image and video items, looked
    up by the item's source as stored. A request names a source, never a file path, so ``..``
    (plain or encoded) can only miss.

    Args:
        scan: yields ``(source, path)`` for every media item of the store; run when a source
            is asked for that evidence has not shown yet, at most once per ``rescan_s``.
    """

    def __init__(self, scan: Callable[[], Iterable[tuple[str, str]]], rescan_s: float = 10.0) -> None:
        self._scan, self.rescan_s = scan, rescan_s
        self._paths: dict[str, str] = {}
        self._scanned_at: float | None = None
        self._lock = threading.Lock()

    def add(self, hits: Iterable[Hit]) -> None:
        """Allow the media of ``hits`` (evidence just sent to a client)."""
        for hit in hits:
            path = media_path(hit)
            if path is not None:
                with self._lock:
                    self._paths[hit.item.source] = os.path.realpath(path)

    def invalidate(self) -> None:
        """Forget the store's list (after indexing), so the next miss scans again."""
        with self._lock:
            self._scanned_at = None
            self._paths.clear()

    def get(self, source: str) -> str | None:
        """The real path of ``source``'s media file, or ``None`` when it is not indexed media
        (or the file is gone)."""
        path = self._paths.get(source)
        if path is None:
            with self._lock:
                now = time.monotonic()
                if self._scanned_at is None or now - self._scanned_at > self.rescan_s:
                    self._scanned_at = now
                    for src, p in self._scan():
                        self._paths[src] = os.path.realpath(p)
                path = self._paths.get(source)
        return path if path is not None and os.path.isfile(path) else None
