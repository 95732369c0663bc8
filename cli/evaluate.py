"""``ragmm eval``: measure retrieval on judged queries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ragmm.cli.common import ConfigOpt, quiet_libraries, user_errors

eval_app = typer.Typer(help="Evaluate ragmm's retrievers.", no_args_is_help=True)


@eval_app.command("retrieval")
@user_errors
def retrieval(
    queries: Annotated[Path, typer.Option(help="JSONL: {id, text[, modality]} per line")],
    qrels: Annotated[Path, typer.Option(help="TREC qrels (qid 0 docid rel) or JSONL {query_id, doc_id, relevance}")],
    corpus_file: Annotated[Path | None, typer.Option(help="JSONL {id, text} to encode and search (a temporary store)")] = None,
    corpus: Annotated[str | None, typer.Option(help="or an existing corpus of the configured store")] = None,
    model: Annotated[str | None, typer.Option(help="text encoder to evaluate (default: [encoders.text] of the config)")] = None,
    out: Annotated[Path, typer.Option(help="folder for report.json and the PNG plots")] = Path("eval"),
    depth: Annotated[int, typer.Option(help="hits retrieved per query")] = 100,
    config: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Recall@1/5/10, nDCG@10 and MRR@10 (ranx), per modality; JSON report and PNG plots
    (Recall@k curve, 2-D projection of query and item embeddings with the modality gap)."""
    quiet_libraries()
    from ragmm.errors import ConfigError
    from ragmm.evaluation.retrieval import evaluate_retrieval
    from ragmm.pipeline import Pipeline

    if (corpus_file is None) == (corpus is None):
        raise ConfigError("give exactly one of --corpus-file FILE or --corpus NAME")
    pipe = Pipeline.from_config(config, **({"encoders": {"text": {"type": "sentence-transformers", "model": model}}} if model else {}))
    try:
        report = evaluate_retrieval(
            queries, qrels, pipe.encoder("text"), store=pipe.store if corpus else None, corpus=corpus, corpus_file=corpus_file, out_dir=out, depth=depth, progress=not quiet
        )
    finally:
        pipe.close()
    typer.echo(json.dumps({"metrics": report.metrics, "by_modality": report.by_modality, "modality_gap": report.modality_gap}, indent=2))
    typer.echo(f"report and plots in {out}/")
