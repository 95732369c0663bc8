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
    for vector in stored.vectors:
        if vector in asked.vectors and stored.vectors[vector].size == asked.vectors[vector].size and stored.encoder_of(vector) != asked.encoder_of(vector):
            raise encoder_mismatch(stored, vector, asked.encoder_of(vector), where)
    raise EncoderMismatchError(
        f"collection {stored.name!r} in {where} was built with encoder {stored.encoder!r} ({describe_vectors(stored.vectors)}) "
        f"but encoder {asked.encoder!r} ({describe_vectors(asked.vectors)}) was asked for; {_advice(stored, None, where)}"
    )


def unrecorded_mixed_in(stored: CollectionSpec, asked: CollectionSpec, where: str) -> dict[str, str]:
    """Check the encoders ``asked`` mixes into its vectors (``mixed_in``) against those the
    collection recorded; returns the ones it has no record of (a collection built before ragmm
    recorded them), for the caller to record.

    Raises:
        EncoderMismatchError: a recorded one differs (one line: both encoders and the two ways out).
    """
    unrecorded: dict[str, str] = {}
    for section, name in asked.mixed_in.items():
        built = stored.mixed_in.get(section)
        if built is None:
            unrecorded[section] = name
        elif built != name:
            raise mixed_in_mismatch(stored, section, name, where)
    return unrecorded


def mixed_in_mismatch(spec: CollectionSpec, section: str, configured: str, where: str) -> EncoderMismatchError:
    """The error for a collection whose vectors mix in another ``section`` encoder than ``configured``."""
    built = spec.mixed_in[section]
    return EncoderMismatchError(
        f"collection {spec.name!r} in {where} holds vectors of {section.split('.')[-1]} encoder {built!r} (its {spec.modality} frames), "
        f"but {configured!r} is configured; to use it as built, set [{section}] {encoder_setting(built)} in the config; to re-index it, "
        f"delete {where} (or index into another store path) and run `ragmm index` again"
    )


def encoder_section(spec: CollectionSpec, vector: str | None = None) -> str:
    """The config section of the encoder that made ``vector`` (default: the collection's own
    encoder): ``encoders.image`` for the pixels of an image corpus, else ``encoders.text``."""
    own = vector is None or spec.encoder_of(vector) == spec.encoder
    return "encoders.image" if spec.modality == "image" and own else "encoders.text"


def encoder_setting(identity: str) -> str:
    """The config line that selects the encoder remembered as ``identity`` again: a shipped
    encoder is remembered by its registered name (``type = "ragmm-clipart"``), any other by
    its model (``model = "/models/tower"``)."""
    from ragmm.registry import registry

    return f'type = "{identity}"' if identity in registry.names("encoder") else f'model = "{identity}"'


def _advice(spec: CollectionSpec, vector: str | None, where: str) -> str:
    built = spec.encoder if vector is None else spec.encoder_of(vector)
    return (
        f"to use it as built, set [{encoder_section(spec, vector)}] {encoder_setting(built)} in the config; to re-index it, "
        f"delete {where} (or index into another store path) and run `ragmm index` again"
    )


def encoder_mismatch(spec: CollectionSpec, vector: str, configured: str, where: str) -> EncoderMismatchError:
    """The error for a collection whose ``vector`` another encoder than ``configured`` made.

    One line naming the collection, both encoders and the two ways out: configure the encoder
    it was built with, or re-index into an empty store (the store's ledger marks every indexed
    file, so the whole store goes, not only the collection).

    Example:
        >>> from ragmm.protocols import VectorSpec
        >>> spec = CollectionSpec("image", {"image": VectorSpec(384, encoder="ragmm-clipart")}, "ragmm-clipart", "image")
        >>> print(encoder_mismatch(spec, "image", "ragmm-lite0", ".ragmm"))  # doctest: +NORMALIZE_WHITESPACE
        collection 'image' in .ragmm was built with image encoder 'ragmm-clipart', but 'ragmm-lite0' is configured;
        to use it as built, set [encoders.image] type = "ragmm-clipart" in the config; to re-index it,
        delete .ragmm (or index into another store path) and run `ragmm index` again
    """
    section = encoder_section(spec, vector)
    return EncoderMismatchError(
        f"collection {spec.name!r} in {where} was built with {section.split('.')[1]} encoder {spec.encoder_of(vector)!r}, "
        f"but {configured!r} is configured; {_advice(spec, vector, where)}"
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
