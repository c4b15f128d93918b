"""The image side of the PIC metrics (Kapishnikov et al. 2019), on the CPU with NumPy:
the blurred reconstruction from kept pixels, the random 1 % mask, and the lossless
WebP size that stands for an image's information.

Each function follows the published definition step for step (including its
float32 intermediate and half-to-even rounding back to uint8), so AIC/SIC agree with
the PAIR `saliency` package's numbers to the last bit on the same inputs.
"""
from __future__ import annotations

import io

import numpy as np
from scipy.interpolate import LinearNDInterpolator


def blurred_image(image: np.ndarray, pixel_mask: np.ndarray) -> np.ndarray:
    """Reconstruction of `image` from the pixels where `pixel_mask` is True.

    image: (H, W) or (H, W, C) uint8. pixel_mask: (H, W) bool. The four corners are
    always kept, the other pixels are interpolated linearly over the Delaunay
    triangulation of the kept ones (scipy griddata "linear"), anything outside their
    hull takes the image's mean colour. One triangulation serves every channel.
    Returns an array of image's shape and dtype (float -> rounded for integer types).
    """
    dtype = image.dtype
    img = image if image.ndim == 3 else image[:, :, None]
    mask = pixel_mask.copy()
    h, w = mask.shape
    mask[[0, 0, h - 1, h - 1], [0, w - 1, 0, w - 1]] = True
    if mask.all():
        return image
    mean_color = img.mean(axis=(0, 1))  # float64 per channel
    out = img * mask[:, :, None].astype(np.float32)  # float32, as published
    known = np.argwhere(mask)
    unknown = np.argwhere(~mask)
    interp = LinearNDInterpolator(known, img[mask].astype(np.float64), fill_value=np.nan)
    vals = interp(unknown)  # (n_unknown, C) float64
    outside = np.isnan(vals)
    if outside.any():
        vals = np.where(outside, mean_color[None, :], vals)
    out[~mask] = vals
    if image.ndim == 2:
        out = out[:, :, 0]
    if np.issubdtype(dtype, np.integer):
        out = np.round(out)
    return out.astype(dtype)


def random_mask(rng: np.random.Generator, height: int, width: int, fraction: float = 0.01) -> np.ndarray:
    """(H, W) bool with int(H * W * fraction) pixels set, drawn without replacement."""
    mask = np.zeros(height * width, dtype=bool)
    mask[rng.choice(height * width, size=int(height * width * fraction), replace=False)] = True
    return mask.reshape(height, width)


def webp_size(image: np.ndarray) -> int:
    """Bytes of the lossless WebP encoding of a (H, W) or (H, W, 3|4) uint8 image."""
    from PIL import Image, features

    if not features.check("webp"):
        raise RuntimeError("PIC needs Pillow built with WebP support (the PyPI wheels have it)")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="webp", lossless=True, quality=100)
    return buf.tell()
