"""DiffID: the difference between insertion and deletion games (Yang et al. 2023, LPI,
the LPI paper Eq. 7), docs/methods.md §11.

For each fraction r (default 0.1, 0.2, ..., 0.9) and n(r) = round(r * H * W) pixels
ranked by |sum over channels of the attribution|:
  deletion  removes the n(r) most salient pixels,
  insertion keeps only the H*W - n(r) most salient, i.e. removes the n(r) least salient;
removed pixels take, channel by channel, the mean of the image's kept pixels (the
paper's mean imputation). Scores: the output ratio p(target | perturbed) /
p(target | original) with p the softmax probability, and correctness (argmax ==
target). DiffID(r) = insertion - deletion. The paper plots the curve and gives no
aggregate; we report the curve and its plain mean over the fractions (for the
default grid the trapezoid area over [0, 1] with DiffID(0) = DiffID(1) = 0 is 0.9 x
that mean). Higher is better.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, Sequence

import torch

from ._common import (DEFAULT_BATCH_SIZE, check_batch_size, check_call, forward_probs, rank_of_pixel, resolve_target,
                      saliency_map)

FRACTIONS = tuple(round(0.1 * k, 1) for k in range(1, 10))


@dataclass
class DiffIDResult:
    """DiffID over B images and R fractions (float64 throughout).

    fractions: (R,). removed: (R,) pixels removed per game, round(r * H * W).
    insertion_ratio, deletion_ratio: (B, R) p(perturbed) / p(original) of `target`.
    insertion_correct, deletion_correct: (B, R) 1.0 where argmax == target else 0.0.
    output_diffid: (B, R) insertion_ratio - deletion_ratio; output_score: (B,) its
        mean over the fractions; output_curve: (R,) mean over images;
        output_mean: mean over images and fractions.
    accuracy_curve: (R,) (accuracy of insertion - accuracy of deletion) / accuracy on
        the originals, over the batch (the paper's fractional accuracy change);
        accuracy_mean: its mean over the fractions (NaN if no original is correct).
    target: (B,); original_prob: (B,); original_correct: (B,) 1.0/0.0.
    """

    fractions: torch.Tensor
    removed: torch.Tensor
    insertion_ratio: torch.Tensor
    deletion_ratio: torch.Tensor
    insertion_correct: torch.Tensor
    deletion_correct: torch.Tensor
    output_diffid: torch.Tensor
    output_score: torch.Tensor
    output_curve: torch.Tensor
    output_mean: float
    accuracy_curve: torch.Tensor
    accuracy_mean: float
    target: torch.Tensor
    original_prob: torch.Tensor
    original_correct: torch.Tensor
    settings: Dict[str, Any] = field(default_factory=dict)


def _check_fractions(fractions: Any, hw: int) -> tuple:
    try:
        fr = tuple(fractions)
    except TypeError:
        raise TypeError(f"fractions must be a sequence of numbers in (0, 1), got {fractions!r}") from None
    if not fr or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in fr):
        raise TypeError(f"fractions must be a non-empty sequence of numbers in (0, 1), got {fractions!r}")
    if any(not (0.0 < float(v) < 1.0) for v in fr):
        raise ValueError(f"fractions must lie strictly between 0 and 1, got {fractions!r}")
    removed = [int(math.floor(float(v) * hw + 0.5)) for v in fr]
    if any(n >= hw for n in removed):
        raise ValueError(f"fractions {fractions!r} would remove all {hw} pixels of an image (no kept pixels to "
                         f"take the mean of); use smaller fractions")
    return tuple(float(v) for v in fr), removed


def diffid(model, inputs: torch.Tensor, attributions: torch.Tensor, target: Any = None,
           fractions: Sequence[float] = FRACTIONS, batch_size: int = DEFAULT_BATCH_SIZE) -> DiffIDResult:
    """DiffID curves and means of attribution maps.

    model: callable, (N, C, H, W) float -> (N, classes) logits, on inputs' device.
    inputs: (B, C, H, W) float images in the model's input space.
    attributions: (B, C, H, W) or (B, H, W); saliency = |sum over channels|, ties
        broken in row-major order.
    target: None (default: the class predicted on each input), an int or B ints.
    fractions: the r grid (default 0.1 .. 0.9); n(r) = floor(r * H * W + 0.5) pixels.
    batch_size: rows per forward pass (default 256).
    Cost: 2 * B * R forward rows plus B.
    """
    x, target = check_call(model, inputs, target)
    b, c, h, w = x.shape
    hw = h * w
    sal = saliency_map(attributions, b, (h, w))
    fr, removed = _check_fractions(fractions, hw)
    batch_size = check_batch_size(batch_size)

    target, probs = resolve_target(model, x, target, batch_size)
    p0 = probs.gather(1, target.view(-1, 1)).view(-1)
    if (p0 == 0).any():
        bad = (p0 == 0).nonzero().flatten()[:5].tolist()
        raise ValueError(f"target has probability 0 on inputs {bad}; the output ratio is undefined there")
    ranks = rank_of_pixel(sal.to(x.device))
    n_rem = torch.tensor(removed, device=x.device)
    r_count = len(fr)
    per_image = 2 * r_count  # rows: image-major, then game (0 = deletion, 1 = insertion), then fraction
    flat = x.reshape(b, c, hw)

    def make(lo: int, n: int) -> torch.Tensor:
        rows = torch.arange(lo, lo + n, device=x.device)
        img, game, k = rows // per_image, (rows % per_image) // r_count, rows % r_count
        rk, n_gone = ranks[img], n_rem[k].unsqueeze(1)
        gone = torch.where(game.unsqueeze(1) == 0, rk < n_gone, rk >= hw - n_gone)  # (rows, HW)
        keep = (~gone).to(torch.float64).unsqueeze(1)
        src = flat[img]
        mean = (src.to(torch.float64) * keep).sum(-1, keepdim=True) / keep.sum(-1, keepdim=True)
        return torch.where(gone.unsqueeze(1), mean.to(x.dtype), src).view(-1, c, h, w)

    p = forward_probs(model, b * per_image, make, batch_size).view(b, 2, r_count, -1)
    tgt = target.view(b, 1, 1, 1).expand(b, 2, r_count, 1)
    prob = p.gather(3, tgt)[..., 0]
    correct = (p.argmax(3) == target.view(b, 1, 1)).to(torch.float64)
    ratio = prob / p0.view(b, 1, 1)
    out = ratio[:, 1] - ratio[:, 0]
    orig_correct = (probs.argmax(1) == target).to(torch.float64)
    acc0 = orig_correct.mean()
    acc_curve = (correct[:, 1].mean(0) - correct[:, 0].mean(0)) / acc0 if acc0 > 0 else \
        torch.full((r_count,), float("nan"), dtype=torch.float64, device=x.device)
    return DiffIDResult(
        fractions=torch.tensor(fr, dtype=torch.float64), removed=torch.tensor(removed),
        insertion_ratio=ratio[:, 1], deletion_ratio=ratio[:, 0],
        insertion_correct=correct[:, 1], deletion_correct=correct[:, 0],
        output_diffid=out, output_score=out.mean(1), output_curve=out.mean(0), output_mean=float(out.mean()),
        accuracy_curve=acc_curve, accuracy_mean=float(acc_curve.mean()),
        target=target, original_prob=p0, original_correct=orig_correct,
        settings=dict(fractions=fr, batch_size=batch_size),
    )
