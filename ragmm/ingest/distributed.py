"""Indexing on a Ray cluster: the stages of :class:`~ragmm.ingest.indexer.Indexer` on Ray Data.

::

    driver   walk -> hash -> ledger check         unchanged files never leave the driver
    tasks    read (parse, chunk) one file          Dataset.map, as many at once as Ray allows
    actors   encode a batch of sources            Dataset.map_batches over an actor pool: the
                                                   models load once per actor, a GPU each
                                                   where the cluster has GPUs
    driver   upsert -> delete older version ->    Indexer.write, the order of a single-process
             mark complete in the ledger          run, so an interrupted run resumes with no
                                                   duplicates and no loss

Only the driver touches the store and the ledger: workers return points, the driver writes
them to the configured store (typically a Qdrant server or cluster) as they arrive.

Files travel by path, not by content, so every node must see them at the same absolute path
(a shared or replicated file system), as with ``ray.data.read_binary_files``. A reader that
streams its files (video) parses where it encodes, in the actor, so a long video is never
passed between workers. Parsed sources and encoded points cross workers pickled.

Example:
    >>> from ragmm import Pipeline                                        # doctest: +SKIP
    >>> from ragmm.ingest.distributed import index_with_ray
    >>> with Pipeline.from_config("ragmm.toml") as pipe:
    ...     report = index_with_ray(pipe, ["corpus/"], address="auto")
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmm.errors import ConfigError, InputError
from ragmm.ingest.indexer import _file_digest
from ragmm.ingest.ledger import SourceRecord
from ragmm.ingest.readers import read_bytes, source_key, walk
from ragmm.protocols import CollectionSpec, Encoded, Reader, SourceFile
from ragmm.types import IndexReport, SkippedFile

if TYPE_CHECKING:
    from ragmm.config import Config, RaySettings
    from ragmm.pipeline import Pipeline

SHRINK = "split or shrink it"
RAY_MISSING = "ragmm index --ray needs Ray Data: pip install 'ragmm[ray]' (or `pip install \"ray[data]\"`)"


@dataclass(frozen=True, slots=True)
class _Todo:
    """A file the driver found new or changed: what a read task needs."""

    path: str  # absolute: workers do not share the driver's working directory
    key: str
    modality: str
    digest: str


def index_with_ray(
    pipe: Pipeline,
    paths: Iterable[str | os.PathLike[str]],
    corpus_root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    address: str | None = None,
) -> IndexReport:
    """Index every supported file under ``paths`` on Ray (see the module docstring).

    Joins the cluster at ``address`` (else ``[ray] address``; else ``RAY_ADDRESS``; else a
    new local Ray, shut down at the end) once the driver has found files to read: a run with
    nothing new or changed never starts Ray. When Ray is already initialised in this process,
    that instance is used and left running.

    Args:
        pipe: the pipeline whose config names the readers, encoders and store.
        paths: files and folders, walked on the driver.
        corpus_root: store source keys relative to this folder.
        progress: show a progress bar over the files to index.
        address: the Ray cluster (``"auto"``, ``"ray://head:10001"``); overrides ``[ray] address``.

    Returns:
        The same :class:`~ragmm.types.IndexReport` a single-process run gives.

    Raises:
        ConfigError: Ray Data is not installed.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return _run(ray, pipe, list(paths), corpus_root, progress, address or pipe.config.ray.address)


def _connect(ray: Any, address: str | None, settings: RaySettings) -> bool:
    """Initialise Ray unless it is already; whether this call started it."""
    if ray.is_initialized():
        return False
    local = address in (None, "local") and not os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"address": address, "log_to_driver": False}
    if local:
        kwargs["include_dashboard"] = False
        if settings.object_store_mb:
            kwargs["object_store_memory"] = settings.object_store_mb * 1024 * 1024
    ray.init(**kwargs)
    return True


