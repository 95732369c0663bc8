"""Pydantic configuration, loaded from TOML.

Every component section names its implementation with ``type``; the rest of the section is
validated against that implementation's own ``Config`` model (found through the registry),
so a wrong field or value is reported with the file, the field and the value.

Example ``ragmm.toml``::

    [store]
    type = "edge"          # or "server" with url = "http://host:6333"
    path = ".ragmm"

    [encoders.text]
    type = "sentence-transformers"
    model = "all-MiniLM-L6-v2"   # the packaged default; any local path or hub id
    precision = "auto"

    [generator]
    type = "smollm2"             # or "extractive" (no language model)
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ragmm.agent import AgentSettings
from ragmm.errors import ConfigError
from ragmm.serve.settings import ServeSettings

DEFAULT_CONFIG_NAME = "ragmm.toml"


class NoOptions(BaseModel):
    """The settings of a component that takes none."""

    model_config = ConfigDict(extra="forbid")


class ComponentSpec(BaseModel):
    """A component section: ``type`` plus the implementation's own settings."""

    model_config = ConfigDict(extra="allow")

    type: str

    def options(self) -> dict[str, Any]:
        """The section without ``type``: what the implementation's ``Config`` validates."""
        return dict(self.model_extra or {})


class IndexSettings(BaseModel):
    """How source files become items."""

    model_config = ConfigDict(extra="forbid")

    chunk_size: int = Field(200, gt=16, description="paragraph chunk size in encoder tokens; all-MiniLM-L6-v2 reads 256 at most")
    chunk_overlap: int = Field(20, ge=0, description="tokens shared by neighbouring chunks so a sentence cut at a border is still found")
    document_max_tokens: int = Field(4096, gt=0, description="a longer document is stored as several sections in the document corpus")
    batch_size: int = Field(64, gt=0, description="chunks encoded and written per batch")
    max_file_mb: float = Field(50.0, gt=0, description="larger files are skipped with a reason")
    extensions: list[str] | None = Field(None, description="file types to index (None: every type a configured reader takes)")
    ocr: bool = Field(True, description="read text in images with rapidocr (about 1 s per image on 2 CPU cores)")
    ocr_min_score: float = Field(0.7, ge=0, le=1, description="OCR lines recognised with lower confidence are dropped")
    image_max_side: int = Field(1024, ge=64, description="images are decoded straight to at most this many pixels a side (for OCR and the encoder)")

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info: Any) -> int:
        size = info.data.get("chunk_size", 200)
        if v >= size:
            raise ValueError(f"chunk_overlap ({v}) must be smaller than chunk_size ({size})")
        return v


class RetrieveSettings(BaseModel):
    """Defaults for ``retrieve`` and ``ask``."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(5, gt=0, description="evidence items returned (and given to the generator)")
    corpora: list[str] | None = Field(None, description="corpora searched (None: every corpus in the store)")
    candidates: int = Field(20, gt=0, description="hits fetched per corpus before merging and reranking")
    hnsw_ef: int | None = Field(None, gt=0, description="HNSW search breadth; None lets the store choose")


class RaySettings(BaseModel):
    """``ragmm index --ray``: reading in Ray tasks, encoding in a pool of Ray actors."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="Ray cluster to join ('auto', 'ray://head:10001'); None starts a local Ray unless RAY_ADDRESS is set")
    num_encode_actors: int = Field(1, gt=0, description="encoder actors, each holding one copy of the models (one per GPU on a GPU cluster)")
    batch_size: int = Field(16, gt=0, description="sources per encode call on an actor (a text source is about 10-50 paragraphs)")
    num_gpus_per_actor: float | None = Field(None, ge=0, description="GPUs per encode actor; None: 1 when the cluster has GPUs, else 0")
    num_cpus_per_actor: float = Field(1.0, gt=0, description="CPUs reserved per encode actor")
    read_concurrency: int | None = Field(None, gt=0, description="parallel read tasks at most; None lets Ray Data choose")
    read_num_cpus: float = Field(0.5, gt=0, description="CPUs reserved per read task; keep it unlike num_cpus_per_actor, or Ray Data fuses reading into the encode actors")
    object_store_mb: int | None = Field(None, gt=0, description="object store of a local Ray started by ragmm (None: Ray's default, 30% of memory)")


