"""GRAM: contrastive alignment of three or more modalities by the volume they span.

Cicchetti, Grassucci, Sigillo and Comminiello 2025, "Gramian Multimodal Representation Learning
and Alignment" (ICLR 2025, arXiv:2412.11959). Instead of summing pairwise cosines to an anchor,
GRAM measures how well ``k`` modality vectors agree by the volume of the parallelotope they span,
``Vol(v_1, ..., v_k) = sqrt(det G)`` with ``G = A^T A`` the ``k x k`` Gram matrix of the
L2-normalised vectors: aligned vectors span (almost) no volume. The loss is InfoNCE with ``-Vol``
as the logit: ``V[i, j] = Vol(anchor_i, m1_j, ..., m{k-1}_j)`` and

``L = (CE(-s * V, I) + CE(-s * V^T, I)) / 2``

(data-to-anchor and anchor-to-data, ``s = 1 / temperature``, learnable as in CLIP). The paper's
optional data-anchor matching term is not included. The authors' released code adds
``label_smoothing=0.1``; the default here is the paper's equation (0), configurable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from ragmm.training.losses.base import LogitScale, embed_sentences, l2_normalize, require_columns
from torch import Tensor, nn

GRAM_CITATION = """
@inproceedings{cicchetti2025gram,
    title={Gramian Multimodal Representation Learning and Alignment},
    author={Giordano Cicchetti and Eleonora Grassucci and Luigi Sigillo and Danilo Comminiello},
    booktitle={ICLR},
    year={2025},
    eprint={2412.11959},
    archivePrefix={arXiv}
}
"""


def gram_volume(anchor: Tensor, *others: Tensor, eps: float = 1e-8) -> Tensor:
    """All-pairs Gramian volume ``V[i, j] = sqrt(det G(anchor_i, o1_j, ..., o{k-1}_j) + eps)``.

    ``eps`` keeps the gradient of the square root finite when the vectors are (nearly) collinear
    (volume 0), where it would be infinite; tiny negative determinants from round-off clamp to 0.

    Args:
        anchor: ``(Na, D)`` anchor-modality vectors (e.g. text).
        others: ``k - 1 >= 1`` tensors of shape ``(Nb, D)``; row ``j`` of each belongs to item ``j``.
        eps: Added under the square root.

    Returns:
        ``(Na, Nb)`` volumes.
    """
    if not others:
        raise ValueError("gram_volume needs the anchor and at least one other modality")
    stacked = torch.stack(others, dim=1)  # (Nb, k-1, D)
    self_dots = torch.einsum("jmd,jnd->jmn", stacked, stacked)  # (Nb, k-1, k-1): o_m . o_n per item
    cross = torch.einsum("id,jmd->ijm", anchor, stacked)  # (Na, Nb, k-1): anchor_i . o_m_j
    anchor_sq = anchor.pow(2).sum(-1)[:, None, None].expand(-1, stacked.size(0), 1)  # (Na, Nb, 1)
    top = torch.cat([anchor_sq, cross], dim=-1)  # (Na, Nb, k)
    bottom = torch.cat([cross.unsqueeze(-1), self_dots.expand(anchor.size(0), -1, -1, -1)], dim=-1)  # (Na, Nb, k-1, k)
    gram = torch.cat([top.unsqueeze(-2), bottom], dim=-2)  # (Na, Nb, k, k)
    # Half-precision determinants are too coarse for volumes near 0: compute those in float32.
    low_precision = gram.dtype in (torch.float16, torch.bfloat16)
    det = torch.linalg.det(gram.float() if low_precision else gram).to(anchor.dtype)  # (Na, Nb)
    return torch.sqrt(det.clamp(min=0) + eps)


def gram_loss(
    anchor: Tensor,
    others: Iterable[Tensor],
    logit_scale: Tensor | float,
    *,
    normalize: bool = True,
    label_smoothing: float = 0.0,
    eps: float = 1e-8,
) -> Tensor:
    """GRAM contrastive loss (Cicchetti et al. 2025) with ``-volume`` as the logits.

    Args:
        anchor: ``(B, D)`` anchor modality (e.g. text).
        others: ``k - 1`` tensors ``(B, D)`` of the other modalities, aligned with ``anchor``.
        logit_scale: ``1 / temperature``.
        normalize: L2-normalise every vector first (the volume is defined on unit vectors).
        label_smoothing: Of both cross-entropies (authors' code: 0.1).
        eps: See :func:`gram_volume`.

    Returns:
        A 0-dim loss tensor.
    """
    others = [l2_normalize(o, normalize) for o in others]
    anchor = l2_normalize(anchor, normalize)
    if anchor.dim() != 2 or any(o.shape != anchor.shape for o in others):
        raise ValueError(
            f"gram_loss needs (B, D) tensors of one shape, got anchor {tuple(anchor.shape)}, "
            f"others {[tuple(o.shape) for o in others]}"
        )
    logits = -logit_scale * gram_volume(anchor, *others, eps=eps)  # (B, B): anchor i vs item j
    targets = torch.arange(anchor.size(0), device=anchor.device)
    anchor_to_data = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    data_to_anchor = F.cross_entropy(logits.T, targets, label_smoothing=label_smoothing)
    return (anchor_to_data + data_to_anchor) / 2


class GRAMLoss(nn.Module):
    """sentence-transformers wrapper of :func:`gram_loss`.

    Inputs are ``k >= 3`` columns: the anchor modality first (e.g. ``text``), then the others
    (e.g. ``video, audio``), row ``i`` of each describing the same item; labels are ignored.

    Args:
        model: A sentence-transformers model (with a Router, one branch per modality).
        temperature: Initial temperature (authors: 0.07).
        learnable_temperature: Learn the temperature or keep it fixed.
        max_scale: Bound on ``1 / temperature``.
        normalize: L2-normalise first.
        label_smoothing: Of both cross-entropies.
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        max_scale: float = 100.0,
        normalize: bool = True,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.logit_scale = LogitScale(temperature, learnable_temperature, max_scale)
        self.normalize = normalize
        self.label_smoothing = label_smoothing

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        require_columns(type(self).__name__, sentence_features, 3, "anchor modality, then the other modalities")
        return self.compute_loss_from_embeddings(embed_sentences(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        anchor, *others = embeddings  # each (B, D)
        return gram_loss(
            anchor, others, self.logit_scale(), normalize=self.normalize, label_smoothing=self.label_smoothing
        )

    @property
    def temperature(self) -> float:
        return self.logit_scale.temperature

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "learnable_temperature": self.logit_scale.learnable,
            "normalize": self.normalize,
            "label_smoothing": self.label_smoothing,
        }

    @property
    def citation(self) -> str:
        return GRAM_CITATION
