"""Modality-aware contrastive loss for items with several modality views (CLaMR).

Wan, Wang, Stengel-Eskin, Cho and Bansal 2025, "CLaMR: Contextualized Late-Interaction for
Multimodal Content Retrieval" (arXiv:2506.06144). An item (a video) has ``M`` modality views
(frames, speech transcript, on-screen text, metadata); its relevance to a query is the best
per-modality score, ``s(q, d) = max_m s(q, d_m)``, with ``s`` ColBERT's MaxSim over the view's
tokens (late interaction) or, here also, a cosine between pooled vectors (dense). The
modality-aware loss trains on

- a contrastive objective over items: cross-entropy of ``s(q, .)`` over the in-batch items (plus
  hard negative items, shared by the batch), and
- a modality objective: for the positive item, cross-entropy over its ``M`` per-modality scores
  with the modality that holds the answer as the target, weighted by ``modality_weight``.

Queries whose answer needs several modalities (or whose modality is unknown) take the label
``ignore_index`` and only contribute to the contrastive term.

Choices where the paper leaves room: both terms use the same scaled scores, and a missing
modality (an empty view, all tokens masked) scores ``-inf`` so the max never picks it.
CLaMR encodes all views of an item jointly in one multimodal backbone; that contextualisation
belongs to the model, and this loss takes its per-view token embeddings, however produced.

Under data parallelism (``gather_across_devices``) each process scores its own queries against
every process's items and hard negatives (see :mod:`ragmm.training.losses.base`); the modality
term stays a mean over the labelled queries of the whole gathered batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from ragmm.training.losses.base import (
    concat_token_batches,
    embed_sentences,
    embed_tokens,
    gather_rows,
    gather_tokens,
    l2_normalize,
    local_shard,
    pad_token_batches,
    require_columns,
)
from ragmm.training.losses.maxsim import COLBERT_CITATION, maxsim_scores
from torch import Tensor, nn

CLAMR_CITATION = """
@misc{wan2025clamr,
    title={CLaMR: Contextualized Late-Interaction for Multimodal Content Retrieval},
    author={David Wan and Han Wang and Elias Stengel-Eskin and Jaemin Cho and Mohit Bansal},
    year={2025},
    eprint={2506.06144},
    archivePrefix={arXiv}
}
"""


def modality_scores(
    query: Tensor,
    items: Tensor,
    *,
    query_mask: Tensor | None = None,
    item_mask: Tensor | None = None,
    normalize: bool = True,
) -> Tensor:
    """Score every query against every modality view of every item.

    Late interaction when ``query`` is ``(Nq, Lq, D)`` (then ``items`` is ``(Ni, M, Li, D)`` and both
    masks are required); dense when ``query`` is ``(Nq, D)`` (then ``items`` is ``(Ni, M, D)`` and
    ``item_mask``, optional, is ``(Ni, M)`` marking the views that exist).

    Returns:
        ``(Nq, Ni, M)`` scores; a missing view scores ``-inf``.
    """
    if query.dim() == 3:
        if query_mask is None or item_mask is None or items.dim() != 4:
            raise ValueError(
                "late interaction needs query (Nq, Lq, D) with query_mask (Nq, Lq) and items (Ni, M, Li, D) "
                f"with item_mask (Ni, M, Li); got query {tuple(query.shape)}, items {tuple(items.shape)}"
            )
        num_items, num_modalities = items.shape[:2]
        flat = maxsim_scores(
            l2_normalize(query, normalize),
            query_mask,
            l2_normalize(items, normalize).flatten(0, 1),  # (Ni*M, Li, D)
            item_mask.flatten(0, 1),  # (Ni*M, Li)
        )  # (Nq, Ni*M)
        return flat.view(query.size(0), num_items, num_modalities)
    if query.dim() == 2 and items.dim() == 3:
        scores = torch.einsum("qd,nmd->qnm", l2_normalize(query, normalize), l2_normalize(items, normalize))
        if item_mask is not None:
            scores = scores.masked_fill(~item_mask.bool()[None], float("-inf"))
        return scores  # (Nq, Ni, M)
    raise ValueError(
        f"query must be (Nq, Lq, D) for late interaction or (Nq, D) for dense, with items (Ni, M, Li, D) or "
        f"(Ni, M, D); got query {tuple(query.shape)}, items {tuple(items.shape)}"
    )


def clamr_loss(
    query: Tensor,
    items: Tensor,
    modality_labels: Tensor | None = None,
    *,
    query_mask: Tensor | None = None,
    item_mask: Tensor | None = None,
    hard_negatives: Tensor | None = None,
    hard_negatives_mask: Tensor | None = None,
    scale: float | Tensor = 1.0,
    modality_weight: float = 1.0,
    normalize: bool = True,
    ignore_index: int = -100,
    gather_across_devices: bool = False,
) -> Tensor:
    """CLaMR's modality-aware loss: contrastive over items scored by their best modality, plus
    cross-entropy teaching which modality of the positive item answers the query.

    Args:
        query: ``(B, Lq, D)`` query tokens (late interaction) or ``(B, D)`` pooled queries (dense).
        items: ``(B, M, Li, D)`` or ``(B, M, D)``: the ``M`` views of each query's positive item.
        modality_labels: ``(B,)`` index of the view holding the answer, ``ignore_index`` where there
            is no single one; None drops the modality term.
        query_mask: ``(B, Lq)`` query token mask (late interaction).
        item_mask: ``(B, M, Li)`` view token mask (late), or ``(B, M)`` view presence (dense, optional).
        hard_negatives: Optional hard negative items, ``(B, H, M, Lh, D)`` or ``(B, H, M, D)``.
        hard_negatives_mask: Their mask, ``(B, H, M, Lh)`` (late, required) or ``(B, H, M)``.
        scale: Multiplier of the scores before both softmaxes (``1 / temperature``).
        modality_weight: Weight of the modality term.
        normalize: L2-normalise embeddings first (cosine / ColBERT MaxSim).
        ignore_index: Label value that skips a query in the modality term.
        gather_across_devices: In a process group, score this process's queries against every
            process's items and hard negatives; the value is this process's share of the gathered
            batch's loss. Every process must call it. A no-op in one process.

    Returns:
        A 0-dim loss tensor.
    """
    batch = query.size(0)
    if items.size(0) != batch:
        raise ValueError(f"items must have one row per query ({batch}), got {tuple(items.shape)}")
    late = query.dim() == 3
    if late and (query_mask is None or item_mask is None):
        raise ValueError("late interaction needs query_mask (B, Lq) and item_mask (B, M, Li), True for real tokens")
    if late and hard_negatives is not None and hard_negatives_mask is None:
        raise ValueError("late-interaction hard_negatives need hard_negatives_mask (B, H, M, Lh)")
    shard = local_shard(query, gather_across_devices)
    # Below, B is the gathered batch (every process's items); the queries stay this process's.
    if late:
        items, item_mask = gather_tokens(items, item_mask, shard)  # type: ignore[arg-type]
        if hard_negatives is not None:
            hard_negatives, hard_negatives_mask = gather_tokens(hard_negatives, hard_negatives_mask, shard)  # type: ignore[arg-type]
    else:
        items = gather_rows(items, shard)
        item_mask = None if item_mask is None else gather_rows(item_mask, shard)
        hard_negatives = None if hard_negatives is None else gather_rows(hard_negatives, shard)
        hard_negatives_mask = None if hard_negatives_mask is None else gather_rows(hard_negatives_mask, shard)
    candidates, candidate_mask = items, item_mask
    if hard_negatives is not None:
        negatives = hard_negatives.flatten(0, 1)  # (B*H, M, ...)
        if late:
            assert hard_negatives_mask is not None
            candidates, candidate_mask = concat_token_batches(
                items, item_mask, negatives, hard_negatives_mask.flatten(0, 1)
            )  # (B + B*H, M, L, D), (B + B*H, M, L)
        else:
            candidates = torch.cat([items, negatives])  # (B + B*H, M, D)
            if item_mask is not None or hard_negatives_mask is not None:
                present = item_mask if item_mask is not None else items.new_ones(items.shape[:2], dtype=torch.bool)
                negative_present = (
                    hard_negatives_mask.flatten(0, 1)
                    if hard_negatives_mask is not None
                    else negatives.new_ones(negatives.shape[:2], dtype=torch.bool)
                )
                candidate_mask = torch.cat([present.bool(), negative_present.bool()])  # (B + B*H, M)

    per_modality = scale * modality_scores(
        query, candidates, query_mask=query_mask, item_mask=candidate_mask, normalize=normalize
    )  # (b, B + B*H, M)
    targets = shard.targets(query.device)  # (b,): this process's positives among the gathered items
    item_scores = per_modality.amax(dim=-1)  # (b, B + B*H): an item scores by its best modality
    loss = shard.mean(F.cross_entropy(item_scores, targets, reduction="none"))
    if modality_labels is None or not modality_weight:
        return loss

    positive_views = per_modality[torch.arange(batch, device=query.device), targets]  # (b, M)
    labelled = (gather_rows(modality_labels, shard) != ignore_index).sum()  # over the gathered batch
    # Summed then divided by the labelled count: a batch where no query has a single answering
    # modality adds 0 rather than the NaN a mean over nothing gives. world_size / count makes the
    # mean over processes the gathered batch's mean, as Shard.mean does for the item term.
    modality = F.cross_entropy(positive_views, modality_labels.long(), ignore_index=ignore_index, reduction="sum")
    modality = modality * shard.world_size / labelled.clamp(min=1)
    return loss + modality_weight * modality


class CLaMRLoss(nn.Module):
    """sentence-transformers wrapper of :func:`clamr_loss`.

    Columns: ``query``, then the ``M`` views of the positive item (one column per modality, in
    a fixed modality order), then optionally ``M`` more columns per hard negative item. The label
    column holds the index of the answering view per row (``ignore_index`` for none).

    Args:
        model: A model giving ``token_embeddings`` (late) or ``sentence_embedding`` (dense).
        num_modalities: ``M``; None means every column after the query is a view of the positive.
        interaction: "late" (ColBERT MaxSim per view, as CLaMR) or "dense" (cosine per view).
        scale: ``1 / temperature`` (1 suits MaxSim; around 20 suits dense cosine scores).
        modality_weight: Weight of the modality term.
        normalize: L2-normalise embeddings in the loss.
        ignore_index: Label value that skips a row in the modality term.
        gather_across_devices: Under data parallelism, score against every process's items (a
            no-op in one process); see :func:`clamr_loss`.
    """

    def __init__(
        self,
        model: nn.Module,
        num_modalities: int | None = None,
        interaction: Literal["late", "dense"] = "late",
        scale: float = 1.0,
        modality_weight: float = 1.0,
        normalize: bool = True,
        ignore_index: int = -100,
        gather_across_devices: bool = True,
    ) -> None:
        super().__init__()
        if interaction not in ("late", "dense"):
            raise ValueError(f"interaction must be 'late' or 'dense', got {interaction!r}")
        if num_modalities is not None and num_modalities < 1:
            raise ValueError(f"num_modalities must be at least 1, got {num_modalities}")
        self.model = model
        self.num_modalities = num_modalities
        self.interaction = interaction
        self.scale = scale
        self.modality_weight = modality_weight
        self.normalize = normalize
        self.ignore_index = ignore_index
        self.gather_across_devices = gather_across_devices

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        require_columns(type(self).__name__, sentence_features, 2, "query, then one column per modality view")
        views = sentence_features[1:]
        if self.num_modalities is not None and len(views) % self.num_modalities:
            raise ValueError(
                f"{type(self).__name__} got {len(views)} view columns after the query, not a multiple of "
                f"num_modalities={self.num_modalities}; give M views for the positive and for each hard negative"
            )
        if self.interaction == "late":
            query = embed_tokens(self.model, sentence_features[0], "query")
            embedded = [embed_tokens(self.model, features, "document") for features in views]
        else:
            query, *embedded = embed_sentences(self.model, sentence_features)
        return self.compute_loss_from_embeddings([query, *embedded], labels)

    def compute_loss_from_embeddings(self, embeddings: list[Any], labels: Tensor | None = None) -> Tensor:
        """``embeddings``: the query then one entry per view column; each a ``(B, D)`` tensor (dense)
        or a ``(tokens (B, L, D), mask (B, L))`` pair (late)."""
        query, *views = embeddings
        m = self.num_modalities or len(views)
        groups = [views[g * m : (g + 1) * m] for g in range(len(views) // m)]  # positive, then hard negatives
        if self.interaction == "late":
            query, query_mask = query
            items = [pad_token_batches([e for e, _ in g], [k for _, k in g]) for g in groups]  # (B, M, L, D) each
            positive, positive_mask = items[0]
            hard, hard_mask = None, None
            if len(items) > 1:
                hard, hard_mask = pad_token_batches([e for e, _ in items[1:]], [k for _, k in items[1:]])
            return clamr_loss(
                query,
                positive,
                labels,
                query_mask=query_mask,
                item_mask=positive_mask,
                hard_negatives=hard,  # (B, H, M, L, D)
                hard_negatives_mask=hard_mask,
                scale=self.scale,
                modality_weight=self.modality_weight,
                normalize=self.normalize,
                ignore_index=self.ignore_index,
                gather_across_devices=self.gather_across_devices,
            )
        items = [torch.stack(g, dim=1) for g in groups]  # each (B, M, D)
        hard = torch.stack(items[1:], dim=1) if len(items) > 1 else None  # (B, H, M, D)
        return clamr_loss(
            query,
            items[0],
            labels,
            hard_negatives=hard,
            scale=self.scale,
            modality_weight=self.modality_weight,
            normalize=self.normalize,
            ignore_index=self.ignore_index,
            gather_across_devices=self.gather_across_devices,
        )

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "num_modalities": self.num_modalities,
            "interaction": self.interaction,
            "scale": self.scale,
            "modality_weight": self.modality_weight,
            "normalize": self.normalize,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return CLAMR_CITATION + COLBERT_CITATION
