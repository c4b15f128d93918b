"""The bundled models of the synthetic scenarios, and their held-out data.

Weights ship inside this package (made by ``python -m pathattr.data.train_scenarios``;
a ``.json`` next to each ``.pt`` records its held-out accuracy, seed and settings).
Training and held-out data come from disjoint seeds, so ``burnt_snacks_heldout()`` and
``local_minimum_heldout()`` regenerate exactly the examples the recorded accuracy was
measured on.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Union

import torch

from .models import BurntSnacksCNN, LocalMinimumMLP
from .scenarios import BurntSnacks, LocalMinimum, make_burnt_snacks, make_local_minimum

__all__ = [
    "MODELS", "TRAIN_SEED", "HELDOUT_SEED", "N_HELDOUT", "weights_path", "model_info",
    "load_burnt_snacks_model", "load_burnt_snacks_certainty_model", "load_local_minimum_model",
    "burnt_snacks_heldout", "local_minimum_heldout", "with_certainty",
]

# name -> (weights file, constructor)
MODELS = {
    "burnt_snacks": ("burnt_snacks_cnn.pt", lambda: BurntSnacksCNN(certainty=False)),
    "burnt_snacks_certainty": ("burnt_snacks_certainty_cnn.pt", lambda: BurntSnacksCNN(certainty=True)),
    "local_minimum": ("local_minimum_mlp.pt", lambda: LocalMinimumMLP(d=6)),
}
TRAIN_SEED = 1  # data seed of the training sets (the model init seed is recorded in the JSON)
HELDOUT_SEED = 2  # a different numpy stream: held-out examples are never trained on
N_HELDOUT = 2000


def _check_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {tuple(MODELS)}, got {type(name).__name__}")
    if name not in MODELS:
        raise ValueError(f"name must be one of {tuple(MODELS)}, got {name!r}")
    return name


def weights_path(name: str) -> Path:
    """Path of the bundled weights of model ``name`` (one of ``MODELS``); may not exist."""
    fname = MODELS[_check_name(name)][0]
    try:
        return Path(str(resources.files(__package__) / fname))
    except (TypeError, ModuleNotFoundError, AttributeError):  # pragma: no cover - unusual loaders
        return Path(__file__).with_name(fname)


def model_info(name: str) -> dict:
    """The training record (``.json``) of model ``name``: accuracy, seeds, settings."""
    return json.loads(weights_path(name).with_suffix(".json").read_text())


def _load(name: str, device) -> torch.nn.Module:
    path = weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights of {name!r} not found at {path}. They ship with the package; to recreate "
            f"them run: python -m pathattr.data.train_scenarios --which {name}"
        )
    model = MODELS[name][1]()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    return model.to(device)


def load_burnt_snacks_model(device: Union[str, torch.device] = "cpu") -> BurntSnacksCNN:
    """The trained Burnt Snacks CNN in eval mode: ``(B, 1, H, W)`` in [0, 1] -> ``(B, 2)`` logits."""
    return _load("burnt_snacks", device)


def load_burnt_snacks_certainty_model(device: Union[str, torch.device] = "cpu") -> BurntSnacksCNN:
    """The certainty-aware Burnt Snacks CNN (for ICG), eval mode: ``(B, 2, H, W)`` -> ``(B, 2)``.

    Channel 0 is the image, channel 1 the per-pixel certainty (``with_certainty``). It was
    trained with the damage function of docs/methods.md §8, so certainty 0 means "no information".
    """
    return _load("burnt_snacks_certainty", device)


def load_local_minimum_model(device: Union[str, torch.device] = "cpu") -> LocalMinimumMLP:
    """The trained Local Minimum MLP in eval mode: ``(B, 6)`` in [0, 1] -> ``(B, 2)`` logits."""
    return _load("local_minimum", device)


def burnt_snacks_heldout(n: int = N_HELDOUT) -> BurntSnacks:
    """The first ``n`` held-out Burnt Snacks images (seed ``HELDOUT_SEED``, 32x32)."""
    return make_burnt_snacks(n, seed=HELDOUT_SEED)


def local_minimum_heldout(n: int = N_HELDOUT) -> LocalMinimum:
    """The first ``n`` held-out Local Minimum vectors (seed ``HELDOUT_SEED``, d = 6)."""
    return make_local_minimum(n, seed=HELDOUT_SEED)


def with_certainty(x: torch.Tensor, certainty: Union[float, torch.Tensor] = 1.0) -> torch.Tensor:
    """Append a certainty channel: ``(B, C, H, W)`` -> ``(B, C + 1, H, W)``.

    Args:
        x: images ``(B, C, H, W)``.
        certainty: a number in [0, 1] for every pixel (default 1: fully known), or a
            tensor broadcastable to ``(B, 1, H, W)``.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if isinstance(certainty, (int, float)) and not isinstance(certainty, bool):
        if not 0.0 <= certainty <= 1.0:
            raise ValueError(f"certainty must lie in [0, 1], got {certainty}")
        c = torch.full_like(x[:, :1], float(certainty))
    elif isinstance(certainty, torch.Tensor):
        try:
            c = certainty.to(device=x.device, dtype=x.dtype).expand(x.shape[0], 1, *x.shape[2:])
        except RuntimeError as exc:
            raise ValueError(f"certainty must broadcast to {(x.shape[0], 1, *x.shape[2:])}, "
                             f"got {tuple(certainty.shape)}") from exc
    else:
        raise TypeError(f"certainty must be a number or a tensor, got {type(certainty).__name__}")
    return torch.cat([x, c], dim=1)
