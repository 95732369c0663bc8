"""Late-interaction (ColBERT MaxSim) contrastive loss with in-batch and hard negatives.

Khattab and Zaharia 2020, "ColBERT: Efficient and Effective Passage Search via Contextualized
Late Interaction over BERT", Eq. 3: the relevance of document ``d`` to query ``q`` is the sum over
query tokens of their best cosine match among the document tokens,
``S(q, d) = sum_i max_j q_i . d_j`` on L2-normalised token embeddings. ColBERT trained with a
softmax cross-entropy over ``(q, d+, d-)``; as ColBERTv2 (Santhanam et al. 2022), PyLate and
sentence-transformers' ``MultiVectorMultipleNegativesRankingLoss`` do, this loss contrasts each
query with every document in the batch: the ``B`` positives plus the ``B * H`` hard negatives.

MaxSim scores are unbounded sums (up to the query length), so the default ``scale`` is 1, as
in ColBERT and PyLate; there is no learnable temperature in the paper.

Under data parallelism (``gather_across_devices``) each process scores its own queries against
every process's documents and hard negatives, their token axes padded to the longest across
processes (see :mod:`ragmm.training.losses.base`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from ragmm.training.losses.base import (
    concat_token_batches,
    embed_tokens,
    gather_tokens,
    l2_normalize,
    local_shard,
    pad_token_batches,
    require_columns,
)
from torch import Tensor, nn

COLBERT_CITATION = """
@inproceedings{khattab2020colbert,
    title={ColBERT: Efficient and Effective Passage Search via Contextualized Late Interaction over BERT},
    author={Omar Khattab and Matei Zaharia},
    booktitle={SIGIR},
    year={2020},
    eprint={2004.12832},
    archivePrefix={arXiv}
}
"""


def maxsim_scores(
    query_tokens: Tensor,
    query_mask: Tensor,
    doc_tokens: Tensor,
    doc_mask: Tensor,
) -> Tensor:
    """All-pairs late-interaction scores ``S(q, d) = sum_{i in q} max_{j in d} q_i . d_j``.

    Padded query tokens contribute nothing; padded document tokens are never the max. A document
    with no unmasked token scores ``-inf`` (it can never win; used for a missing modality).

    Args:
        query_tokens: ``(Nq, Lq, D)`` query token embeddings (normalise them first for cosine).
        query_mask: ``(Nq, Lq)`` boolean, True for real tokens.
        doc_tokens: ``(Nd, Ld, D)`` document token embeddings.
        doc_mask: ``(Nd, Ld)`` boolean, True for real tokens.

    Returns:
        ``(Nq, Nd)`` scores.
    """
    sim = torch.einsum("qid,njd->qnij", query_tokens, doc_tokens)  # (Nq, Nd, Lq, Ld)
    sim = sim.masked_fill(~doc_mask.bool()[None, :, None, :], float("-inf"))
    best = sim.amax(dim=-1)  # (Nq, Nd, Lq)
    best = best.masked_fill(~query_mask.bool()[:, None, :], 0.0)
    return best.sum(dim=-1)  # (Nq, Nd)


def maxsim_loss(
    query_tokens: Tensor,
    query_mask: Tensor,
    doc_tokens: Tensor,
    doc_mask: Tensor,
    hard_negatives: Tensor | None = None,
    hard_negatives_mask: Tensor | None = None,
    *,
    scale: float | Tensor = 1.0,
    normalize: bool = True,
    gather_across_devices: bool = False,
) -> Tensor:
    """Contrastive cross-entropy over ColBERT MaxSim scores, in-batch plus hard negatives.

    Args:
        query_tokens: ``(B, Lq, D)`` query token embeddings.
        query_mask: ``(B, Lq)`` query token mask.
        doc_tokens: ``(B, Ld, D)`` positive document token embeddings (row ``i`` answers query ``i``).
        doc_mask: ``(B, Ld)`` document token mask.
        hard_negatives: Optional ``(B, H, Lh, D)`` hard negative documents, shared by the batch.
        hard_negatives_mask: ``(B, H, Lh)`` mask of the hard negatives (required with them).
        scale: Multiplier of the scores before the softmax (``1 / temperature``).
        normalize: L2-normalise every token embedding first (ColBERT's cosine MaxSim).
        gather_across_devices: In a process group, score this process's queries against every
            process's documents and hard negatives; the value is this process's share of the
            gathered batch's loss. Every process must call it. A no-op in one process.

    Returns:
        A 0-dim loss tensor.

    Raises:
        ValueError: shapes disagree, or hard negatives come without their mask.
    """
    batch, _, dim = query_tokens.shape
    if doc_tokens.dim() != 3 or doc_tokens.size(0) != batch or doc_tokens.size(2) != dim:
        raise ValueError(f"doc_tokens must be (B, Ld, D) = ({batch}, Ld, {dim}), got {tuple(doc_tokens.shape)}")
    if hard_negatives is not None:
        if hard_negatives_mask is None:
            raise ValueError("hard_negatives need hard_negatives_mask, (B, H, Lh), True for real tokens")
        if hard_negatives.dim() != 4 or hard_negatives.size(0) != batch or hard_negatives.size(3) != dim:
            raise ValueError(
                f"hard_negatives must be (B, H, Lh, D) = ({batch}, H, Lh, {dim}), got {tuple(hard_negatives.shape)}"
            )
    shard = local_shard(query_tokens, gather_across_devices)
    q = l2_normalize(query_tokens, normalize)  # (b, Lq, D): only this process's queries are scored
    docs, masks = gather_tokens(l2_normalize(doc_tokens, normalize), doc_mask.bool(), shard)  # (N, Ld, D), (N, Ld)
    if hard_negatives is not None:
        assert hard_negatives_mask is not None
        negatives, negatives_mask = gather_tokens(
            l2_normalize(hard_negatives, normalize), hard_negatives_mask.bool(), shard
        )  # (N, H, Lh, D), (N, H, Lh)
        # Positives and hard negatives may have different lengths: pad both to the longer one.
        docs, masks = concat_token_batches(docs, masks, negatives.flatten(0, 1), negatives_mask.flatten(0, 1))
    scores = maxsim_scores(q, query_mask, docs, masks) * scale  # (b, N + N*H)
    losses = F.cross_entropy(scores, shard.targets(scores.device), reduction="none")  # (b,)
    return shard.mean(losses)


class MaxSimLoss(nn.Module):
    """sentence-transformers wrapper of :func:`maxsim_loss`.

    Works with any model whose output carries ``token_embeddings`` and ``attention_mask``: a
    ``MultiVectorEncoder`` (trained with ``MultiVectorEncoderTrainer``; each column runs under the
    task the collator stamped, default "query" for column 0 and "document" for the rest) or a
    plain ``SentenceTransformer``. Inputs are ``(query, positive[, negative_1, ...])``; labels are
    ignored.

    Args:
        model: The multi-vector model.
        scale: ``1 / temperature`` applied to the MaxSim scores (ColBERT / PyLate: 1).
        normalize: L2-normalise token embeddings in the loss (a ColBERT model already does).
        gather_across_devices: Under data parallelism, score against every process's documents
            (a no-op in one process); see :func:`maxsim_loss`.
    """

    def __init__(
        self, model: nn.Module, scale: float = 1.0, normalize: bool = True, gather_across_devices: bool = True
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.model = model
        self.scale = scale
        self.normalize = normalize
        self.gather_across_devices = gather_across_devices

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        require_columns(type(self).__name__, sentence_features, 2, "query, positive[, negatives...]")
        query = embed_tokens(self.model, sentence_features[0], "query")
        docs = [embed_tokens(self.model, features, "document") for features in sentence_features[1:]]
        return self.compute_loss_from_embeddings([query, *docs], labels)

    def compute_loss_from_embeddings(
        self, embeddings: list[tuple[Tensor, Tensor]], labels: Tensor | None = None
    ) -> Tensor:
        """``embeddings``: one ``(tokens (B, L, D), mask (B, L))`` pair per column."""
        (query, query_mask), (doc, doc_mask), *negatives = embeddings
        hard, hard_mask = None, None
        if negatives:
            hard, hard_mask = pad_token_batches([e for e, _ in negatives], [m for _, m in negatives])  # (B, H, L, D)
        return maxsim_loss(
            query,
            query_mask,
            doc,
            doc_mask,
            hard,
            hard_mask,
            scale=self.scale,
            normalize=self.normalize,
            gather_across_devices=self.gather_across_devices,
        )

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "normalize": self.normalize, "gather_across_devices": self.gather_across_devices}

    @property
    def citation(self) -> str:
        return COLBERT_CITATION
