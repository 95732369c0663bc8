"""Retrievers, one per modality: text (dense, or two-stage late interaction), image (two views fused), video (CLaMR-style multi-modality late interaction)."""