# A modality is a reader, an encoder and a retriever, each named by type in its own section
# (``[readers.video]``, ``[encoders.video]``, ``[retrievers.video]``); the sections given are
# merged over these defaults, and ``type = "none"`` removes one.
# The image encoder is the shipped pretrained-trunk tower, which finds unnamed pictures far more
# often than ragmm-clipart (README, "The shipped image towers"); type = "ragmm-clipart" still loads.
DEFAULT_ENCODERS = {"text": ComponentSpec(type="sentence-transformers"), "image": ComponentSpec(type="ragmm-lite0")}
DEFAULT_READERS = {"text": ComponentSpec(type="text"), "image": ComponentSpec(type="image"), "video": ComponentSpec(type="video")}
DEFAULT_RETRIEVERS = {"text": ComponentSpec(type="dense"), "image": ComponentSpec(type="image"), "video": ComponentSpec(type="video")}


def _merged(defaults: dict[str, ComponentSpec], given: dict[str, ComponentSpec]) -> dict[str, ComponentSpec]:
    merged = {**defaults, **given}
    return {m: spec for m, spec in merged.items() if spec.type != "none"}


class Config(BaseModel):
    """The whole ragmm configuration."""

    model_config = ConfigDict(extra="forbid")

    store: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="edge"))
    encoders: dict[str, ComponentSpec] = Field(
        default_factory=lambda: dict(DEFAULT_ENCODERS),
        description='one per modality; sections given are merged over the defaults, type = "none" removes one',
    )
    readers: dict[str, ComponentSpec] = Field(default_factory=lambda: dict(DEFAULT_READERS), description="one per modality: files -> items")
    retrievers: dict[str, ComponentSpec] = Field(default_factory=lambda: dict(DEFAULT_RETRIEVERS), description="one per modality: searches its corpora")
    index: IndexSettings = Field(default_factory=IndexSettings)
    retrieve: RetrieveSettings = Field(default_factory=RetrieveSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    ray: RaySettings = Field(default_factory=RaySettings, description="`ragmm index --ray`: distributed indexing on Ray Data")
    router: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="all"))
    reranker: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="none"))
    generator: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="smollm2"))
    serve: ServeSettings = Field(default_factory=ServeSettings, description="`ragmm serve` and the server `ragmm ask` uses")
    source: str | None = Field(None, exclude=True, description="the file this config came from")

    @model_validator(mode="before")
    @classmethod
    def _old_retriever_sections(cls, data: Any) -> Any:
        """``[retriever]`` and ``[image_retriever]`` (ragmm 0.1) are ``[retrievers.text]`` and
        ``[retrievers.image]``."""
        if isinstance(data, dict) and ("retriever" in data or "image_retriever" in data):
            data = dict(data)
            retrievers = dict(data.get("retrievers") or {})
            for old, modality in (("retriever", "text"), ("image_retriever", "image")):
                if old in data:
                    retrievers.setdefault(modality, data.pop(old))
            data["retrievers"] = retrievers
        return data

    @field_validator("encoders", mode="after")
    @classmethod
    def _merge_default_encoders(cls, v: dict[str, ComponentSpec]) -> dict[str, ComponentSpec]:
        return _merged(DEFAULT_ENCODERS, v)

    @field_validator("readers", mode="after")
    @classmethod
    def _merge_default_readers(cls, v: dict[str, ComponentSpec]) -> dict[str, ComponentSpec]:
        return _merged(DEFAULT_READERS, v)

    @field_validator("retrievers", mode="after")
    @classmethod
    def _merge_default_retrievers(cls, v: dict[str, ComponentSpec]) -> dict[str, ComponentSpec]:
        return _merged(DEFAULT_RETRIEVERS, v)

    def sections(self) -> list[tuple[str, str, ComponentSpec]]:
        """Every component section as ``(registry kind, section name, spec)``."""
        out = [("store", "store", self.store)]
        for kind, table in (("encoder", self.encoders), ("reader", self.readers), ("retriever", self.retrievers)):
            out += [(kind, f"{kind}s.{m}", spec) for m, spec in table.items()]
        out += [(kind, kind, getattr(self, kind)) for kind in ("router", "reranker", "generator")]
        return out

    def component_config(self, kind: str, spec: ComponentSpec, where: str) -> BaseModel:
        """Validate ``spec`` against its implementation's ``Config`` model.

        Raises:
            ConfigError: unknown type, unknown field or bad value, naming the section.
        """
        from ragmm.registry import registry

        try:
            cls = registry.get(kind, spec.type)
        except ConfigError as exc:
            raise ConfigError(f"{self._where(where)}: {exc}") from None
        model = getattr(cls, "Config", NoOptions)
        try:
            return model.model_validate(spec.options())
        except ValidationError as exc:
            raise ConfigError(_explain(exc, self._where(where))) from None

    def validate_components(self) -> None:
        """Check every component section now, not when the component is first used."""
        for kind, where, spec in self.sections():
            self.component_config(kind, spec, where)

    def _where(self, section: str) -> str:
        return f"{self.source or 'config'} [{section}]"

    def to_toml(self) -> str:
        """The effective config as TOML, every default filled in (what ``ragmm config`` prints)."""
        data = self.model_dump(exclude={"source"})

        def resolved(kind: str, spec: ComponentSpec, where: str) -> dict[str, Any]:
            return {"type": spec.type, **self.component_config(kind, spec, where).model_dump()}

        for kind, where, spec in self.sections():
            table, _, name = where.partition(".")
            if name:
                data[table][name] = resolved(kind, spec, where)
            else:
                data[table] = resolved(kind, spec, where)
        return _dump_toml(data)


