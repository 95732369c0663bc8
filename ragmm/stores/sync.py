"""Copy collections from one store to another (``ragmm sync --url URL``).

Points keep their ids, so a second sync overwrites instead of duplicating: syncing is
idempotent, and a sync cut short is finished by running it again.

Example:
    >>> from ragmm.stores.edge import EdgeStore
    >>> from ragmm.stores.server import ServerStore
    >>> sync(EdgeStore(".ragmm"), ServerStore("http://localhost:6333"))   # doctest: +SKIP
    {'document': 120, 'paragraph': 4312}
"""

from __future__ import annotations

from ragmm.errors import RagmmError
from ragmm.protocols import Store
from ragmm.stores.common import check_same_spec


def sync(src: Store, dst: Store, collections: list[str] | None = None, batch: int = 256, progress: bool = True) -> dict[str, int]:
    """Copy every point (ids, vectors, payloads) of ``collections`` from ``src`` to ``dst``.

    Each collection is created in ``dst`` with the spec it has in ``src`` (or checked
    against the one ``dst`` already has). Points already in ``dst`` with the same id are
    replaced; points only in ``dst`` are kept.

    Args:
        src: the store to read.
        dst: the store to write.
        collections: names to copy; ``None`` copies every collection of ``src``.
        batch: points read and written at a time.
        progress: show a tqdm bar per collection.

    Returns:
        Points copied per collection.

    Raises:
        RagmmError: a named collection does not exist in ``src``.
        EncoderMismatchError: ``dst`` has the collection with another encoder or vectors.
    """
    from tqdm.auto import tqdm

    names = src.collections() if collections is None else list(collections)
    specs = {}
    for name in names:
        spec = src.get_spec(name)
        if spec is None:
            raise RagmmError(f"collection {name!r} does not exist in the source store {src!r}; known: {', '.join(src.collections()) or 'none'}")
        specs[name] = spec
    # Check every spec before creating or copying anything: a mismatch leaves the target as it was.
    for spec in specs.values():
        existing = dst.get_spec(spec.name)
        if existing is not None:
            check_same_spec(existing, spec, repr(dst))
    for spec in specs.values():
        dst.create_collection(spec)
    copied = {}
    for name in names:
        total = src.count(name)
        done = 0
        with tqdm(total=total, desc=f"sync {name}", unit="pt", disable=not progress) as bar:
            chunk = []
            for point in src.scroll(name, with_vectors=True, batch=batch):
                chunk.append(point)
                if len(chunk) >= batch:
                    dst.upsert(name, chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
                    chunk = []
            if chunk:
                dst.upsert(name, chunk)
                done += len(chunk)
                bar.update(len(chunk))
        copied[name] = done
    dst.flush()
    if hasattr(dst, "optimize"):
        dst.optimize()  # an Edge target searches by brute force until its HNSW is built
    return copied
