"""Synthetic scenarios with known answers (docs/methods.md §13, the ICG paper §5): Burnt Snacks and Local Minimum.

Both are generated procedurally from a seed (numpy ``default_rng``), so the same call
returns the same tensors on every machine, and a quality study needs no download. The
label of every example follows from how it was drawn, and the ground truth that an
attribution should find is returned with it (masks of the target squares; per-feature
scores). Labels are exact by construction: lightness values keep a small margin away
from the class boundaries so that no example sits on a knife edge.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

__all__ = [
    "BurntSnacks", "make_burnt_snacks", "BAND", "SHAPES",
    "LocalMinimum", "make_local_minimum", "local_minimum_score", "LOCAL_MINIMUM_KNOTS",
]

# ----------------------------------------------------------------------------- Burnt Snacks

BAND = (0.25, 0.50)  # "overcooked" lightness: a square in this band makes class 1
SHAPES = ("square", "triangle", "disc")
_MARGIN = 0.03  # lightness drawn at least this far from the band edges (clean labels)
_FAINT = (0.10, BAND[0] - _MARGIN)  # squares too faint to count (below the band)
_LIGHT = (BAND[1] + _MARGIN, 1.00)  # decoys: lighter versions of the target squares
_TARGET = (BAND[0] + _MARGIN, BAND[1] - _MARGIN)


@dataclass
class BurntSnacks:
    """A batch of Burnt Snacks images.

    Attributes:
        images: float32 ``(n, 1, H, W)`` in ``[0, 1]``; 0 is black (the model input space).
        labels: int64 ``(n,)``: 1 iff some square has lightness in ``BAND`` (25-50 %).
        masks: bool ``(n, H, W)``: the pixels of the overcooked squares (all False for
            class 0); the ground truth for localisation scores.
        objects: per image, a list of ``(kind, lightness, top, left, size)`` tuples for
            every drawn object, in drawing order.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    objects: List[List[Tuple[str, float, int, int, int]]]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _check_int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return int(value)


