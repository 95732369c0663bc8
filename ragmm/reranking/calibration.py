"""Score calibration: a reranker's raw score -> the probability that the item is relevant.

Raw scores mean different things for different kinds of items (a cross-encoder's logit for a
paragraph and for an image's file name; a MaxSim over a long gloss and over three words), so
one calibrator is fitted per kind on a development split (``paragraph``, ``document``,
``image``, ``clip``: a hit's corpus, else its modality, else ``default``). After it, one
threshold means the same thing for every kind.

Two methods, both fitted with scikit-learn and applied with numpy:

* ``platt``: a logistic curve ``1 / (1 + exp(-(a * s + b)))`` (Platt 1999); smooth, needs
  little data;
* ``isotonic``: a monotone step curve (Zadrozny and Elkan 2002); follows any shape, needs
  more data;
* ``logistic``: Platt over several features of a pair at once (``coef . x + b``), for a
  reranker whose raw score is a row of features (the late-interaction reranker's MaxSim beside
  the dense cosine, each also as its distance to the best candidate's); ``Calibration.features``
  names the columns.

Saved as ``calibration.json`` beside (or inside) the model folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragmm.errors import ConfigError

CALIBRATION_FILE = "calibration.json"
DEFAULT_KIND = "default"
Method = Literal["platt", "isotonic", "logistic"]


@dataclass(slots=True)
class Calibrator:
    """One fitted curve.

    Args:
        method: ``platt``, ``isotonic`` or ``logistic``.
        a, b: Platt's slope and intercept (``b``: also the logistic one's intercept).
        coef: ``logistic``: one weight per feature, in ``Calibration.features`` order.
        x, y: isotonic knots (raw score, probability), increasing in ``x``.
        n: pairs it was fitted on; positives: how many of them were relevant.
    """

    method: Method
    a: float = 1.0
    b: float = 0.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    coef: list[float] = field(default_factory=list)
    n: int = 0
    positives: int = 0

    def __call__(self, scores: Any) -> Any:
        """Probabilities in [0, 1]: one per score (``logistic``: one per row of features).

        Example:
            >>> Calibrator("platt", a=2.0, b=0.0)([0.0]).tolist()
            [0.5]
            >>> Calibrator("logistic", b=-1.0, coef=[1.0, 2.0])([[1.0, 0.0]]).tolist()
            [0.5]
        """
        import numpy as np

        s = np.asarray(scores, dtype=np.float64)
        if self.method == "logistic":
            return 1.0 / (1.0 + np.exp(-(s.reshape(len(s), -1) @ np.asarray(self.coef, dtype=np.float64) + self.b)))
        if self.method == "platt":
            return 1.0 / (1.0 + np.exp(-(self.a * s + self.b)))
        return np.interp(s, self.x, self.y)


def fit_calibrator(scores: Sequence[float], labels: Sequence[int], method: Method = "platt") -> Calibrator:
    """Fit a calibrator on raw scores (``logistic``: rows of features) and 0/1 relevance labels.

    Raises:
        ValueError: fewer than two pairs, or only one class among the labels.
    """
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(s) < 2 or len(set(y.tolist())) < 2:
        raise ValueError(f"calibration needs relevant and irrelevant pairs; got {len(s)} pairs, {int(y.sum())} relevant")
    if method == "logistic":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e4, max_iter=1000).fit(s.reshape(len(s), -1), y)
        return Calibrator("logistic", b=float(lr.intercept_[0]), coef=[float(c) for c in lr.coef_[0]], n=len(s), positives=int(y.sum()))
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e4).fit(s[:, None], y)
        return Calibrator("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]), n=len(s), positives=int(y.sum()))
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        return Calibrator("isotonic", x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist(), n=len(s), positives=int(y.sum()))
    raise ValueError(f"unknown calibration method {method!r}; use 'platt', 'isotonic' or 'logistic'")


@dataclass(slots=True)
class Calibration:
    """Calibrators by kind of item, with the threshold chosen for them.

    Args:
        by_kind: calibrators keyed by corpus name or modality; ``default`` serves the others.
        threshold: the relevancy threshold chosen on the development split.
        scorer: what made the raw scores (a model name), so a calibration is not applied to
            another model's scores by mistake.
        features: the columns of a raw score row for ``logistic`` curves; empty: one score.
    """

    by_kind: dict[str, Calibrator] = field(default_factory=dict)
    threshold: float = 0.5
    scorer: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)

    def kind_of(self, corpus: str, modality: str) -> str:
        if corpus in self.by_kind:
            return corpus
        if modality in self.by_kind:
            return modality
        return DEFAULT_KIND

    def apply(self, raw: Sequence[Any], kinds: Sequence[str]) -> list[float]:
        """Probabilities for raw scores (or rows of :attr:`features`) of items of the given kinds.

        Raises:
            ConfigError: a kind has no calibrator and there is no ``default`` one.
        """
        out = []
        for s, kind in zip(raw, kinds, strict=True):
            cal = self.by_kind.get(kind) or self.by_kind.get(DEFAULT_KIND)
            if cal is None:
                raise ConfigError(f"the reranker's calibration has no curve for {kind!r} items nor a 'default' one; refit it with `ragmm train reranker`")
            if cal.method == "logistic" and len(cal.coef) != len(self.features):
                raise ConfigError(f"the reranker's {kind!r} curve has {len(cal.coef)} weights for features {self.features}; refit it with `ragmm train reranker`")
            out.append(float(cal([s])[0]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        return cls(
            by_kind={k: Calibrator(**v) for k, v in data.get("by_kind", {}).items()},
            threshold=float(data.get("threshold", 0.5)),
            scorer=str(data.get("scorer", "")),
            metrics=dict(data.get("metrics", {})),
            features=[str(f) for f in data.get("features", [])],
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / CALIBRATION_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read ``calibration.json`` (or the one inside a folder).

        Raises:
            ConfigError: the file is missing or unreadable.
        """
        path = Path(path)
        if path.is_dir():
            path = path / CALIBRATION_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: no calibration file; fit one with `ragmm train reranker` (it writes {CALIBRATION_FILE})")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: not a calibration file ({exc}); refit it with `ragmm train reranker`") from None
