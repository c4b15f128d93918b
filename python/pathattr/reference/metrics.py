"""Reference faithfulness metrics, one image at a time, as the papers describe them.

For tests only: plain loops over steps and pixels, NumPy/SciPy for the blur, one
forward pass per perturbed image. Shares no code with `pathattr.metrics`. (The PIC
metrics are checked against the peer implementation, PAIR's `saliency` package.)
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _prob(model, img: torch.Tensor, target: int) -> tuple:
    with torch.no_grad():
        out = model(img.unsqueeze(0))[0].double()
    p = torch.softmax(out, dim=0)
    return float(p[target]), int(p.argmax())


def _order(attr: np.ndarray) -> list:
    """Pixel indices (row-major flat), most salient first by |sum over channels|; ties
    keep row-major order."""
    a = attr if attr.ndim == 2 else attr.sum(0)
    sal = np.abs(a.astype(np.float64)).ravel()
    return sorted(range(sal.size), key=lambda i: -sal[i])  # sorted() is stable


def blur(image: np.ndarray, kernel_size: int, sigma: float) -> np.ndarray:
    """Gaussian blur of (C, H, W) with scipy, edges replicated, radius kernel_size // 2."""
    from scipy.ndimage import gaussian_filter

    r = kernel_size // 2
    return np.stack([gaussian_filter(ch.astype(np.float64), sigma, mode="nearest", truncate=r / sigma)
                     for ch in image])


def insertion_deletion_one(model, x: torch.Tensor, attr: torch.Tensor, target: int, baseline: torch.Tensor,
                           pixels_per_step: int, game: str, kernel_size: int = 11, sigma: float = 5.0):
    """(curve, auc) of one game for one image x (C, H, W): RISE's loop, one step at a time."""
    c, h, w = x.shape
    order = _order(attr.detach().cpu().numpy())
    if game == "deletion":
        current, finish = x.clone(), baseline.expand_as(x).clone()
    else:
        current = torch.as_tensor(blur(x.cpu().numpy(), kernel_size, sigma), dtype=x.dtype, device=x.device)
        finish = x.clone()
    n_steps = math.ceil(h * w / pixels_per_step)
    curve = []
    for i in range(n_steps + 1):
        curve.append(_prob(model, current, target)[0])
        for idx in order[i * pixels_per_step:(i + 1) * pixels_per_step]:
            r, col = divmod(idx, w)
            current[:, r, col] = finish[:, r, col]
    curve = np.array(curve)
    auc = sum((curve[k] + curve[k + 1]) / 2 for k in range(n_steps)) / n_steps
    return curve, auc


def diffid_one(model, x: torch.Tensor, attr: torch.Tensor, target: int, fractions):
    """Per fraction r: (insertion ratio, deletion ratio, insertion correct, deletion correct)."""
    c, h, w = x.shape
    order = _order(attr.detach().cpu().numpy())
    p0, _ = _prob(model, x, target)
    rows = []
    for r in fractions:
        n = int(math.floor(r * h * w + 0.5))
        out = []
        for removed in (order[h * w - n:], order[:n]):  # insertion drops the least salient, deletion the most
            gone = set(removed)
            kept = [i for i in range(h * w) if i not in gone]
            img = x.clone()
            for ch in range(c):
                mean = sum(float(x[ch, i // w, i % w]) for i in kept) / len(kept)
                for i in removed:
                    img[ch, i // w, i % w] = mean
            p, arg = _prob(model, img, target)
            out.append((p / p0, float(arg == target)))
        (ins, ins_ok), (dele, del_ok) = out
        rows.append((ins, dele, ins_ok, del_ok))
    return np.array(rows)


def localisation_one(attr: torch.Tensor, mask: torch.Tensor, sign: str = "positive", tolerance: float = 0.0):
    """(energy, hit) for one map, pixel by pixel; (nan, nan) without mask or mass."""
    a = attr.detach().double().cpu()
    m = (a if a.dim() == 2 else a.sum(0)).numpy()
    gt = mask.cpu().numpy().astype(bool)
    h, w = m.shape
    total = inside = 0.0
    best, best_at = -math.inf, None
    for r in range(h):
        for col in range(w):
            v = max(m[r, col], 0.0) if sign == "positive" else abs(m[r, col])
            total += v
            if gt[r, col]:
                inside += v
            s = m[r, col] if sign == "positive" else abs(m[r, col])
            if s > best:
                best, best_at = s, (r, col)
    if total <= 0 or not gt.any():
        return math.nan, math.nan
    hit = any(gt[r, col] and (r - best_at[0]) ** 2 + (col - best_at[1]) ** 2 <= tolerance ** 2
              for r in range(h) for col in range(w))
    return inside / total, float(hit)
