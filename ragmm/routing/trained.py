"""The ``trained`` router: a small multi-label classifier over the query's text embedding.

The classifier reads the embedding the text retriever computes for the query anyway (through
the pipeline's shared memo), so routing adds one tiny matrix product, no second encode. It is
a logistic regression (``hidden = 0``) or a two-layer MLP with one sigmoid per route, trained
by ``ragmm train router`` (:mod:`ragmm.training.router`) and saved as a folder:

    router.json          labels, encoder identity, dimensions, threshold, training figures
    router.safetensors   w1 (H, D), b1 (H,), w2 (L, H), b2 (L,)  (or w2 (L, D), b2 (L,) alone)

Inference is numpy: loading the router never imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragmm.errors import ConfigError, ModelNotFoundError
from ragmm.protocols import Route
from ragmm.routing import ROUTES, select_routes
from ragmm.types import Query

SHIPPED_ROUTER = Path(__file__).parent / "weights" / "ragmm-router"
META_FILE = "router.json"
WEIGHTS_FILE = "router.safetensors"


@dataclass(slots=True)
class RouterMeta:
    """What ``router.json`` holds.

    Args:
        labels: the routes, in the order of the classifier's outputs.
        encoder: identity of the text encoder whose query embeddings it was trained on.
        dim: that encoder's dimension.
        hidden: hidden units (0: logistic regression).
        threshold: least probability for a route to be chosen.
        metrics: figures measured when it was trained (held-out accuracy, ...).
    """

    labels: list[str]
    encoder: str
    dim: int
    hidden: int = 0
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)


class RouteClassifier:
    """The classifier alone: ``(N, D)`` embeddings -> ``(N, L)`` route probabilities.

    Args:
        meta: labels, dimensions and threshold.
        weights: ``w1``, ``b1`` (absent for logistic regression), ``w2``, ``b2`` as numpy arrays.
    """

    def __init__(self, meta: RouterMeta, weights: Mapping[str, Any]) -> None:
        import numpy as np

        self.meta = meta
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        out = self.w["w2"].shape[0]
        if out != len(meta.labels):
            raise ConfigError(f"router weights have {out} outputs but {len(meta.labels)} labels; retrain it with `ragmm train router`")

    def predict(self, x: Any) -> Any:
        """Route probabilities, ``(N, L)`` float32, for ``(N, D)`` embeddings."""
        import numpy as np

        h = np.asarray(x, dtype=np.float32)
        if "w1" in self.w:
            h = np.maximum(h @ self.w["w1"].T + self.w["b1"], 0.0)  # (N, H)
        logits = h @ self.w["w2"].T + self.w["b2"]  # (N, L)
        return 1.0 / (1.0 + np.exp(-logits))

    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / META_FILE).write_text(json.dumps(asdict(self.meta), indent=2) + "\n", encoding="utf-8")
        save_file({k: v for k, v in self.w.items()}, str(folder / WEIGHTS_FILE))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> RouteClassifier:
        """Load a saved router folder.

        Raises:
            ModelNotFoundError: the folder or one of its two files is missing.
        """
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
        if not meta_path.is_file() or not weights_path.is_file():
            raise ModelNotFoundError(f"{folder}: not a router folder (needs {META_FILE} and {WEIGHTS_FILE}); train one with `ragmm train router`")
        meta = RouterMeta(**json.loads(meta_path.read_text(encoding="utf-8")))
        return cls(meta, load_file(str(weights_path)))


class TrainedRouter:
    """Routes a query by a classifier over its text embedding.

    Args:
        classifier: the trained classifier.
        text_encoder: a zero-argument callable giving the text encoder (built lazily).
        embeddings: the pipeline's shared query-embedding memo (``embeddings.text(encoder,
            text) -> (D,)``); ``None`` encodes the query here.
        threshold: least probability for a route (``None``: the one saved with the router).

    Raises:
        ConfigError: the text encoder is not the one the router was trained on.

    Example:
        >>> router = TrainedRouter.from_config(TrainedRouter.Config(), encoders={"text": enc})  # doctest: +SKIP
        >>> router.route(Query("show me a picture of a red fox"), ["paragraph", "image"])  # doctest: +SKIP
        [Route(corpus='image', probability=0.97)]
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        model: str | None = Field(None, description="a router folder from `ragmm train router`; None = the shipped ragmm-router (all-MiniLM-L6-v2 embeddings)")
        threshold: float | None = Field(None, ge=0, le=1, description="least probability for a route to be searched; None = the one chosen at training")
        encoder: str = Field("text", description="the [encoders.<modality>] whose query embedding the router reads")

    def __init__(self, classifier: RouteClassifier, text_encoder: Callable[[], Any], embeddings: Any = None, threshold: float | None = None) -> None:
        self.classifier = classifier
        self._text_encoder = text_encoder
        self._embeddings = embeddings
        self.threshold = classifier.meta.threshold if threshold is None else threshold
        self._checked = False

    @classmethod
    def from_config(cls, config: Config, encoders: Mapping[str, Any] | None = None, embeddings: Any = None, **_: Any) -> TrainedRouter:
        folder = Path(config.model).expanduser() if config.model else SHIPPED_ROUTER
        classifier = RouteClassifier.load(folder)
        if encoders is None:
            raise ConfigError("[router] type = 'trained' needs the text encoder; build it through ragmm.Pipeline")
        return cls(classifier, lambda: encoders[config.encoder], embeddings, config.threshold)

    def probabilities(self, text: str) -> dict[str, float]:
        """Every route's probability for ``text``."""
        encoder = self._text_encoder()
        if not self._checked:
            self._check(encoder)
        if self._embeddings is not None:
            vec = self._embeddings.text(encoder, text)
        else:
            vec = encoder.encode_query([text])[0]
        probs = self.classifier.predict(vec[None, :])[0]  # (L,)
        return {label: float(p) for label, p in zip(self.classifier.meta.labels, probs, strict=True)}

    def route(self, query: Query, available: Sequence[str]) -> list[Route]:
        """The available corpora the query needs, most probable first; ``[]`` for none."""
        return select_routes(self.probabilities(query.text), available, self.threshold, query.corpora)

    def _check(self, encoder: Any) -> None:
        meta = self.classifier.meta
        name, dim = getattr(encoder, "name", ""), getattr(encoder, "dim", None)
        if name != meta.encoder or (dim is not None and dim != meta.dim):
            raise ConfigError(
                f"[router] the router was trained on {meta.encoder} embeddings ({meta.dim}-d) but the text encoder is {name} ({dim}-d); "
                "train one for this encoder with `ragmm train router`, or use [router] type = 'all'"
            )
        unknown = set(meta.labels) - set(ROUTES)
        if unknown:
            raise ConfigError(f"[router] the router has unknown routes {sorted(unknown)}; known routes: {', '.join(ROUTES)}")
        self._checked = True
