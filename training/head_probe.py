"""Feature-level probe of image-tower head recipes, scored on the training sources only.

``ragmm train retriever`` is the way to train a tower; this probe answers, in minutes, which
recipe to give it. It trains the :class:`~ragmm.encoders.pretrained_tower.TrunkTower` head (the
same MLP or linear head, words vector and CLIP loss with a learnable temperature, in plain torch)
on the pooled trunk features the trainer caches, and reports caption -> image Recall@10 on

- ``dev``: the development split of the training sources (the head trained on every pair);
- ``x-SOURCE``: each held-out source (emoji, Scratch): the head trained without that source's
  pairs, searched with its captions over its images: a picture style the head never saw.

Tux Paint, the evaluation set, is never read. Each run is ``key=value`` pairs (the keyword
arguments of :func:`train_head`, plus ``seeds`` as ``1/2/3`` and ``ensemble`` for heads trained
from separate seeds and averaged), e.g.::

    python -m ragmm.training.head_probe --runs "epochs=5" "epochs=5,heads=3,feature_dropout=0.3"

Features must be cached first (``ragmm train retriever`` with the trunk's config does it, or
:meth:`TrunkTower.cache_features`); ``--cached-only`` restricts training to the rows whose
features are cached (for a trunk whose features were computed for a part of the images only),
and ``--same-rows-as TRUNK-SIZE`` to the rows another trunk has features of, so that two trunks
are compared on the same pairs::

    python -m ragmm.training.head_probe --trunk efficientnet-lite1 --size 192 --cached-only --runs "epochs=5,seeds=1/2"
    python -m ragmm.training.head_probe --same-rows-as efficientnet-lite1-192 --runs "epochs=5,seeds=1/2"

Openclipart repeats some captions hundreds of times ("A star pt step." 1,375 times): ``cap=N``
draws at most ``N`` rows of a caption per epoch, and ``mask_same=true`` keeps a batch's pairs that
share a caption from being each other's negatives. ``hub=0.25`` scores with the CSLS hubness
correction (:func:`hubness`, against the captions the head trained on).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Embed = Callable[[Tensor, Tensor], Tensor]  # (pooled features, trunk logits) -> (N, D) vectors


def parse_run(spec: str) -> dict[str, Any]:
    """``"epochs=5,heads=3,linear=true,seeds=1/2"`` -> keyword arguments (numbers and booleans parsed)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, raw = part.partition("=")
        if not sep:
            raise ValueError(f"run {spec!r}: {part!r} is not key=value")
        if key == "seeds":
            out[key] = [int(x) for x in raw.split("/")]
        elif raw.lower() in ("true", "false"):
            out[key] = raw.lower() == "true"
        else:
            out[key] = float(raw) if any(c in raw for c in ".e") else int(raw)
    return out


