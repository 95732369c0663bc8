"""``ragmm train reranker``: train a cross-encoder, or fit the calibration of another reranker.

``type = "cross-encoder"`` fine-tunes a sentence-transformers ``CrossEncoder`` from ``base``
(the packaged all-MiniLM-L6-v2 by default; a fresh one-logit head) with binary cross-entropy on
(query, item text, label) rows, hard negatives included (:mod:`ragmm.training.data.rerank`).
Every type then scores the dev rows, fits one calibrator per kind of item (and a ``default``
over all of them), picks the threshold with the best F1 of "relevant" on dev, and writes
``calibration.json`` into ``output``.

``features = [...]`` (late-interaction) fits a ``logistic`` calibration over a row of features
per item instead (:data:`ragmm.reranking.late_interaction.FEATURES`), on the candidates that
retrieval gives the queries of judged dev sets (``[data] judged``), because features such as the
distance to the best candidate only mean something among real candidates; its threshold is the
highest that keeps fixed top-k's recall on every judged set (what ``ragmm eval rerank --dev``
chooses).

Example ``reranker.toml``::

    type = "cross-encoder"
    output = "models/reranker"

    [data]
    train = "data/rerank/train.jsonl"
    dev = "data/rerank/dev.jsonl"

    [train]
    epochs = 1
    max_samples = 3000
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ragmm.errors import ConfigError, InputError
from ragmm.reranking.calibration import DEFAULT_KIND, Calibration, fit_calibrator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RerankData(_Section):
    train: str | None = Field(None, description='JSONL of {"query", "text", "label", "kind"}; cross-encoder only')
    dev: str | None = Field(None, description="JSONL of the same rows, held out of training: calibration and threshold")
    max_dev: int | None = Field(None, gt=0, description="use an evenly spread subset of dev (slow scorers such as the llm)")
    judged: list[str] = Field(
        default_factory=list,
        description="judged dev sets (folders of queries.jsonl, qrels.tsv, corpus.jsonl: data/rerank/dev/paragraph, ...); with `features`",
    )
    candidates: int = Field(20, gt=0, description="judged sets: items retrieved per query")
    k: int = Field(5, gt=0, description="judged sets: most items kept, for the threshold rule")


class RerankTrain(_Section):
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(16, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    max_samples: int | None = Field(None, gt=0, description="train on the first N rows only")
    max_length: int = Field(128, gt=8)
    seed: int = 0


class RerankTrainConfig(_Section):
    type: Literal["cross-encoder", "late-interaction", "llm"] = "cross-encoder"
    base: str = Field("all-MiniLM-L6-v2", description="cross-encoder: the starting checkpoint (packaged alias or local folder)")
    model: str | None = Field(None, description="late-interaction / llm: the model the reranker will use (None = its default)")
    output: str
    calibration: Literal["platt", "isotonic"] = "platt"
    features: list[str] = Field(default_factory=list, description="late-interaction: fit a logistic calibration over these features (needs [data] judged)")
    per_kind: bool = Field(True, description="features: one curve per kind of item beside the default one (false: the default one only)")
    data: RerankData
    train: RerankTrain = Field(default_factory=RerankTrain)

    @model_validator(mode="after")
    def _data_for_the_method(self) -> RerankTrainConfig:
        if self.features:
            from ragmm.reranking.late_interaction import FEATURES

            if self.type != "late-interaction":
                raise ValueError("features are late-interaction's; remove them or set type = 'late-interaction'")
            unknown = [f for f in self.features if f not in FEATURES]
            if unknown:
                raise ValueError(f"unknown features {unknown}; choose from {list(FEATURES)}")
            if not self.data.judged:
                raise ValueError("features need [data] judged (folders with queries.jsonl, qrels.tsv, corpus.jsonl)")
        elif not self.data.dev:
            raise ValueError("[data] dev is required (JSONL of query, text, label rows)")
        return self


@dataclass(slots=True)
class RerankTrainResult:
    output: Path
    threshold: float
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)


def load_reranker_config(path: Path, overrides: dict[str, Any] | None = None) -> RerankTrainConfig:
    """Read and validate a reranker training TOML.

    Raises:
        ConfigError: missing file, bad TOML, unknown field or bad value.
    """
    from ragmm.config import load_toml_model

    return load_toml_model(path, RerankTrainConfig, "reranker training config", overrides)


def read_pairs(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows ``{"query", "text", "label", "kind"}`` (an evenly spread ``limit`` of them).

    Raises:
        InputError: missing file or a row without those fields (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "file not found; build it with `python -m ragmm.training.data.rerank`")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not {"query", "text", "label"} <= row.keys():
            raise InputError(str(path), f'line {n}: expected {{"query", "text", "label"[, "kind"]}}')
        rows.append(row)
    if limit and len(rows) > limit:
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return rows


def choose_threshold(probs: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """The threshold (0.05 .. 0.95) with the best F1 of "relevant"; ``(threshold, f1)``.
    Ties go to the one nearest 0.5."""
    best = (0.5, -1.0)
    for t in [round(0.05 * i, 2) for i in range(1, 20)]:
        tp = sum(p >= t and y for p, y in zip(probs, labels, strict=True))
        fp = sum(p >= t and not y for p, y in zip(probs, labels, strict=True))
        fn = sum(p < t and y for p, y in zip(probs, labels, strict=True))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best[1] + 1e-9 or (abs(f1 - best[1]) <= 1e-9 and abs(t - 0.5) < abs(best[0] - 0.5)):
            best = (t, f1)
    return best


def fit_calibration(raw: Sequence[float], rows: Sequence[dict[str, Any]], method: str, scorer: str) -> Calibration:
    """One calibrator per kind (and ``default`` over all), the threshold with the best dev F1."""
    labels = [int(r["label"]) for r in rows]
    kinds = [str(r.get("kind") or DEFAULT_KIND) for r in rows]
    cal = Calibration(scorer=scorer)
    cal.by_kind[DEFAULT_KIND] = fit_calibrator(raw, labels, method)  # type: ignore[arg-type]
    for kind in sorted(set(kinds) - {DEFAULT_KIND}):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        try:
            cal.by_kind[kind] = fit_calibrator([raw[i] for i in idx], [labels[i] for i in idx], method)  # type: ignore[arg-type]
        except ValueError:
            continue  # one class only: the default curve serves this kind
    probs = cal.apply(raw, [k if k in cal.by_kind else DEFAULT_KIND for k in kinds])
    cal.threshold, f1 = choose_threshold(probs, labels)
    cal.metrics = {"dev_pairs": len(rows), "dev_f1": round(f1, 4), "dev_brier": round(sum((p - y) ** 2 for p, y in zip(probs, labels, strict=True)) / len(rows), 4)}
    return cal


def _train_cross_encoder(cfg: RerankTrainConfig) -> Any:
    from datasets import Dataset
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from ragmm.encoders.sentence_transformer import resolve_model

    if not cfg.data.train:
        raise ConfigError("[data] train is required for type = 'cross-encoder'")
    rows = read_pairs(cfg.data.train, cfg.train.max_samples)
    load_from, _ = resolve_model(cfg.base)
    model = CrossEncoder(load_from, num_labels=1, max_length=cfg.train.max_length, local_files_only=True)
    data = Dataset.from_dict({"query": [r["query"] for r in rows], "text": [r["text"] for r in rows], "label": [float(r["label"]) for r in rows]})
    args = CrossEncoderTrainingArguments(
        output_dir=str(Path(cfg.output) / "checkpoints"),
        num_train_epochs=cfg.train.epochs,
        per_device_train_batch_size=cfg.train.batch_size,
        learning_rate=cfg.train.learning_rate,
        warmup_steps=0.1,
        seed=cfg.train.seed,
        save_strategy="no",
        logging_steps=50,
        report_to="none",
        dataloader_drop_last=False,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=BinaryCrossEntropyLoss(model))
    trainer.train()
    model.save_pretrained(cfg.output)
    return model


def train_reranker(cfg: RerankTrainConfig, scorer: Any = None) -> RerankTrainResult:
    """Train (cross-encoder) or only calibrate (late-interaction, llm); write ``calibration.json``.

    Args:
        cfg: the training config.
        scorer: a reranker whose ``raw_scores`` to calibrate instead of the configured one (tests).
    """
    from ragmm.reranking.calibration import Calibrator
    from ragmm.types import Item, Query

    start = time.perf_counter()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    # Scores are computed with an identity calibration, then the real one is fitted on them.
    identity = Calibration({DEFAULT_KIND: Calibrator("isotonic", x=[-1e9, 1e9], y=[0.0, 1.0])})
    name = cfg.type
    encoder = None  # the text encoder that retrieves judged sets' candidates (None: the default)
    if scorer is None:
        if cfg.type == "cross-encoder":
            from ragmm.reranking.cross_encoder import CrossEncoderReranker

            _train_cross_encoder(cfg)
            scorer = CrossEncoderReranker(out, identity, max_length=cfg.train.max_length)
            name = f"cross-encoder:{out.resolve()}"
        elif cfg.type == "late-interaction":
            from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder
            from ragmm.reranking.late_interaction import LateInteractionReranker, encoder_text_vectors

            if cfg.model:
                raise ConfigError("late-interaction calibration of a multi-vector checkpoint: set [reranker] calibration after fitting; only the default token scorer is calibrated here")
            enc = SentenceTransformerEncoder()
            vectors = encoder_text_vectors(enc)  # what a pipeline's reranker reads
            scorer = LateInteractionReranker(lambda texts, is_query: vectors(texts), identity)
            name = f"{enc.name}:tokens"
            encoder = enc
        else:
            from ragmm.reranking.llm import LLMReranker
            from ragmm.routing.lm import ChatLM

            scorer = LLMReranker(lambda: ChatLM(cfg.model), identity)
            name = f"llm:{cfg.model or 'smollm2'}"
    if cfg.features:
        cal = fit_feature_calibration(scorer, encoder, cfg, name)
        cal.save(out)
        return RerankTrainResult(output=out, threshold=cal.threshold, seconds=time.perf_counter() - start, metrics=cal.metrics)
    assert cfg.data.dev is not None  # the config's validator requires it without features
    rows = read_pairs(cfg.data.dev, cfg.data.max_dev)
    raw: list[float] = []
    # One query at a time, as the reranker sees them.
    by_query: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_query.setdefault(r["query"], []).append(i)
    raw_by_row: dict[int, float] = {}
    for query, idx in by_query.items():
        items = [Item(corpus=str(rows[i].get("kind") or ""), source="", text=rows[i]["text"]) for i in idx]
        for i, s in zip(idx, scorer.raw_scores(Query(query), items), strict=True):
            raw_by_row[i] = float(s)
    raw = [raw_by_row[i] for i in range(len(rows))]
    cal = fit_calibration(raw, rows, cfg.calibration, name)
    cal.save(out)
    return RerankTrainResult(output=out, threshold=cal.threshold, seconds=time.perf_counter() - start, metrics=cal.metrics)


def fit_feature_calibration(scorer: Any, encoder: Any, cfg: RerankTrainConfig, name: str, progress: bool = True) -> Calibration:
    """Fit a ``logistic`` calibration over ``cfg.features`` on judged dev sets' candidates.

    Each judged query's candidates (``cfg.data.candidates``, by the text encoder's cosine) are
    scored together, as a pipeline scores a query's hits; one curve over all of them
    (``default``) and, with ``per_kind``, one per kind of item. The threshold is the highest
    swept one that keeps fixed top-k's recall on every judged set.

    Args:
        scorer: the reranker whose ``raw_scores`` give the feature rows (its calibration is
            replaced).
        encoder: the text encoder that retrieves the candidates (``None``: the default one).
        cfg: the training config (``features``, ``per_kind``, ``data.judged``).
        name: what made the scores, written as the calibration's ``scorer``.
    """
    from tqdm.auto import tqdm

    from ragmm.evaluation.rerank import evaluate_rerank, judged_candidates, keep_recall_threshold, sweep_key
    from ragmm.types import Query

    if encoder is None:
        from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder()
    cal = Calibration(scorer=name, features=list(cfg.features))
    scorer.calibration = cal  # empty curves: raw_scores reads only the feature names
    rows: list[list[float]] = []
    labels: list[int] = []
    kinds: list[str] = []
    folders = [Path(f) for f in cfg.data.judged]
    sets = [judged_candidates(encoder, f / "queries.jsonl", f / "qrels.tsv", f / "corpus.jsonl", cfg.data.candidates) for f in folders]
    for folder, data in zip(folders, sets, strict=True):
        for q in tqdm(data.queries, desc=f"features ({folder.name})", disable=not progress):
            items = [data.items[j] for j in q.candidates]
            rows.extend(scorer.raw_scores(Query(q.text), items))
            labels.extend(int(it.source in q.relevant) for it in items)
            kinds.extend(it.corpus or it.modality or DEFAULT_KIND for it in items)
    cal.by_kind[DEFAULT_KIND] = fit_calibrator(rows, labels, "logistic")
    if cfg.per_kind:
        for kind in sorted(set(kinds) - {DEFAULT_KIND}):
            idx = [i for i, k in enumerate(kinds) if k == kind]
            try:
                cal.by_kind[kind] = fit_calibrator([rows[i] for i in idx], [labels[i] for i in idx], "logistic")
            except ValueError:
                continue  # one class only: the default curve serves this kind
    scorer.threshold = 0.5
    # The reports only feed the threshold rule (their figures go into the calibration's metrics).
    with tempfile.TemporaryDirectory() as tmp:
        reports = [
            evaluate_rerank(
                scorer, encoder, f / "queries.jsonl", f / "qrels.tsv", f / "corpus.jsonl", Path(tmp) / f.name,
                k=cfg.data.k, candidates=cfg.data.candidates, name=name, progress=progress, data=data,
            )
            for f, data in zip(folders, sets, strict=True)
        ]
    cal.threshold = keep_recall_threshold(reports)
    probs = cal.apply(rows, [k if k in cal.by_kind else DEFAULT_KIND for k in kinds])
    cal.metrics = {
        "dev_pairs": len(rows),
        "dev_brier": round(sum((p - y) ** 2 for p, y in zip(probs, labels, strict=True)) / len(rows), 4),
        "threshold_rule": "highest keeping fixed top-k's recall on every judged set",
        "judged": {
            f.name: {
                "fixed top-k": [round(r.arms["fixed top-k"].precision, 4), round(r.arms["fixed top-k"].recall, 4)],
                "adaptive up-to-k": [round(r.sweep[sweep_key(cal.threshold)].precision, 4), round(r.sweep[sweep_key(cal.threshold)].recall, 4)],
            }
            for f, r in zip(folders, reports, strict=True)
        },
    }
    return cal

