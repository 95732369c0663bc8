"""``ragmm serve``: a warm server (FastAPI on uvicorn) with ragmm's own API, an
OpenAI-compatible chat-completions API and a web page, and the thin client ``ragmm ask`` uses.

Importing this package is light (pydantic only): the config and the client import it, and the
client path of ``ragmm ask`` must not import torch or FastAPI. The app lives in
:mod:`ragmm.serve.app`, the client in :mod:`ragmm.serve.client`.
"""

from ragmm.serve.settings import DEFAULT_PORT, ServeSettings

__all__ = ["DEFAULT_PORT", "ServeSettings"]
