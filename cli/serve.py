"""``ragmm serve``: the warm server (see :mod:`ragmm.serve.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ragmm.cli.common import ConfigOpt, quiet_libraries, user_errors


@user_errors
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default: the config's serve.host, 127.0.0.1); any other than loopback needs --token")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: the config's serve.port, 8337)")] = None,
    token: Annotated[str | None, typer.Option(envvar="RAGMM_TOKEN", show_envvar=True, help="secret for /index, and for every API call on a public bind (or $RAGMM_TOKEN)")] = None,
    generator: Annotated[str | None, typer.Option("--generator", help="answer with this generator instead of the config's")] = None,
    config: ConfigOpt = None,
    store: Annotated[Path | None, typer.Option("--store", help="embedded store folder (overrides the config's store.path)")] = None,
) -> None:
    """Serve the corpora warm: ragmm's API, an OpenAI-compatible /v1/chat/completions, and a web page at /.

    Models load once, before the first request. `ragmm ask` finds the server on this port when
    it serves the same store (or when the config's serve.url or $RAGMM_SERVER names it).
    """
    quiet_libraries()
    import uvicorn
    from rich.console import Console

    from ragmm.cli.app import _pipeline
    from ragmm.serve.app import create_app, warm_up

    console = Console(stderr=True)
    pipe = _pipeline(config, store, generator)
    settings = pipe.config.serve
    host = host or settings.host
    port = port or settings.port
    app = create_app(pipe, settings, token=token, host=host)
    console.print(f"loading models ({pipe.config.generator.type} generator)...", highlight=False)
    seconds = warm_up(pipe)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    console.print(f"ready in {seconds:.1f}s: {where}  (web page at /, OpenAI-compatible API at {where}/v1); Ctrl-C stops", highlight=False)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        pipe.close()
