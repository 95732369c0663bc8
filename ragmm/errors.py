"""Errors a user can act on: each names the file, field or value and what to do."""

from __future__ import annotations


class RagmmError(Exception):
    """Base class of every error ragmm raises on purpose."""


class ConfigError(RagmmError, ValueError):
    """A configuration value is wrong or a configured component cannot be built."""


class InputError(RagmmError):
    """A user file cannot be read; the indexer skips it and reports the reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class EncoderMismatchError(RagmmError):
    """A collection was built with another encoder (or dimension) than the one asked for."""


class ModelNotFoundError(RagmmError, FileNotFoundError):
    """A configured model path or packaged model is missing."""
