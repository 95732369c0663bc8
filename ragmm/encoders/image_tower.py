"""A small CNN image tower as a sentence-transformers module, and the image loading it uses.

The tower is a ConvNeXt-style network (Liu et al. 2022, "A ConvNet for the 2020s"): a 4x4
patchify stem, four stages whose width doubles at each 2x2 downsampling, blocks of a depthwise
7x7 convolution, a channel LayerNorm and a 4x pointwise MLP with a residual, then global average
pooling and a linear projection to the text tower's dimension. With ``width=48`` and depths
``(1, 1, 2, 1)`` it has 2.4M parameters, the size of the floor measured in ``shared/DATA.md``.

As a sentence-transformers ``InputModule`` it preprocesses its own inputs (file paths, PIL
images, arrays) into ``pixel_values`` and saves itself as ``config.json`` + ``model.safetensors``
in its folder, so it sits in a ``Router`` next to a text tower and trains with the stock trainer.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from sentence_transformers.base.modules.input_module import InputModule
from torch import Tensor, nn

from ragmm.errors import InputError

WHITE = (255, 255, 255)


class ImageTooLargeError(InputError):
    """An image exceeds Pillow's decompression-bomb limit; callers skip it and count it."""


def _too_large(path: str, exc: Exception) -> ImageTooLargeError:
    limit = (Image.MAX_IMAGE_PIXELS or 0) / 1e6
    return ImageTooLargeError(path, f"too large to decode safely ({exc}); Pillow's limit is {limit:.0f} megapixels, skip or downscale the file")


def _open(path: str) -> Image.Image:
    """Open ``path`` lazily (header only), turning Pillow's errors into :class:`InputError`."""
    try:
        with warnings.catch_warnings():
            # Between 1x and 2x the limit Pillow only warns, then would decode ~90-180 MP anyway.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except FileNotFoundError:
        raise InputError(path, "image file not found (image paths are read as given: absolute, or relative to the working directory)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(path, exc) from None
    except UnidentifiedImageError:
        raise InputError(path, "not an image Pillow can read (corrupt, truncated or an unsupported format); fix or remove the file") from None
    except OSError as exc:
        raise InputError(path, f"cannot open the image ({exc}); fix or remove the file") from None


def check_image(path: str | os.PathLike[str]) -> InputError | None:
    """The error loading ``path`` as an image would raise, or ``None`` when its header reads.

    Cheap (reads the header only), so it can screen a whole dataset before training or indexing;
    an :class:`ImageTooLargeError` is the one to skip and count rather than fix. Corrupt pixel data
    after a valid header is only found when :func:`load_image` decodes it.
    """
    try:
        _open(str(path)).close()
    except InputError as exc:
        return exc
    return None


def rgb_on_white(img: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white (clipart and emoji are drawn on alpha)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, WHITE + (255,))
        canvas.alpha_composite(img)
        return canvas.convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _from_array(x: np.ndarray | Tensor) -> Image.Image:
    a = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)  # floats are taken as [0, 1]
    return Image.fromarray(a.squeeze(-1) if a.ndim == 3 and a.shape[-1] == 1 else a)


def _fit(img: Image.Image, size: int) -> Image.Image:
    """Scale ``img`` so its longer side is ``size`` (a new image), then make it RGB on white."""
    if img.mode == "P":  # palette images would be resized nearest-neighbour; expand them first
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    scale = size / max(img.size)
    target = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if target != img.size:
        # reducing_gap: shrink by whole factors first (fast box filter), then resample.
        img = img.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
    return rgb_on_white(img)


def open_image(path: str | os.PathLike[str], max_side: int) -> Image.Image:
    """An image file decoded once to RGB on white, its longer side at most ``max_side``.

    Raises:
        ImageTooLargeError, InputError: as :func:`load_image`.
    """
    path = str(path)
    with _open(path) as img:
        try:
            img.draft("RGB", (max_side, max_side))
            out = _fit(img, min(max_side, max(img.size)))
            out.load()  # decode now: the file closes when this block ends
            return out
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_large(path, exc) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(path, f"corrupt image data ({exc}); fix or remove the file") from None


def load_image(source: Any, size: int) -> Image.Image:
    """An RGB ``size`` x ``size`` image: the picture scaled to fit, centred on white.

    Scaling to fit (letterboxing) keeps the whole object, which matters for clipart whose subject
    fills the frame; the padding is white like the composited transparency. JPEGs are decoded at
    reduced scale (``Image.draft``) and every file is decoded once, straight into the resize, so a
    large image is never held at full size twice.

    Args:
        source: A file path, a PIL image, or an ``(H, W[, C])`` / ``(C, H, W)`` array or tensor
            (uint8, or floats in ``[0, 1]``).
        size: Output side in pixels.

    Returns:
        A new RGB PIL image of ``size`` x ``size`` (the input is not modified).

    Raises:
        ImageTooLargeError: the file exceeds Pillow's decompression-bomb limit.
        InputError: the file is missing, unreadable or corrupt (the message names it).
        TypeError: ``source`` is none of the above.
    """
    if isinstance(source, (str, os.PathLike)):
        path = str(source)
        with _open(path) as img:
            try:
                img.draft("RGB", (size, size))  # JPEG: decode at 1/2..1/8 scale; a no-op for other formats
                img = _fit(img, size)
                img.load()  # decode now (an RGB file already at size is returned as opened)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise _too_large(path, exc) from None
            except (OSError, SyntaxError, ValueError) as exc:  # how Pillow reports bad pixel data
                raise InputError(path, f"corrupt image data ({exc}); fix or remove the file") from None
    elif isinstance(source, Image.Image):
        img = _fit(source, size)
    elif isinstance(source, (np.ndarray, Tensor)):
        img = _fit(_from_array(source), size)
    else:
        raise TypeError(f"an image must be a file path, a PIL image or an array, got {type(source).__name__}")
    if img.size != (size, size):
        canvas = Image.new("RGB", (size, size), WHITE)
        canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
        img = canvas
    elif img is source:
        img = img.copy()
    return img