def _run(ray: Any, pipe: Pipeline, paths: list[Any], corpus_root: Any, progress: bool, address: str | None) -> IndexReport:
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    settings = pipe.config.ray
    indexer = pipe.indexer  # the store, the ledger and the readers (their encoders load lazily, never here)
    root = Path(corpus_root) if corpus_root is not None else None
    report = IndexReport()
    found: list[_Todo] = []
    for f in walk(paths, indexer.suffixes()):
        report.files_seen += 1
        if f.error:
            report.skipped.append(SkippedFile(str(f.path), f.error))
            continue
        reader = indexer.by_suffix[f.path.suffix.lower()]
        try:
            digest = _digest(f.path, reader, pipe.config.index.max_file_mb)
        except InputError as exc:
            report.skipped.append(SkippedFile(exc.path, exc.reason))
            continue
        found.append(_Todo(str(f.path.absolute()), source_key(f.path, root), reader.modality, digest))
    known = indexer.ledger.get_many([t.key for t in found])
    todo = [t for t in found if t.key not in known or known[t.key].source_hash != t.digest]
    report.files_unchanged += len(found) - len(todo)  # known by their hash: never parsed again
    previous: dict[str, SourceRecord | None] = {t.key: known.get(t.key) for t in todo}
    if todo:  # Ray is joined (or started) only when there is something to read
        started = _connect(ray, address, settings)
        if not progress:  # Ray Data's own bars (or, off a terminal, a progress line every few seconds)
            ray.data.DataContext.get_current().enable_progress_bars = False
        ready: set[str] = set()  # modalities whose collections exist and match
        bar = tqdm(total=len(todo), unit="file", desc="indexing on ray", disable=not progress, dynamic_ncols=True)
        try:
            for row in _dataset(ray, pipe.config, todo, settings).iter_rows():
                bar.update()
                if row["skipped"]:
                    report.skipped.append(SkippedFile(row["path"], row["skipped"]))
                    continue
                if row["modality"] not in ready:
                    specs: list[CollectionSpec] = pickle.loads(row["specs"])
                    for spec in specs:
                        indexer.store.create_collection(spec)
                    ready.add(row["modality"])
                enc: Encoded = pickle.loads(row["encoded"])
                indexer.write(enc, previous[enc.key], report)
        finally:
            bar.close()
            indexer.store.flush()
            if started:
                ray.shutdown()
    if report.files_indexed:
        indexer.store.optimize()
    report.seconds = time.perf_counter() - t0
    return report


def _digest(path: Path, reader: Reader, max_file_mb: float) -> str:
    """The file's SHA-256 as the single-process indexer computes it, with its refusals
    (too large, empty, unreadable) raised here so a refused file never reaches a worker."""
    if reader.streams:
        return _file_digest(path)
    data = read_bytes(path, int(max_file_mb * 1e6), SHRINK)
    if not data.strip():
        raise InputError(str(path), "empty file; nothing to index")
    return hashlib.sha256(data).hexdigest()


def _dataset(ray: Any, config: Config, todo: list[_Todo], settings: RaySettings) -> Any:
    """read tasks -> encode actors, as a lazy Ray Dataset of one row per file."""
    gpus = settings.num_gpus_per_actor
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    rows = [{"path": t.path, "key": t.key, "modality": t.modality, "digest": t.digest} for t in todo]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))  # one read task per file
    # Ray Data fuses a map into the next actor stage when their resource requests are equal;
    # reads then run inside the encode actors, as many at once as there are actors.
    ds = ds.map(_read_row, fn_kwargs={"config": config}, compute=ray.data.TaskPoolStrategy(size=settings.read_concurrency), num_cpus=settings.read_num_cpus)
    return ds.map_batches(
        _EncodeActor,
        fn_constructor_kwargs={"config": config},
        batch_size=settings.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=settings.num_encode_actors),
        num_cpus=settings.num_cpus_per_actor,
        num_gpus=gpus,
    )


