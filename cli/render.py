"""How ``ragmm ask`` prints an answer: the streamed text, the trace with ``--explain``, the
evidence table, or one JSON object with ``--json``.

Shared by the typer command and the thin path to a warm server (:mod:`ragmm.cli.fast`), so
the output is the same whichever answers. Imports neither typer nor a model library.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# What ``ragmm ask --image PATH`` asks when no question is given.
IMAGE_QUESTION = "What is in this image, and where else does it appear?"


def answer_and_print(
    pipe: Any,
    question: str,
    *,
    k: int | None = None,
    corpora: list[str] | None = None,
    image: Path | None = None,
    as_json: bool = False,
    explain: bool = False,
    open_images: bool = False,
) -> None:
    """Ask ``pipe`` (a :class:`~ragmm.pipeline.Pipeline` or a server's client) and print the answer."""
    if as_json:
        answer = pipe.ask(question, k=k, corpora=corpora, image=image)
    else:
        answer = print_stream(pipe.ask_stream(question, k=k, corpora=corpora, image=image))
    if open_images:
        open_evidence(answer.evidence)
    if as_json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return
    print_evidence(answer, explain)


def print_evidence(answer: Any, explain: bool = False) -> None:
    """The trace (with ``explain``) and the table of evidence, cited items starred."""
    from rich.console import Console
    from rich.table import Table

    from ragmm.types import clock

    console = Console()
    if explain and answer.trace is not None:
        console.print("\nHow the evidence was found:", style="bold")
        for line in answer.trace.lines():
            console.print(line, markup=False, highlight=False)
    if not answer.evidence:
        return
    cited = {c.n for c in answer.citations}
    table = Table(title="Evidence", show_lines=False)
    for col in ("#", "corpus", "source", "locator", "score", "excerpt"):
        table.add_column(col, overflow="fold")
    for n, hit in enumerate(answer.evidence, start=1):
        mark = f"[{n}]" + (" *" if n in cited else "")
        item = hit.item
        where = "image" if item.modality == "image" else str(item.locator)
        matched = item.metadata.get("matched")
        if isinstance(matched, dict) and matched.get("modality"):
            # which of speech, on-screen text, frames, metadata matched, and when
            span = f" @ {clock(matched['t_start'])}-{clock(matched['t_end'])}" if matched.get("t_start") is not None and matched.get("t_end") is not None else ""
            where += f" ({matched['modality']}{span})"
        excerpt = " ".join(item.text.split())
        table.add_row(mark, item.corpus, item.source, where, f"{hit.score:.3f}", excerpt[:80] + ("..." if len(excerpt) > 80 else ""))
    console.print(table)
    console.print("* cited in the answer", style="dim")


def print_stream(stream: Any) -> Any:
    """Print an answer's pieces as the generator writes them; return the final ``Answer``.

    A language model's final text can differ from what it streamed (a repetition loop cut,
    citations of unseen evidence removed, supporting evidence cited): it is then printed too.
    """
    from ragmm.types import Answer

    answer, streamed = None, []
    for piece in stream:
        if isinstance(piece, Answer):
            answer = piece
        else:
            streamed.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    if answer is not None and answer.text.strip() != "".join(streamed).strip():
        print(f"With citations checked: {answer.text}")
    return answer


def open_evidence(hits: list[Any]) -> None:
    """Open image evidence with the desktop's viewer and video evidence in a player at the cited
    second (mpv or VLC; the desktop's default player opens it at the start); print the paths
    when there is neither."""
    import shutil
    import subprocess

    opener = shutil.which("open" if sys.platform == "darwin" else "xdg-open")
    players = [(shutil.which("mpv"), "--start={:.0f}"), (shutil.which("vlc"), "--start-time={:.0f}")]
    seen: set[tuple[str, float | None]] = set()
    for hit in hits:
        item = hit.item
        path = item.image_path or (item.metadata.get("path") if item.locator.t_start is not None else None)
        if not path:
            continue
        matched = item.metadata.get("matched") or {}
        start = matched.get("t_start", item.locator.t_start) if item.image_path is None else None
        if (path, start) in seen:
            continue
        seen.add((path, start))
        player = next(((exe, flag) for exe, flag in players if exe), None) if start is not None else None
        if player is not None:
            command = [player[0], player[1].format(start), path]
        elif opener is not None:
            command = [opener, path]
        else:
            from ragmm.types import clock

            print(f"{item.modality}: {path}" + (f" @ {clock(start)}" if start is not None else "") + "  (no viewer found: install xdg-utils, mpv or vlc)", file=sys.stderr)
            continue
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not seen:
        print("no image or video evidence to open", file=sys.stderr)
