"""``ragmm train retriever``: fine-tune a dual encoder with a ragmm contrastive loss.

The loop is sentence-transformers' ``SentenceTransformerTrainer`` (Hugging Face Trainer on
accelerate underneath), so one CPU, one GPU and ``accelerate launch`` on several GPUs run the
same code; ragmm adds the data loading, hard-negative mining from a ragmm corpus, the loss
library, JSONL logs, before/after evaluation and a model card.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmm.training.config import TrainConfig

from ragmm.errors import ConfigError, InputError

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TrainResult:
    """What a training run produced."""

    output: str
    steps: int
    samples: int
    seconds: float
    samples_per_second: float
    final_loss: float | None
    eval_before: dict[str, float] | None = None
    eval_after: dict[str, float] | None = None
    log_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def load_pairs(cfg: TrainConfig) -> Dataset:
    """The training rows as a ``datasets.Dataset`` with columns query, positive, negative_*
    (in that order: sentence-transformers' losses read columns by position)."""
    from datasets import load_dataset, load_from_disk

    path = cfg.resolve(cfg.data.train)
    assert path is not None
    if not path.exists():
        raise InputError(str(path), "training data not found; prepare it (e.g. python -m ragmm.training.data.wordnet) or fix [data] train")
    if path.is_dir():
        ds = load_from_disk(str(path))
    elif path.suffix in (".jsonl", ".json"):
        ds = load_dataset("json", data_files=str(path), split="train")
    elif path.suffix == ".parquet":
        ds = load_dataset("parquet", data_files=str(path), split="train")
    else:
        raise InputError(str(path), "training data must be .jsonl, .parquet or a datasets folder")
    d = cfg.data
    for col in (d.query_column, d.positive_column):
        if col not in ds.column_names:
            raise InputError(str(path), f"no column '{col}' (columns: {', '.join(ds.column_names)}); set [data] query_column / positive_column")
    negatives = sorted(c for c in ds.column_names if c.startswith(d.negative_prefix))
    ds = ds.select_columns([d.query_column, d.positive_column, *negatives])
    ds = ds.rename_columns({d.query_column: "query", d.positive_column: "positive"})
    if d.max_samples:
        ds = ds.select(range(min(d.max_samples, len(ds))))
    return ds


def mine_negatives(ds: Dataset, model: Any, cfg: TrainConfig, progress: bool = True) -> Dataset:
    """Add ``negative_1..n`` columns: for each query, the best-scoring corpus items that are
    not its positive and score below ``max_score_ratio`` x the positive's score (so likely
    false negatives are skipped, NV-Retriever's TopK-PercPos).

    The corpus is ``[mine] corpus_file``, a corpus of the ragmm store (``[mine] corpus``), or,
    by default, the set of training positives. Search runs in a Qdrant Edge collection.
    """
    import tempfile
    import uuid

    import numpy as np
    from tqdm.auto import tqdm

    from ragmm.protocols import CollectionSpec, StoredPoint, VectorSpec
    from ragmm.stores.edge import EdgeStore

    m = cfg.mine
    queries, positives = list(ds["query"]), list(ds["positive"])

    def enc(texts: list[str], query: bool) -> Any:
        # (N, D) for a dense model; a list of (T, D) token matrices for a late-interaction one.
        fn = model.encode_query if query else model.encode_document
        out = fn(texts, batch_size=128, normalize_embeddings=True, show_progress_bar=progress, convert_to_numpy=True)
        return [np.asarray(t, dtype=np.float32) for t in out] if isinstance(out, list) else np.asarray(out, dtype=np.float32)

    def score(q: Any, d: Any) -> float:
        return float((q @ d.T).max(axis=1).sum()) if q.ndim == 2 else float(q @ d)

    if m.corpus is not None:
        from ragmm.pipeline import Pipeline

        pipe = Pipeline()
        texts = [p.payload["text"] for p in pipe.store.scroll(m.corpus)]
        pipe.close()
    elif m.corpus_file is not None:
        from ragmm.evaluation.retrieval import _read_jsonl

        texts = [str(r["text"]) for r in _read_jsonl(cfg.resolve(m.corpus_file))]  # type: ignore[arg-type]
    else:
        texts = list(dict.fromkeys(positives))
    if not texts:
        raise ConfigError(f"{cfg.source}: [mine] found an empty corpus to mine negatives from")
    with tempfile.TemporaryDirectory(prefix="ragmm-mine-") as tmp:
        store = EdgeStore(tmp)
        corpus_vecs = enc(texts, query=False)
        multivector = isinstance(corpus_vecs, list)
        dim = corpus_vecs[0].shape[-1]
        spec = VectorSpec(dim, "dot", multivector=True) if multivector else VectorSpec(dim)
        store.create_collection(CollectionSpec("mine", {"dense": spec}, encoder="mining"))
        for i in range(0, len(texts), 2048):
            # Store ids are UUID strings; the payload keeps the text's index.
            store.upsert("mine", [StoredPoint(id=str(uuid.UUID(int=j)), payload={"i": j}, vectors={"dense": corpus_vecs[j]}) for j in range(i, min(i + 2048, len(texts)))])
        store.optimize()
        qv, pv = enc(queries, query=True), enc(positives, query=False)
        pos_scores = [score(q, p) for q, p in zip(qv, pv, strict=True)]  # MaxSim or cosine
        columns: list[list[str]] = [[] for _ in range(m.negatives)]
        keep = []
        for row, (vec, pos_text, pos_score) in enumerate(tqdm(list(zip(qv, positives, pos_scores, strict=True)), desc="mining negatives", disable=not progress)):
            found: list[str] = []
            # When the model ranks the positive low, the whole top_k may score above the
            # false-negative threshold: search deeper rather than drop the query (those are
            # the examples the model most needs).
            for depth in (m.top_k, min(len(texts), m.top_k * 10)):
                found = []
                for p in store.search("mine", vec, using="dense", limit=depth):
                    text = texts[int(p.payload["i"])]
                    if text == pos_text or p.score > m.max_score_ratio * pos_score:
                        continue
                    found.append(text)
                    if len(found) == m.negatives:
                        break
                if len(found) == m.negatives or depth >= len(texts):
                    break
            if len(found) == m.negatives:
                keep.append(row)
                for c, text in zip(columns, found, strict=True):
                    c.append(text)
        store.close()
    log.info("mined %d negatives for %d of %d queries", m.negatives, len(keep), len(queries))
    ds = ds.select(keep)
    for n, col in enumerate(columns, start=1):
        ds = ds.add_column(f"negative_{n}", col)
    return ds


def _precision(choice: str) -> dict[str, bool]:
    """Trainer arguments for the configured precision."""
    import torch

    # Without use_cpu the Trainer refuses bf16 on CPU, and under torchrun on CPU it runs every
    # process as a separate single-process job (no DDP, each on the whole data set).
    on_cpu = {} if torch.cuda.is_available() else {"use_cpu": True}
    if choice == "bf16":
        return {"bf16": True, **on_cpu}
    if choice == "fp16":
        return {"fp16": True, **on_cpu}
    if choice == "auto" and torch.cuda.is_available():
        return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    return on_cpu


def _jsonl_logger(path: Path, batch: int) -> Any:
    from transformers import TrainerCallback

    class JsonlLogger(TrainerCallback):
        """Appends every Trainer log (loss, learning rate, samples/s) to a JSONL file."""

        def __init__(self) -> None:
            self.last = (time.perf_counter(), 0)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            now, step = time.perf_counter(), state.global_step
            t0, s0 = self.last
            rate = (step - s0) * batch / (now - t0) if step > s0 and now > t0 else None
            self.last = (now, step)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": step, "epoch": state.epoch, "samples_per_second": rate, **logs}) + "\n")

    return JsonlLogger()


def evaluate_model(model_path: str, cfg: TrainConfig, out_dir: Path, label: str, progress: bool) -> dict[str, float]:
    """Run ``ragmm eval retrieval`` on the ``[eval]`` section with the model at ``model_path``."""
    from ragmm.training.kinds import get_kind

    from ragmm.evaluation.retrieval import evaluate_retrieval

    e = cfg.eval
    assert e is not None
    encoder = get_kind(cfg.model.kind).eval_encoder(model_path)
    store = None
    if e.corpus is not None:
        from ragmm.pipeline import Pipeline

        store = Pipeline().store
    report = evaluate_retrieval(
        cfg.resolve(e.queries),  # type: ignore[arg-type]
        cfg.resolve(e.qrels),  # type: ignore[arg-type]
        encoder,
        store=store,
        corpus=e.corpus,
        corpus_file=cfg.resolve(e.corpus_file),
        out_dir=out_dir,
        label=label,
        progress=progress,
    )
    return report.metrics


def train_retriever(cfg: TrainConfig, resume: bool = False, mine: bool = False, progress: bool = True) -> TrainResult:
    """Fine-tune the ``[model] base`` checkpoint; save it to ``cfg.output``.

    Returns:
        A :class:`TrainResult` with steps, throughput, final loss and eval figures.
    """
    import torch
    from ragmm.training.kinds import get_kind
    from ragmm.training.losses import LOSSES
    from sentence_transformers.base.sampler import DefaultBatchSampler

    from ragmm.encoders.sentence_transformer import resolve_model

    t = cfg.train
    out = cfg.resolve(cfg.output)
    assert out is not None
    out.mkdir(parents=True, exist_ok=True)
    load_from, identity = resolve_model(cfg.model.base)
    torch.manual_seed(t.seed)
    kind = get_kind(cfg.model.kind)
    model = kind.load(cfg)
    ds = load_pairs(cfg)
    rows_loaded = len(ds)
    if mine:
        ds = mine_negatives(ds, model, cfg, progress)
    # Under torchrun / accelerate every process trains the same weights; one saves and evaluates.
    main_process = int(os.environ.get("RANK", "0")) == 0
    eval_before = None
    if cfg.eval is not None and cfg.eval.before and not resume and main_process:
        # Evaluate the model as built (a new image tower or ColBERT head included), saved as
        # the kind's checkpoint so the kind's own encoder loads it.
        initial = out / "eval" / "initial-model"
        model.save(str(initial))
        eval_before = evaluate_model(str(initial), cfg, out / "eval" / "before", "before", progress)
    loss = LOSSES[cfg.loss.type](model, **cfg.loss.options())
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not getattr(loss, "gather_across_devices", False):
        # The launcher (accelerate, torchrun) sets WORLD_SIZE before the process group exists.
        log.warning(
            "loss %r contrasts each process's batch alone: negatives do not grow with the number of processes "
            "(clip, clip-uniformity-alignment, maxsim, clamr and cwcl gather them unless gather_across_devices = false)",
            cfg.loss.type,
        )
    log_file = out / "train_log.jsonl"
    args = dict(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio,  # transformers v5: a float below 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        seed=t.seed,
        dataloader_num_workers=t.dataloader_workers,
        # In-batch negatives: a duplicate text in a batch would be a false negative.
        batch_sampler=DefaultBatchSampler.NO_DUPLICATES if hasattr(DefaultBatchSampler, "NO_DUPLICATES") else "no_duplicates",
        report_to=_reporters(),
        disable_tqdm=not progress,
        **_precision(t.precision),
    )
    trainer = kind.trainer(model, args, ds, loss, [_jsonl_logger(log_file, t.batch_size * t.gradient_accumulation_steps)])
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume and _has_checkpoint(out / "checkpoints") else None)
    seconds = time.perf_counter() - t0
    if main_process:
        model.save(str(out))
        if (finalize := getattr(kind, "finalize", None)) is not None:
            finalize(out, cfg)
    eval_after = evaluate_model(str(out), cfg, out / "eval" / "after", "after", progress) if cfg.eval is not None and main_process else None
    steps = trainer.state.global_step
    samples = int(result.metrics.get("train_samples_per_second", 0) * result.metrics.get("train_runtime", 0))
    res = TrainResult(
        output=str(out),
        steps=steps,
        samples=samples,
        seconds=seconds,
        samples_per_second=float(result.metrics.get("train_samples_per_second", 0.0)),
        final_loss=float(result.training_loss) if result.training_loss is not None else None,
        eval_before=eval_before,
        eval_after=eval_after,
        log_file=str(log_file),
        extra={"base": identity, "loss": cfg.loss.type, "loss_options": cfg.loss.options(), "rows": len(ds), "rows_loaded": rows_loaded, "mined": mine, "temperature": getattr(loss, "temperature", None)},
    )
    if main_process:
        _write_card(out, cfg, res)
    return res


