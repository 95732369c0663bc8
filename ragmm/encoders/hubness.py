"""How much of a hub an image is: its mean cosine to the nearest captions of a bank.

Some images sit close to very many captions (hubs) and crowd every text query's top 10. An image
encoder may ship a bank of caption embeddings beside its weights (:data:`HUB_BANK_FILE`, as
``ragmm-lite0`` does); the image reader records each image's :func:`hubness` at index time, and
the image retriever's calibrated fusion subtracts a share of it (see
:mod:`ragmm.retrievers.image`; CSLS, Conneau et al. 2018, "Word Translation Without Parallel Data").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragmm.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

HUB_BANK_FILE = "hub_bank.npy"  # (M, D) caption embeddings for the hubness correction, beside an encoder's weights
HUB_NEIGHBOURS = 10  # an image's hubness: its mean cosine to this many nearest bank captions


def hubness(vectors: np.ndarray, bank: np.ndarray, k: int = HUB_NEIGHBOURS) -> np.ndarray:
    """``(N,)``: each of ``vectors`` (``(N, D)``) its mean cosine to its ``k`` nearest rows of
    ``bank`` (``(M, D)``, caption embeddings): how much of a hub it is.

    Example:
        >>> import numpy as np
        >>> bank = np.eye(3, dtype=np.float32)
        >>> [round(float(h), 3) for h in hubness(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]), bank, k=2)]
        [0.577, 0.5]
    """
    import numpy as np

    v = np.asarray(vectors, np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    b = np.asarray(bank, np.float32)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    sims = v @ b.T  # (N, M)
    k = min(k, b.shape[0])
    return np.sort(sims, axis=1)[:, -k:].mean(axis=1)


_BANKS: dict[tuple[str, int], np.ndarray] = {}


def encoder_hub_bank(image_encoder: Any) -> np.ndarray | None:
    """The ``(M, D)`` caption bank shipped beside ``image_encoder``'s weights, if any.

    Raises:
        ConfigError: the file exists but is not a 2-d array of the encoder's dimension.
    """
    import numpy as np

    from ragmm.encoders.image_text import encoder_folder

    folder = encoder_folder(image_encoder)
    path = folder / HUB_BANK_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _BANKS:
        try:
            bank = np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a caption bank ({exc}); fit it again with python -m ragmm.training.data.clipart --fit-fusion") from exc
        dim = getattr(image_encoder, "dim", None)
        if bank.ndim != 2 or (dim is not None and bank.shape[1] != dim):
            raise ConfigError(f"{path}: a caption bank must be (M, {dim}), got {bank.shape}; fit it again with python -m ragmm.training.data.clipart --fit-fusion")
        _BANKS[key] = bank
    return _BANKS[key]
