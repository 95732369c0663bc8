"""``ragmm serve``: a warm server (FastAPI on uvicorn) with ragmm's own API, an
OpenAI-compatible chat-completions API and a web page, and the thin client ``ragmm ask`` uses.

Importing this package costs nothing: the client path of ``ragmm ask`` imports it and must not
pay for pydantic, FastAPI or torch. The app lives in :mod:`ragmm.serve.app`, the client in
:mod:`ragmm.serve.client`, the ``[serve]`` settings in :mod:`ragmm.serve.settings`.
"""

# Not 8000: that is where vLLM and most OpenAI-compatible servers listen by default.
DEFAULT_PORT = 8337
TOKEN_ENV = "RAGMM_TOKEN"
SERVER_ENV = "RAGMM_SERVER"
