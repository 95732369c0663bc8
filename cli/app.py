"""``ragmm``: index files, ask questions, inspect and move corpora.

Every command reads ``ragmm.toml`` from the working directory (or ``--config FILE``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from ragmm.cli.common import ConfigOpt, quiet_libraries, user_errors
from ragmm.cli.evaluate import eval_app
from ragmm.cli.serve import serve
from ragmm.cli.train import train_app

app = typer.Typer(help="Multimodal RAG over your files, offline: index, then ask.", no_args_is_help=True, add_completion=False)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.command()(serve)

StoreOpt = Annotated[Path | None, typer.Option("--store", help="embedded store folder (overrides [store] path)")]


def _pipeline(config: Path | None, store: Path | None = None, generator: str | None = None) -> Any:
    from ragmm.pipeline import Pipeline

    overrides: dict[str, Any] = {}
    if store:
        overrides["store"] = {"type": "edge", "path": str(store)}
    if generator:
        overrides["generator"] = {"type": generator}
    return Pipeline.from_config(config, **overrides)


@app.command()
@user_errors
def index(
    paths: Annotated[list[Path], typer.Argument(help="files and folders to index (recursively)")],
    corpus_root: Annotated[Path | None, typer.Option(help="store source paths relative to this folder")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    ray: Annotated[bool, typer.Option("--ray", help="read in Ray tasks, encode in Ray actors ([ray] settings; needs ragmm[ray]); joins [ray] address or RAY_ADDRESS, else starts a local Ray")] = False,
    ray_address: Annotated[str | None, typer.Option(help="the Ray cluster for --ray ('auto', 'ray://head:10001'); implies --ray")] = None,
) -> None:
    """Index text documents (txt, md, rst, html, pdf) into the paragraph and document corpora."""
    quiet_libraries()
    from rich.console import Console

    console = Console(stderr=True)
    with _pipeline(config, store) as pipe:
        if ray or ray_address:
            from ragmm.ingest.distributed import index_with_ray

            report = index_with_ray(pipe, [str(p) for p in paths], corpus_root=corpus_root, progress=not quiet, address=ray_address)
        else:
            report = pipe.index([str(p) for p in paths], corpus_root=corpus_root, progress=not quiet)
    items = ", ".join(f"{n} {c}" for c, n in report.items.items())
    console.print(
        f"indexed {report.files_indexed} file(s) ({report.files_replaced} replaced a changed version), "
        f"{report.files_unchanged} unchanged, {len(report.skipped)} skipped; items: {items}; {report.seconds:.1f}s"
    )
    for s in report.skipped:
        console.print(f"  skipped {s.path}: {s.reason}", markup=False, highlight=False)


@app.command()
@user_errors
def ask(
    question: Annotated[str | None, typer.Argument(help="your question (with --image, default: what is in this image?)")] = None,
    k: Annotated[int | None, typer.Option("--k", "-k", help="evidence items to retrieve and cite")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object (answer, citations, timings; image evidence with its path)")] = False,
    corpus: Annotated[list[str] | None, typer.Option("--corpus", help="search only these corpora")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="ask about this image: retrieval is by the image (similar images, and passages about what it shows)")] = None,
    open_images: Annotated[bool, typer.Option("--open", help="open image evidence in the system's viewer, video evidence in a player at the cited second (prints the paths when there is none)")] = False,
    generator: Annotated[str | None, typer.Option("--generator", help="answer with this generator instead of [generator] (smollm2, extractive, ...)")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="show the route and its probabilities, each search with every candidate's scores, rewrites")] = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Answer a question from the indexed corpora, citing its evidence as [1], [2]..."""
    quiet_libraries()
    from ragmm.errors import ConfigError, InputError

    if image is not None and not image.is_file():
        raise InputError(str(image), "query image not found; give the path of an image file")
    if question is None:
        if image is None:
            raise ConfigError("give a question, or --image PATH to ask about an image")
        question = "What is in this image, and where else does it appear?"
    from contextlib import nullcontext

    from ragmm.serve.client import find_server

    # A running `ragmm serve` of this store answers warm; its client has ask/ask_stream too.
    server = find_server(config, store, generator)
    with nullcontext(server) if server is not None else _pipeline(config, store, generator) as pipe:
        if as_json:
            answer = pipe.ask(question, k=k, corpora=corpus, image=image)
        else:
            answer = _print_stream(pipe.ask_stream(question, k=k, corpora=corpus, image=image))
    if open_images:
        _open_evidence(answer.evidence)
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return
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


def _print_stream(stream: Any) -> Any:
    """Print an answer's pieces as the generator writes them; return the final ``Answer``.

    A language model's final text can differ from what it streamed (a repetition loop cut,
    citations of unseen evidence removed, supporting evidence cited): it is then printed too.
    """
    import sys

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
        typer.echo(f"With citations checked: {answer.text}")
    return answer


def _open_evidence(hits: list[Any]) -> None:
    """Open image evidence with the desktop's viewer and video evidence in a player at the cited
    second (mpv or VLC; the desktop's default player opens it at the start); print the paths
    when there is neither."""
    import shutil
    import subprocess
    import sys

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

            typer.echo(f"{item.modality}: {path}" + (f" @ {clock(start)}" if start is not None else "") + "  (no viewer found: install xdg-utils, mpv or vlc)", err=True)
            continue
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not seen:
        typer.echo("no image or video evidence to open", err=True)


@app.command()
@user_errors
def corpora(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """List corpora with item counts and the encoder each was built with."""
    from rich.console import Console
    from rich.table import Table

    with _pipeline(config, store) as pipe:
        infos = pipe.corpora()
    if not infos:
        typer.echo("no corpora yet: run `ragmm index PATH`")
        return
    table = Table()
    for col in ("corpus", "modality", "items", "sources", "encoder", "dim"):
        table.add_column(col)
    for c in infos:
        table.add_row(c.name, c.modality, str(c.items), str(c.sources), c.encoder, str(c.dim))
    Console().print(table)


@app.command()
@user_errors
def remove(
    path: Annotated[Path, typer.Argument(help="a source file, a folder (every source under it), or a source as listed")],
    corpus_root: Annotated[Path | None, typer.Option(help="the --corpus-root used when indexing")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Drop a source's items from every corpus."""
    with _pipeline(config, store) as pipe:
        removed = pipe.remove(path, corpus_root=corpus_root)
    if not removed:
        typer.echo(f"{path}: no indexed source matches; `ragmm corpora` shows what is indexed", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {len(removed)} source(s)")


@app.command("config")
@user_errors
def show_config(config: ConfigOpt = None) -> None:
    """Print the effective configuration (defaults filled in) as TOML."""
    from ragmm.config import load_config

    typer.echo(load_config(config).to_toml(), nl=False)


@app.command()
@user_errors
def sync(
    url: Annotated[str, typer.Option(help="Qdrant server URL, e.g. http://localhost:6333")],
    api_key: Annotated[str | None, typer.Option(envvar="QDRANT_API_KEY", help="API key (or $QDRANT_API_KEY)")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Copy the local corpora to a Qdrant server or cluster (idempotent)."""
    from ragmm.registry import registry
    from ragmm.stores.sync import sync as copy_all

    server_cls = registry.get("store", "server")
    with _pipeline(config, store) as pipe:
        dst = server_cls.from_config(server_cls.Config(url=url, api_key=api_key))
        try:
            counts = copy_all(pipe.store, dst)
        finally:
            dst.close()
    for name, n in counts.items():
        typer.echo(f"{name}: {n} points")


def main() -> None:
    """Entry point of the ``ragmm`` command."""
    app()


if __name__ == "__main__":
    main()
