"""Pretrained CLIP and SigLIP image-text encoders from Hugging Face checkpoints.

Any ``CLIPModel``, ``SiglipModel`` or ``Siglip2Model`` checkpoint, as a local folder or a hub id
already in the local Hugging Face cache, loaded with transformers' ``AutoModel`` and
``AutoProcessor``. Texts go through ``get_text_features``, images through
``get_image_features``; both come back L2-normalised in the model's shared space.

That space is the checkpoint's own, not the one of ragmm's text encoder, so the class says
``text_space = None``: a pipeline must embed text queries for image collections with this
encoder, not with ``[encoders.text]``.

Families differ in how text is batched, and the code follows each model's training:

===========  ===========================================  ===================================
family       text padding                                 text attention mask
===========  ===========================================  ===================================
``clip``     to the longest text in the batch             yes (causal text tower, EOS pooled)
``siglip``   to the model's full length (``max_length``)  no: trained attending to the pads
``siglip2``  to the model's full length (``max_length``)  no: trained attending to the pads
===========  ===========================================  ===================================

Images are decoded and letterboxed on white by :func:`~ragmm.encoders.image_tower.load_image`
(the same for paths, PIL images and arrays), then handed to the checkpoint's image processor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError, ModelNotFoundError

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger(__name__)

# model_type -> text padding. Allow-listed rather than "anything with get_text_features": other
# families (BLIP, OWL-ViT, FLAVA, ...) return different things from those methods.
TEXT_PADDING: dict[str, str | bool] = {"clip": True, "siglip": "max_length", "siglip2": "max_length"}
# SigLIP's text tower was trained without a padding mask (pads are attended to and the last
# position is pooled); transformers 5 tokenizers return a mask anyway, so it is dropped.
NO_TEXT_MASK = {"siglip", "siglip2"}
DEFAULT_IMAGE_SIDE = 224
CONFIG_HINT = "[encoders.image] model"


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else that does not exist is a missing path."""
    return Path(model).is_absolute() or model.startswith((".", "~")) or "\\" in model or model.count("/") > 1


def _check_model_type(model_type: str | None, name: str) -> str:
    """``model_type`` when this encoder can load it, else a :class:`ModelNotFoundError`."""
    if model_type not in TEXT_PADDING:
        raise ModelNotFoundError(
            f"{name}: model type '{model_type}' is not a CLIP/SigLIP image-text model; the hf-clip encoder loads "
            f"{', '.join(TEXT_PADDING)} checkpoints, set {CONFIG_HINT} to one"
        )
    return model_type


def _read_model_type(config_file: Path, name: str) -> str:
    """The ``model_type`` in a checkpoint's ``config.json``, read without importing transformers."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelNotFoundError(f"{name}: cannot read {config_file} ({exc}); the checkpoint is damaged, copy it again") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return _check_model_type(model_type, name)


def resolve_model(model: str, *, local_files_only: bool = True) -> tuple[str, str | None]:
    """Check a configured model now: ``(identity, model_type)``.

    The identity is what collections remember: a folder's resolved absolute path, else the hub id.
    The model type is read from ``config.json`` when it is at hand (a folder, or a hub id in the
    cache), so a wrong model fails when the encoder is built rather than at the first query.

    Raises:
        ModelNotFoundError: a missing folder, a folder without ``config.json``, a hub id not in the
            local cache (with ``local_files_only``), or a model that is not CLIP/SigLIP.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        folder = path.resolve()
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise ModelNotFoundError(
                f"{folder}: no config.json, not a Hugging Face model folder (a sentence-transformers CLIP folder keeps "
                f"the model in a subfolder such as 0_CLIPModel); set {CONFIG_HINT} to the folder that holds config.json"
            )
        return str(folder), _read_model_type(config_file, str(folder))
    if path.exists() or _looks_like_path(model):
        raise ModelNotFoundError(f"{path}: model folder not found; set {CONFIG_HINT} to a CLIP/SigLIP checkpoint folder or a cached hub id")
    if not local_files_only:
        return model, None  # may be downloaded when it loads; its type is checked then
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError: not a valid repo id
        raise ModelNotFoundError(f"{model}: neither a model folder nor a valid hub id; set {CONFIG_HINT} to a checkpoint folder") from None
    if not isinstance(cached, str):
        raise ModelNotFoundError(
            f"{model}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and ragmm works offline; download it on a "
            f"machine with network (`hf download {model}`) and copy the folder here, then set {CONFIG_HINT} = '/path/to/folder'"
        )
    return model, _read_model_type(Path(cached), model)


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message, for one-line errors."""
    lines = str(exc).strip().splitlines()
    return lines[0].split(". ")[0].rstrip(".") if lines else type(exc).__name__


def _image_side(image_processor: Any, vision_config: Any) -> int:
    """Side of the square images to hand the processor: the larger of its target sizes."""
    sides = []
    for attr in ("crop_size", "size"):
        target = getattr(image_processor, attr, None)  # a dict, or transformers 5's SizeDict
        for key in ("height", "width", "shortest_edge", "longest_edge"):
            value = target.get(key) if isinstance(target, dict) else getattr(target, key, None)
            if isinstance(value, int):
                sides.append(value)
    patch, max_patches = getattr(image_processor, "patch_size", None), getattr(image_processor, "max_num_patches", None)
    if isinstance(patch, int) and isinstance(max_patches, int):  # SigLIP2 NaFlex: a patch budget, no fixed size
        sides.append(patch * math.isqrt(max_patches))
    return max(sides, default=getattr(vision_config, "image_size", DEFAULT_IMAGE_SIDE))


def _pooled(out: Any) -> torch.Tensor:
    """The embeddings from ``get_*_features``: a tensor (transformers 4) or, in transformers 5, the
    tower's output whose ``pooler_output`` holds the projected embeddings."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is None and isinstance(out, tuple):  # return_dict=False: (last_hidden_state, pooler_output, ...)
        pooled = out[1]
    if not isinstance(pooled, torch.Tensor):
        raise TypeError(f"get_text_features/get_image_features returned {type(out).__name__} without pooled embeddings")
    return pooled