class Probe:
    """Training pairs, their cached features and the sets to score, for one trunk."""

    def __init__(
        self, data: Path, trunk: str, size: int, cached_only: bool = False, holdout: tuple[str, ...] = ("emoji", "scratch"), same_rows_as: str | None = None
    ) -> None:
        from sentence_transformers import SentenceTransformer

        from ragmm.encoders.efficientnet import cache_dir, load_trunk
        from ragmm.encoders.imagenet_labels import class_names
        from ragmm.encoders.pretrained_tower import TrunkTower
        from ragmm.encoders.sentence_transformer import resolve_model

        self.root = cache_dir() / "features" / f"{trunk}-{size}"
        self._entry = TrunkTower._entry
        self.fc = load_trunk(trunk, image_size=size).net._fc
        self.text = SentenceTransformer(resolve_model("all-MiniLM-L6-v2")[0], device="cpu")
        self.text.max_seq_length = 32  # as the trainer's configs
        rows = [json.loads(line) for line in (data / "train.jsonl").open(encoding="utf-8")]
        if cached_only:
            rows = [r for r in rows if self._entry(self.root, r["image"]).is_file()]
        if same_rows_as:  # compare two trunks on exactly the rows both have features of
            other = cache_dir() / "features" / same_rows_as
            rows = [r for r in rows if self._entry(other, r["image"]).is_file()]
        self.rows = rows
        captions = sorted({r["caption"] for r in rows})
        index = {c: i for i, c in enumerate(captions)}
        self.caption_vectors = self.encode(captions)
        self.caption = torch.tensor([index[r["caption"]] for r in rows])  # (N,)
        self.x = self.features([r["image"] for r in rows])  # (N, C)
        self.logits = self.trunk_logits(self.x)  # (N, 1000)
        self.y = self.caption_vectors[self.caption]  # (N, D)
        self.source = [r["source"] for r in rows]
        self.class_vectors = self.encode(class_names())  # (1000, D)
        self.dev = self.split(data / "dev")
        self.holdout = {s: self.source_set(s) for s in holdout}

    def encode(self, texts: list[str]) -> Tensor:
        return torch.from_numpy(self.text.encode(texts, normalize_embeddings=True, batch_size=128, convert_to_numpy=True, show_progress_bar=False)).float()

    def features(self, paths: list[str]) -> Tensor:
        missing = [p for p in paths if not self._entry(self.root, p).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} images have no cached features in {self.root} (first: {missing[0]}); cache them with TrunkTower.cache_features or pass --cached-only")
        return torch.from_numpy(np.stack([np.load(self._entry(self.root, p)) for p in paths])).float()

    def trunk_logits(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.fc(x)

    def split(self, folder: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(features, logits, query vectors, relevance (Q, N)) of a split folder (corpus/queries/qrels)."""
        docs = [json.loads(line) for line in (folder / "corpus.jsonl").open(encoding="utf-8")]
        pos = {d["id"]: i for i, d in enumerate(docs)}
        rel: dict[str, set[str]] = {}
        for line in (folder / "qrels.tsv").open(encoding="utf-8"):
            q, _, d, _ = line.split()
            rel.setdefault(q, set()).add(d)
        queries = [q for q in (json.loads(line) for line in (folder / "queries.jsonl").open(encoding="utf-8")) if q["id"] in rel]
        relevant = torch.zeros(len(queries), len(docs), dtype=torch.bool)
        for i, q in enumerate(queries):
            for d in rel[q["id"]]:
                relevant[i, pos[d]] = True
        x = self.features([d["image"] for d in docs])
        return x, self.trunk_logits(x), self.encode([q["text"] for q in queries]), relevant

    def source_set(self, source: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One source's training pairs as a search set: its captions over its images."""
        rows = [i for i, s in enumerate(self.source) if s == source]
        captions = sorted(set(self.caption[rows].tolist()))
        at = {c: j for j, c in enumerate(captions)}
        relevant = torch.zeros(len(captions), len(rows), dtype=torch.bool)
        for col, i in enumerate(rows):
            relevant[at[int(self.caption[i])], col] = True
        return self.x[rows], self.logits[rows], self.caption_vectors[captions], relevant

    def words(self, logits: Tensor, top_k: int, temperature: float) -> Tensor:
        from ragmm.encoders.pretrained_tower import words_vector

        return F.normalize(words_vector(logits, self.class_vectors, top_k, temperature), dim=-1)

    def train_head(
        self,
        mask: Tensor,
        *,
        epochs: int = 20,
        heads: int = 1,
        linear: bool = False,
        hidden: int = 1024,
        dropout: float = 0.1,
        feature_dropout: float = 0.0,
        words: bool = True,
        top_k: int = 20,
        temperature: float = 2.0,
        w: float = 1.0,
        learn_w: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        batch_size: int = 256,
        seed: int = 42,
        mask_same: bool = False,
        cap: int = 0,
    ) -> Embed:
        """Train the head(s) on the rows in ``mask``; returns the embedding function.

        ``mask_same``: pairs of a batch that share their caption are not each other's negatives.
        ``cap``: each epoch draws at most this many rows of any one caption (0: every row)."""
        torch.manual_seed(seed)
        x, y = self.x[mask], self.y[mask]
        cid = self.caption[mask]
        wv = self.words(self.logits[mask], top_k, temperature)
        c, d = x.shape[1], y.shape[1]

        def make() -> nn.Module:
            if linear:
                return nn.Sequential(nn.Dropout(dropout), nn.Linear(c, d))
            return nn.Sequential(nn.Dropout(dropout), nn.Linear(c, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d))

        members = nn.ModuleList(make() for _ in range(heads))
        weight = nn.Parameter(torch.tensor(float(w)), requires_grad=learn_w)
        log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.05)))
        matrices = [p for p in members.parameters() if p.ndim > 1]
        others = [p for p in members.parameters() if p.ndim <= 1] + [log_scale] + ([weight] if learn_w else [])
        opt = torch.optim.AdamW([{"params": matrices, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}], lr=lr)
        n = len(x)
        groups = [torch.nonzero(cid == c).flatten() for c in cid.unique()] if cap else []
        per_epoch = sum(min(len(g), cap) for g in groups) if cap else n
        steps = epochs * math.ceil(per_epoch / batch_size)
        warm = int(0.05 * steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / max(1, warm) if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))

        def outputs(feats: Tensor, words_vec: Tensor) -> list[Tensor]:
            return [F.normalize(m(feats), dim=-1) + (weight * words_vec if words else 0) for m in members]

        for _ in range(epochs):
            members.train()
            if cap:
                rows = torch.cat([g[torch.randperm(len(g))[:cap]] for g in groups])
                perm = rows[torch.randperm(len(rows))]
            else:
                perm = torch.randperm(n)
            for start in range(0, len(perm), batch_size):
                i = perm[start : start + batch_size]
                feats = F.dropout(x[i], feature_dropout) if feature_dropout else x[i]
                labels = torch.arange(len(i))
                same = (cid[i][:, None] == cid[i][None, :]) & ~torch.eye(len(i), dtype=torch.bool) if mask_same else None
                loss = torch.zeros(())
                for out in outputs(feats, wv[i]):
                    logits = log_scale.exp().clamp(max=100) * y[i] @ F.normalize(out, dim=-1).T
                    if same is not None:
                        logits = logits.masked_fill(same, float("-inf"))
                    loss = loss + (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        members.eval()

        def embed(feats: Tensor, logits: Tensor) -> Tensor:
            with torch.no_grad():
                return torch.stack([F.normalize(o, dim=-1) for o in outputs(feats, self.words(logits, top_k, temperature))]).mean(0)

        return embed

    def run(self, spec: str) -> dict[str, list[float]]:
        """Recall@10 per set and seed for one run spec."""
        kwargs = parse_run(spec)
        seeds, ensemble = kwargs.pop("seeds", [1, 2, 3]), int(kwargs.pop("ensemble", 1))
        hub = float(kwargs.pop("hub", 0.0))

        def fit(mask: Tensor, seed: int) -> Embed:
            fits = [self.train_head(mask, seed=seed * 100 + e, **kwargs) for e in range(ensemble)]
            return lambda feats, logits: torch.stack([F.normalize(f(feats, logits), dim=-1) for f in fits]).mean(0)

        def score(mask: Tensor, seed: int, x: Tensor, logits: Tensor, q: Tensor, rel: Tensor) -> float:
            images = fit(mask, seed)(x, logits)
            if not hub:
                return recall_at_10(images, q, rel)
            bank = self.caption_vectors[self.caption[mask].unique()]  # the captions the head trained on
            return recall_at_10(images, q, rel, penalty=hub * hubness(images, bank))

        scores: dict[str, list[float]] = {}
        everything = torch.ones(len(self.rows), dtype=torch.bool)
        for seed in seeds:
            scores.setdefault("dev", []).append(score(everything, seed, *self.dev))
            for source, held_out in self.holdout.items():
                keep = torch.tensor([s != source for s in self.source])
                scores.setdefault(f"x-{source}", []).append(score(keep, seed, *held_out))
        return scores


def hubness(images: Tensor, bank: Tensor, k: int = 10) -> Tensor:
    """``(N,)``: each image's mean cosine to its ``k`` nearest texts of ``bank`` (``(M, D)``),
    as the image retriever's hubness correction computes it (:func:`ragmm.encoders.hubness.hubness`).
    Subtracting a share of it from every query's cosine is the CSLS correction (Conneau et al.
    2018): an image close to many texts, a hub, stops crowding every query's top 10."""
    from ragmm.encoders.hubness import hubness as image_hubness

    return torch.from_numpy(image_hubness(images.detach().float().numpy(), bank.detach().float().numpy(), k)).to(images.dtype)


def recall_at_10(images: Tensor, queries: Tensor, relevant: Tensor, penalty: Tensor | None = None) -> float:
    """Mean share of each query's relevant images among its 10 nearest (by cosine, minus each
    image's ``penalty`` where given)."""
    scores = queries @ F.normalize(images, dim=-1).T  # (Q, N)
    if penalty is not None:
        scores = scores - penalty
    top = scores.topk(min(10, images.shape[0]), dim=1).indices
    return float((relevant.gather(1, top).sum(1).float() / relevant.sum(1).float()).mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("data/clipart"), help="the folder of python -m ragmm.training.data.clipart")
    ap.add_argument("--trunk", default="efficientnet-lite0")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--cached-only", action="store_true", help="train only on rows whose features are cached")
    ap.add_argument("--same-rows-as", metavar="TRUNK-SIZE", help="train only on rows whose features are cached for this trunk too, e.g. efficientnet-lite1-192 (to compare trunks)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--runs", nargs="+", default=["epochs=5"], help='run specs, e.g. "epochs=5,heads=3,feature_dropout=0.3"')
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    probe = Probe(args.data, args.trunk, args.size, cached_only=args.cached_only, same_rows_as=args.same_rows_as)
    x, logits, q, rel = probe.dev
    base = {"dev": recall_at_10(probe.words(logits, 20, 2.0), q, rel)}
    base |= {f"x-{s}": recall_at_10(probe.words(lg, 20, 2.0), qq, r) for s, (_, lg, qq, r) in probe.holdout.items()}
    print(f"{len(probe.rows)} training rows; words vector alone: " + "  ".join(f"{k} {v:.3f}" for k, v in base.items()), flush=True)
    for spec in args.runs:
        scores = probe.run(spec)
        means = {k: float(np.mean(v)) for k, v in scores.items()}
        print(f"[{spec}] " + "  ".join(f"{k} {means[k]:.3f}±{np.std(v):.3f}" for k, v in scores.items()) + f"  mean {np.mean(list(means.values())):.3f}", flush=True)


if __name__ == "__main__":
    main()
