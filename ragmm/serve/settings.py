"""``[serve]`` settings: where ``ragmm ask`` finds a server, and the server's limits."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ragmm.serve import DEFAULT_PORT


class ServeSettings(BaseModel):
    """The ``[serve]`` section.

    The token is never read from the config file (it would end up in version control): it is
    ``ragmm serve --token`` or the environment variable ``RAGMM_TOKEN``.
    """

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="a running server `ragmm ask` sends questions to ($RAGMM_SERVER overrides; 'off' never uses one)")
    host: str = Field("127.0.0.1", description="address `ragmm serve` binds; any other than loopback requires a token")
    port: int = Field(DEFAULT_PORT, gt=0, lt=65536, description="port `ragmm serve` listens on and `ragmm ask` probes")
    max_body_kb: int = Field(8192, gt=0, description="larger request bodies are refused (413); a query image travels in the body")
    rate: float = Field(20.0, gt=0, description="API requests per second per client address, sustained (429 above)")
    burst: int = Field(40, gt=0, description="API requests a client may make at once before the rate applies")
    max_question_chars: int = Field(4000, gt=0, description="longer questions are refused (422)")
