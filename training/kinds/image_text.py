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
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


class ImageTextDualEncoder:
    """Builds ``[Router(text: base modules, image: ImageTower), Normalize]`` and trains it."""

    def load(self, cfg: TrainConfig) -> Any:
        from sentence_transformers import SentenceTransformer

        from ragmm.encoders.image_text import build_image_text_model, text_tower
        from ragmm.encoders.sentence_transformer import resolve_model

        m = cfg.model
        load_from, _ = resolve_model(m.base)
        text = SentenceTransformer(load_from)
        if m.max_seq_length:
            text.max_seq_length = m.max_seq_length
        model = build_image_text_model(text, image_size=m.image_size, width=m.image_width, augment=m.image_augment)
        if m.lock_text:
            for module in text_tower(model):
                module.requires_grad_(False)
                module.register_forward_pre_hook(_keep_eval)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info("image-text model: %d trainable parameters (text tower %s)", trainable, "locked" if m.lock_text else "trained")
        return model

    def trainer(self, model: Any, args: dict[str, Any], train_dataset: Any, loss: Any, callbacks: list[Any]) -> Any:
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        query, *images = train_dataset.column_names  # load_pairs: query, positive, negative_*
        train_dataset = screen_images(train_dataset, images)
        # Route by column: captions are queries (text tower), every other column is an image.
        router_mapping = {query: "query", **{c: "document" for c in images}}
        return SentenceTransformerTrainer(
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

        return ImageTextEncoder(ImageTextEncoder.Config(model=str(path), precision="fp32"))


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
