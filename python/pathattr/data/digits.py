"""scikit-learn's 8x8 digits and the bundled DigitsCNN: the demo's offline data and model.

The data ship inside scikit-learn and the weights (``digits_cnn.pt``, ~135 kB) inside
this package, so the demo and the tests need no network. The split is fixed
(stratified, ``random_state=0``, 20 % test) so that accuracies are comparable across
machines and versions; ``train_digits.py`` trains on "train" and reports "test".
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Tuple, Union

import numpy as np
import torch

from .models import DigitsCNN

__all__ = ["load_digits_data", "load_digits_model", "digits_weights_path", "split_indices", "SPLITS",
           "TEST_SIZE", "SPLIT_SEED"]

SPLITS = ("train", "test", "all")
TEST_SIZE = 0.2
SPLIT_SEED = 0
WEIGHTS_FILE = "digits_cnn.pt"


@functools.lru_cache(maxsize=1)
def _arrays() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ds = load_digits()
    images = (ds.images.astype(np.float32) / 16.0)[:, None, :, :]  # (1797, 1, 8, 8) in [0, 1]
    labels = ds.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=labels
    )
    return images, labels, np.sort(train_idx), np.sort(test_idx)


def split_indices(split: str = "test") -> np.ndarray:
    """Row indices into sklearn's ``load_digits()`` arrays for ``split`` (sorted, int64)."""
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, one of {SPLITS}, got {type(split).__name__}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    images, _, train_idx, test_idx = _arrays()
    if split == "train":
        return train_idx.copy()
    if split == "test":
        return test_idx.copy()
    return np.arange(len(images))


def load_digits_data(split: str = "test") -> Tuple[torch.Tensor, torch.Tensor]:
    """Load the 8x8 digits as tensors.

    Args:
        split: ``"train"`` (1437 images), ``"test"`` (360, the held-out split the bundled
            model is scored on) or ``"all"`` (1797, dataset order). The split is
            deterministic: stratified ``train_test_split(test_size=0.2, random_state=0)``;
            rows keep dataset order within a split.

    Returns:
        ``(images, labels)``: ``images`` float32 ``(n, 1, 8, 8)`` in ``[0, 1]`` (pixel
        value / 16, the DigitsCNN input space; 0 = black), ``labels`` int64 ``(n,)``.
        Fresh tensors on every call: modifying them does not affect later calls.
    """
    idx = split_indices(split)
    images, labels, _, _ = _arrays()
    return torch.from_numpy(images[idx].copy()), torch.from_numpy(labels[idx].copy())


def digits_weights_path() -> Path:
    """Path of the bundled ``digits_cnn.pt`` (it may not exist in a broken install)."""
    try:
        return Path(str(resources.files(__package__) / WEIGHTS_FILE))
    except (TypeError, ModuleNotFoundError, AttributeError):  # pragma: no cover - unusual loaders
        return Path(__file__).with_name(WEIGHTS_FILE)


def load_digits_model(device: Union[str, torch.device] = "cpu") -> DigitsCNN:
    """The bundled, trained ``DigitsCNN`` in eval mode on ``device``.

    Weights are read with ``torch.load(..., weights_only=True)`` from the package file
    ``pathattr/data/digits_cnn.pt`` (made by ``python -m pathattr.data.train_digits``;
    ``digits_cnn.json`` next to it records its test accuracy and provenance).

    Raises:
        FileNotFoundError: the weights file is missing (say how to regenerate it).
    """
    path = digits_weights_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"DigitsCNN weights not found at {path}. They ship with the package; to "
            f"recreate them run: python -m pathattr.data.train_digits --out {path}"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = DigitsCNN()
    model.load_state_dict(state)
    model.eval()
    return model.to(device)