def _has_checkpoint(folder: Path) -> bool:
    return folder.is_dir() and any(p.name.startswith("checkpoint-") for p in folder.iterdir())


def _reporters() -> list[str]:
    import importlib.util

    return ["tensorboard"] if importlib.util.find_spec("tensorboard") else []


def _write_card(out: Path, cfg: TrainConfig, res: TrainResult) -> None:
    """Append ragmm's training facts to the model card sentence-transformers wrote, and keep
    them machine-readable in ``ragmm_training.json``."""
    (out / "ragmm_training.json").write_text(json.dumps(asdict(res), indent=2, default=str))
    lines = [
        "",
        "## ragmm training",
        "",
        f"- base model: `{res.extra['base']}`",
        f"- data: `{cfg.data.train}` ({res.extra['rows']} rows{', hard negatives mined' if res.extra['mined'] else ''})",
        f"- loss: `{cfg.loss.type}` {json.dumps(cfg.loss.options()) if cfg.loss.options() else ''}",
        f"- steps: {res.steps}, batch {cfg.train.batch_size} x {cfg.train.gradient_accumulation_steps}, lr {cfg.train.learning_rate}, epochs {cfg.train.epochs}",
        f"- {res.samples_per_second:.1f} samples/s, {res.seconds:.0f} s, final loss {res.final_loss}",
    ]
    if cfg.eval is not None:
        lines += ["", "| held-out | " + " | ".join(res.eval_after or {}) + " |", "|---|" + "---|" * len(res.eval_after or {})]
        for name, metrics in (("before", res.eval_before), ("after", res.eval_after)):
            if metrics:
                lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in metrics.values()) + " |")
    card = out / "README.md"
    text = card.read_text(encoding="utf-8") if card.exists() else f"# {out.name}\n"
    card.write_text(text.rstrip() + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
