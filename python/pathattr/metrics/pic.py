"""Performance Information Curves: SIC and AIC (Kapishnikov et al. 2019, XRAI), docs/methods.md §11.

For each image: a "fully blurred" reconstruction from a random 1 % of its pixels, then
reconstructions that also keep the top 0.5 %, 1 %, ..., 75 % most salient pixels. The
x axis is each reconstruction's information (lossless WebP size) normalised between
the fully blurred image and the original, the y axis the model's score normalised the
same way (running maximum), both clipped to [0, 1]. The curve through (0, 0) and
(1, 1) is sampled at 1000 points and its area taken by the trapezoid rule. SIC scores
the softmax probability of the target class, AIC 1/0 correctness; one set of images
and forward passes gives both. Images are aggregated by the median curve (the
paper's choice) and the mean of the per-image AUCs is reported too.

An image is skipped (and counted, never silently) when, in this order:
  1 "low_prediction": its score on the original is below `min_pred_value`;
  2 "entropy": the fully blurred image is not smaller in WebP bytes than the original;
  3 "blurred_prediction": the score on the fully blurred image is not below the original's.

The reconstructions are NumPy/SciPy work on the CPU, one image at a time; every
reconstruction of every image is then scored in batched forward passes on the
model's device.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ..engine.checks import check_bool, check_device, check_device_of, check_positive_int, check_real, check_seed, first_tensor
from ._common import DEFAULT_BATCH_SIZE, check_batch_size, check_model, forward_probs, saliency_map
from ..engine.targets import parse_target
from .pic_images import blurred_image, random_mask as draw_random_mask, webp_size

THRESHOLDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75)
SKIP_REASONS = ("low_prediction", "entropy", "blurred_prediction")
MAX_DATA_POINTS = 10 ** 6  # curve samples: far past any visible difference, and bounded memory
_trapezoid = getattr(np, "trapezoid", None) or getattr(np, "trapz")


@dataclass
class PicCurve:
    """One metric (SIC or AIC) over a batch of B images.

    auc: (B,) float64 per-image AUC; NaN exactly where `skipped` is non-zero.
    curve_x: (num_data_points + 1,) from 0 to 1; curve_y: (B, num_data_points + 1),
        NaN rows for skipped images.
    skipped: (B,) int64, 0 = scored, k = failed skip check k (1-based, SKIP_REASONS).
    skip_counts: {reason: number of images skipped for it}; n_scored: images scored.
    median_curve, median_auc: the median over scored images of curve_y and its
        trapezoid AUC (the paper's aggregate); mean_auc: mean of the per-image AUCs.
        NaN when no image was scored.
    predictions: (B, T + 2) the raw scores on the fully blurred image, each
        threshold's reconstruction, and the original.
    """

    auc: np.ndarray
    curve_x: np.ndarray
    curve_y: np.ndarray
    skipped: np.ndarray
    skip_counts: Dict[str, int]
    n_scored: int
    median_curve: np.ndarray
    median_auc: float
    mean_auc: float
    predictions: np.ndarray


@dataclass
class PicResult:
    """SIC and AIC of a batch, plus what they were computed from.

    sic, aic: PicCurve each. target: (B,) the scored class.
    entropies: (B, T + 2) WebP bytes of the fully blurred image, each threshold's
        reconstruction, and the original. random_mask: (B, H, W) bool, the masks used.
    thresholds: the saliency fractions. settings: every other knob.
    """

    sic: PicCurve
    aic: PicCurve
    target: torch.Tensor
    entropies: np.ndarray
    random_mask: np.ndarray
    thresholds: tuple
    settings: Dict[str, Any] = field(default_factory=dict)


def pic_curve(entropy: np.ndarray, pred: np.ndarray, keep_monotonous: bool = True,
              num_data_points: int = 1000):
    """One image's PIC curve from its T + 2 entropies and predictions (fully blurred,
    thresholds in ascending order, original). Returns (curve_x, curve_y, auc).
    Assumes the image passed the skip checks (the normalisers are positive)."""
    e0, e1 = float(entropy[0]), float(entropy[-1])
    p0, p1 = pred[0], pred[-1]
    xs, ys = [], []
    best = 0.0
    for e, p in zip(entropy[1:-1], pred[1:-1]):
        ne = np.clip((float(e) - e0) / (e1 - e0), 0.0, 1.0)
        npred = np.clip((p - p0) / (p1 - p0), 0.0, 1.0)
        best = max(best, npred)
        xs.append(ne)
        ys.append(best if keep_monotonous else npred)
    xs += [0.0, 1.0]
    ys += [0.0, 1.0]
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    order = np.argsort(xs, kind="mergesort")  # stable: equal entropies keep threshold order
    curve_x = np.linspace(0.0, 1.0, num=num_data_points, endpoint=False)
    curve_y = np.interp(curve_x, xs[order], ys[order])
    curve_x, curve_y = np.append(curve_x, 1.0), np.append(curve_y, 1.0)
    return curve_x, curve_y, float(_trapezoid(curve_y, curve_x))


def skip_reason(entropy: np.ndarray, pred: np.ndarray, min_pred_value: float) -> int:
    """0 when the image can be scored, else the 1-based index of the first failed check."""
    if pred[-1] < min_pred_value:
        return 1
    if entropy[0] >= entropy[-1]:
        return 2
    if pred[0] >= pred[-1]:
        return 3
    return 0


def _check_uint8_images(images: Any) -> np.ndarray:
    """(B, C, H, W) uint8 tensor or array -> (B, H, W, C) numpy, C in {1, 3, 4}."""
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 (PIC measures information in 8-bit images), got {images.dtype}")
        arr = images.detach().cpu().numpy()
    elif isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"images must be uint8 (PIC measures information in 8-bit images), got {images.dtype}")
        arr = images
    else:
        raise TypeError(f"images must be a uint8 torch.Tensor or numpy array of shape (batch, channels, height, width), "
                        f"got {type(images).__name__}")
    if arr.ndim != 4 or arr.shape[1] not in (1, 3, 4) or arr.shape[0] == 0 or min(arr.shape[2:]) < 2:
        raise ValueError(f"images must have shape (batch, channels, height, width) with 1, 3 or 4 channels, "
                         f"at least 2x2 pixels and one image; got {tuple(arr.shape)}")
    return np.ascontiguousarray(arr.transpose(0, 2, 3, 1))


def _check_thresholds(thresholds: Any) -> tuple:
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, (tuple, list, np.ndarray)):
        raise TypeError(f"thresholds must be a sequence of numbers in (0, 1), got {thresholds!r}")
    if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in thresholds):
        raise TypeError(f"thresholds must hold numbers in (0, 1), got {thresholds!r}")
    t = tuple(float(v) for v in thresholds)
    if not t or any(not (0.0 < v < 1.0) for v in t) or any(b <= a for a, b in zip(t, t[1:])):
        raise ValueError(f"thresholds must be a non-empty, strictly increasing sequence in (0, 1); got {thresholds!r}")
    return t


def _reconstructions(imgs: np.ndarray, sal: np.ndarray, masks: np.ndarray, thresholds: tuple) -> list:
    """Per image: [fully blurred, one reconstruction per threshold, the original]."""
    views = []
    for i in range(imgs.shape[0]):
        img = imgs[i, :, :, 0] if imgs.shape[3] == 1 else imgs[i]
        row = [blurred_image(img, masks[i])]
        for t in thresholds:
            keep = (sal[i] >= np.quantile(sal[i], 1 - t)) | masks[i]
            row.append(blurred_image(img, keep))
        row.append(img)
        views.append(row)
    return views


def default_preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1]."""
    return images.float() / 255.0


