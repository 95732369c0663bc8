"""``ragmm train``: fine-tune retrievers (router and reranker join later)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from ragmm.cli.common import quiet_libraries, user_errors

train_app = typer.Typer(help="Fine-tune ragmm's models with contrastive losses.", no_args_is_help=True)


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
