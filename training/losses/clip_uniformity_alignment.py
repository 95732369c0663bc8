"""CLIP loss plus uniformity and alignment terms, to close the contrastive gap.

Fahim, Murphy and Fyshe 2024, "It's Not a Modality Gap: Characterizing and Addressing the
Contrastive Gap" (arXiv:2405.18570) show that the two-encoder contrastive loss itself leaves the
two modalities in small, disjoint regions of the sphere, and close that gap by adding the
uniformity and alignment terms of Wang and Isola 2020 ("Understanding Contrastive Representation
Learning through Alignment and Uniformity on the Hypersphere") to the CLIP loss:

- alignment ``L_align = mean_i ||x_i - y_i||^alpha`` over matched pairs (alpha = 2);
- in-modal uniformity ``L_unif(x) = log mean_{i != j} exp(-t ||x_i - x_j||^2)`` (t = 2),
  averaged over the two modalities;
- cross-modal uniformity ``L_xunif = log mean_{i != j} exp(-t ||x_i - y_j||^2)`` over
  non-matching pairs.

``L_CUA = L_CLIP + L_unif + L_align`` and ``L_CUAXU = L_CUA + L_xunif`` in the paper; here every
term has a weight (defaults 1, i.e. ``L_CUAXU``; set ``cross_uniformity_weight=0`` for ``L_CUA``).
The extra terms are computed on the L2-normalised embeddings, as in the paper (on the sphere).

Under data parallelism (``gather_across_devices``) every term is the whole gathered batch's: the
CLIP and alignment terms per row (each process its own rows), the uniformity terms, a log-mean
over all pairs that does not split by rows, on the gathered embeddings in every process (see
:mod:`ragmm.training.losses.base`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from ragmm.training.losses.base import (
    LogitScale,
    embed_sentences,
    gather_rows,
    l2_normalize,
    local_shard,
    require_columns,
    sync_grad,
)
from ragmm.training.losses.clip import CLIP_CITATION, check_pair, clip_row_losses
from torch import Tensor, nn

CONTRASTIVE_GAP_CITATION = """
@misc{fahim2024contrastivegap,
    title={It's Not a Modality Gap: Characterizing and Addressing the Contrastive Gap},
    author={Abrar Fahim and Alex Murphy and Alona Fyshe},
    year={2024},
    eprint={2405.18570},
    archivePrefix={arXiv}
}
@inproceedings{wang2020alignuniform,
    title={Understanding Contrastive Representation Learning through Alignment and Uniformity on the Hypersphere},
    author={Tongzhou Wang and Phillip Isola},
    booktitle={ICML},
    year={2020}
}
"""


def alignment_loss(x: Tensor, y: Tensor, alpha: float = 2.0) -> Tensor:
    """``mean_i ||x_i - y_i||^alpha`` over matched rows of ``x`` and ``y`` (both ``(B, D)``)."""
    # ||.||^alpha as (squared norm)^(alpha/2): no square root, so no NaN gradient when x_i == y_i.
    return (x - y).pow(2).sum(dim=1).pow(alpha / 2).mean()


def _squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """``(N, M)`` squared Euclidean distances, from inner products so the gradient is smooth at 0."""
    sq = x.pow(2).sum(-1)[:, None] + y.pow(2).sum(-1)[None, :] - 2 * x @ y.T  # (N, M)
    return sq.clamp(min=0)


def uniformity_loss(x: Tensor, t: float = 2.0) -> Tensor:
    """``log mean_{i<j} exp(-t ||x_i - x_j||^2)`` over the rows of ``x`` (``(B, D)``, ``B >= 2``)."""
    upper = torch.triu(torch.ones(x.size(0), x.size(0), dtype=torch.bool, device=x.device), diagonal=1)
    sq_dists = _squared_distances(x, x)[upper]  # (B * (B - 1) / 2,)
    # logsumexp - log(n) is log(mean(exp(.))) without underflow for large t * distance.
    return torch.logsumexp(-t * sq_dists, dim=0) - math.log(sq_dists.numel())


def cross_uniformity_loss(x: Tensor, y: Tensor, t: float = 2.0) -> Tensor:
    """``log mean_{i != j} exp(-t ||x_i - y_j||^2)`` over non-matching pairs of ``x`` and ``y``."""
    sq_dists = _squared_distances(x, y)  # (B, B)
    off_diagonal = ~torch.eye(x.size(0), dtype=torch.bool, device=x.device)
    values = sq_dists[off_diagonal]  # (B * (B - 1),)
    return torch.logsumexp(-t * values, dim=0) - math.log(values.numel())


def clip_uniformity_alignment_terms(
    query_emb: Tensor,
    doc_emb: Tensor,
    logit_scale: Tensor | float,
    hard_negatives: Tensor | None = None,
    *,
    alignment_weight: float = 1.0,
    uniformity_weight: float = 1.0,
    cross_uniformity_weight: float = 1.0,
    uniformity_t: float = 2.0,
    alignment_alpha: float = 2.0,
    normalize: bool = True,
    gather_across_devices: bool = False,
) -> dict[str, Tensor]:
    """The weighted terms of the loss, by name (``clip``, ``alignment``, ``uniformity``, ``cross_uniformity``).

    Zero-weighted terms are left out. See :func:`clip_uniformity_alignment_loss` for the arguments.
    """
    check_pair(query_emb, doc_emb, hard_negatives)  # before any collective
    shard = local_shard(query_emb, gather_across_devices)
    if shard.total < 2:
        raise ValueError(f"uniformity needs a batch of at least 2 pairs, got {shard.total}")
    query_all, doc_all = gather_rows(query_emb, shard), gather_rows(doc_emb, shard)  # (N, D) each
    hard_all = None if hard_negatives is None else gather_rows(hard_negatives, shard)  # (N, H, D)
    q2d, d2q = clip_row_losses(
        query_all, doc_all, sync_grad(logit_scale, shard), hard_all, normalize=normalize, rows=shard.rows
    )  # each (b,)
    terms = {"clip": (shard.mean(q2d) + shard.mean(d2q)) / 2}
    # The geometry terms live on the unit sphere whatever similarity the CLIP term uses.
    q = l2_normalize(query_all)  # (N, D)
    d = l2_normalize(doc_all)  # (N, D)
    if alignment_weight:
        rows = shard.rows
        distances = (q[rows] - d[rows]).pow(2).sum(dim=1).pow(alignment_alpha / 2)  # (b,), as alignment_loss
        terms["alignment"] = alignment_weight * shard.mean(distances)
    if uniformity_weight:
        in_modal = (uniformity_loss(q, uniformity_t) + uniformity_loss(d, uniformity_t)) / 2
        terms["uniformity"] = uniformity_weight * in_modal
    if cross_uniformity_weight:
        terms["cross_uniformity"] = cross_uniformity_weight * cross_uniformity_loss(q, d, uniformity_t)
    return terms


def clip_uniformity_alignment_loss(
    query_emb: Tensor,
    doc_emb: Tensor,
    logit_scale: Tensor | float,
    hard_negatives: Tensor | None = None,
    *,
    alignment_weight: float = 1.0,
    uniformity_weight: float = 1.0,
    cross_uniformity_weight: float = 1.0,
    uniformity_t: float = 2.0,
    alignment_alpha: float = 2.0,
    normalize: bool = True,
    gather_across_devices: bool = False,
) -> Tensor:
    """CLIP loss + alignment + in-modal and cross-modal uniformity (Fahim et al. 2024, ``L_CUAXU``).

    Args:
        query_emb: ``(B, D)`` embeddings of the first modality (e.g. text).
        doc_emb: ``(B, D)`` embeddings of the second modality (e.g. image), aligned with ``query_emb``.
        logit_scale: ``1 / temperature`` for the CLIP term.
        hard_negatives: Optional ``(B, H, D)`` hard negatives for the CLIP term.
        alignment_weight: Weight of ``L_align``.
        uniformity_weight: Weight of the in-modal ``L_unif`` (mean over the two modalities).
        cross_uniformity_weight: Weight of ``L_xunif``; 0 gives the paper's ``L_CUA``.
        uniformity_t: ``t`` of the Gaussian potential (Wang and Isola: 2).
        alignment_alpha: Exponent of the alignment distance (Wang and Isola: 2).
        normalize: Cosine similarity in the CLIP term.
        gather_across_devices: In a process group, compute every term over every process's
            embeddings; the value is this process's share of the gathered batch's loss. Every
            process must call it. A no-op in one process.

    Returns:
        A 0-dim loss tensor.
    """
    terms = clip_uniformity_alignment_terms(
        query_emb,
        doc_emb,
        logit_scale,
        hard_negatives,
        alignment_weight=alignment_weight,
        uniformity_weight=uniformity_weight,
        cross_uniformity_weight=cross_uniformity_weight,
        uniformity_t=uniformity_t,
        alignment_alpha=alignment_alpha,
        normalize=normalize,
        gather_across_devices=gather_across_devices,
    )
    return torch.stack(list(terms.values())).sum()


class CLIPUniformityAlignmentLoss(nn.Module):
    """sentence-transformers wrapper of :func:`clip_uniformity_alignment_loss`.

    Inputs and temperature as :class:`~ragmm.training.losses.clip.CLIPLoss`; the three extra
    weights are configurable (defaults give the paper's ``L_CUAXU``). ``gather_across_devices``
    (default on; a no-op in one process) computes every term over every process's embeddings.
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        max_scale: float = 100.0,
        alignment_weight: float = 1.0,
        uniformity_weight: float = 1.0,
        cross_uniformity_weight: float = 1.0,
        uniformity_t: float = 2.0,
        alignment_alpha: float = 2.0,
        normalize: bool = True,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.logit_scale = LogitScale(temperature, learnable_temperature, max_scale)
        self.alignment_weight = alignment_weight
        self.uniformity_weight = uniformity_weight
        self.cross_uniformity_weight = cross_uniformity_weight
        self.uniformity_t = uniformity_t
        self.alignment_alpha = alignment_alpha
        self.normalize = normalize
        self.gather_across_devices = gather_across_devices

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        require_columns(type(self).__name__, sentence_features, 2, "anchor, positive[, negatives...]")
        return self.compute_loss_from_embeddings(embed_sentences(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        query, doc, *negatives = embeddings  # each (B, D)
        hard_negatives = torch.stack(negatives, dim=1) if negatives else None  # (B, H, D)
        return clip_uniformity_alignment_loss(
            query,
            doc,
            self.logit_scale(),
            hard_negatives,
            alignment_weight=self.alignment_weight,
            uniformity_weight=self.uniformity_weight,
            cross_uniformity_weight=self.cross_uniformity_weight,
            uniformity_t=self.uniformity_t,
            alignment_alpha=self.alignment_alpha,
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
            "alignment_weight": self.alignment_weight,
            "uniformity_weight": self.uniformity_weight,
            "cross_uniformity_weight": self.cross_uniformity_weight,
            "uniformity_t": self.uniformity_t,
            "alignment_alpha": self.alignment_alpha,
            "normalize": self.normalize,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return CONTRASTIVE_GAP_CITATION + CLIP_CITATION
