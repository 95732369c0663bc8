"""Contrastive losses for ragmm's retrievers, one per file.

Each loss is a pure function of embeddings (``clip_loss``, ``maxsim_loss``, ...) that tests in a
few lines, plus a thin ``nn.Module`` whose ``forward(sentence_features, labels)`` embeds the input
columns with a sentence-transformers model and calls that function, so it plugs into
``SentenceTransformerTrainer`` (or ``MultiVectorEncoderTrainer`` for late interaction) exactly
like sentence-transformers' own losses. Learnable temperatures live in the loss module; the
trainer optimises them because it builds its optimizer from the loss's parameters.

The training config names a loss by its key in :data:`LOSSES`:

==============================  =============================================  =========================
name                            class                                          paper
==============================  =============================================  =========================
``clip``                        :class:`CLIPLoss`                              Radford et al. 2021
``clip-uniformity-alignment``   :class:`CLIPUniformityAlignmentLoss`           Fahim et al. 2024
``maxsim``                      :class:`MaxSimLoss`                            Khattab & Zaharia 2020
``clamr``                       :class:`CLaMRLoss`                             Wan et al. 2025
``cwcl``                        :class:`CWCLLoss`                              Srinivasa et al. 2023
``symile``                      :class:`SymileLoss`                            Saporta et al. 2024
``gram``                        :class:`GRAMLoss`                              Cicchetti et al. 2025
``cached-clip``                 :class:`CachedCLIPLoss`                        Gao et al. 2021 (GradCache)
==============================  =============================================  =========================

Example:
    >>> from ragmm.training.losses import LOSSES
    >>> loss = LOSSES["clip"](model, temperature=0.05)  # doctest: +SKIP

Under data parallelism (``accelerate launch``, ``torchrun``) ``clip``, ``clip-uniformity-alignment``,
``maxsim``, ``clamr`` and ``cwcl`` gather every process's embeddings, so each query is contrasted
with the negatives of all processes (``[loss] gather_across_devices``, default on; a no-op in one
process). The helpers, :func:`~ragmm.training.losses.base.gather_rows` and friends, live in
:mod:`ragmm.training.losses.base`. ``symile`` and ``gram`` (whose batch terms are not written over a
gathered batch here) and ``cached-clip`` (GradCache back-propagates chunk by chunk, one collective
per chunk on every process) contrast each process's batch alone.

``CachedCLIPLoss`` imports sentence-transformers (seconds); it loads on first access, so importing
this package costs only torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from ragmm.training.losses.base import LogitScale, Shard, gather_rows, gather_tokens, local_shard
from ragmm.training.losses.clamr import CLaMRLoss, clamr_loss, modality_scores
from ragmm.training.losses.clip import CLIPLoss, clip_loss, clip_row_losses
from ragmm.training.losses.clip_uniformity_alignment import (
    CLIPUniformityAlignmentLoss,
    alignment_loss,
    clip_uniformity_alignment_loss,
    clip_uniformity_alignment_terms,
    cross_uniformity_loss,
    uniformity_loss,
)
from ragmm.training.losses.cwcl import CWCLLoss, cwcl_loss, cwcl_weights
from ragmm.training.losses.gram import GRAMLoss, gram_loss, gram_volume
from ragmm.training.losses.maxsim import MaxSimLoss, maxsim_loss, maxsim_scores
from ragmm.training.losses.symile import SymileLoss, multilinear_inner_product, symile_loss

_TARGETS: dict[str, str] = {
    "clip": "ragmm.training.losses.clip:CLIPLoss",
    "clip-uniformity-alignment": "ragmm.training.losses.clip_uniformity_alignment:CLIPUniformityAlignmentLoss",
    "maxsim": "ragmm.training.losses.maxsim:MaxSimLoss",
    "clamr": "ragmm.training.losses.clamr:CLaMRLoss",
    "cwcl": "ragmm.training.losses.cwcl:CWCLLoss",
    "symile": "ragmm.training.losses.symile:SymileLoss",
    "gram": "ragmm.training.losses.gram:GRAMLoss",
    "cached-clip": "ragmm.training.losses.cached_clip:CachedCLIPLoss",
}


def _resolve(target: str) -> type:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class _LossMap(Mapping[str, type]):
    """Read-only ``name -> loss class`` mapping; a class's module is imported on first lookup."""

    def __init__(self, targets: dict[str, str]) -> None:
        self._targets = dict(targets)

    def __getitem__(self, name: str) -> type:
        if name not in self._targets:
            raise KeyError(f"unknown loss {name!r}; known losses: {', '.join(sorted(self._targets))}")
        return _resolve(self._targets[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __repr__(self) -> str:
        return f"LOSSES({', '.join(self._targets)})"


LOSSES: Mapping[str, type] = _LossMap(_TARGETS)
"""The loss classes by the name the training config uses (see the table above)."""


def __getattr__(name: str) -> Any:
    # CachedCLIPLoss pulls in sentence-transformers; load it only when asked for.
    if name == "CachedCLIPLoss":
        return _resolve(_TARGETS["cached-clip"])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LOSSES",
    "CLIPLoss",
    "CLIPUniformityAlignmentLoss",
    "CLaMRLoss",
    "CWCLLoss",
    "CachedCLIPLoss",
    "GRAMLoss",
    "LogitScale",
    "MaxSimLoss",
    "Shard",
    "SymileLoss",
    "alignment_loss",
    "clamr_loss",
    "clip_loss",
    "clip_row_losses",
    "clip_uniformity_alignment_loss",
    "clip_uniformity_alignment_terms",
    "cross_uniformity_loss",
    "cwcl_loss",
    "cwcl_weights",
    "gather_rows",
    "gather_tokens",
    "gram_loss",
    "gram_volume",
    "local_shard",
    "maxsim_loss",
    "maxsim_scores",
    "modality_scores",
    "multilinear_inner_product",
    "symile_loss",
    "uniformity_loss",
]
