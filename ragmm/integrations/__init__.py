"""Adapters that plug ragmm into other frameworks; each imports its framework when used."""
