"""Data preparation scripts for ragmm's training runs (public data from Debian packages)."""
