"""Ground-truth localisation: how much attribution falls inside a known mask.

Both scores use the per-pixel map m = sum over channels of the attribution.
  energy: sum of m+ inside the mask / sum of m+ everywhere (sign="positive",
      the energy-based pointing game of Score-CAM), or the same with |m|
      (sign="absolute"). 1 is perfect; a map spread evenly scores the mask's area.
  pointing game (Zhang et al. 2016): a hit when the map's maximum (of m, or of |m|
      for sign="absolute"; the first in row-major order on ties) lies within
      `tolerance` pixels (Euclidean) of a mask pixel.
A row with an empty mask, or with no mass for the chosen sign, has no score: it is
NaN in the per-image tensors, False in `valid`, and left out of the means (counted
in n_valid), never silently.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Dict

import torch

from ..engine.checks import check_choice, check_finite
from ._common import saliency_map

SIGNS = ("positive", "absolute")


@dataclass
class LocalisationResult:
    """energy, pointing: (B,) float64 (pointing 1.0 hit / 0.0 miss; NaN where not valid).
    valid: (B,) bool. energy_mean, pointing_mean: over valid rows; n_valid: their number.
    argmax: (B, 2) the (row, col) of each map's maximum."""

    energy: torch.Tensor
    pointing: torch.Tensor
    valid: torch.Tensor
    energy_mean: float
    pointing_mean: float
    n_valid: int
    argmax: torch.Tensor
    settings: Dict[str, Any] = field(default_factory=dict)


def _check_masks(masks: Any, b: int) -> torch.Tensor:
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a torch.Tensor of shape (batch, height, width) or (batch, 1, height, width), "
                        f"got {type(masks).__name__}")
    m = masks
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() != 3 or m.shape[0] != b or m.shape[1] * m.shape[2] == 0:
        raise ValueError(f"masks must have shape ({b}, H, W) or ({b}, 1, H, W), got {tuple(masks.shape)}")
    if m.dtype != torch.bool:
        if m.is_complex():
            raise TypeError(f"masks must be boolean or 0/1 numbers, got dtype {m.dtype}")
        check_finite(m, "masks")
        if not ((m == 0) | (m == 1)).all():
            raise ValueError("masks must hold only 0 and 1 (or be boolean)")
        m = m != 0
    return m


def localisation(attributions: torch.Tensor, masks: torch.Tensor, sign: str = "positive",
                 tolerance: float = 0.0) -> LocalisationResult:
    """Energy inside the mask and the pointing game, per image.

    attributions: (B, C, H, W) or (B, H, W). masks: (B, H, W) or (B, 1, H, W), bool or
    0/1, True on the ground truth. sign: "positive" (default) or "absolute".
    tolerance: pointing-game slack in pixels (default 0; Zhang et al. use 15 at 224 px).
    No model evaluations.
    """
    if not isinstance(attributions, torch.Tensor):
        raise TypeError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    b = attributions.shape[0] if attributions.dim() else 0
    if isinstance(masks, torch.Tensor) and masks.dim() and attributions.dim() and masks.shape[0] != b:
        raise ValueError(f"attributions has {b} maps but masks has {masks.shape[0]}: one mask per attribution map")
    m = _check_masks(masks, b)
    h, w = m.shape[1:]
    if attributions.dim() in (3, 4) and tuple(attributions.shape[-2:]) != (h, w):
        raise ValueError(f"masks of shape {tuple(masks.shape)} do not match attributions of shape "
                         f"{tuple(attributions.shape)}: one (H, W) mask per attribution map")
    s = saliency_map(attributions, b, (h, w), reduce="sum").to(m.device)
    check_choice(sign, "sign", SIGNS)
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not (0 <= tolerance < float("inf")):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")

    mass = s.clamp_min(0) if sign == "positive" else s.abs()
    total = mass.flatten(1).sum(1)
    inside = (mass * m).flatten(1).sum(1)
    score_map = s if sign == "positive" else s.abs()
    idx = score_map.flatten(1).argmax(1)  # first maximum in row-major order
    rows, cols = idx // w, idx % w
    yy = torch.arange(h, device=m.device, dtype=torch.float64).view(1, h, 1)
    xx = torch.arange(w, device=m.device, dtype=torch.float64).view(1, 1, w)
    d2 = (yy - rows.view(-1, 1, 1)) ** 2 + (xx - cols.view(-1, 1, 1)) ** 2
    d2 = torch.where(m, d2, torch.full_like(d2, float("inf")))
    hit = (d2.flatten(1).min(1).values <= float(tolerance) ** 2).to(torch.float64)

    valid = m.flatten(1).any(1) & (total > 0)
    nan = torch.full_like(total, float("nan"))
    energy = torch.where(valid, inside / torch.where(valid, total, torch.ones_like(total)), nan)
    pointing = torch.where(valid, hit, nan)
    n_valid = int(valid.sum())
    return LocalisationResult(
        energy=energy, pointing=pointing, valid=valid,
        energy_mean=float(energy[valid].mean()) if n_valid else float("nan"),
        pointing_mean=float(pointing[valid].mean()) if n_valid else float("nan"),
        n_valid=n_valid, argmax=torch.stack([rows, cols], 1),
        settings=dict(sign=sign, tolerance=float(tolerance)),
    )
