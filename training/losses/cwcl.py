"""Continuously weighted contrastive loss (CWCL).

Srinivasa, Cho, Yang, Saidutta, Lee, Shen and Jin 2023, "CWCL: Cross-Modal Transfer with
Continuously Weighted Contrastive Loss" (NeurIPS 2023, arXiv:2309.14580). Standard contrastive
learning treats every non-matching pair as equally negative; CWCL instead weights every pair
``(i, j)`` by how similar ``i`` and ``j`` are *within* the modality whose encoder is pretrained
(and usually frozen), and uses those weights as soft targets:

``L_{a->b} = -1/B sum_i (1 / sum_j w_ij) sum_j w_ij log softmax_j(s * <a_i, b_j>)``,
``w_ij = <t_i, t_j> / 2 + 1/2`` on L2-normalised ``t`` (so ``w`` is in ``[0, 1]`` and ``w_ii = 1``),

and the loss is the mean of the two directions, both with the same weights. ``t`` are the
embeddings of the second modality (``doc_emb``), or of a separate frozen encoder of it when given
(``target_emb``); they are targets, so no gradient flows through the weights. The temperature is
CLIP's learnable one.

Under data parallelism (``gather_across_devices``) ``B`` is the whole gathered batch: each process
computes the loss of its own rows against every process's embeddings, with the weights of the
gathered targets (see :mod:`ragmm.training.losses.base`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from ragmm.training.losses.base import (
    LogitScale,
    embed_sentences,
    gather_rows,
    l2_normalize,
    local_shard,
    require_columns,
    sync_grad,
)
from torch import Tensor, nn

CWCL_CITATION = """
@inproceedings{srinivasa2023cwcl,
    title={CWCL: Cross-Modal Transfer with Continuously Weighted Contrastive Loss},
    author={Rakshith Sharma Srinivasa and Jaejin Cho and Chouchang Yang and Yashas Malur Saidutta and Ching-Hua Lee and Yilin Shen and Hongxia Jin},
    booktitle={NeurIPS},
    year={2023},
    eprint={2309.14580},
    archivePrefix={arXiv}
}
"""


def cwcl_weights(target_emb: Tensor) -> Tensor:
    """Soft targets ``w_ij = cos(t_i, t_j) / 2 + 1/2`` (``(B, B)``, detached) from ``(B, D)`` embeddings."""
    t = l2_normalize(target_emb.detach())  # (B, D)
    return (t @ t.T) / 2 + 0.5  # (B, B)


def cwcl_loss(
    query_emb: Tensor,
    doc_emb: Tensor,
    logit_scale: Tensor | float,
    *,
    target_emb: Tensor | None = None,
    normalize: bool = True,
    gather_across_devices: bool = False,
) -> Tensor:
    """CWCL (Srinivasa et al. 2023): symmetric contrastive loss with intra-modal soft targets.

    Args:
        query_emb: ``(B, D)`` embeddings of the modality being trained (e.g. text or speech).
        doc_emb: ``(B, D)`` embeddings of the second modality, aligned with ``query_emb``.
        logit_scale: ``1 / temperature``.
        target_emb: ``(B, D)`` embeddings of the second modality from a frozen pretrained encoder,
            the paper's source of the weights; defaults to ``doc_emb`` (detached).
        normalize: L2-normalise before the cross-modal similarities.
        gather_across_devices: In a process group, weigh and contrast this process's rows against
            every process's embeddings; the value is this process's share of the gathered batch's
            loss. Every process must call it. A no-op in one process.

    Returns:
        A 0-dim loss tensor.
    """
    if query_emb.dim() != 2 or query_emb.shape != doc_emb.shape:
        raise ValueError(
            f"query_emb and doc_emb must both be (B, D), got {tuple(query_emb.shape)} and {tuple(doc_emb.shape)}"
        )
    shard = local_shard(query_emb, gather_across_devices)
    rows = shard.rows
    targets = gather_rows((doc_emb if target_emb is None else target_emb).detach(), shard)  # (N, D)
    weights = cwcl_weights(targets)[rows]  # (b, N): this process's rows of the symmetric weights
    weights = weights / weights.sum(dim=1, keepdim=True)  # each row sums to 1
    q = l2_normalize(gather_rows(query_emb, shard), normalize)  # (N, D)
    d = l2_normalize(gather_rows(doc_emb, shard), normalize)  # (N, D)
    scale = sync_grad(logit_scale, shard)
    logits_q2d = scale * q[rows] @ d.T  # (b, N)
    logits_d2q = scale * d[rows] @ q.T  # (b, N)
    loss_q2d = -(weights * F.log_softmax(logits_q2d, dim=1)).sum(dim=1)  # (b,)
    loss_d2q = -(weights * F.log_softmax(logits_d2q, dim=1)).sum(dim=1)  # (b,)
    return (shard.mean(loss_q2d) + shard.mean(loss_d2q)) / 2


class CWCLLoss(nn.Module):
    """sentence-transformers wrapper of :func:`cwcl_loss`.

    Inputs are ``(anchor, positive)`` pairs; the positive column is the modality whose
    intra-modal similarities give the soft targets. Labels are ignored.

    The paper takes the weights from a *pretrained* encoder of that modality (frozen). Pass it as
    ``target_model`` (e.g. a frozen copy of the starting checkpoint; it must accept the same
    tokenized inputs). Without it the weights come from the trained model's own positive
    embeddings (detached), which is sound when the model starts pretrained; from a random
    initialisation the targets are near-uniform and the loss can be minimised by collapsing all
    embeddings together, which CWCL does not penalise.

    Args:
        model: A sentence-transformers model.
        temperature: Initial temperature.
        learnable_temperature: Learn the temperature (as CLIP) or keep it fixed.
        max_scale: Bound on ``1 / temperature``.
        normalize: Cosine (True) or dot-product (False) similarity.
        target_model: Optional frozen encoder of the positive column for the weights; it is put in
            eval mode and its parameters are frozen, so the trainer leaves it alone.
        gather_across_devices: Under data parallelism, weigh and contrast with every process's
            embeddings (a no-op in one process); see :func:`cwcl_loss`.
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        max_scale: float = 100.0,
        normalize: bool = True,
        target_model: nn.Module | None = None,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.logit_scale = LogitScale(temperature, learnable_temperature, max_scale)
        self.normalize = normalize
        self.gather_across_devices = gather_across_devices
        self.target_model = target_model
        if target_model is not None:
            target_model.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> CWCLLoss:
        super().train(mode)
        if self.target_model is not None:
            self.target_model.eval()  # a frozen teacher never runs dropout
        return self

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        require_columns(type(self).__name__, sentence_features, 2, "anchor, positive")
        if len(sentence_features) > 2:
            raise ValueError(
                f"{type(self).__name__} takes (anchor, positive) pairs, got {len(sentence_features)} columns; "
                "CWCL's soft targets already weigh every in-batch pair, drop the negative columns"
            )
        target = None
        if self.target_model is not None:
            with torch.no_grad():
                # A copy: modules write their outputs into the feature dict they are given.
                target = self.target_model(dict(sentence_features[1]))["sentence_embedding"]  # (B, D)
        embeddings = embed_sentences(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels, target_emb=target)

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None = None, target_emb: Tensor | None = None
    ) -> Tensor:
        query, doc = embeddings  # each (B, D)
        return cwcl_loss(
            query,
            doc,
            self.logit_scale(),
            target_emb=target_emb,
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
            "target_model": self.target_model is not None,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return CWCL_CITATION
