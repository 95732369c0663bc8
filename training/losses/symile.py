"""Symile: a contrastive loss for three or more modalities with a multilinear inner product.

Saporta, Puli, Goldstein and Ranganath 2024, "Contrasting with Symile: Simple Model-Agnostic
Representation Learning for Unlimited Modalities" (NeurIPS 2024, arXiv:2411.01053). Pairwise CLIP
losses only capture pairwise information; Symile scores a tuple of ``M`` representations with the
multilinear inner product ``MIP(x_1, ..., x_M) = sum_d prod_m x_{m,d}`` and, for each modality in
turn as the anchor, contrasts the positive tuple ``(a_i, b_i, c_i)`` with negative tuples that
pair ``a_i`` with non-matching ``(b, c)`` combinations. The loss is the mean over anchors of the
cross-entropy of ``s * MIP`` (``s = 1 / temperature``, learnable as in CLIP).

Negative sampling (the paper's two variants, Sec. 3.3 and the authors' code):

- ``"n"`` (O(N), the default): the other modalities are each shuffled by an independent random
  permutation, giving ``B - 1`` negatives per anchor (the diagonal is replaced by the positive);
  memory O(B^2), scales to large batches. Randomness comes from ``generator``: for each anchor in
  modality order, one ``randperm(B)`` per other modality in modality order.
- ``"n_squared"`` (O(N^2), 3 modalities): every ``(b_j, c_k)`` combination is a candidate, giving
  ``B^2 - 1`` negatives per anchor; deterministic, O(B^3) memory.

Representations are L2-normalised first (``normalize=True``), as the authors' models do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from ragmm.training.losses.base import LogitScale, embed_sentences, l2_normalize, require_columns
from torch import Tensor, nn

SYMILE_CITATION = """
@inproceedings{saporta2024symile,
    title={Contrasting with Symile: Simple Model-Agnostic Representation Learning for Unlimited Modalities},
    author={Adriel Saporta and Aahlad Puli and Mark Goldstein and Rajesh Ranganath},
    booktitle={NeurIPS},
    year={2024},
    eprint={2411.01053},
    archivePrefix={arXiv}
}
"""

NegativeSampling = Literal["n", "n_squared"]


def multilinear_inner_product(*embeddings: Tensor) -> Tensor:
    """``MIP(x_1, ..., x_M)_i = sum_d prod_m x_m[i, d]`` for ``M`` tensors of shape ``(B, D)``; returns ``(B,)``."""
    product = embeddings[0]
    for emb in embeddings[1:]:
        product = product * emb
    return product.sum(dim=-1)


def _anchor_logits(
    anchor: Tensor, others: list[Tensor], negative_sampling: NegativeSampling, generator: torch.Generator | None
) -> Tensor:
    """Unscaled logits of one anchor modality: ``(B, B)`` ("n") or ``(B, B^2)`` ("n_squared"); positive at column i."""
    batch = anchor.size(0)
    if negative_sampling == "n":
        shuffled = anchor.new_ones(others[0].shape)
        for other in others:
            perm = torch.randperm(batch, generator=generator, device="cpu").to(other.device)
            shuffled = shuffled * other[perm]  # (B, D): row j is a random non-matching combination
        logits = anchor @ shuffled.T  # (B, B)
        positives = multilinear_inner_product(anchor, *others)  # (B,)
        diagonal = torch.eye(batch, dtype=torch.bool, device=anchor.device)
        return torch.where(diagonal, positives[:, None], logits)
    # n_squared: block s pairs others[0][j] with others[1][(j - s) mod B]; block 0 holds the positives.
    first, second = others
    combos = torch.cat([first * torch.roll(second, shifts=s, dims=0) for s in range(batch)])  # (B^2, D)
    return anchor @ combos.T  # (B, B^2)


def symile_loss(
    embeddings: Sequence[Tensor],
    logit_scale: Tensor | float,
    *,
    negative_sampling: NegativeSampling = "n",
    generator: torch.Generator | None = None,
    normalize: bool = True,
) -> Tensor:
    """Symile loss (Saporta et al. 2024) over ``M >= 2`` aligned modalities.

    Args:
        embeddings: ``M`` tensors of shape ``(B, D)``; row ``i`` of each is the same item.
        logit_scale: ``1 / temperature``.
        negative_sampling: "n" (O(N), random permutations) or "n_squared" (all pairs, 3 modalities).
        generator: Random source of the "n" permutations (CPU generator), for reproducibility.
        normalize: L2-normalise each representation first.

    Returns:
        A 0-dim loss tensor: the mean over anchor modalities of the cross-entropy of ``s * MIP``.

    Raises:
        ValueError: fewer than 2 modalities, mismatched shapes, or "n_squared" without exactly 3.
    """
    embeddings = [l2_normalize(e, normalize) for e in embeddings]
    if len(embeddings) < 2 or any(e.dim() != 2 or e.shape != embeddings[0].shape for e in embeddings):
        raise ValueError(
            f"symile_loss needs at least 2 (B, D) tensors of one shape, got {[tuple(e.shape) for e in embeddings]}"
        )
    if negative_sampling not in ("n", "n_squared"):
        raise ValueError(f"negative_sampling must be 'n' or 'n_squared', got {negative_sampling!r}")
    if negative_sampling == "n_squared" and len(embeddings) != 3:
        raise ValueError(
            f"negative_sampling='n_squared' is defined for 3 modalities, got {len(embeddings)}; use 'n'"
        )
    targets = torch.arange(embeddings[0].size(0), device=embeddings[0].device)
    losses = []
    for m, anchor in enumerate(embeddings):
        others = embeddings[:m] + embeddings[m + 1 :]
        logits = logit_scale * _anchor_logits(anchor, others, negative_sampling, generator)
        losses.append(F.cross_entropy(logits, targets))
    return torch.stack(losses).mean()


class SymileLoss(nn.Module):
    """sentence-transformers wrapper of :func:`symile_loss`.

    Inputs are ``M >= 3`` columns, one per modality (e.g. ``text, image, audio``), row ``i`` of each
    describing the same item; labels are ignored.

    Args:
        model: A sentence-transformers model (with a Router, one branch per modality).
        temperature: Initial temperature.
        learnable_temperature: Learn the temperature (as the paper) or keep it fixed.
        max_scale: Bound on ``1 / temperature``.
        negative_sampling: "n" (O(N)) or "n_squared" (O(N^2), 3 modalities).
        normalize: L2-normalise representations first.
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        max_scale: float = 100.0,
        negative_sampling: NegativeSampling = "n",
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if negative_sampling not in ("n", "n_squared"):
            raise ValueError(f"negative_sampling must be 'n' or 'n_squared', got {negative_sampling!r}")
        self.model = model
        self.logit_scale = LogitScale(temperature, learnable_temperature, max_scale)
        self.negative_sampling = negative_sampling
        self.normalize = normalize

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        require_columns(type(self).__name__, sentence_features, 3, "one column per modality")
        return self.compute_loss_from_embeddings(embed_sentences(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        return symile_loss(
            embeddings, self.logit_scale(), negative_sampling=self.negative_sampling, normalize=self.normalize
        )

    @property
    def temperature(self) -> float:
        return self.logit_scale.temperature

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "learnable_temperature": self.logit_scale.learnable,
            "negative_sampling": self.negative_sampling,
            "normalize": self.normalize,
        }

    @property
    def citation(self) -> str:
        return SYMILE_CITATION