class HFClipEncoder:
    """A Hugging Face CLIP or SigLIP checkpoint as a ragmm :class:`~ragmm.protocols.Encoder`.

    Queries are texts, documents are images (file paths, PIL images or arrays). Both come back as
    ``(N, dim)`` float32, L2-normalised, in the checkpoint's own space (``text_space = None``: not
    the space of ragmm's text encoder).

    Example:
        >>> enc = HFClipEncoder(HFClipEncoder.Config(model="openai/clip-vit-base-patch32"))  # doctest: +SKIP
        >>> enc.encode_query(["a red square"]) @ enc.encode_document(["red.png"]).T  # doctest: +SKIP
        array([[0.29]], dtype=float32)
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        model: str = Field(..., description="CLIP/SigLIP checkpoint: a local folder or a hub id (e.g. 'openai/clip-vit-base-patch32')")
        precision: Literal["fp32", "bf16", "auto"] = Field("auto", description="bf16 autocast where the CPU or GPU supports it")
        device: str = Field("auto", description="'auto' picks cuda when present, else cpu")
        batch_size: int = Field(32, gt=0)
        local_files_only: bool = Field(True, description="hub ids resolve from the local HF cache only, as ragmm works offline")

    modality = "image"
    # The space the image embeddings share with a ragmm text encoder: none, they live in this
    # checkpoint's own space, so text queries against them must be embedded by this encoder.
    text_space: str | None = None

    def __init__(self, config: Config) -> None:
        self.config = config
        self.name, self._model_type = resolve_model(config.model, local_files_only=config.local_files_only)
        self._model: Any = None
        self._tokenizer: Any = None
        self._image_processor: Any = None
        self._image_side = DEFAULT_IMAGE_SIDE  # set from the image processor on load

    @classmethod
    def from_config(cls, config: Config) -> HFClipEncoder:
        return cls(config)

    @property
    def device(self) -> str:
        from ragmm.encoders.sentence_transformer import resolve_device

        return resolve_device(self.config.device)

    @property
    def model(self) -> Any:
        """The loaded ``CLIPModel`` / ``SiglipModel`` / ``Siglip2Model`` (loaded on first use).

        Raises:
            ModelNotFoundError: the checkpoint cannot be loaded, or is not CLIP/SigLIP.
        """
        if self._model is None:
            self._load()
        return self._model

    def _load(self) -> None:
        import torch
        from transformers import AutoModel

        log.info("loading CLIP/SigLIP encoder %s on %s", self.name, self.device)
        offline = self.config.local_files_only
        try:
            # float32 weights: bf16 comes from autocast (as the other ragmm encoders), and CPUs
            # without AMX run fp16/bf16 checkpoints slowly. No trust_remote_code: no shipped code runs.
            model = AutoModel.from_pretrained(self.name, dtype=torch.float32, local_files_only=offline)
        except OSError as exc:
            raise ModelNotFoundError(
                f"{self.name}: cannot load the model ({_first_line(exc)}); set {CONFIG_HINT} to a CLIP/SigLIP "
                "checkpoint folder, or download it on a machine with network and copy the folder here"
            ) from None
        except ValueError as exc:  # AutoModel knows no class for this config
            raise ModelNotFoundError(f"{self.name}: cannot load the model ({_first_line(exc)}); set {CONFIG_HINT}") from None
        self._model_type = _check_model_type(model.config.model_type, self.name)
        if not (hasattr(model, "get_text_features") and hasattr(model, "get_image_features")):
            raise ModelNotFoundError(f"{self.name}: {type(model).__name__} has no get_text_features/get_image_features; set {CONFIG_HINT}")
        self._tokenizer, self._image_processor = self._load_processor()
        self._image_side = _image_side(self._image_processor, getattr(model.config, "vision_config", None))
        self._model = model.to(self.device).eval()

    def _load_processor(self) -> tuple[Any, Any]:
        """``(tokenizer, image processor)``: the checkpoint's processor, else its two parts."""
        from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

        offline = self.config.local_files_only
        try:
            processor = AutoProcessor.from_pretrained(self.name, local_files_only=offline)
        except (OSError, ValueError, ImportError) as exc:
            log.debug("%s: no processor (%s); loading tokenizer and image processor", self.name, exc)
            processor = None
        tokenizer = getattr(processor, "tokenizer", None)
        image_processor = getattr(processor, "image_processor", None)
        try:
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(self.name, local_files_only=offline)
            image_processor = image_processor or AutoImageProcessor.from_pretrained(self.name, local_files_only=offline)
        except ImportError as exc:  # e.g. SigLIP's sentencepiece tokenizer without sentencepiece installed
            raise ConfigError(
                f"{self.name}: the tokenizer or image processor needs a package that is not installed ({_first_line(exc)}); "
                "install it (SigLIP: `pip install sentencepiece protobuf`)"
            ) from None
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(
                f"{self.name}: cannot load the tokenizer or image processor ({_first_line(exc)}); "
                "the checkpoint folder needs its tokenizer and preprocessor files"
            ) from None
        return tokenizer, image_processor

    @property
    def dim(self) -> int:
        """Embedding dimension: CLIP's ``projection_dim``, SigLIP's text ``projection_size``
        (its hidden size unless set; the vision tower pools to the same size)."""
        config = self.model.config
        if self._model_type == "clip":
            return int(config.projection_dim)
        text = config.text_config
        return int(getattr(text, "projection_size", None) or text.hidden_size)

    def _precision(self) -> contextlib.AbstractContextManager[None]:
        from ragmm.encoders.sentence_transformer import autocast

        return autocast(self.config.precision, self.device)

    def _encode(self, inputs: Sequence[Any], embed: Any, batch_size: int | None) -> np.ndarray:
        """Run ``embed(batch) -> (B, dim)`` over batches; ``(N, dim)`` float32, L2-normalised."""
        import numpy as np
        import torch
        import torch.nn.functional as F

        if isinstance(inputs, (str, os.PathLike)):
            raise TypeError(f"pass a list of inputs, not one {type(inputs).__name__} (it would be read character by character)")
        inputs = list(inputs)
        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        size = batch_size or self.config.batch_size
        out = []
        with torch.inference_mode(), self._precision():
            for start in range(0, len(inputs), size):
                out.append(F.normalize(_pooled(embed(inputs[start : start + size])).float(), dim=-1).cpu())  # (B, dim)
        return np.ascontiguousarray(torch.cat(out).numpy(), dtype=np.float32)

    def _embed_texts(self, texts: list[str]) -> Any:
        model = self.model
        max_length = min(self._tokenizer.model_max_length, model.config.text_config.max_position_embeddings)
        batch = self._tokenizer(texts, padding=TEXT_PADDING[self._model_type], truncation=True, max_length=max_length, return_tensors="pt")
        keys = ("input_ids",) if self._model_type in NO_TEXT_MASK else ("input_ids", "attention_mask")
        return model.get_text_features(**{k: batch[k].to(self.device) for k in keys if k in batch})

    def _embed_images(self, images: list[Any]) -> Any:
        from ragmm.encoders.image_tower import load_image

        model = self.model
        pictures = [load_image(image, self._image_side) for image in images]  # decoded one batch at a time
        batch = self._image_processor(images=pictures, return_tensors="pt")  # pixel_values (B, 3, H, W); SigLIP2 adds masks
        return model.get_image_features(**{k: v.to(self.device) for k, v in batch.items()})

    def encode_text(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """``(N, dim)`` float32, L2-normalised text embeddings (``get_text_features``)."""
        return self._encode(texts, self._embed_texts, batch_size)

    def encode_image(self, images: Sequence[Any], batch_size: int | None = None) -> np.ndarray:
        """``(N, dim)`` float32, L2-normalised image embeddings (``get_image_features``).

        Args:
            images: File paths, PIL images or arrays (``(H, W[, C])`` / ``(C, H, W)``, uint8 or
                floats in ``[0, 1]``).
            batch_size: Images per forward pass (default: the config's); files are decoded one
                batch at a time.

        Raises:
            ImageTooLargeError: an image exceeds Pillow's decompression-bomb limit (skip it).
            InputError: an image file is missing or corrupt; the message names it.
        """
        return self._encode(images, self._embed_images, batch_size)

    def encode_query(self, inputs: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Queries are texts: :meth:`encode_text`."""
        return self.encode_text(inputs, batch_size)

    def encode_document(self, inputs: Sequence[Any], batch_size: int | None = None) -> np.ndarray:
        """Documents are images: :meth:`encode_image`."""
        return self.encode_image(inputs, batch_size)
