"""Gradient-cache CLIP loss: large effective batches in the memory of a small one.

Gao, Zhang, Han and Callan 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup" (GradCache, arXiv:2101.06983): embed the batch in mini-batches without a graph,
compute the loss and its gradient with respect to the embeddings, then re-embed each mini-batch
with a graph and back-propagate the cached gradients. The loss value and gradients equal those of
the uncached loss.

What sentence-transformers already provides, and why this file still exists:

- ``CachedMultipleNegativesRankingLoss`` (``directions=("query_to_doc", "doc_to_query")``,
  ``partition_mode="per_direction"``, ``similarity_fct=cos_sim``, ``scale=1 / temperature``) *is*
  the symmetric CLIP loss with hard negatives at a **fixed** temperature; the tests check it
  equals :class:`~ragmm.training.losses.clip.CLIPLoss` with ``learnable_temperature=False``. Use it
  for a fixed temperature.
- It has no learnable temperature, which CLIP trains. This class adds one. It does **not**
  reimplement GradCache: the three-step pass, the RNG replay for dropout and the backward hook
  are sentence-transformers' public ``CachedLossMixin`` (``sentence_transformers.base.losses``);
  this file only supplies ``calculate_loss`` (our :func:`~ragmm.training.losses.clip.clip_row_losses`,
  chunked by rows) and routes the temperature's gradient.

The temperature's gradient: the mixin back-propagates the loss to the embeddings in step (2),
and applies the outer backward's ``grad_output`` (gradient accumulation's division, the fp16
scaler) only to the embeddings' replay in step (3). A parameter of the loss that received its
gradient in step (2) would miss that factor, so the gradient with respect to ``log_scale`` is
computed on a detached copy in step (2) and attached to the returned loss as a zero-valued
surrogate ``log_scale * g - (log_scale * g).detach()``, through which the outer backward
delivers ``g * grad_output``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from ragmm.training.losses.base import LogitScale, require_columns
from ragmm.training.losses.clip import CLIP_CITATION, clip_row_losses
from sentence_transformers.base.losses import CachedLossMixin
from torch import Tensor, nn

GRADCACHE_CITATION = """
@inproceedings{gao2021gradcache,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Luyu Gao and Yunyi Zhang and Jiawei Han and Jamie Callan},
    booktitle={RepL4NLP Workshop},
    year={2021},
    eprint={2101.06983},
    archivePrefix={arXiv}
}
"""


class CachedCLIPLoss(CachedLossMixin, nn.Module):
    """:class:`~ragmm.training.losses.clip.CLIPLoss` with gradient caching (GradCache).

    Same inputs, value and gradients as ``CLIPLoss``; memory bounded by ``mini_batch_size``
    instead of the batch size. Set a large ``per_device_train_batch_size`` and a small
    ``mini_batch_size``. Roughly 2x slower per example (every mini-batch is embedded twice).

    Args:
        model: A sentence-transformers model.
        temperature: Initial temperature (CLIP: 0.07).
        learnable_temperature: Learn the temperature (CLIP) or keep it fixed.
        max_scale: Bound on ``1 / temperature`` (CLIP: 100).
        normalize: Cosine (True) or dot-product (False) similarity.
        mini_batch_size: Rows per model forward and per loss chunk.
        show_progress_bar: Show the mini-batch progress bars.

    Raises:
        ValueError: the model embeds through a ``StaticEmbedding``, whose inputs cannot be split.
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        max_scale: float = 100.0,
        normalize: bool = True,
        mini_batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__()
        from sentence_transformers.base.losses import has_static_embedding_input

        if has_static_embedding_input(model):
            raise ValueError(
                "CachedCLIPLoss cannot split the inputs of a StaticEmbedding model into mini-batches; use CLIPLoss"
            )
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be at least 1, got {mini_batch_size}")
        self.model = model
        self.logit_scale = LogitScale(temperature, learnable_temperature, max_scale)
        self.normalize = normalize
        self.mini_batch_size = mini_batch_size
        self.show_progress_bar = show_progress_bar
        self._log_scale_grad: Tensor | None = None

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        require_columns(type(self).__name__, sentence_features, 2, "anchor, positive[, negatives...]")
        self.logit_scale.clamp_()
        self._log_scale_grad = None
        loss = self.forward_cached(sentence_features, labels)
        grad, self._log_scale_grad = self._log_scale_grad, None
        if grad is not None:
            surrogate = self.logit_scale.log_scale * grad  # value 0 below; carries g * grad_output
            loss = loss + (surrogate - surrogate.detach())
        return loss

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """The CLIP loss from per-mini-batch embeddings, chunked by ``mini_batch_size`` rows.

        With ``with_backward`` (GradCache step 2) each chunk is back-propagated at once, so only one
        chunk's score rows are alive at a time, and the detached total is returned.
        """
        query = torch.cat(reps[0])  # (B, D)
        doc = torch.cat(reps[1])  # (B, D)
        negatives = [torch.cat(r) for r in reps[2:]]
        hard_negatives = torch.stack(negatives, dim=1) if negatives else None  # (B, H, D)
        log_scale = self.logit_scale.log_scale
        track_scale = with_backward and log_scale.requires_grad
        if with_backward:
            # Step (2) must not write into the parameter's .grad (see the module docstring).
            log_scale = log_scale.detach().requires_grad_(track_scale)
        batch = query.size(0)
        total = query.new_zeros(())
        for begin in range(0, batch, self.mini_batch_size):
            rows = slice(begin, min(begin + self.mini_batch_size, batch))
            # exp() inside the loop: each chunk's backward frees the graph it built.
            q2d, d2q = clip_row_losses(
                query, doc, log_scale.exp(), hard_negatives, normalize=self.normalize, rows=rows
            )
            chunk = (q2d.sum() + d2q.sum()) / (2 * batch)
            if with_backward:
                chunk.backward()
                chunk = chunk.detach()
            total = total + chunk
        if track_scale:
            self._log_scale_grad = log_scale.grad
        return total

    @property
    def temperature(self) -> float:
        return self.logit_scale.temperature

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "learnable_temperature": self.logit_scale.learnable,
            "normalize": self.normalize,
            "mini_batch_size": self.mini_batch_size,
        }

    @property
    def citation(self) -> str:
        return GRADCACHE_CITATION + CLIP_CITATION