def _shape_mask(kind: str, s: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean ``(s, s)`` footprint of a shape. Only squares fill their bounding box."""
    if kind == "square":
        return np.ones((s, s), dtype=bool)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    if kind == "disc":
        c = (s - 1) / 2.0
        return (yy - c) ** 2 + (xx - c) ** 2 <= (s / 2.0) ** 2 - 0.5
    # Triangle: apex row 0, base row s-1, then one of four orientations.
    m = np.abs(xx - (s - 1) / 2.0) <= (yy + 1.0) / 2.0 + 0.01
    return np.rot90(m, k=int(rng.integers(4))).copy()


def _place(occupied: np.ndarray, s: int, rng: np.random.Generator, gap: int) -> Optional[Tuple[int, int]]:
    """A free top-left corner for an s x s box at least ``gap`` pixels from other objects."""
    h, w = occupied.shape
    for _ in range(60):
        top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        if not occupied[max(top - gap, 0):top + s + gap, max(left - gap, 0):left + s + gap].any():
            return top, left
    return None


def make_burnt_snacks(n: int, seed: int = 0, size: int = 32, max_squares: int = 4,
                      max_shapes: int = 3, min_object: int = 4, max_object: int = 7,
                      background_noise: float = 0.05, p_class1: float = 0.5) -> BurntSnacks:
    """Generate ``n`` Burnt Snacks images (the ICG paper §5.1), deterministic given ``seed``.

    A dark background (uniform noise in ``[0, background_noise]``) with 1..``max_squares``
    flat squares and 0..``max_shapes`` other shapes (triangles, discs), ``min_object`` to
    ``max_object`` pixels wide, at least one pixel apart. Class 1 (drawn with probability
    ``p_class1``) has 1 or 2 "overcooked" squares of lightness in the band 25-50 %;
    its other squares, and all squares of class 0, are light decoys (53-100 %) or, one
    time in four, faint ones (10-22 %). Other shapes take any lightness in 10-100 %,
    the band included: only *squares* decide the class. Lightness keeps 0.03 away from
    the band edges, so labels are exact.

    Returns:
        ``BurntSnacks`` with images ``(n, 1, size, size)``, labels ``(n,)``, masks
        ``(n, size, size)`` and per-image object lists.
    """
    n = _check_int("n", n, 0)
    seed = _check_int("seed", seed, 0)
    size = _check_int("size", size, 8)
    max_squares = _check_int("max_squares", max_squares, 1)
    max_shapes = _check_int("max_shapes", max_shapes, 0)
    min_object = _check_int("min_object", min_object, 4)  # below 4 px a disc fills its box
    max_object = _check_int("max_object", max_object, min_object)
    if 2 * max_object + 1 > size:
        raise ValueError(f"size must be >= 2 * max_object + 1 = {2 * max_object + 1}, got {size}")
    if not isinstance(background_noise, (int, float)) or not 0.0 <= background_noise <= _FAINT[0] - 0.02:
        raise ValueError(f"background_noise must be a number in [0, {_FAINT[0] - 0.02:g}], "
                         f"got {background_noise!r}")
    if not isinstance(p_class1, (int, float)) or not 0.0 <= p_class1 <= 1.0:
        raise ValueError(f"p_class1 must be a number in [0, 1], got {p_class1!r}")

    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    masks = np.zeros((n, size, size), dtype=bool)
    objects = []
    for i in range(n):
        img = rng.uniform(0.0, background_noise, (size, size)) if background_noise > 0 else np.zeros((size, size))
        occupied = np.zeros((size, size), dtype=bool)
        y = int(rng.random() < p_class1)
        n_sq = int(rng.integers(1, max_squares + 1))
        n_target = min(int(rng.integers(1, 3)), n_sq) if y else 0
        plan = [("square", float(rng.uniform(*_TARGET))) for _ in range(n_target)]
        for _ in range(n_sq - n_target):
            band = _FAINT if rng.random() < 0.25 else _LIGHT
            plan.append(("square", float(rng.uniform(*band))))
        for _ in range(int(rng.integers(0, max_shapes + 1))):
            plan.append((SHAPES[1 + int(rng.integers(len(SHAPES) - 1))], float(rng.uniform(_FAINT[0], 1.0))))
        drawn = []
        for k, (kind, value) in enumerate(plan):
            s = int(rng.integers(min_object, max_object + 1))
            where = _place(occupied, s, rng, gap=1)
            if where is None:
                if k < n_target:  # never happens at the defaults; the label must stay true
                    raise RuntimeError("could not place a target square; use a larger size")
                continue
            top, left = where
            foot = _shape_mask(kind, s, rng)
            img[top:top + s, left:left + s][foot] = value
            occupied[top:top + s, left:left + s] = True
            if k < n_target:
                masks[i, top:top + s, left:left + s] = True
            drawn.append((kind, value, top, left, s))
        images[i] = img
        labels[i] = y
        objects.append(drawn)
    return BurntSnacks(torch.from_numpy(images[:, None]), torch.from_numpy(labels),
                       torch.from_numpy(masks), objects)


# ----------------------------------------------------------------------------- Local Minimum

# f is -0.75 up to 0.5, then jumps to 0.5 and rises with a dip: a positive local minimum
# at 0.7. The knots are read from the ICG paper (Fig. 5, and Table 2's scaled scores: f(0.6) =
# f(0.9) = 0.8, f(0.7) = 0.6, f(x <= 0.5) = -0.75, so -0.75/0.8 = -0.94 as printed).
LOCAL_MINIMUM_KNOTS = ((0.5, 0.5), (0.6, 0.8), (0.7, 0.6), (0.9, 0.8), (1.0, 1.0))
_LOW = -0.75


def local_minimum_score(t) -> np.ndarray:
    """The component score f(t) of the Local Minimum scenario, elementwise.

    ``f(t) = -0.75`` for ``t <= 0.5``; above 0.5 piecewise linear through
    ``LOCAL_MINIMUM_KNOTS`` (0.5 -> 0.5, 0.6 -> 0.8, 0.7 -> 0.6, 0.9 -> 0.8, 1 -> 1).
    Accepts an array or tensor of any shape (values outside [0, 1] are clamped);
    returns a float64 ndarray of the same shape.
    """
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().double().numpy()
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    kx, ky = zip(*LOCAL_MINIMUM_KNOTS)
    return np.where(t <= 0.5, _LOW, np.interp(t, kx, ky))


@dataclass
class LocalMinimum:
    """A batch of Local Minimum vectors.

    Attributes:
        inputs: float32 ``(n, d)``, components uniform in ``[0, 1]``.
        labels: int64 ``(n,)``: 1 iff ``S(x) = sum_i f(x_i) > 0``.
        scores: float64 ``(n, d)``: the component scores ``f(x_i)`` (the "nominal
            scores" that attributions are compared with in the ICG paper's Table 2).
        totals: float64 ``(n,)``: ``S(x)``.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    totals: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def make_local_minimum(n: int, seed: int = 0, d: int = 6) -> LocalMinimum:
    """Generate ``n`` Local Minimum vectors of ``d`` components (the ICG paper §5.2).

    Components are i.i.d. uniform in [0, 1] (float32; the label is computed from the
    float32 values, so it is exact for the returned inputs). With ``d = 6`` the classes
    are roughly balanced (about 45 % class 1).
    """
    n = _check_int("n", n, 0)
    seed = _check_int("seed", seed, 0)
    d = _check_int("d", d, 1)
    rng = np.random.default_rng(seed)
    x = rng.random((n, d)).astype(np.float32)
    scores = local_minimum_score(x)
    totals = scores.sum(axis=1)
    labels = (totals > 0).astype(np.int64)
    return LocalMinimum(torch.from_numpy(x), torch.from_numpy(labels), torch.from_numpy(scores),
                        torch.from_numpy(totals))
