"""Symmetric InfoNCE (CLIP loss) with a learnable temperature and optional hard negatives.

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision"
(CLIP), Fig. 3: the cross-entropy over the ``B x B`` cosine-similarity matrix, scaled by a
learned ``1 / temperature``, averaged over both directions (query->doc and doc->query); the
InfoNCE objective of van den Oord et al. 2018 ("Representation Learning with Contrastive
Predictive Coding") applied symmetrically.

Under data parallelism (``gather_across_devices``) the ``B x B`` matrix is the whole gathered
batch's: each process computes its own rows against every process's documents and queries (see
:mod:`ragmm.training.losses.base`).

Hard negatives: every query is contrasted with all ``B`` in-batch documents plus the hard
negatives of the *whole batch* (``B * H`` extra candidates), the shared pool used by DPR
(Karpukhin et al. 2020) and sentence-transformers' ``MultipleNegativesRankingLoss``. Hard
negatives only enter the query->doc direction; the doc->query direction is CLIP's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from ragmm.training.losses.base import (
    LogitScale,
    gather_rows,
    l2_normalize,
    local_shard,
    require_columns,
    sync_grad,
)
from torch import Tensor, nn

CLIP_CITATION = """
@inproceedings{radford2021clip,
    title={Learning Transferable Visual Models From Natural Language Supervision},
    author={Alec Radford and Jong Wook Kim and Chris Hallacy and Aditya Ramesh and Gabriel Goh and Sandhini Agarwal and Girish Sastry and Amanda Askell and Pamela Mishkin and Jack Clark and Gretchen Krueger and Ilya Sutskever},
    booktitle={ICML},
    year={2021},
    eprint={2103.00020},
    archivePrefix={arXiv}
}
"""


def check_pair(query_emb: Tensor, doc_emb: Tensor, hard_negatives: Tensor | None) -> None:
    """Raise ``ValueError`` unless the inputs are ``(B, D)``, ``(B, D)`` and ``(B, H, D)`` (or None)."""
    if query_emb.dim() != 2 or query_emb.shape != doc_emb.shape:
        raise ValueError(
            f"query_emb and doc_emb must both be (B, D) with the same shape, got {tuple(query_emb.shape)} "
            f"and {tuple(doc_emb.shape)}"
        )
    if hard_negatives is not None and (
        hard_negatives.dim() != 3
        or hard_negatives.size(0) != query_emb.size(0)
        or hard_negatives.size(2) != query_emb.size(1)
    ):
        raise ValueError(
            f"hard_negatives must be (B, H, D) = ({query_emb.size(0)}, H, {query_emb.size(1)}), "
            f"got {tuple(hard_negatives.shape)}"
        )


def clip_row_losses(
    query_emb: Tensor,
    doc_emb: Tensor,
    logit_scale: Tensor | float,
    hard_negatives: Tensor | None = None,
    *,
    normalize: bool = True,
    rows: slice = slice(None),
) -> tuple[Tensor, Tensor]:
    """Per-row losses of both CLIP directions, for the batch rows in ``rows``.

    Split out of :func:`clip_loss` so that a caller can compute the loss in row chunks (the
    gradient-cache variant does, to bound the memory of the score matrix). Normalisation happens
    inside, so each chunk builds its own graph.

    Args:
        query_emb: ``(B, D)`` query (e.g. text) embeddings.
        doc_emb: ``(B, D)`` document (e.g. image) embeddings; row ``i`` is the positive of query ``i``.
        logit_scale: ``1 / temperature`` (already exponentiated, as open_clip passes it).
        hard_negatives: Optional ``(B, H, D)`` hard negative documents, shared by the whole batch.
        normalize: L2-normalise the embeddings first (cosine similarity), as CLIP does.
        rows: Which batch rows to compute.

    Returns:
        ``(q2d, d2q)``: per-row cross-entropies, each of shape ``(len(rows),)``.
    """
    check_pair(query_emb, doc_emb, hard_negatives)
    q = l2_normalize(query_emb, normalize)  # (B, D)
    d = l2_normalize(doc_emb, normalize)  # (B, D)
    candidates = d
    if hard_negatives is not None:
        candidates = torch.cat([d, l2_normalize(hard_negatives, normalize).flatten(0, 1)])  # (B + B*H, D)
    targets = torch.arange(q.size(0), device=q.device)[rows]  # (b,)
    logits_q2d = logit_scale * q[rows] @ candidates.T  # (b, B + B*H)
    logits_d2q = logit_scale * d[rows] @ q.T  # (b, B)
    q2d = F.cross_entropy(logits_q2d, targets, reduction="none")
    d2q = F.cross_entropy(logits_d2q, targets, reduction="none")
    return q2d, d2q


def clip_loss(
    query_emb: Tensor,
    doc_emb: Tensor,
    logit_scale: Tensor | float,
    hard_negatives: Tensor | None = None,
    *,
    normalize: bool = True,
    gather_across_devices: bool = False,
) -> Tensor:
    """Symmetric InfoNCE / CLIP loss (Radford et al. 2021), optionally with hard negatives.

    ``loss = (CE(s * Q C^T, I) + CE(s * D Q^T, I)) / 2`` where ``C`` stacks the ``B`` positives and
    the batch's ``B * H`` hard negatives and ``s = 1 / temperature``.

    Args:
        query_emb: ``(B, D)`` query embeddings.
        doc_emb: ``(B, D)`` positive document embeddings, aligned with ``query_emb``.
        logit_scale: ``1 / temperature`` as a tensor (learnable) or float.
        hard_negatives: Optional ``(B, H, D)`` hard negatives.
        normalize: L2-normalise first (cosine similarity).
        gather_across_devices: In a process group, contrast this process's rows with every
            process's queries, documents and hard negatives; the value is this process's share
            of the gathered batch's loss (:meth:`~ragmm.training.losses.base.Shard.mean`). Every
            process must call it. A no-op in one process.

    Returns:
        A 0-dim loss tensor.

    Example:
        >>> q, d = torch.randn(4, 8), torch.randn(4, 8)
        >>> clip_loss(q, d, logit_scale=1 / 0.07).shape
        torch.Size([])
    """
    check_pair(query_emb, doc_emb, hard_negatives)  # before any collective, so no process waits on one that raised
    shard = local_shard(query_emb, gather_across_devices)
    q2d, d2q = clip_row_losses(
        gather_rows(query_emb, shard),  # (N, D)
        gather_rows(doc_emb, shard),  # (N, D)
        sync_grad(logit_scale, shard),
        None if hard_negatives is None else gather_rows(hard_negatives, shard),  # (N, H, D)
        normalize=normalize,
        rows=shard.rows,
    )  # each (b,)
    return (shard.mean(q2d) + shard.mean(d2q)) / 2


class CLIPLoss(nn.Module):
    """sentence-transformers wrapper of :func:`clip_loss` with CLIP's learnable temperature.

    Inputs are ``(anchor, positive)`` pairs or ``(anchor, positive, negative_1, ..., negative_n)``
    tuples; labels are ignored. The temperature lives in the loss (``logit_scale``), and the
    sentence-transformers trainer optimises it with the model, since it builds the optimizer from
    the loss's parameters.

    Args:
        model: A sentence-transformers model.
        temperature: Initial temperature (CLIP: 0.07).
        learnable_temperature: Learn the temperature (CLIP) or keep it fixed.
        max_scale: Bound on ``1 / temperature`` (CLIP: 100).
        normalize: Cosine (True) or dot-product (False) similarity.
        gather_across_devices: Under data parallelism, contrast with every process's embeddings
            (a no-op in one process); see :func:`clip_loss`.

    Example:
        >>> loss = CLIPLoss(model)  # doctest: +SKIP
        >>> trainer = SentenceTransformerTrainer(model=model, train_dataset=pairs, loss=loss)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        max_scale: float = 100.0,
        normalize: bool = True,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.logit_scale = LogitScale(temperature, learnable_temperature, max_scale)
        self.normalize = normalize
        self.gather_across_devices = gather_across_devices

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        require_columns(type(self).__name__, sentence_features, 2, "anchor, positive[, negatives...]")
        outputs = [self.model(features) for features in sentence_features]
        members = [o.get("member_embeddings") for o in outputs]  # (B, K, D) from an ensemble tower
        if all(m is None for m in members):
            return self.compute_loss_from_embeddings([o["sentence_embedding"] for o in outputs], labels)
        # An ensemble of heads (TrunkTower heads > 1): each member gets its own contrastive loss
        # against the same batch, so the members train as independent models would.
        k = next(m for m in members if m is not None).shape[1]
        losses = [
            self.compute_loss_from_embeddings([o["sentence_embedding"] if m is None else m[:, i] for o, m in zip(outputs, members, strict=True)], labels)
            for i in range(k)
        ]
        return torch.stack(losses).mean()

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        query, doc, *negatives = embeddings  # each (B, D)
        hard_negatives = torch.stack(negatives, dim=1) if negatives else None  # (B, H, D)
        return clip_loss(
            query,
            doc,
            self.logit_scale(),
            hard_negatives,
            normalize=self.normalize,
            gather_across_devices=self.gather_across_devices,
        )

    @property
    def temperature(self) -> float:
        return self.logit_scale.temperature

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "learnable_temperature": self.logit_scale.learnable,
            "normalize": self.normalize,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return CLIP_CITATION
