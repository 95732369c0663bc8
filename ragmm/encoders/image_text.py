"""Image-text dual encoder: an image tower aligned to a text tower, one sentence-transformers model.

The checkpoint is a sentence-transformers v6 model ``[Router, Normalize]`` whose ``Router`` sends
text to the text tower (the starting text model's own modules, e.g. MiniLM's Transformer +
Pooling) and images to a small CNN (:class:`~ragmm.encoders.image_tower.ImageTower`) that projects
to the text dimension. Routes are chosen by ``(task, modality)``, as sentence-transformers does:

=====================  ===========  ===============================================================
task                   modality     route
=====================  ===========  ===============================================================
``document``           any          image: documents of this model are images, so a path that does
                                    not exist fails in the image tower, naming the file, rather
                                    than being embedded as text
any                    ``image``    image
any                    ``text``     text
=====================  ===========  ===============================================================

Trained with ``[model] kind = "image-text"`` (see ``ragmm.training.kinds.image_text``); with the
text tower locked this is LiT (Zhai et al. 2022, "LiT: Zero-Shot Transfer with Locked-image text
Tuning", here with the roles swapped: the *text* tower is the pretrained, locked one).

Three kinds of folder load as :class:`ImageTextEncoder`:

- a full checkpoint as training writes it (``[Router, Normalize]`` with both towers);
- a *tower-only* checkpoint (``ragmm_image_tower.json`` + ``image_tower/``): with a locked text
  tower only the image tower is new, so only it is stored (fp16 safetensors, 4.9 MB) and the text
  tower is the text model it names, loaded from where it is installed. The shipped
  ``ragmm-lite0`` (the default image encoder) and ``ragmm-clipart`` are two, inside the package;
- any sentence-transformers model that reads images (e.g. a CLIP model saved by
  sentence-transformers), loaded without running code from the folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ModelNotFoundError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

TEXT_ROUTE = "text"
IMAGE_ROUTE = "image"
ROUTE_MAPPINGS: dict[tuple[str | None, str | None], str] = {
    ("document", None): IMAGE_ROUTE,
    (None, "image"): IMAGE_ROUTE,
    (None, "text"): TEXT_ROUTE,
}
# Module classes a checkpoint may name. Loading needs trust_remote_code=True (the image tower lives
# outside sentence_transformers), so ragmm checks the names first and imports nothing else.
IMAGE_TOWER_TYPE = "ragmm.encoders.image_tower.ImageTower"
TRUNK_TOWER_TYPE = "ragmm.encoders.pretrained_tower.TrunkTower"
TOWER_TYPES = (IMAGE_TOWER_TYPE, TRUNK_TOWER_TYPE)
TOWER_ONLY_FILE = "ragmm_image_tower.json"
STOCK_MAX_SIDE = 512  # images for a stock sentence-transformers model are decoded to this side at most
TOWER_DIR = "image_tower"
SHIPPED = "ragmm-clipart"  # what type = "image-text" or "ragmm-clipart" loads when no model is given
SHIPPED_TOWERS = ("ragmm-clipart", "ragmm-lite0")  # shipped tower-only checkpoints, loadable by name


def shipped_path(name: str = SHIPPED) -> Path:
    """The folder of a shipped tower-only checkpoint (``ragmm-clipart``, ``ragmm-lite0``)."""
    return Path(__file__).resolve().parent / "weights" / name


def tower_folder(name: str) -> Path:
    """The folder of an image model named as ``[encoders.image] model`` names it: a shipped tower
    by name (``ragmm-lite0``), else the path given (a trained folder)."""
    return shipped_path(name) if name in SHIPPED_TOWERS else Path(name).expanduser()


def encoder_folder(encoder: Any) -> Path | None:
    """The folder an image encoder's weights (and what ships beside them) live in, if it has one
    (a hub id or an unnamed encoder has none)."""
    name = str(getattr(encoder, "name", ""))
    folder = tower_folder(name) if name else None
    return folder if folder is not None and folder.is_dir() else None


def _tower_class(type_name: str) -> Any:
    """The image tower class a checkpoint names (only ragmm's own two are allowed)."""
    if type_name == TRUNK_TOWER_TYPE:
        from ragmm.encoders.pretrained_tower import TrunkTower

        return TrunkTower
    if type_name == IMAGE_TOWER_TYPE:
        from ragmm.encoders.image_tower import ImageTower

        return ImageTower
    raise ModelNotFoundError(f"image tower type {type_name!r} is not one ragmm loads ({', '.join(TOWER_TYPES)})")


def export_tower(model_dir: str | Path, out_dir: str | Path, text_model: str, max_seq_length: int | None = None, facts: dict[str, Any] | None = None) -> Path:
    """Write the tower-only checkpoint of a trained image-text model whose text tower was locked.

    Args:
        model_dir: the trained full checkpoint.
        out_dir: where to write ``ragmm_image_tower.json`` and ``image_tower/`` (fp16 weights).
        text_model: the locked text model as configured (packaged alias, folder or hub id); it
            must be the one the model was trained with, as its weights are not stored.
        max_seq_length: the text tower's token limit during training.
        facts: anything to record in the json (training command, figures).

    Returns:
        ``out_dir``.
    """
    import torch

    model = load_image_text_model(model_dir, device="cpu")
    tower = image_tower(model)
    out = Path(out_dir)
    (out / TOWER_DIR).mkdir(parents=True, exist_ok=True)
    tower.to(torch.float16).save(str(out / TOWER_DIR))
    tower_type = f"{type(tower).__module__}.{type(tower).__qualname__}"
    info = {"text_model": text_model, "max_seq_length": max_seq_length, "image_tower": TOWER_DIR, "image_tower_type": tower_type, **(facts or {})}
    (out / TOWER_ONLY_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out


def load_tower_only(path: Path, device: str | None = None) -> tuple[Any, str]:
    """A tower-only checkpoint as a full model; also returns the text model's identity."""
    import torch
    from sentence_transformers import SentenceTransformer

    from ragmm.encoders.sentence_transformer import resolve_model

    info = json.loads((path / TOWER_ONLY_FILE).read_text(encoding="utf-8"))
    load_from, identity = resolve_model(str(info["text_model"]))
    text = SentenceTransformer(load_from, device=device or "cpu", local_files_only=True)
    if info.get("max_seq_length"):
        text.max_seq_length = int(info["max_seq_length"])
    folder = path / str(info.get("image_tower", TOWER_DIR))
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"{folder}: image tower missing (no config.json); re-export it with ragmm.encoders.image_text.export_tower")
    tower = _tower_class(str(info.get("image_tower_type", IMAGE_TOWER_TYPE))).load(str(folder)).to(torch.float32)
    model = build_image_text_model(text, tower=tower)
    return model.to(device or "cpu"), identity


def build_image_text_model(
    text_model: Any, *, image_size: int = 64, width: int = 48, depths: Sequence[int] = (1, 1, 2, 1), augment: bool = False, tower: Any = None, device: str | None = None
) -> Any:
    """A new image-text ``SentenceTransformer``: ``text_model``'s modules as the text route and a
    fresh :class:`ImageTower` projecting to their dimension.

    Args:
        text_model: A loaded text ``SentenceTransformer`` (its modules are reused, not copied).
        image_size: Image side in pixels.
        width: First-stage channels of the image tower.
        depths: Blocks per stage of the image tower.
        augment: Random zoom, shift and flip of training images (see :class:`ImageTower`).
        tower: An existing :class:`ImageTower` to use instead of a new one (the sizes are then its own).
        device: Where the model lives (default: the text model's device).

    Returns:
        The combined ``SentenceTransformer`` (modules ``[Router, Normalize]``).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Router

    from ragmm.encoders.image_tower import ImageTower

    dim = int(text_model.get_embedding_dimension())
    if tower is None:
        tower = ImageTower(out_dim=dim, image_size=image_size, width=width, depths=depths, augment=augment)
    elif tower.get_embedding_dimension() != dim:
        raise ModelNotFoundError(f"the image tower gives {tower.get_embedding_dimension()}-d vectors but the text model {dim}-d; it was trained for another text model")
    router = Router({TEXT_ROUTE: list(text_model.children()), IMAGE_ROUTE: [tower]}, default_route=TEXT_ROUTE, route_mappings=ROUTE_MAPPINGS)
    model = SentenceTransformer(modules=[router, Normalize()], device=device or str(text_model.device))
    # The model card's usage example encodes sample *texts* as documents, which this model reads as
    # image paths; skip it rather than log an error on every save.
    model.model_card_data.generate_widget_examples = False
    return model


def text_tower(model: Any) -> Any:
    """The text route's modules (an ``nn.Sequential``) of an image-text model."""
    return model[0].sub_modules[TEXT_ROUTE]


def image_tower(model: Any) -> Any:
    """The :class:`ImageTower` of an image-text model."""
    return model[0].sub_modules[IMAGE_ROUTE][0]


def _check_checkpoint(path: Path) -> bool:
    """Refuse folders that are not ragmm image-text checkpoints, before anything is imported.

    Returns:
        Whether the folder uses ragmm's ImageTower (which loading must be allowed to import).
    """
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        raise ModelNotFoundError(f'{path}: not a sentence-transformers model folder (no modules.json); train one with [model] kind = "image-text"')
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    types = [m["type"] for m in modules]
    has_image_route = False
    for m in modules:
        if m["type"].endswith(".Router"):
            router = json.loads((path / m["path"] / "router_config.json").read_text(encoding="utf-8"))
            types += router["types"].values()
            has_image_route |= IMAGE_ROUTE in router["structure"]
    if not has_image_route and all(t.startswith("sentence_transformers.") for t in types):
        return False  # a stock sentence-transformers model; whether it reads images is checked on load
    if not has_image_route:
        raise ModelNotFoundError(f"{path}: not an image-text model (no Router with an '{IMAGE_ROUTE}' route); train one with [model] kind = \"image-text\"")
    foreign = sorted({t for t in types if t not in TOWER_TYPES and not t.startswith("sentence_transformers.")})
    if foreign:
        raise ModelNotFoundError(f"{path}: names module classes ragmm does not load ({', '.join(foreign)}); only sentence-transformers modules and ragmm's image towers are allowed")
    code = sorted(str(p.relative_to(path)) for p in path.rglob("*.py"))
    if code:
        raise ModelNotFoundError(f"{path}: holds Python files ({', '.join(code[:3])}); ragmm does not run code shipped with a checkpoint, remove them")
    return any(t in types for t in TOWER_TYPES)


def load_image_text_model(path: str | Path, device: str | None = None) -> Any:
    """Load a saved image-text ``SentenceTransformer``.

    Raises:
        ModelNotFoundError: ``path`` is not an image-text checkpoint, or names module classes other
            than sentence-transformers' and ragmm's image tower.
    """
    from sentence_transformers import SentenceTransformer

    folder = Path(path).expanduser()
    if (folder / TOWER_ONLY_FILE).is_file():
        return load_tower_only(folder, device)[0]
    # trust_remote_code only lets sentence-transformers import ragmm's ImageTower; the check
    # allows no other class and no code files in the folder.
    ours = _check_checkpoint(folder)
    model = SentenceTransformer(str(folder), device=device, trust_remote_code=ours, local_files_only=True)
    if "image" not in getattr(model, "modalities", []):
        raise ModelNotFoundError(f"{folder}: this sentence-transformers model does not read images (modalities: {', '.join(getattr(model, 'modalities', []))}); configure it under [encoders.text]")
    return model


class ImageTextEncoder:
    """A trained image-text checkpoint as a ragmm :class:`~ragmm.protocols.Encoder`.

    Queries are texts (text tower), documents are images (image tower): file paths, PIL images or
    arrays. Both come back as ``(N, dim)`` float32, L2-normalised, in one space.

    Example:
        >>> enc = ImageTextEncoder(ImageTextEncoder.Config(model="models/clipart"))  # doctest: +SKIP
        >>> enc.encode_query(["a red square"]) @ enc.encode_document(["red.png"]).T  # doctest: +SKIP
        array([[0.83]], dtype=float32)
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        model: str = Field(SHIPPED, description=f'{" or ".join(SHIPPED_TOWERS)} (shipped), a folder trained with [model] kind = "image-text", or a sentence-transformers model that reads images')
        precision: Literal["fp32", "bf16", "auto"] = Field("auto", description="bf16 autocast where the CPU or GPU supports it")
        device: str = Field("auto", description="'auto' picks cuda when present, else cpu")
        batch_size: int = Field(64, gt=0)

    modality = "image"
    # Set per instance: the identity of the text encoder whose vectors share this space, if any.
    text_space: str | None

    def __init__(self, config: Config) -> None:
        self.config = config
        if config.model in SHIPPED_TOWERS:
            folder = shipped_path(config.model)
            if not (folder / TOWER_ONLY_FILE).is_file():
                raise ModelNotFoundError(f"{folder}: the shipped {config.model} weights are missing; reinstall ragmm or set [encoders.image] model to a trained folder")
            self.name = config.model  # the identity collections remember: portable across installs
        else:
            folder = Path(config.model).expanduser()
            if not folder.is_dir():
                raise ModelNotFoundError(f'{folder}: image-text model folder not found; train one with [model] kind = "image-text" or set [encoders.image] model')
            self.name = str(folder.resolve())
        self._folder = folder
        self.text_space: str | None = None
        if (folder / TOWER_ONLY_FILE).is_file():
            # The text tower is the named text model, unchanged: text vectors of that model live
            # in this encoder's space, so a query encoded once serves text and image corpora.
            from ragmm.encoders.sentence_transformer import resolve_model

            text_model = json.loads((folder / TOWER_ONLY_FILE).read_text(encoding="utf-8"))["text_model"]
            self.text_space = resolve_model(str(text_model))[1]
        self._model: Any = None

    @classmethod
    def from_config(cls, config: Config) -> ImageTextEncoder:
        return cls(config)

    @property
    def device(self) -> str:
        from ragmm.encoders.sentence_transformer import resolve_device

        return resolve_device(self.config.device)

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first use)."""
        if self._model is None:
            log.info("loading image-text encoder %s on %s", self.name, self.device)
            model = load_image_text_model(self._folder, device=self.device)
            model.eval()
            if self.device == "cpu" and type(model[0]).__name__ == "Router":
                import torch

                # oneDNN runs EfficientNet-Lite's depthwise convolutions about a third faster
                # with channels-last weights (vectors equal to 1e-6); ragmm-clipart's CNN runs as fast.
                image_tower(model).to(memory_format=torch.channels_last)
            self._model = model
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _precision(self) -> contextlib.AbstractContextManager[None]:
        from ragmm.encoders.sentence_transformer import autocast

        return autocast(self.config.precision, self.device)

    def _encode(self, inputs: Sequence[Any], task: str, modality: str, batch_size: int | None) -> np.ndarray:
        import numpy as np
        import torch

        if not len(inputs):
            return np.zeros((0, self.dim), dtype=np.float32)
        routed = type(self.model[0]).__name__ == "Router"
        kwargs: dict[str, Any] = {"task": task}
        if routed:
            # task and modality are explicit: nothing is left to sentence-transformers' guessing
            # from strings (a missing image path would otherwise look like text).
            kwargs["modality"] = modality
        elif modality == "image":
            # A stock multimodal model tells images from texts by type: open paths here, so bad
            # files fail naming the file and a path is never embedded as text.
            from ragmm.encoders.image_tower import open_image

            inputs = [open_image(x, STOCK_MAX_SIDE) if isinstance(x, (str, Path)) else x for x in inputs]
        with torch.inference_mode(), self._precision():
            out = self.model.encode(
                list(inputs),
                **kwargs,
                batch_size=batch_size or self.config.batch_size,
                normalize_embeddings=True,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        vecs = out.float().cpu().numpy()
        # Normalised again in fp32: under bf16 autocast the model's own Normalize is off by ~1e-3.
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def encode_text(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """``(N, dim)`` float32, L2-normalised text embeddings (the text tower)."""
        return self._encode(texts, "query", "text", batch_size)

    def encode_image(self, images: Sequence[Any], batch_size: int | None = None) -> np.ndarray:
        """``(N, dim)`` float32, L2-normalised image embeddings (the image tower).

        Args:
            images: File paths, PIL images or arrays.

        Raises:
            ImageTooLargeError: an image exceeds Pillow's decompression-bomb limit (skip it).
            InputError: an image file is missing or corrupt; the message names it.
        """
        return self._encode(images, "document", "image", batch_size)

    def encode_query(self, inputs: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Queries are texts: :meth:`encode_text`."""
        return self.encode_text(inputs, batch_size)

    def encode_document(self, inputs: Sequence[Any], batch_size: int | None = None) -> np.ndarray:
        """Documents are images: :meth:`encode_image`."""
        return self.encode_image(inputs, batch_size)

    def encode_document_with_labels(self, inputs: Sequence[Any], batch_size: int | None = None) -> tuple[np.ndarray, list[str]]:
        """Image embeddings and, from the same forward pass, the words for what each image shows.

        With a pretrained-trunk tower (``ragmm-lite0``) a label is the confident ImageNet classes,
        e.g. ``"koala, teddy bear"``, or ``""`` when the classifier is unsure; other towers give
        ``""`` for every image.

        Args:
            inputs: File paths, PIL images or arrays.

        Returns:
            ``(N, dim)`` float32 L2-normalised vectors (as :meth:`encode_document`) and N labels.

        Raises:
            ImageTooLargeError, InputError: as :meth:`encode_image`.
        """
        import numpy as np
        import torch

        tower = image_tower(self.model) if type(self.model[0]).__name__ == "Router" else None
        if tower is None or not hasattr(tower, "labels"):
            return self.encode_document(inputs, batch_size), [""] * len(inputs)
        size = batch_size or self.config.batch_size
        vecs: list[np.ndarray] = []
        labels: list[str] = []
        with torch.inference_mode(), self._precision():
            for i in range(0, len(inputs), size):
                features = {k: v.to(self.device) for k, v in tower.preprocess(list(inputs[i : i + size])).items()}
                out = tower(features)
                vecs.append(out["sentence_embedding"].float().cpu().numpy())
                labels += tower.labels(out["trunk_logits"])
        if not vecs:
            return np.zeros((0, self.dim), dtype=np.float32), []
        v = np.concatenate(vecs)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(v, dtype=np.float32), labels


class Lite0ImageTextEncoder(ImageTextEncoder):
    """The shipped default image encoder ``ragmm-lite0``: :class:`ImageTextEncoder` whose model is
    the ImageNet EfficientNet-Lite0 trunk with a head trained into MiniLM's space (and labels)."""

    class Config(ImageTextEncoder.Config):
        model: str = Field("ragmm-lite0", description=f'{" or ".join(SHIPPED_TOWERS)} (shipped), a folder trained with [model] kind = "image-text", or a sentence-transformers model that reads images')
