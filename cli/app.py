"""``ragmm``: index files, ask questions, inspect and move corpora.

Every command reads ``ragmm.toml`` from the working directory (or ``--config FILE``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from ragmm.cli.common import ConfigOpt, quiet_libraries, user_errors
from ragmm.cli.evaluate import eval_app
from ragmm.cli.serve import serve
from ragmm.cli.train import train_app

# Plain help text: option help names config sections like [store], which rich markup would swallow.
app = typer.Typer(help="Multimodal RAG over your files, offline: index, then ask.", no_args_is_help=True, add_completion=False, rich_markup_mode=None)
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
        from ragmm.cli.render import IMAGE_QUESTION

        question = IMAGE_QUESTION
    from contextlib import nullcontext

    from ragmm.cli.render import answer_and_print
    from ragmm.serve.client import find_server

    # A running `ragmm serve` of this store answers warm; its client has ask/ask_stream too.
    # (`main` usually takes that path before typer is imported: ragmm.cli.fast.)
    server = find_server(config, store, generator, remember=True)
    with nullcontext(server) if server is not None else _pipeline(config, store, generator) as pipe:
        answer_and_print(pipe, question, k=k, corpora=corpus, image=image, as_json=as_json, explain=explain, open_images=open_images)


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
    """Entry point of the ``ragmm`` command (the installed one is :func:`ragmm.cli.fast.main`)."""
    from ragmm.cli.fast import main as fast_main

    fast_main()


if __name__ == "__main__":
    main()
