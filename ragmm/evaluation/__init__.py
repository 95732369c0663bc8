"""Evaluation of retrievers (``ragmm eval retrieval``): ranx metrics, JSON report, PNG plots."""
