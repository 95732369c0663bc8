"""PNG plots of an evaluation: the Recall@k curve and the modality gap in 2-D."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def centroid_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the centroids of two sets of L2-normalised embeddings, the modality
    gap as measured by Liang et al. 2022 ("Mind the Gap")."""
    import numpy as np

    return float(np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)))


def project_2d(*groups: np.ndarray) -> list[np.ndarray]:
    """PCA of all groups together onto their first two principal axes; one (N_i, 2) array
    per group, so the groups stay comparable."""
    import numpy as np

    stacked = np.concatenate(groups).astype(np.float64)
    centred = stacked - stacked.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    points = centred @ vt[:2].T  # (N, 2)
    out, start = [], 0
    for g in groups:
        out.append(points[start : start + len(g)])
        start += len(g)
    return out


def plot_recall_curve(curves: Mapping[str, Sequence[tuple[int, float]]], path: Path, title: str) -> Path:
    """One line per run: Recall@k against k (log-scaled k)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, points in curves.items():
        ks, values = zip(*points, strict=True)
        ax.plot(ks, values, marker="o", markersize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_modality_gap(queries: np.ndarray, items: np.ndarray, path: Path, title: str, labels: tuple[str, str] = ("queries", "items")) -> float:
    """Scatter of a 2-D PCA projection of query and item embeddings with their centroids;
    returns the centroid gap measured in the full embedding space."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gap = centroid_gap(queries, items)
    q2, i2 = project_2d(queries, items)
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    colours = {labels[0]: "tab:orange", labels[1]: "tab:blue"}
    ax.scatter(i2[:, 0], i2[:, 1], s=4, alpha=0.35, c=colours[labels[1]], label=labels[1])
    ax.scatter(q2[:, 0], q2[:, 1], s=4, alpha=0.35, c=colours[labels[0]], label=labels[0])
    for pts, marker, label in ((q2, "X", labels[0]), (i2, "P", labels[1])):
        c = pts.mean(axis=0)
        ax.scatter([c[0]], [c[1]], s=160, marker=marker, c=colours[label], edgecolors="black", label=f"{label} centroid")
    ax.set_title(f"{title}\ncentroid gap = {gap:.3f}")
    ax.legend(markerscale=4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return gap
