"""``ragmm train``: fine-tune retrievers, train the router and the reranker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from ragmm.cli.common import quiet_libraries, user_errors

train_app = typer.Typer(help="Fine-tune ragmm's models with contrastive losses.", no_args_is_help=True, rich_markup_mode=None)


@train_app.command("retriever")
@user_errors
def retriever(
    config: Annotated[Path, typer.Option("--config", "-c", help="training TOML (see the README for an example)")],
    output: Annotated[Path | None, typer.Option(help="checkpoint folder (overrides `output` in the config)")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint in OUTPUT/checkpoints")] = False,
    mine_negatives: Annotated[bool, typer.Option("--mine-negatives", help="mine hard negatives before training ([mine] section)")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Fine-tune a dual-encoder retriever. Runs on CPU, one GPU, or several GPUs under
    `accelerate launch -m ragmm.cli.app train retriever ...` without code changes."""
    quiet_libraries()
    from ragmm.training.config import load_train_config
    from ragmm.training.train import train_retriever

    cfg = load_train_config(config, {"output": str(output.resolve()) if output else None})
    res = train_retriever(cfg, resume=resume, mine=mine_negatives, progress=not quiet)
    typer.echo(f"saved {res.output}: {res.steps} steps, {res.samples_per_second:.1f} samples/s, final loss {res.final_loss}")
    for name, metrics in (("before", res.eval_before), ("after", res.eval_after)):
        if metrics:
            typer.echo(f"eval {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


@train_app.command("router")
@user_errors
def router(
    config: Annotated[Path, typer.Option("--config", "-c", help="router training TOML (training/configs/router.toml)")],
    output: Annotated[Path | None, typer.Option(help="router folder (overrides `output` in the config)")] = None,
) -> None:
    """Train the `trained` router: an MLP over the text encoder's query embeddings, from a JSONL
    of {query, routes}. Seconds once the embeddings are cached beside the data."""
    quiet_libraries()
    from ragmm.training.router import load_router_config, train_router

    cfg = load_router_config(config, {"output": str(output) if output else None})
    res = train_router(cfg)
    typer.echo(f"saved {res.output}: threshold {res.threshold:.2f}, {res.seconds:.0f}s")
    for name, m in res.metrics.items():
        typer.echo(f"{name}: accuracy {m['accuracy']:.4f} (n={m['n']})")


@train_app.command("reranker")
@user_errors
def reranker(
    config: Annotated[Path, typer.Option("--config", "-c", help="reranker training TOML (training/configs/reranker*.toml)")],
    output: Annotated[Path | None, typer.Option(help="output folder (overrides `output` in the config)")] = None,
) -> None:
    """Train a cross-encoder reranker on (query, item, label) pairs with mined hard negatives, or
    only fit the calibration of a late-interaction or llm reranker; writes calibration.json."""
    quiet_libraries()
    from ragmm.training.reranker import load_reranker_config, train_reranker

    cfg = load_reranker_config(config, {"output": str(output) if output else None})
    res = train_reranker(cfg)
    typer.echo(f"saved {res.output}: threshold {res.threshold:.2f}, {res.seconds:.0f}s")
    for name, value in res.metrics.items():
        typer.echo(f"{name}: {value}")
