"""A small synthetic task and a bundled damage-trained certainty-aware CNN (the ICG paper).

"Three patches": a dim 6x6 image (values U(0, 0.4)) with one bright 2x2 patch (values
U(0.8, 1)) at one of three places; the class is the place, with an unbalanced prior
(0.5, 0.3, 0.2) so that neutrality (output at c = 0 near the prior) is a real test.
The model takes cat([values (B, 1, 6, 6), c (B, 1, 6, 6)], 1). `train_certainty.py`
made ``certainty_cnn.pt`` and ``certainty_cnn.json`` (with the measured checks).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Tuple

import torch
from torch import nn

from ..certainty.model import CertaintyModel

PRIOR = (0.5, 0.3, 0.2)
PLACES = ((0, 0), (0, 4), (4, 2))  # top-left corner of each class's patch
WEIGHTS_FILE = "certainty_cnn.pt"


def make_patches_data(n: int, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """n images (n, 1, 6, 6) float32 in [0, 1] and labels (n,) int64, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    y = torch.multinomial(torch.tensor(PRIOR), n, replacement=True, generator=g)
    x = torch.rand(n, 1, 6, 6, generator=g) * 0.4
    pos = torch.tensor(PLACES)
    rows, cols, idx = pos[y, 0], pos[y, 1], torch.arange(n)
    for dr in range(2):
        for dc in range(2):
            x[idx, 0, rows + dr, cols + dc] = 0.8 + 0.2 * torch.rand(n, generator=g)
    return x, y


class CertaintyCNN(nn.Module):
    """(B, 2, 6, 6) -> (B, 3): two 3x3 convolutions, one hidden layer (about 40k parameters)."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(2, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(16 * 36, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, z):
        return self.body(z)


def new_certainty_model() -> CertaintyModel:
    return CertaintyModel(CertaintyCNN(), value_channels=1, certainty_channels=1)


def certainty_weights_path() -> Path:
    return Path(str(resources.files("pathattr.data").joinpath(WEIGHTS_FILE)))


def load_certainty_model(device="cpu") -> CertaintyModel:
    """The bundled damage-trained model, in eval mode, float32."""
    model = new_certainty_model()
    state = torch.load(certainty_weights_path(), map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()
