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
    image_model: Annotated[str | None, typer.Option(help="image encoder to evaluate (default: [encoders.image]): ragmm-clipart, a trained folder")] = None,
    out: Annotated[Path, typer.Option(help="folder for report.json and the PNG plots")] = Path("eval"),
    depth: Annotated[int, typer.Option(help="hits retrieved per query")] = 100,
    view: Annotated[str | None, typer.Option(help="image corpus only: search one view, 'image' (pixels) or 'text' (file name, OCR); default both, fused")] = None,
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
    overrides: dict = {"encoders": {}}
    if model:
        overrides["encoders"]["text"] = {"type": "sentence-transformers", "model": model}
    if image_model:
        overrides["encoders"]["image"] = {"type": "image-text", "model": image_model}
    if view is not None:
        if view not in ("image", "text"):
            raise ConfigError(f"--view must be 'image' or 'text', got {view!r}")
        overrides["image_retriever"] = {"type": "image", "views": [view]}
    pipe = Pipeline.from_config(config, **overrides)
    try:
        spec = pipe.store.get_spec(corpus) if corpus else None
        if corpus and spec is None:
            raise ConfigError(f"no corpus {corpus!r} in the store; `ragmm corpora` lists them")
        image_corpus = spec is not None and spec.modality == "image"
        # A corpus file of {"id", "image"} rows is encoded by the image encoder (its documents are images).
        image_file = False
        if corpus_file is not None:
            with open(corpus_file, encoding="utf-8") as fh:
                image_file = '"image"' in fh.readline()
        report = evaluate_retrieval(
            queries,
            qrels,
            pipe.encoder("image" if image_file else "text"),
            store=pipe.store if corpus else None,
            corpus=corpus,
            corpus_file=corpus_file,
            out_dir=out,
            depth=depth,
            progress=not quiet,
            retriever=pipe.image_retriever if image_corpus else None,
            vector=(view or "image") if image_corpus else "dense",
            label=f"{corpus} ({view or 'image+text'} view)" if image_corpus else None,
        )
    finally:
        pipe.close()
    typer.echo(json.dumps({"metrics": report.metrics, "by_modality": report.by_modality, "modality_gap": report.modality_gap}, indent=2))
    typer.echo(f"report and plots in {out}/")
