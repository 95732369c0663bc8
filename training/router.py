"""``ragmm train router``: fit the ``trained`` router on a JSONL of labelled queries.

The text encoder embeds every query once (cached beside the data, keyed by the file's hash and
the encoder), then a logistic regression or a two-layer MLP with one sigmoid per route learns
from the embeddings in seconds. The threshold is chosen on the dev file (the one that gives
the best exact-set accuracy), and the held-out test file is scored with it.

Example ``router.toml``::

    encoder = "all-MiniLM-L6-v2"       # the [encoders.text] model the router will read
    output = "models/router"

    [data]
    train = "data/routes/train.jsonl"  # {"query", "routes": [...]} per line
    dev = "data/routes/dev.jsonl"
    test = ["data/routes/test.jsonl"]

    [model]
    hidden = 256                       # 0: logistic regression

    [train]
    epochs = 40
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError, InputError
from ragmm.routing import ROUTES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouterData(_Section):
    train: str = Field(..., description='JSONL of {"query", "routes": [...]}; routes among none, paragraph, document, image, clip, video')
    dev: str | None = Field(None, description="JSONL to choose the threshold on (default: 10% of train)")
    test: list[str] = Field(default_factory=list, description="held-out JSONL files scored after training")


class RouterModel(_Section):
    hidden: int = Field(256, ge=0, description="hidden units of the MLP; 0 = logistic regression")
    dropout: float = Field(0.1, ge=0, lt=1)


class RouterTrain(_Section):
    epochs: int = Field(40, gt=0)
    batch_size: int = Field(64, gt=0)
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = 0


class RouterTrainConfig(_Section):
    encoder: str = Field("all-MiniLM-L6-v2", description="the text encoder whose query embeddings the router reads")
    output: str = Field(..., description="folder to write the router to")
    data: RouterData
    model: RouterModel = Field(default_factory=RouterModel)
    train: RouterTrain = Field(default_factory=RouterTrain)


@dataclass(slots=True)
class RouterTrainResult:
    output: Path
    threshold: float
    seconds: float
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_router_config(path: Path, overrides: dict[str, Any] | None = None) -> RouterTrainConfig:
    """Read and validate a router training TOML (relative data paths are taken from the working directory).

    Raises:
        ConfigError: missing file, bad TOML, unknown field or bad value.
    """
    from ragmm.config import load_toml_model

    return load_toml_model(path, RouterTrainConfig, "router training config", overrides)


def read_labelled(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Queries and their routes from a JSONL file.

    Raises:
        InputError: a missing file, a bad line, or an unknown route (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "file not found; build it with `python -m ragmm.training.data.routes`")
    queries, routes = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            q, r = row["query"], row["routes"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(str(path), f'line {n}: expected {{"query": ..., "routes": [...]}}') from None
        bad = [x for x in r if x not in ROUTES]
        if bad or not r:
            raise InputError(str(path), f"line {n}: routes {r!r}; each must be one of {', '.join(ROUTES)} (and at least one)")
        queries.append(q)
        routes.append(list(r))
    return queries, routes


def embed(encoder: Any, queries: list[str], cache: Path | None) -> Any:
    """``(N, D)`` query embeddings, from ``cache`` when it was written for these queries and encoder."""
    import numpy as np

    key = hashlib.sha256(("\x00".join([encoder.name, *queries])).encode()).hexdigest()[:16]
    if cache is not None:
        f = cache.with_name(f"{cache.name}.{key}.npy")
        if f.is_file():
            return np.load(f)
    vecs = np.asarray(encoder.encode_query(queries), dtype=np.float32)
    if cache is not None:
        np.save(f, vecs)
    return vecs


def targets(routes: list[list[str]], labels: list[str]) -> Any:
    import numpy as np

    y = np.zeros((len(routes), len(labels)), dtype=np.float32)
    for i, rs in enumerate(routes):
        for r in rs:
            y[i, labels.index(r)] = 1.0
    return y


def predicted_sets(probs: Any, labels: list[str], threshold: float) -> list[frozenset[str]]:
    """The route set :func:`ragmm.routing.select_routes` would choose with every corpus available."""
    from ragmm.routing import CORPUS_ROUTES, select_routes

    out = []
    for row in probs:
        routes = select_routes(dict(zip(labels, row.tolist(), strict=True)), list(CORPUS_ROUTES), threshold)
        out.append(frozenset(r.corpus for r in routes) or frozenset({"none"}))
    return out


def accuracy(probs: Any, routes: list[list[str]], labels: list[str], threshold: float) -> float:
    pred = predicted_sets(probs, labels, threshold)
    return sum(p == frozenset(r) for p, r in zip(pred, routes, strict=True)) / max(len(routes), 1)


def fit(x: Any, y: Any, cfg: RouterTrainConfig) -> dict[str, Any]:
    """Train the classifier; returns numpy weights ``w1, b1, w2, b2`` (or ``w2, b2``)."""
    import torch
    from torch import nn

    # A 100k-parameter MLP gains nothing from threads; on a shared CPU they only contend.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(cfg.train.seed)
    d, n_labels, h = x.shape[1], y.shape[1], cfg.model.hidden
    if h:
        net = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Dropout(cfg.model.dropout), nn.Linear(h, n_labels))
    else:
        net = nn.Sequential(nn.Linear(d, n_labels))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(cfg.train.seed)
    net.train()
    for _ in range(cfg.train.epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(cfg.train.batch_size):
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])  # (B, L) logits against (B, L) targets
            loss.backward()
            opt.step()
    net.eval()
    torch.set_num_threads(threads)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    names = [("w1", "b1"), ("w2", "b2")] if h else [("w2", "b2")]
    return {n: t.detach().numpy().copy() for (wn, bn), lin in zip(names, linears, strict=True) for n, t in ((wn, lin.weight), (bn, lin.bias))}


def train_router(cfg: RouterTrainConfig, encoder: Any | None = None, progress: bool = True) -> RouterTrainResult:
    """Embed, fit, choose the threshold on dev, score the test files, save.

    Args:
        cfg: the training config.
        encoder: a text encoder (default: ``cfg.encoder`` through sentence-transformers).
        progress: unused for now beyond the encoder's own bars; kept for the CLI's ``--quiet``.
    """
    import numpy as np

    from ragmm.routing.trained import RouteClassifier, RouterMeta

    start = time.perf_counter()
    if encoder is None:
        from ragmm.encoders.sentence_transformer import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(SentenceTransformerEncoder.Config(model=cfg.encoder))
    labels = list(ROUTES)
    q_train, r_train = read_labelled(cfg.data.train)
    x_train = embed(encoder, q_train, Path(cfg.data.train))
    if cfg.data.dev:
        q_dev, r_dev = read_labelled(cfg.data.dev)
        x_dev = embed(encoder, q_dev, Path(cfg.data.dev))
    else:
        rng = np.random.default_rng(cfg.train.seed)
        dev_mask = rng.random(len(q_train)) < 0.1
        x_dev, r_dev = x_train[dev_mask], [r for r, m in zip(r_train, dev_mask, strict=True) if m]
        x_train, r_train = x_train[~dev_mask], [r for r, m in zip(r_train, dev_mask, strict=True) if not m]
    weights = fit(x_train, targets(r_train, labels), cfg)
    meta = RouterMeta(labels=labels, encoder=encoder.name, dim=int(x_train.shape[1]), hidden=cfg.model.hidden)
    clf = RouteClassifier(meta, weights)
    dev_probs = clf.predict(x_dev)
    grid = [round(t, 2) for t in np.arange(0.2, 0.81, 0.05)]
    scores = {t: accuracy(dev_probs, r_dev, labels, t) for t in grid}
    # Ties go to the threshold nearest 0.5, the least tuned choice.
    meta.threshold = max(grid, key=lambda t: (scores[t], -abs(t - 0.5)))
    metrics: dict[str, dict[str, Any]] = {"dev": {"accuracy": scores[meta.threshold], "n": len(r_dev)}}
    for test in cfg.data.test:
        q_test, r_test = read_labelled(test)
        probs = clf.predict(embed(encoder, q_test, Path(test)))
        metrics[Path(test).name] = {"accuracy": accuracy(probs, r_test, labels, meta.threshold), "n": len(r_test)}
    meta.metrics = {"train_rows": len(r_train), **{k: v for k, v in metrics.items()}}
    out = clf.save(cfg.output)
    return RouterTrainResult(output=out, threshold=meta.threshold, seconds=time.perf_counter() - start, metrics=metrics)