def pic(model, images: Any, attributions: Any, target: Any = None, random_mask: Optional[Any] = None,
        seed: int = 0, preprocess: Callable[[torch.Tensor], torch.Tensor] = default_preprocess,
        thresholds: Sequence[float] = THRESHOLDS, min_pred_value: float = 0.8, keep_monotonous: bool = True,
        num_data_points: int = 1000, random_fraction: float = 0.01, device: Optional[Any] = None,
        batch_size: int = DEFAULT_BATCH_SIZE) -> PicResult:
    """SIC and AIC (Performance Information Curves) of attribution maps.

    model: callable, preprocess(uint8 (N, C, H, W)) -> (N, classes) logits.
    images: (B, C, H, W) uint8 tensor or array, C in {1, 3, 4}.
    attributions: (B, C, H, W) or (B, H, W); saliency = |sum over channels| (pass a
        non-negative (B, H, W) map to rank by it unchanged).
    target: None (default: the class the model predicts on the original) or B ints.
    random_mask: (B, H, W) bool masks to start from; None draws a fresh int(H*W *
        random_fraction) pixels per image from numpy's default_rng(seed).
    preprocess: uint8 tensor on `device` -> model input (default: float / 255).
    thresholds: fractions of the most salient pixels kept (the 13 of docs/methods.md §11).
    min_pred_value: skip check 1 (default 0.8, as PAIR). keep_monotonous: running max
        of the normalised score (default True). num_data_points: curve samples before
        the final (1, 1) point (default 1000).
    device: where the model runs (default: its first parameter's device, else CPU).
    batch_size: rows per forward pass (default 256).
    Cost: B * (T + 2) forward rows; B * (T + 1) Delaunay interpolations and B * (T + 2)
    WebP encodings on the CPU (the dominant cost for large images).
    """
    check_model(model)
    if not callable(preprocess):
        raise TypeError(f"preprocess must be a callable uint8 tensor -> model input, got {type(preprocess).__name__}")
    imgs = _check_uint8_images(images)
    b, h, w, c = imgs.shape
    tgt = parse_target(target, b, torch.device("cpu"))  # before any forward
    sal = saliency_map(attributions if isinstance(attributions, torch.Tensor) else
                       torch.as_tensor(attributions) if isinstance(attributions, np.ndarray) else attributions,
                       b, (h, w)).cpu().numpy()
    thresholds = _check_thresholds(thresholds)
    min_pred_value = check_real(min_pred_value, "min_pred_value")
    random_fraction = check_real(random_fraction, "random_fraction", 0.0, 1.0, high_open=True)
    keep_monotonous = check_bool(keep_monotonous, "keep_monotonous")
    num_data_points = check_positive_int(num_data_points, "num_data_points", maximum=MAX_DATA_POINTS)
    batch_size = check_batch_size(batch_size)
    seed = check_seed(seed)
    if device is None:
        ref = first_tensor(model)
        device = ref.device if ref is not None else torch.device("cpu")
    device = check_device(device)
    check_device_of(model, device)
    if random_mask is None:
        rng = np.random.default_rng(seed)
        masks = np.stack([draw_random_mask(rng, h, w, random_fraction) for _ in range(b)])
    else:
        masks = random_mask.detach().cpu().numpy() if isinstance(random_mask, torch.Tensor) else np.asarray(random_mask)
        if masks.dtype != np.bool_:
            raise TypeError(f"random_mask must be boolean, got dtype {masks.dtype}")
        if masks.shape != (b, h, w):
            raise ValueError(f"random_mask must have shape ({b}, {h}, {w}), got {masks.shape}")

    # Reconstructions: fully blurred, one per threshold, then the original. One BLAS
    # thread: the triangulation's many 2x2 LAPACK solves ran 140x slower with
    # OpenBLAS's threads on a loaded 2-core machine (0.07 s -> 0.5 ms per image).
    with threadpool_limits(limits=1, user_api="blas"):
        views = _reconstructions(imgs, sal, masks, thresholds)
    entropies = np.array([[webp_size(v) for v in row] for row in views], dtype=np.int64)
    n_views = len(thresholds) + 2
    stack = np.stack([v if v.ndim == 3 else v[:, :, None] for row in views for v in row])  # (B*V, H, W, C)

    def make(lo: int, n: int) -> torch.Tensor:
        part = torch.from_numpy(np.ascontiguousarray(stack[lo:lo + n].transpose(0, 3, 1, 2))).to(device)
        return preprocess(part)

    probs = forward_probs(model, stack.shape[0], make, batch_size).cpu()
    classes = probs.shape[1]
    probs = probs.view(b, n_views, classes)
    if tgt is None:
        tgt = probs[:, -1].argmax(1)
    elif tgt.numel() and int(tgt.max()) >= classes:
        raise ValueError(f"target must lie in [0, {classes}) for a model with {classes} outputs; got {int(tgt.max())}")
    sic_pred = probs.gather(2, tgt.view(b, 1, 1).expand(b, n_views, 1))[..., 0].numpy()
    aic_pred = (probs.argmax(2) == tgt.view(b, 1)).to(torch.float64).numpy()

    def score(pred: np.ndarray) -> PicCurve:
        n_pts = num_data_points + 1
        aucs = np.full(b, np.nan)
        ys = np.full((b, n_pts), np.nan)
        skipped = np.zeros(b, dtype=np.int64)
        curve_x = np.append(np.linspace(0.0, 1.0, num=num_data_points, endpoint=False), 1.0)
        for i in range(b):
            skipped[i] = skip_reason(entropies[i], pred[i], float(min_pred_value))
            if skipped[i] == 0:
                _, ys[i], aucs[i] = pic_curve(entropies[i], pred[i], keep_monotonous, num_data_points)
        ok = skipped == 0
        median = np.median(ys[ok], axis=0) if ok.any() else np.full(n_pts, np.nan)
        return PicCurve(
            auc=aucs, curve_x=curve_x, curve_y=ys, skipped=skipped,
            skip_counts={r: int((skipped == k + 1).sum()) for k, r in enumerate(SKIP_REASONS)},
            n_scored=int(ok.sum()), median_curve=median,
            median_auc=float(_trapezoid(median, curve_x)) if ok.any() else float("nan"),
            mean_auc=float(aucs[ok].mean()) if ok.any() else float("nan"), predictions=pred,
        )

    return PicResult(
        sic=score(sic_pred), aic=score(aic_pred), target=tgt, entropies=entropies, random_mask=masks,
        thresholds=thresholds,
        settings=dict(min_pred_value=float(min_pred_value), keep_monotonous=bool(keep_monotonous),
                      num_data_points=num_data_points, random_fraction=float(random_fraction), seed=seed,
                      batch_size=batch_size),
    )


aic_sic = pic