def _random_zoom_shift_flip(x: Tensor, min_scale: float = 0.7) -> Tensor:
    """Per image: zoom into a random square of ``min_scale``..1 of the side at a random place,
    and mirror half of them. Pixels sampled from outside the image are white (1.0)."""
    b = x.shape[0]
    scale = torch.empty(b, device=x.device).uniform_(min_scale, 1.0)  # (B,) crop side / image side
    shift = (torch.rand(b, 2, device=x.device) * 2 - 1) * (1 - scale)[:, None]  # (B, 2) crop centre, stays inside
    flip = torch.where(torch.rand(b, device=x.device) < 0.5, -1.0, 1.0)  # (B,)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Sample 1 - x with zero padding, so the padding comes out white.
    return 1 - F.grid_sample(1 - x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class _ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (ConvNeXt's), with no batch statistics,
    so training and inference behave the same at any batch size."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _Block(nn.Module):
    """ConvNeXt block: depthwise conv -> norm -> 1x1 expand (4x) -> GELU -> 1x1 project, residual."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = _ChannelNorm(channels)
        self.expand = nn.Conv2d(channels, 4 * channels, 1)
        self.project = nn.Conv2d(4 * channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        return x + self.project(F.gelu(self.expand(self.norm(self.dwconv(x)))))


class ImageTower(InputModule):
    """A CNN that maps images to ``out_dim`` vectors (``sentence_embedding``).

    Args:
        out_dim: Output dimension: the text tower's, so both share one space (384 for MiniLM).
        image_size: Input side in pixels; images are letterboxed to it on white.
        width: Channels of the first stage; stage ``i`` has ``width * 2**i``.
        depths: Blocks per stage (four stages; the stem downsamples 4x, each later stage 2x).
        kernel_size: Depthwise kernel of the blocks.
        augment: In training mode only, apply a random zoom (up to 1/0.7), shift and horizontal
            flip to each image (on the pixel tensor, so the data loader stays cheap). Colours are
            left alone: captions name them.

    Example:
        >>> tower = ImageTower(out_dim=384)  # doctest: +SKIP
        >>> tower(tower.preprocess(["cat.png"]))["sentence_embedding"].shape  # doctest: +SKIP
        torch.Size([1, 384])
    """

    config_keys: ClassVar[list[str]] = ["out_dim", "image_size", "width", "depths", "kernel_size", "augment"]
    save_in_root = False
    # uint8 pixels map to [-1, 1]: a fixed affine map, so nothing dataset-specific is stored.
    _SCALE, _SHIFT = 1 / 127.5, -1.0

    def __init__(self, out_dim: int = 384, image_size: int = 64, width: int = 48, depths: Sequence[int] = (1, 1, 2, 1), kernel_size: int = 7, augment: bool = False) -> None:
        super().__init__()
        self.augment = bool(augment)
        if image_size < 32:
            raise ValueError(f"image_size must be at least 32 (the tower downsamples 32x), got {image_size}")
        self.out_dim, self.image_size, self.width = int(out_dim), int(image_size), int(width)
        self.depths, self.kernel_size = [int(d) for d in depths], int(kernel_size)
        widths = [self.width * 2**i for i in range(len(self.depths))]
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 4, stride=4), _ChannelNorm(widths[0])]
        for i, (channels, depth) in enumerate(zip(widths, self.depths, strict=True)):
            if i:
                layers += [_ChannelNorm(widths[i - 1]), nn.Conv2d(widths[i - 1], channels, 2, stride=2)]
            layers += [_Block(channels, self.kernel_size) for _ in range(depth)]
        self.body = nn.Sequential(*layers)
        self.head_norm = nn.LayerNorm(widths[-1])
        self.proj = nn.Linear(widths[-1], self.out_dim)

    @property
    def modalities(self) -> list[str]:
        return ["image"]

    def get_embedding_dimension(self) -> int:
        return self.out_dim

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Tensor]:
        """``{"pixel_values": (B, 3, S, S) uint8}`` from paths, PIL images or arrays (``prompt`` is ignored).

        Raises:
            InputError: an input file is missing, unreadable or too large (the message names it).
        """
        pixels = [torch.from_numpy(np.array(load_image(x, self.image_size))) for x in inputs]  # each (S, S, 3)
        return {"pixel_values": torch.stack(pixels).permute(0, 3, 1, 2).contiguous()}  # (B, 3, S, S)

    def forward(self, features: dict[str, Tensor], **kwargs: Any) -> dict[str, Tensor]:
        x = features["pixel_values"].to(self.proj.weight.dtype) * self._SCALE + self._SHIFT  # (B, 3, S, S)
        if self.training and self.augment:
            x = _random_zoom_shift_flip(x)
        x = self.body(x).mean(dim=(2, 3))  # (B, C_last)
        features["sentence_embedding"] = self.proj(self.head_norm(x))  # (B, out_dim)
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        Path(output_path).mkdir(parents=True, exist_ok=True)
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(
        cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None, cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False, **kwargs: Any
    ) -> ImageTower:
        hub = {"subfolder": subfolder, "token": token, "cache_folder": cache_folder, "revision": revision, "local_files_only": local_files_only}
        tower = cls(**cls.load_config(model_name_or_path, **hub))
        cls.load_torch_weights(model_name_or_path, model=tower, **hub)
        return tower
