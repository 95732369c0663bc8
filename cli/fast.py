"""The ``ragmm`` entry point, with a thin path for ``ragmm ask`` when a warm server answers.

Typer builds its parameter types with pydantic on every call, and that alone costs more than
a warm server takes to answer. So ``main`` first parses an ``ask`` command line with the
standard library's argparse; when a running ``ragmm serve`` of this store answers
(:func:`ragmm.serve.client.find_server`), the server answers and the output is printed by
the same code as the typer command's (:mod:`ragmm.cli.render`). Anything else (another
command, ``--help``, an option this parser does not know, no server) goes to typer as before.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ragmm`` command."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["ask"] and ask_through_server(args[1:]):
        return
    from ragmm.cli.app import app

    app(args)


def _parser() -> argparse.ArgumentParser:
    # The same options as ragmm.cli.app.ask; --help and mistakes are left to typer.
    p = argparse.ArgumentParser(prog="ragmm ask", add_help=False, allow_abbrev=False, exit_on_error=False)
    p.add_argument("question", nargs="?")
    p.add_argument("-k", "--k", type=int)
    p.add_argument("--json", dest="as_json", action="store_true")
    p.add_argument("--corpus", action="append")
    p.add_argument("--image", type=Path)
    p.add_argument("--open", dest="open_images", action="store_true")
    p.add_argument("--generator")
    p.add_argument("--explain", action="store_true")
    p.add_argument("-c", "--config", type=Path)
    p.add_argument("--store", type=Path)
    return p


def ask_through_server(argv: list[str]) -> bool:
    """Answer ``ragmm ask ARGV`` through a warm server; ``False`` when typer should take it."""
    try:
        ns, rest = _parser().parse_known_args(argv)
    except (argparse.ArgumentError, ValueError):
        return False
    if rest or (ns.question is None and ns.image is None) or (ns.image is not None and not ns.image.is_file()):
        return False  # typer reports these
    from ragmm.serve.client import ServerError, find_server

    server = find_server(ns.config, ns.store, ns.generator, remember=True)
    if server is None:
        return False
    from ragmm.cli.render import IMAGE_QUESTION, answer_and_print

    question = ns.question or IMAGE_QUESTION
    try:
        answer_and_print(server, question, k=ns.k, corpora=ns.corpus, image=ns.image, as_json=ns.as_json, explain=ns.explain, open_images=ns.open_images)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    return True


if __name__ == "__main__":
    main()