# -- worker side --------------------------------------------------------------------------
# One set of readers per worker process and config: a read task reuses the tokenizer an
# earlier task of the same process loaded.
_READERS: dict[str, dict[str, Reader]] = {}


def _readers(config: Config) -> dict[str, Reader]:
    key = config.model_dump_json()
    if key not in _READERS:
        from ragmm.pipeline import Pipeline

        class _WorkerPipeline(Pipeline):
            """The config's readers and encoders with no store: on Ray only the driver writes."""

            @property
            def store(self) -> Any:
                return None

        _READERS[key] = {r.modality: r for r in _WorkerPipeline(config).readers}
    return _READERS[key]


def _read(reader: Reader, path: str, key: str, digest: str, max_bytes: int) -> Any:
    """Parse one file as the driver hashed it.

    Raises:
        InputError: unreadable, or changed since the driver hashed it (the ledger was checked
            against that hash), or the reader's own refusal.
    """
    p = Path(path)
    data = None
    if reader.streams:
        now = _file_digest(p)
    else:
        data = read_bytes(p, max_bytes, SHRINK)
        now = hashlib.sha256(data).hexdigest()
    if now != digest:
        raise InputError(path, "changed while it was being indexed; run `ragmm index` again")
    return reader.read(SourceFile(p, key, digest, data))


def _max_bytes(config: Config) -> int:
    return int(config.index.max_file_mb * 1e6)


def _read_row(row: dict[str, Any], config: Config) -> dict[str, Any]:
    """Ray task: parse one file (a streaming reader's file is parsed by the encode actor)."""
    out = {**row, "parsed": b"", "skipped": ""}
    reader = _readers(config)[row["modality"]]
    if reader.streams:
        return out
    try:
        parsed = _read(reader, row["path"], row["key"], row["digest"], _max_bytes(config))
    except InputError as exc:
        out["skipped"] = exc.reason
        return out
    out["parsed"] = pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL)
    return out


class _EncodeActor:
    """Ray actor: embeds batches of parsed sources with the config's readers (models loaded
    once, when the actor starts work)."""

    def __init__(self, config: Config) -> None:
        self.readers = _readers(config)
        self.max_bytes = _max_bytes(config)
        self.specs: dict[str, bytes] = {}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        n = len(batch["key"])
        out: dict[str, list[Any]] = {name: [] for name in ("path", "key", "modality", "skipped", "encoded", "specs")}

        def emit(i: int, skipped: str = "", encoded: bytes = b"", specs: bytes = b"") -> None:
            for name, value in (("path", str(batch["path"][i])), ("key", str(batch["key"][i])), ("modality", str(batch["modality"][i]))):
                out[name].append(value)
            out["skipped"].append(skipped)
            out["encoded"].append(encoded)
            out["specs"].append(specs)

        by_modality: dict[str, list[tuple[int, Any]]] = {}
        for i in range(n):
            if batch["skipped"][i]:
                emit(i, skipped=str(batch["skipped"][i]))
                continue
            modality = str(batch["modality"][i])
            reader = self.readers[modality]
            if reader.streams:
                try:
                    parsed = _read(reader, str(batch["path"][i]), str(batch["key"][i]), str(batch["digest"][i]), self.max_bytes)
                except InputError as exc:
                    emit(i, skipped=exc.reason)
                    continue
            else:
                parsed = pickle.loads(batch["parsed"][i])
            by_modality.setdefault(modality, []).append((i, parsed))
        for modality, group in by_modality.items():
            reader = self.readers[modality]
            if modality not in self.specs:
                self.specs[modality] = pickle.dumps(reader.collections())
            encoded = reader.encode([parsed for _, parsed in group])
            for (i, _), enc in zip(group, encoded, strict=True):
                emit(i, encoded=pickle.dumps(enc, protocol=pickle.HIGHEST_PROTOCOL), specs=self.specs[modality])
        return {name: np.array(values, dtype=object) for name, values in out.items()}
