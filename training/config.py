"""``train.toml``: what ``ragmm train retriever`` reads.

Example::

    [model]
    base = "all-MiniLM-L6-v2"        # packaged alias, local folder or hub id

    [data]
    train = "data/wordnet/train.jsonl"  # JSONL, parquet, or a `datasets` folder saved to disk

    [loss]
    type = "clip"                    # a name of ragmm.training.losses.LOSSES
    temperature = 0.05

    [train]
    epochs = 1
    batch_size = 64
    learning_rate = 1e-4

    [mine]                           # used with --mine-negatives
    negatives = 3

    [eval]                           # held-out evaluation before and after training
    queries = "data/wordnet/test/queries.jsonl"
    qrels = "data/wordnet/test/qrels.tsv"
    corpus_file = "data/wordnet/test/corpus.jsonl"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelSection(_Section):
    kind: str = Field("text", description="a name of ragmm.training.kinds.KINDS: text dual encoder, late interaction, image-text")
    base: str = Field("all-MiniLM-L6-v2", description="starting checkpoint: packaged alias, local folder or hub id")
    max_seq_length: int | None = Field(None, gt=0)
    # image-text only (the text tower is `base`):
    lock_text: bool = Field(True, description="image-text: keep the text tower frozen and train only the image tower (LiT, Zhai et al. 2022)")
    image_size: int = Field(64, ge=32, description="image-text: side in pixels images are letterboxed to")
    image_augment: bool = Field(True, description="image-text: random zoom, shift and flip of training images")
    image_width: int = Field(48, gt=0, description="image-text: channels of the image tower's first stage (doubling per stage; 48 gives 2.4M parameters)")
    image_trunk: dict[str, Any] = Field(default_factory=dict, description="image-text: a pretrained ImageNet trunk under the tower (trunk, head, train_blocks, trunk_lr_scale...: see ragmm.training.kinds.image_text.TrunkSettings); empty: the small CNN")


class DataSection(_Section):
    train: str = Field(..., description="JSONL, parquet, or a datasets folder saved with save_to_disk")
    query_column: str = "query"
    positive_column: str = "positive"
    negative_prefix: str = Field("negative", description="columns starting with this are hard negatives, in name order")
    max_samples: int | None = Field(None, gt=0, description="use only the first N rows (quick runs)")


class LossSection(_Section):
    model_config = ConfigDict(extra="allow")

    type: str = Field("clip", description="a name of ragmm.training.losses.LOSSES")

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainSection(_Section):
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: run the epochs)")
    batch_size: int = Field(64, gt=1, description="per device; in-batch negatives grow with it")
    gradient_accumulation_steps: int = Field(1, gt=0)
    learning_rate: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on a GPU that has it, else fp32")
    save_steps: int = Field(500, gt=0, description="checkpoint every N steps (--resume continues from the last)")
    save_total_limit: int = Field(2, gt=0)
    logging_steps: int = Field(10, gt=0)
    seed: int = 42
    dataloader_workers: int = Field(0, ge=0)


class MineSection(_Section):
    negatives: int = Field(3, gt=0, description="hard negatives added per query")
    top_k: int = Field(30, gt=0, description="candidates searched per query")
    max_score_ratio: float = Field(
        0.95, gt=0, le=1, description="skip candidates scoring above this fraction of the positive's score: likely false negatives (NV-Retriever, TopK-PercPos)"
    )
    corpus_file: str | None = Field(None, description="JSONL {id, text} to mine from; default: the training positives")
    corpus: str | None = Field(None, description="or a corpus of the ragmm store in ragmm.toml")


class EvalSection(_Section):
    queries: str
    qrels: str
    corpus_file: str | None = None
    corpus: str | None = None
    before: bool = Field(True, description="also evaluate the starting checkpoint")


class TrainConfig(_Section):
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection
    loss: LossSection = Field(default_factory=LossSection)
    train: TrainSection = Field(default_factory=TrainSection)
    mine: MineSection = Field(default_factory=MineSection)
    eval: EvalSection | None = None
    output: str = Field("models/retriever", description="where the trained checkpoint goes (relative paths: to this file's folder)")
    source: str | None = Field(None, exclude=True)

    def resolve(self, path: str | None) -> Path | None:
        """A path named in the config: relative paths are taken from the config file's folder."""
        if path is None:
            return None
        p = Path(path).expanduser()
        if not p.is_absolute() and self.source:
            p = Path(self.source).parent / p
        return p


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load and validate a training config.

    Raises:
        ConfigError: missing file, bad TOML, unknown field, bad value or unknown loss.
    """
    from ragmm.config import load_toml_model

    p = Path(path)
    hint = "see `ragmm train retriever --help` for an example"
    cfg = load_toml_model(p, TrainConfig, "training config", overrides, extra={"source": str(p)}, hint=hint)
    from ragmm.training.kinds import KINDS
    from ragmm.training.losses import LOSSES

    if cfg.model.kind not in KINDS:
        raise ConfigError(f"{p}: field 'model.kind' (got {cfg.model.kind!r}): unknown model kind; known: {', '.join(sorted(KINDS))}")
    if cfg.loss.type not in LOSSES:
        raise ConfigError(f"{p}: field 'loss.type' (got {cfg.loss.type!r}): unknown loss; known: {', '.join(sorted(LOSSES))}")
    _check_loss_options(p, cfg.loss)
    return cfg


def _check_loss_options(path: Path, loss: LossSection) -> None:
    """Refuse a ``[loss]`` option the loss class does not take, naming the ones it does."""
    import inspect

    from ragmm.training.losses import LOSSES

    params = inspect.signature(LOSSES[loss.type]).parameters
    accepted = [n for n, prm in params.items() if n != "model" and prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY)]
    for name in loss.options():
        if name not in accepted:
            raise ConfigError(
                f"{path}: field 'loss.{name}': loss {loss.type!r} has no such option; it takes: {', '.join(accepted)}"
            )
