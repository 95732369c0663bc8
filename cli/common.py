"""Pieces shared by the CLI's commands."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file (default: ./ragmm.toml if present)")]


def user_errors(fn: Callable[..., None]) -> Callable[..., None]:
    """Print ragmm's own errors as one line naming what to fix, exit code 1 (no traceback)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        from ragmm.errors import RagmmError

        try:
            fn(*args, **kwargs)
        except RagmmError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    return run


def quiet_libraries() -> None:
    """No progress bars or advice from Hugging Face libraries: the command prints its own.

    Set through the environment, read when those libraries are first imported: importing
    transformers here just to switch its bars off would cost seconds on every ``ragmm ask``.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars follow huggingface_hub's switch
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
