"""``ragmm eval``: measure retrieval, routing and reranking on judged queries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from ragmm.cli.common import ConfigOpt, quiet_libraries, user_errors

eval_app = typer.Typer(help="Evaluate ragmm's retrievers.", no_args_is_help=True, rich_markup_mode=None)


@eval_app.command("retrieval")
@user_errors
def retrieval(
    queries: Annotated[Path, typer.Option(help="JSONL: {id, text[, modality]} per line")],
    qrels: Annotated[Path, typer.Option(help="TREC qrels (qid 0 docid rel) or JSONL {query_id, doc_id, relevance}")],
    corpus_file: Annotated[Path | None, typer.Option(help="JSONL {id, text} to encode and search (a temporary store)")] = None,
    corpus: Annotated[str | None, typer.Option(help="or an existing corpus of the configured store")] = None,
    model: Annotated[str | None, typer.Option(help="text encoder to evaluate (default: [encoders.text] of the config)")] = None,
    image_model: Annotated[str | None, typer.Option(help="image encoder to evaluate (default: [encoders.image]): ragmm-lite0, ragmm-clipart, a trained folder")] = None,
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
        from ragmm.encoders.late_interaction import is_multivector_folder

        # A late-interaction folder is searched as ragmm searches it: two-stage MaxSim.
        kind = "late-interaction" if is_multivector_folder(model) else "sentence-transformers"
        overrides["encoders"]["text"] = {"type": kind, "model": model}
    if image_model:
        overrides["encoders"]["image"] = {"type": "image-text", "model": image_model}
    if view is not None:
        if view not in ("image", "text"):
            raise ConfigError(f"--view must be 'image' or 'text', got {view!r}")
        overrides["retrievers"] = {"image": {"type": "image", "views": [view]}}
    pipe = Pipeline.from_config(config, **overrides)
    try:
        spec = pipe.store.get_spec(corpus) if corpus else None
        if corpus and spec is None:
            raise ConfigError(f"no corpus {corpus!r} in the store; `ragmm corpora` lists them")
        image_corpus = spec is not None and spec.modality == "image"  # two views: label the plot with the one searched
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
            retriever=pipe.retriever(spec.modality) if spec is not None else None,
            embeddings=pipe.embeddings,
            vector=(view or "image") if image_corpus else "dense",
            label=f"{corpus} ({view or 'image+text'} view)" if image_corpus else None,
        )
    finally:
        pipe.close()
    typer.echo(json.dumps({"metrics": report.metrics, "by_modality": report.by_modality, "modality_gap": report.modality_gap}, indent=2))
    typer.echo(f"report and plots in {out}/")


class _LazyEncoders:
    """``encoders[modality]``: the pipeline's encoder, built on first use."""

    def __init__(self, pipe: object) -> None:
        self._pipe = pipe

    def __getitem__(self, modality: str) -> object:
        return self._pipe.encoder(modality)


class _BatchEmbeddings:
    """A query-embedding memo filled by one batched encode of every evaluation query, so the
    trained router is measured without encoding queries one at a time."""

    def __init__(self) -> None:
        self._vectors: dict[str, object] = {}

    def fill(self, encoder: object, texts: list[str]) -> None:
        for text, vec in zip(texts, encoder.encode_query(texts), strict=True):
            self._vectors[text] = vec

    def text(self, encoder: object, text: str) -> object:
        if text not in self._vectors:
            self._vectors[text] = encoder.encode_query([text])[0]
        return self._vectors[text]


def _component(pipe: object, kind: str, embeddings: object = None) -> object:
    """The configured router or reranker, given the deps the pipeline gives it."""
    from ragmm.registry import registry

    spec = getattr(pipe.config, kind)
    cls = registry.get(kind, spec.type)
    return cls.from_config(pipe.config.component_config(kind, spec, kind), encoders=_LazyEncoders(pipe), embeddings=embeddings)


