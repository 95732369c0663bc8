"""Backend-free checks shared by the store facade and ``ragmm sync``: collection names, specs,
vectors, and their error messages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ragmm.errors import ConfigError, EncoderMismatchError, RagmmError
from ragmm.protocols import CollectionSpec, VectorSpec

# Collection names become folder names (edge) and collection names (server): keep them portable.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def valid_name(name: str) -> bool:
    """Whether ``name`` can be a collection (reads of other names find nothing)."""
    return isinstance(name, str) and bool(_NAME.match(name))


def check_name(name: str) -> str:
    """Return ``name`` if it can name a collection on every backend.

    Raises:
        ConfigError: the name has characters a folder or a Qdrant collection cannot hold.
    """
    if not valid_name(name):
        raise ConfigError(
            f"collection name {name!r} is not allowed; use 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def describe_vectors(vectors: Mapping[str, VectorSpec]) -> str:
    """``dense: 384-d cosine, tokens: 128-d dot multivector`` (for error messages)."""
    parts = [f"{k}: {v.size}-d {v.distance}{' multivector' if v.multivector else ''}" for k, v in sorted(vectors.items())]
    return ", ".join(parts) or "no vectors"


def check_same_spec(stored: CollectionSpec, asked: CollectionSpec, where: str) -> None:
    """Check that ``asked`` may use the collection built as ``stored``.

    Only the encoder and the vectors must match; payload indexes may differ (missing
    ones are added by the caller).

    Args:
        stored: the spec the collection was created with.
        asked: the spec of the caller.
        where: the store, for the message (a folder or a server URL).

    Raises:
        EncoderMismatchError: another encoder or other vectors.
    """
    if stored.encoder == asked.encoder and dict(stored.vectors) == dict(asked.vectors):
        return
    raise EncoderMismatchError(
        f"collection {stored.name!r} in {where} was built with encoder {stored.encoder!r} ({describe_vectors(stored.vectors)}) "
        f"but encoder {asked.encoder!r} ({describe_vectors(asked.vectors)}) was asked for; configure the original encoder, "
        f"re-index into a new store path, or drop the collection with `ragmm remove` and index again"
    )


def to_list(vector: Any) -> list[Any]:
    """A dense vector or a multivector (numpy array, or list of arrays) as plain lists of floats."""
    if hasattr(vector, "tolist"):
        return vector.tolist()
    return [v.tolist() if hasattr(v, "tolist") else v for v in vector]


def check_vector(spec: CollectionSpec, using: str, vector: list[Any], where: str) -> None:
    """Check one vector (already a list) against the collection's spec.

    Raises:
        EncoderMismatchError: unknown vector name, or a vector of another dimension.
    """
    vs = spec.vectors.get(using)
    if vs is None:
        raise EncoderMismatchError(
            f"collection {spec.name!r} in {where} has no vector {using!r} (it has {describe_vectors(spec.vectors)}); "
            f"check the retriever's vector name"
        )
    rows = vector if vs.multivector else [vector]
    if vs.multivector and (not rows or not isinstance(rows[0], list)):
        raise EncoderMismatchError(f"collection {spec.name!r} in {where}: vector {using!r} is a multivector; pass a list of {vs.size}-d vectors")
    for row in rows:
        if len(row) != vs.size:
            raise EncoderMismatchError(
                f"collection {spec.name!r} in {where}: vector {using!r} has {len(row)} dimensions but the collection holds "
                f"{vs.size}-d vectors of encoder {spec.encoder!r}; use that encoder or re-index"
            )


def missing_collection(name: str, where: str) -> RagmmError:
    """The error for writing into a collection that was never created."""
    return RagmmError(f"collection {name!r} does not exist in {where}; call create_collection(spec) before writing to it")
