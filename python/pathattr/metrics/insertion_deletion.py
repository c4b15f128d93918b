"""Insertion and deletion games (RISE, Petsiuk et al. 2018), docs/methods.md §11.

Pixels are ranked by |sum over channels of the attribution|. Deletion starts from
the image and replaces `pixels_per_step` pixels per step, most salient first, by the
baseline (0 in the model's input space by default); insertion starts from a
Gaussian-blurred copy and reveals the original pixels in the same order. The score
is the softmax probability of the class predicted on the original image, the AUC the
trapezoid rule over [0, 1] with the n_steps + 1 points equally spaced.

All (image, step) rows of all images and both games are generated on the fly and
run through the model in chunks of `batch_size`, so memory is one chunk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from ..engine.checks import check_choice, check_positive_int, check_real, prepare_baselines
from ._common import (DEFAULT_BATCH_SIZE, check_batch_size, check_call, forward_probs, rank_of_pixel, resolve_target,
                      saliency_map, trapezoid_unit)

GAMES = ("insertion", "deletion")


@dataclass
class InsertionDeletionResult:
    """Scores of the insertion and deletion games, per image (first dim B).

    insertion_auc, deletion_auc: (B,) float64 (None for a game not played).
        Higher insertion and lower deletion are better.
    insertion_curve, deletion_curve: (B, n_steps + 1) float64, the probability of
        `target` after 0, 1, ..., n_steps steps.
    fractions: (n_steps + 1,) the x axis, i / n_steps (pixels changed after step i:
        min(i * pixels_per_step, H * W)).
    target: (B,) the scored class; original_prob: (B,) its probability on the input.
    settings: pixels_per_step, n_steps, blur kernel and sigma, games, batch_size.
    """

    insertion_auc: Optional[torch.Tensor]
    deletion_auc: Optional[torch.Tensor]
    insertion_curve: Optional[torch.Tensor]
    deletion_curve: Optional[torch.Tensor]
    fractions: torch.Tensor
    target: torch.Tensor
    original_prob: torch.Tensor
    settings: Dict[str, Any] = field(default_factory=dict)


def gaussian_blur(images: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) images, edges replicated.

    Weights exp(-t^2 / (2 sigma^2)) for t = -k//2 .. k//2, normalised to sum 1 (so a
    constant image stays constant), computed in float64 and applied in the input
    dtype. Equals scipy.ndimage.gaussian_filter(mode="nearest", truncate=(k//2)/sigma).
    """
    r = kernel_size // 2
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    w = torch.exp(-t * t / (2.0 * sigma * sigma))
    w = (w / w.sum()).to(device=images.device, dtype=images.dtype)
    c = images.shape[1]
    out = F.pad(images, (r, r, r, r), mode="replicate")
    out = F.conv2d(out, w.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, w.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _check_games(games: Any) -> tuple:
    if isinstance(games, str):
        games = (games,)
    if not isinstance(games, (tuple, list)) or not games:
        raise ValueError(f"games must be 'insertion', 'deletion' or a sequence of them, got {games!r}")
    for g in games:
        check_choice(g, "games", GAMES)
    return tuple(g for g in GAMES if g in games)


def insertion_deletion(model, inputs: torch.Tensor, attributions: torch.Tensor, target: Any = None,
                       baseline: Any = None, pixels_per_step: Optional[int] = None,
                       games: Sequence[str] = GAMES, blur_kernel: int = 11, blur_sigma: float = 5.0,
                       batch_size: int = DEFAULT_BATCH_SIZE) -> InsertionDeletionResult:
    """Insertion and deletion AUCs of attribution maps (RISE).

    model: callable, (N, C, H, W) float -> (N, classes) logits, on inputs' device.
    inputs: (B, C, H, W) float images in the model's input space.
    attributions: (B, C, H, W) or (B, H, W); saliency = |sum over channels|, ties
        broken in row-major order.
    target: None (default: the class predicted on each input), an int or B ints.
    baseline: what deletion puts in place of a pixel: None = 0 in the model's input
        space, a number, or a tensor broadcastable to inputs.
    pixels_per_step: pixels changed per step (default H); n_steps = ceil(H*W / it).
    games: "insertion", "deletion" or both (default).
    blur_kernel, blur_sigma: the insertion game's starting image (default 11, 5.0),
        see `gaussian_blur`.
    batch_size: rows per forward pass (default 256).
    Cost: B * (n_steps + 1) forward rows per game, plus B for the target.
    """
    x, target = check_call(model, inputs, target)
    b, c, h, w = x.shape
    sal = saliency_map(attributions, b, (h, w))
    hw = h * w
    step = h if pixels_per_step is None else check_positive_int(pixels_per_step, "pixels_per_step")
    games = _check_games(games)
    blur_kernel = check_positive_int(blur_kernel, "blur_kernel")
    if blur_kernel % 2 == 0:
        raise ValueError(f"blur_kernel must be odd, got {blur_kernel}")
    blur_sigma = check_real(blur_sigma, "blur_sigma", 0.0, low_open=True)
    batch_size = check_batch_size(batch_size)
    base = prepare_baselines(baseline, x, "baseline")

    target, probs = resolve_target(model, x, target, batch_size)
    n_steps = -(-hw // step)
    counts = torch.clamp(torch.arange(n_steps + 1, device=x.device) * step, max=hw)  # pixels changed after step i
    ranks = rank_of_pixel(sal.to(x.device))  # (B, HW)
    rows_per_image = n_steps + 1

    def play(start: torch.Tensor, finish: torch.Tensor) -> torch.Tensor:
        # start/finish: (1 or B, C, H, W). Row r is image r // (n+1) after step r % (n+1).
        def make(lo: int, n: int) -> torch.Tensor:
            r = torch.arange(lo, lo + n, device=x.device)
            img, i = r // rows_per_image, r % rows_per_image
            changed = (ranks[img] < counts[i].unsqueeze(1)).view(-1, 1, h, w)
            s = start[img] if start.shape[0] == b else start.expand(n, -1, -1, -1)
            f = finish[img] if finish.shape[0] == b else finish.expand(n, -1, -1, -1)
            return torch.where(changed, f, s)

        p = forward_probs(model, b * rows_per_image, make, batch_size)
        tgt = target.repeat_interleave(rows_per_image)
        return p.gather(1, tgt.view(-1, 1)).view(b, rows_per_image)

    curves = {}
    if "insertion" in games:
        with torch.no_grad():
            blurred = gaussian_blur(x, blur_kernel, float(blur_sigma))
        curves["insertion"] = play(blurred, x)
    if "deletion" in games:
        curves["deletion"] = play(x, base)
    ins, dele = curves.get("insertion"), curves.get("deletion")
    return InsertionDeletionResult(
        insertion_auc=None if ins is None else trapezoid_unit(ins),
        deletion_auc=None if dele is None else trapezoid_unit(dele),
        insertion_curve=ins, deletion_curve=dele,
        fractions=torch.linspace(0, 1, rows_per_image, dtype=torch.float64),
        target=target, original_prob=probs.gather(1, target.view(-1, 1)).view(-1),
        settings=dict(pixels_per_step=step, n_steps=n_steps, blur_kernel=blur_kernel, blur_sigma=float(blur_sigma),
                      games=games, batch_size=batch_size),
    )