def load_config(path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load ``path`` (or ``./ragmm.toml`` when it exists, else defaults) and validate it.

    Args:
        path: a TOML file; ``None`` looks for ``ragmm.toml`` in the working directory.
        overrides: top-level sections merged over the file (for tests and the CLI).

    Raises:
        ConfigError: missing file, bad TOML, unknown field or bad value.
    """
    data: dict[str, Any] = {}
    source = None
    if path is None and Path(DEFAULT_CONFIG_NAME).is_file():
        path = DEFAULT_CONFIG_NAME
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found; create it or drop --config to use the defaults")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: not valid TOML ({exc}); fix the syntax") from None
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    try:
        cfg = Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source or "config")) from None
    cfg.validate_components()
    return cfg


def load_toml_model(
    path: Path, model: type[BaseModel], what: str, overrides: dict[str, Any] | None = None, extra: dict[str, Any] | None = None, hint: str = ""
) -> Any:
    """Read the TOML file ``path`` into the pydantic ``model``; ``overrides`` that are not
    ``None`` replace top-level keys (command-line options), ``extra`` keys are added as given.

    Raises:
        ConfigError: missing file (with ``hint``), bad TOML, unknown field or bad value, naming ``what``.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found" + (f"; {hint}" if hint else ""))
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return model.model_validate({**data, **(extra or {})})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, str(path))) from None


def _explain(exc: ValidationError, where: str) -> str:
    """One line per problem: the field, the value given, and what was expected."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{where}: field '{field}'{shown}: {err['msg']}")
    return "; ".join(lines)


def _dump_toml(data: dict[str, Any]) -> str:
    """Write a nested dict as TOML; tables after plain keys, ``None`` left out."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    out: list[str] = []

    def table(prefix: str, d: dict[str, Any]) -> None:
        plain = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
        nested = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix and (plain or not nested):
            out.append(f"[{prefix}]")
        for k, v in plain.items():
            out.append(f"{k} = {value(v)}")
        if prefix and (plain or not nested):
            out.append("")
        for k, v in nested.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    return "\n".join(out).rstrip() + "\n"