@eval_app.command("routing")
@user_errors
def routing(
    queries: Annotated[list[Path], typer.Option(help='JSONL of {"query", "routes"} (held out: data/routes/test.jsonl); repeat for several')],
    router: Annotated[str | None, typer.Option(help="router type (default: [router] of the config): trained, llm, all")] = None,
    model: Annotated[str | None, typer.Option(help="router model folder (trained) or language model (llm)")] = None,
    limit: Annotated[int | None, typer.Option(help="evaluate an evenly spread subset of this many queries (the llm router is slow)")] = None,
    out: Annotated[Path, typer.Option(help="folder for report.json and confusion.png (one subfolder per queries file)")] = Path("eval/routing"),
    config: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Exact-set accuracy, per-route precision/recall/F1 and a confusion matrix (PNG) of a router."""
    quiet_libraries()
    from ragmm.evaluation.routing import evaluate_routing
    from ragmm.pipeline import Pipeline

    overrides: dict = {}
    if router or model:
        spec: dict = {"type": router or "trained"}
        if model:
            spec["model"] = model
        overrides["router"] = spec
    pipe = Pipeline.from_config(config, **overrides)
    try:
        memo = _BatchEmbeddings()
        built = _component(pipe, "router", memo)
        name = pipe.config.router.type
        for path in queries:
            if name == "trained":
                from ragmm.evaluation.routing import load_labelled

                memo.fill(pipe.encoder("text"), [row["query"] for row in load_labelled(path, limit)])
            report = evaluate_routing(built, path, out / path.stem, name=name, limit=limit, progress=not quiet)
            per = {r: round(s.f1, 3) for r, s in report.per_route.items()}
            typer.echo(f"{path}: accuracy {report.accuracy:.4f} (n={report.n}, {report.ms_per_query:.1f} ms/query); F1 {per}")
    finally:
        pipe.close()
    typer.echo(f"reports and confusion matrices in {out}/")


@eval_app.command("rerank")
@user_errors
def rerank(
    dataset: Annotated[list[Path], typer.Option(help="folder with queries.jsonl, qrels.tsv, corpus.jsonl (data/rerank/tuxpaint, data/rerank/wordnet/test, data/rerank/video); repeat for several")],
    reranker: Annotated[str | None, typer.Option(help="reranker type (default: [reranker] of the config): late-interaction, cross-encoder, llm")] = None,
    model: Annotated[str | None, typer.Option(help="reranker model folder")] = None,
    threshold: Annotated[float | None, typer.Option(help="relevancy threshold (default: the calibration's, or the one --dev chooses)")] = None,
    dev: Annotated[list[Path] | None, typer.Option(help="dev set folder(s) in the same format (data/rerank/dev/paragraph, ...): evaluated first, and the highest threshold keeping fixed top-k's recall on each is used for --dataset")] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="most items kept")] = 5,
    candidates: Annotated[int, typer.Option(help="items retrieved per query before reranking")] = 20,
    limit: Annotated[int | None, typer.Option(help="evaluate an evenly spread subset of this many queries")] = None,
    out: Annotated[Path, typer.Option(help="folder for report.json (one subfolder per dataset)")] = Path("eval/rerank"),
    config: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Precision and recall of the context kept, fixed top-k against adaptive up-to-k, and how
    often each abstains when the relevant items are taken out of the candidates."""
    quiet_libraries()
    from ragmm.errors import ConfigError
    from ragmm.evaluation.rerank import RerankReport, evaluate_rerank, keep_recall_threshold
    from ragmm.pipeline import Pipeline

    if dev and threshold is not None:
        raise ConfigError("give --threshold or --dev (which chooses the threshold), not both")
    overrides: dict = {}
    if reranker or model or threshold is not None:
        spec: dict = {"type": reranker or "late-interaction"}
        if model:
            spec["model"] = model
        if threshold is not None:
            spec["threshold"] = threshold
        overrides["reranker"] = spec
    pipe = Pipeline.from_config(config, **overrides)
    try:
        built = _component(pipe, "reranker")
        if not hasattr(built, "relevancies"):
            raise ConfigError(f"[reranker] type = {pipe.config.reranker.type!r} gives no relevancy scores; evaluate late-interaction, cross-encoder or llm")

        def run(folder: Path, where: Path) -> RerankReport:
            report = evaluate_rerank(
                built, pipe.encoder("text"), folder / "queries.jsonl", folder / "qrels.tsv", folder / "corpus.jsonl",
                where, k=k, candidates=candidates, limit=limit, name=pipe.config.reranker.type, progress=not quiet,
            )
            typer.echo(f"{folder} (n={report.n_queries}, k={k}, threshold {report.threshold:g}, {report.ms_rerank_per_query:.1f} ms/query):")
            for arm, s in report.arms.items():
                typer.echo(f"  {arm:18s} precision {s.precision:.3f} recall {s.recall:.3f} kept {s.mean_kept:.2f} empty {s.empty:.3f} abstain-unanswerable {s.abstain_unanswerable:.3f}")
            return report

        if dev:
            built.threshold = keep_recall_threshold([run(folder, out / "dev" / folder.name) for folder in dev])
            typer.echo(f"threshold {built.threshold:g}: the highest keeping fixed top-{k}'s recall on every dev set")
        for folder in dataset:
            run(folder, out / folder.name)
    finally:
        pipe.close()
    typer.echo(f"reports in {out}/")
