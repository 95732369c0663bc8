"""An image tower on a pretrained ImageNet trunk, as a sentence-transformers module.

``TrunkTower`` = an EfficientNet-Lite trunk (:mod:`ragmm.encoders.efficientnet`, frozen or with
its last blocks fine-tuned) + a projection head into the text tower's space, plus a *words*
vector: the trunk's ImageNet class probabilities times the text tower's embeddings of the class
names (``class_vectors``, computed once when the model is built and saved with it). The output is
``normalize(head) + words_weight * normalize(words)``: the words vector is what the classifier
already knows (zero-shot), the head learns what it misses on the training pairs.

The same forward pass gives ``trunk_logits``, from which :meth:`TrunkTower.labels` writes the
confident classes as words ("koala, teddy bear") for the image's text view.

Only what training changes is saved (the head, the class vectors and any fine-tuned blocks); the
frozen trunk comes from its installed PyPI package when the tower loads.

Training with a frozen trunk and no augmentation reads pooled trunk features from a disk cache
(:meth:`TrunkTower.cache_features`), so each epoch costs only the head: minutes on a CPU.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers.base.modules.input_module import InputModule
from torch import Tensor, nn

from ragmm.encoders.efficientnet import TRUNKS, cache_dir, load_trunk, scale_pixels
from ragmm.encoders.image_tower import _random_zoom_shift_flip, load_image

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"


def words_vector(logits: Tensor, class_vectors: Tensor, top_k: int, temperature: float) -> Tensor:
    """``(B, 1000)`` logits, ``(1000, D)`` class-name vectors -> ``(B, D)``: the ``top_k`` classes'
    vectors weighted by their ``softmax(logits / temperature)`` probabilities (renormalised)."""
    probs = (logits / temperature).softmax(dim=-1)
    top, idx = probs.topk(top_k, dim=-1)  # (B, k)
    top = top / top.sum(dim=-1, keepdim=True)
    return torch.einsum("bk,bkd->bd", top, class_vectors[idx])


class TrunkTower(InputModule):
    """Pretrained trunk + head (+ words vector) mapping images to ``out_dim`` vectors.

    Args:
        out_dim: the text tower's dimension (384 for MiniLM).
        trunk: a key of :data:`ragmm.encoders.efficientnet.TRUNKS`.
        image_size: input side in pixels (images are letterboxed on white).
        head: ``"linear"`` or ``"mlp"`` (one hidden GELU layer with dropout).
        hidden: hidden width of the ``mlp`` head.
        dropout: dropout before each linear layer of the head (training only).
        input_dropout: dropout on the pooled trunk features entering the head (default: ``dropout``).
        heads: an ensemble of this many independently initialised heads. Each is trained with its
            own contrastive loss (the loss reads their vectors from ``member_embeddings``); the
            tower's vector is the mean of the members' normalised vectors.
        train_blocks: how many of the trunk's last MBConv blocks train (0: frozen trunk).
        augment: random zoom, shift and flip of training images (disables the feature cache).
        words: add the probability-weighted class-name vector (needs ``class_vectors``).
        words_top_k: classes kept in the words vector (their probabilities renormalised).
        words_temperature: the class probabilities of the words vector are ``softmax(logits / T)``;
            above 1 they spread over more classes (the labels keep ``T = 1``).
        label_threshold: a class is named in :meth:`labels` from this probability up.
        label_top_k: at most this many class names per image.
        label_hypernym: write ``"Chihuahua (toy dog)"`` rather than ``"Chihuahua"``.
    """

    config_keys: ClassVar[list[str]] = [
        "out_dim", "trunk", "image_size", "head", "hidden", "dropout", "input_dropout", "heads", "train_blocks", "augment",
        "words", "words_top_k", "words_temperature", "label_threshold", "label_top_k", "label_hypernym",
    ]  # fmt: skip
    save_in_root = False

    def __init__(
        self,
        out_dim: int = 384,
        trunk: str = "efficientnet-lite0",
        image_size: int = 160,
        head: Literal["linear", "mlp"] = "mlp",
        hidden: int = 1024,
        dropout: float = 0.1,
        input_dropout: float | None = None,
        heads: int = 1,
        train_blocks: int = 0,
        augment: bool = False,
        words: bool = True,
        words_top_k: int = 5,
        words_temperature: float = 1.0,
        label_threshold: float = 0.2,
        label_top_k: int = 3,
        label_hypernym: bool = False,
    ) -> None:
        super().__init__()
        if trunk not in TRUNKS:
            raise ValueError(f"unknown trunk {trunk!r}; known: {', '.join(TRUNKS)}")
        if head not in ("linear", "mlp"):
            raise ValueError(f'head must be "linear" or "mlp", got {head!r}')
        if image_size < 32 or image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (the trunk downsamples 32x), got {image_size}")
        self.out_dim, self.trunk_name, self.image_size = int(out_dim), trunk, int(image_size)
        self.head_kind, self.hidden, self.dropout = head, int(hidden), float(dropout)
        self.input_dropout = None if input_dropout is None else float(input_dropout)
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        self.heads = int(heads)
        self.train_blocks, self.augment = int(train_blocks), bool(augment)
        if words_temperature <= 0:
            raise ValueError(f"words_temperature must be > 0, got {words_temperature}")
        self.words, self.words_top_k, self.words_temperature = bool(words), int(words_top_k), float(words_temperature)
        self.label_threshold, self.label_top_k, self.label_hypernym = float(label_threshold), int(label_top_k), bool(label_hypernym)
        self.trunk = load_trunk(trunk, image_size=self.image_size, train_blocks=self.train_blocks)
        c = self.trunk.dim
        p_in = self.dropout if self.input_dropout is None else self.input_dropout

        def make_head() -> nn.Sequential:
            if head == "linear":
                return nn.Sequential(nn.Dropout(p_in), nn.Linear(c, self.out_dim))
            return nn.Sequential(nn.Dropout(p_in), nn.Linear(c, self.hidden), nn.GELU(), nn.Dropout(self.dropout), nn.Linear(self.hidden, self.out_dim))

        # One head keeps the key layout of towers saved before ensembles ("head.1.weight").
        self.head = make_head() if self.heads == 1 else nn.ModuleList(make_head() for _ in range(self.heads))
        # (1000, D) text embeddings of the class names; zeros until set_class_vectors (then saved).
        self.register_buffer("class_vectors", torch.zeros(1000, self.out_dim))
        self.words_weight = nn.Parameter(torch.tensor(1.0))
        self._cache: tuple[dict[str, int], Tensor] | None = None
        # Training-time evaluation may read the per-image cache for paths it finds there.
        self.read_cache = False
        self._names: list[str] | None = None

    # The config dict must say "trunk", not the attribute holding the module.
    def get_config_dict(self) -> dict[str, Any]:
        cfg = {k: getattr(self, k) for k in self.config_keys if k not in ("trunk", "head")}
        return {**cfg, "trunk": self.trunk_name, "head": self.head_kind}

    @property
    def modalities(self) -> list[str]:
        return ["image"]

    def get_embedding_dimension(self) -> int:
        return self.out_dim

    def set_class_vectors(self, vectors: Tensor | np.ndarray) -> None:
        """Store the text tower's ``(1000, D)`` embeddings of the class names (for the words vector)."""
        v = torch.as_tensor(np.asarray(vectors), dtype=self.class_vectors.dtype)
        if tuple(v.shape) != tuple(self.class_vectors.shape):
            raise ValueError(f"class vectors must be (1000, {self.out_dim}), got {tuple(v.shape)}")
        self.class_vectors.copy_(v)

    def class_names(self) -> list[str]:
        """The names the labels and the class vectors use."""
        if self._names is None:
            from ragmm.encoders.imagenet_labels import class_names

            self._names = class_names(with_hypernym=self.label_hypernym)
        return self._names

    def train(self, mode: bool = True) -> TrunkTower:
        super().train(mode)
        self.trunk.train(False)  # ImageNet BatchNorm statistics stay fixed
        return self

    # -- inputs ---------------------------------------------------------------------------------

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Tensor]:
        """``{"pixel_values": (B, 3, S, S) uint8}``; when every input is a path in the training
        feature cache, ``{"pixel_values": (B, C) float}``: the pooled trunk features themselves.
        (The key stays ``pixel_values`` because sentence-transformers' trainer finds a batch's
        input columns by that name.)

        Raises:
            InputError: an input file is missing, unreadable or too large (the message names it).
        """
        if self._cache is not None and all(isinstance(x, str) and x in self._cache[0] for x in inputs):
            index, table = self._cache
            return {"pixel_values": table[[index[x] for x in inputs]].float()}  # (B, C)
        if self.read_cache and self._frozen() and all(isinstance(x, str) for x in inputs):
            files = [self._entry(self.cache_folder(), x) for x in inputs]
            if all(f.is_file() for f in files):
                return {"pixel_values": torch.from_numpy(np.stack([np.load(f) for f in files])).float()}  # (B, C)
        pixels = [torch.from_numpy(np.array(load_image(x, self.image_size))) for x in inputs]  # each (S, S, 3)
        return {"pixel_values": torch.stack(pixels).permute(0, 3, 1, 2).contiguous()}  # (B, 3, S, S)

    def pooled(self, pixel_values: Tensor) -> Tensor:
        """``(B, 3, S, S)`` uint8 -> ``(B, C)`` pooled trunk features."""
        x = scale_pixels(pixel_values.to(self.class_vectors.device))  # (B, 3, S, S), about [-1, 1]
        if self.training and self.augment:
            x = _random_zoom_shift_flip(x)  # pads with 1.0: white, as the letterbox
        return self.trunk(x.to(self.class_vectors.dtype))

    def forward(self, features: dict[str, Tensor], **kwargs: Any) -> dict[str, Tensor]:
        if features["pixel_values"].ndim == 2:  # cached pooled features (training)
            pooled = features["pixel_values"].to(self.class_vectors.device, self.class_vectors.dtype)  # (B, C)
        else:
            pooled = self.pooled(features["pixel_values"])  # (B, C)
        logits = self.trunk.logits(pooled)  # (B, 1000)
        heads = [self.head] if self.heads == 1 else list(self.head)
        members = [F.normalize(h(pooled), dim=-1) for h in heads]  # each (B, D)
        if self.words:
            words = self.words_weight * F.normalize(self.words_vector(logits), dim=-1)  # (B, D)
            members = [m + words for m in members]
        if len(members) == 1:
            features["sentence_embedding"] = members[0]
        else:
            stacked = torch.stack(members, dim=1)  # (B, K, D)
            features["sentence_embedding"] = F.normalize(stacked, dim=-1).mean(dim=1)
            if self.training:
                features["member_embeddings"] = stacked  # each head's own loss (see ragmm.training.losses.clip)
        features["trunk_logits"] = logits
        return features

    def words_vector(self, logits: Tensor) -> Tensor:
        """``(B, 1000)`` logits -> ``(B, D)``: the top classes' name vectors weighted by probability."""
        return words_vector(logits.float(), self.class_vectors.float(), self.words_top_k, self.words_temperature).to(self.class_vectors.dtype)

    def labels(self, logits: Tensor) -> list[str]:
        """``(B, 1000)`` logits -> one label text per image ("" when no class is confident)."""
        from ragmm.encoders.imagenet_labels import label_text

        names = self.class_names()
        probs = logits.float().softmax(dim=-1).cpu().numpy()
        return [label_text(p, names, self.label_threshold, self.label_top_k) for p in probs]

    # -- the training feature cache -------------------------------------------------------------

    def cache_folder(self) -> Path:
        """Where this trunk's pooled features at this side are cached, one file per image."""
        return cache_dir() / "features" / f"{self.trunk_name}-{self.image_size}"

    def cache_features(self, paths: Sequence[str], batch_size: int = 32, folder: Path | None = None) -> int:
        """Compute (or read) the pooled trunk features of ``paths`` and serve them to
        :meth:`preprocess` from now on. Only valid for a frozen trunk without augmentation.

        Each image's features are one small file named by a hash of its path, size and
        modification time, so a changed image computes afresh, an interrupted run resumes, and
        the development and evaluation images share the cache with the training ones.

        Returns:
            How many images had to be computed (the rest were read).
        """
        if not self._frozen():
            raise ValueError("the feature cache needs a frozen trunk (train_blocks = 0) and augment = false")
        paths = list(dict.fromkeys(paths))
        root = folder or self.cache_folder()
        root.mkdir(parents=True, exist_ok=True)
        files = [self._entry(root, p) for p in paths]
        todo = [i for i, f in enumerate(files) if not f.is_file()]
        if todo:
            log.info("computing trunk features of %d of %d images (cached in %s)", len(todo), len(paths), root)
        with torch.inference_mode():
            for n, start in enumerate(range(0, len(todo), batch_size)):
                rows = todo[start : start + batch_size]
                batch = self.preprocess([paths[i] for i in rows])["pixel_values"]
                pooled = self.trunk(scale_pixels(batch.to(self.class_vectors.device))).to(torch.float16).cpu().numpy()  # (b, C)
                for i, vec in zip(rows, pooled, strict=True):
                    tmp = files[i].with_suffix(f".tmp{os.getpid()}.npy")
                    np.save(tmp, vec)
                    tmp.replace(files[i])  # atomic: a reader sees the whole file or none
                if n % 10 == 0:
                    log.info("trunk features: %d / %d images", min(start + batch_size, len(todo)), len(todo))
        table = torch.from_numpy(np.stack([np.load(f) for f in files])) if files else torch.zeros(0, self.trunk.dim, dtype=torch.float16)
        self._cache = ({p: i for i, p in enumerate(paths)}, table)
        return len(todo)

    def _frozen(self) -> bool:
        return not self.train_blocks and not self.augment

    @staticmethod
    def _entry(root: Path, path: str) -> Path:
        st = os.stat(path)
        return root / f"{hashlib.sha1(f'{path}|{st.st_size}|{st.st_mtime_ns}'.encode()).hexdigest()[:24]}.npy"

    def drop_cache(self) -> None:
        """Read pixels again (after training)."""
        self._cache = None

    # -- saving: only what training changed ---------------------------------------------------

    def _saved_state(self) -> dict[str, Tensor]:
        # BatchNorm statistics never change (the trunk stays in eval mode), so no buffer is saved.
        frozen = {f"trunk.{k}" for k, p in self.trunk.named_parameters() if not p.requires_grad}
        frozen |= {f"trunk.{k}" for k, _ in self.trunk.named_buffers()}
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if k not in frozen}

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        from safetensors.torch import save_file

        Path(output_path).mkdir(parents=True, exist_ok=True)
        self.save_config(output_path)
        save_file(self._saved_state(), os.path.join(output_path, WEIGHTS_FILE))

    @classmethod
    def load(
        cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None, cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False, **kwargs: Any
    ) -> TrunkTower:
        from safetensors.torch import load_file

        from ragmm.errors import ModelNotFoundError

        folder = Path(model_name_or_path) / subfolder
        tower = cls(**cls.load_config(str(folder)))
        saved = load_file(str(folder / WEIGHTS_FILE))
        missing, unexpected = tower.load_state_dict({k: v.to(tower.class_vectors.dtype) if v.is_floating_point() else v for k, v in saved.items()}, strict=False)
        expected = set(tower.state_dict()) - set(tower._saved_state())
        if unexpected or set(missing) - expected:
            raise ModelNotFoundError(f"{folder}: weights do not match its config.json (missing {sorted(set(missing) - expected)[:3]}, unexpected {unexpected[:3]}); re-export the tower")
        return tower
