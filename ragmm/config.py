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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragmm.errors import ConfigError

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
    extensions: list[str] = Field(
        default_factory=lambda: [".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"]
    )
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
    corpora: list[str] = Field(default_factory=lambda: ["paragraph", "document", "image"])
    candidates: int = Field(20, gt=0, description="hits fetched per corpus before merging and reranking")
    hnsw_ef: int | None = Field(None, gt=0, description="HNSW search breadth; None lets the store choose")


DEFAULT_ENCODERS = {"text": ComponentSpec(type="sentence-transformers"), "image": ComponentSpec(type="ragmm-clipart")}


class Config(BaseModel):
    """The whole ragmm configuration."""

    model_config = ConfigDict(extra="forbid")

    store: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="edge"))
    encoders: dict[str, ComponentSpec] = Field(
        default_factory=lambda: dict(DEFAULT_ENCODERS),
        description='one per modality; sections given are merged over the defaults, type = "none" removes one',
    )
    index: IndexSettings = Field(default_factory=IndexSettings)
    retrieve: RetrieveSettings = Field(default_factory=RetrieveSettings)
    retriever: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="dense"))
    image_retriever: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="image"), description="searches the image corpus (image and text views)")
    router: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="all"))
    reranker: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="none"))
    generator: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="smollm2"))
    source: str | None = Field(None, exclude=True, description="the file this config came from")

    @field_validator("encoders", mode="after")
    @classmethod
    def _merge_default_encoders(cls, v: dict[str, ComponentSpec]) -> dict[str, ComponentSpec]:
        merged = {**DEFAULT_ENCODERS, **v}
        return {m: spec for m, spec in merged.items() if spec.type != "none"}

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
        self.component_config("store", self.store, "store")
        for modality, spec in self.encoders.items():
            self.component_config("encoder", spec, f"encoders.{modality}")
        self.component_config("retriever", self.retriever, "retriever")
        self.component_config("retriever", self.image_retriever, "image_retriever")
        self.component_config("router", self.router, "router")
        self.component_config("reranker", self.reranker, "reranker")
        self.component_config("generator", self.generator, "generator")

    def _where(self, section: str) -> str:
        return f"{self.source or 'config'} [{section}]"

    def to_toml(self) -> str:
        """The effective config as TOML, every default filled in (what ``ragmm config`` prints)."""
        data = self.model_dump(exclude={"source"})

        def resolved(kind: str, spec: ComponentSpec, where: str) -> dict[str, Any]:
            return {"type": spec.type, **self.component_config(kind, spec, where).model_dump()}

        for kind in ("store", "retriever", "router", "reranker", "generator"):
            data[kind] = resolved(kind, getattr(self, kind), kind)
        data["image_retriever"] = resolved("retriever", self.image_retriever, "image_retriever")
        data["encoders"] = {m: resolved("encoder", spec, f"encoders.{m}") for m, spec in self.encoders.items()}
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
