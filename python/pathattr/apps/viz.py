"""Plots for the demo: attribution heatmap grids and the logit-along-the-path curve.

matplotlib is imported inside the functions (``import pathattr`` stays light) and
figures are drawn on an explicit Agg canvas, never through pyplot's global state, so
these functions work without a display and leave the caller's pyplot backend alone.
Pixels are drawn as they are (nearest neighbour): an 8x8 digit looks like 8x8 pixels.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

__all__ = ["attribution_grid", "path_curve_plot", "SIGNS"]

SIGNS = ("absolute_value", "positive", "negative", "all")
_CMAPS = {"absolute_value": "inferno", "positive": "Greens", "negative": "Reds", "all": "RdBu_r"}
_SIGN_LABEL = {
    "absolute_value": "|attribution|",
    "positive": "positive attribution",
    "negative": "negative attribution (magnitude)",
    "all": "attribution (red +, blue \u2212)",
}
_DPI = 120

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- helpers

def _to_numpy(x, name: str) -> np.ndarray:
    """Tensor (any device/dtype, with or without grad) or array-like -> float64 ndarray."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if hasattr(x, "float") and not x.is_floating_point():
            x = x.float()
        x = x.double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}") from exc
    return arr


def _check_sign(sign) -> str:
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {SIGNS}, got {sign!r}")
    return sign


def _check_outlier_perc(outlier_perc) -> float:
    if isinstance(outlier_perc, bool) or not isinstance(outlier_perc, (int, float, np.floating, np.integer)):
        raise TypeError(f"outlier_perc must be a number in [0, 100), got {type(outlier_perc).__name__}")
    p = float(outlier_perc)
    if not 0.0 <= p < 100.0:
        raise ValueError(f"outlier_perc must be in [0, 100), got {outlier_perc}")
    return p


def _signed(attr: np.ndarray, sign: str) -> np.ndarray:
    """The values a map of ``sign`` shows: |a|, max(a, 0), max(-a, 0) or a itself."""
    if sign == "absolute_value":
        return np.abs(attr)
    if sign == "positive":
        return np.maximum(attr, 0.0)
    if sign == "negative":
        return np.maximum(-attr, 0.0)
    return attr


def _scale(values: np.ndarray, outlier_perc: float) -> float:
    """The ``100 - outlier_perc`` percentile of |values|; the max if that is 0; 0 if all are 0."""
    mag = np.abs(values).ravel()
    if mag.size == 0:
        return 0.0
    s = float(np.percentile(mag, 100.0 - outlier_perc))
    if not s > 0.0:
        s = float(mag.max())
    return s


def _normalise(attr, sign: str = "absolute_value", outlier_perc: float = 2.0,
               scale: Optional[float] = None) -> np.ndarray:
    """Map attributions to the range a heatmap shows.

    Args:
        attr: array of any shape (already channel-summed for images).
        sign: ``"absolute_value"`` -> |a|, ``"positive"`` -> max(a, 0), ``"negative"`` ->
            max(-a, 0) (magnitudes of the negative part); these land in ``[0, 1]``.
            ``"all"`` keeps the sign and lands in ``[-1, 1]``.
        outlier_perc: the values are divided by the ``100 - outlier_perc`` percentile of
            their magnitudes (computed after the sign selection) and clipped, so the top
            ``outlier_perc`` % saturate instead of washing out the rest. If that
            percentile is 0 (a sparse map), the maximum is used instead.
        scale: use this divisor instead of the percentile (for a scale shared by several
            maps); ``<= 0`` means "nothing to show" and gives zeros.

    Returns:
        float64 array of ``attr``'s shape; all zeros when the selected values are all 0.
    """
    sign = _check_sign(sign)
    p = _check_outlier_perc(outlier_perc)
    a = _to_numpy(attr, "attr")
    if not np.all(np.isfinite(a)):
        raise ValueError("attr contains NaN or infinite values")
    v = _signed(a, sign)
    s = _scale(v, p) if scale is None else float(scale)
    if not s > 0.0:
        return np.zeros_like(v)
    lo = -1.0 if sign == "all" else 0.0
    return np.clip(v / s, lo, 1.0)


def _prepare_path(path: PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _new_figure(figsize, layout="constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=_DPI, layout=layout, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("#b0b0b0")
        spine.set_linewidth(0.6)


# --------------------------------------------------------------------------- grid

def attribution_grid(images, columns: Mapping[str, object], path: PathLike,
                     titles: Optional[Sequence[str]] = None, sign: str = "absolute_value",
                     outlier_perc: float = 2.0, shared_scale: bool = False) -> Path:
    """Draw inputs and their attribution maps, one row per example, and save a PNG.

    Args:
        images: ``(n, C, H, W)`` tensor or array in ``[0, 1]``, C = 1 (drawn in
            grayscale) or 3 (RGB). Values outside ``[0, 1]`` are clipped for display.
        columns: ordered mapping ``{method name: attributions}``, each ``(n, C', H, W)``
            (channels are summed) or ``(n, H, W)``; one heatmap column per method, in
            the mapping's order, titled with its name.
        path: output PNG file (parent folders are created).
        titles: optional ``n`` row labels (e.g. ``"label 3, pred 3"``), written left of
            each input image.
        sign: which part of the attributions to show: ``"absolute_value"`` (default),
            ``"positive"``, ``"negative"`` (magnitudes of the negative part) or
            ``"all"`` (diverging colormap, red positive, blue negative, white 0).
        outlier_perc: each map is divided by the ``100 - outlier_perc`` percentile of
            its |values| and clipped, so a few extreme pixels saturate rather than
            hide the rest (default 2).
        shared_scale: if True, one divisor per row (the percentile over all methods'
            maps in that row), so a row's maps are comparable in magnitude; if False
            (default), every map uses its own, which compares patterns, not sizes.

    Returns:
        ``pathlib.Path`` of the written PNG (120 dpi).
    """
    sign = _check_sign(sign)
    p = _check_outlier_perc(outlier_perc)
    imgs = _to_numpy(images, "images")
    if imgs.ndim != 4 or imgs.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (n, C, H, W) with C = 1 or 3, got {imgs.shape}")
    n, _, h, w = imgs.shape
    if n == 0:
        raise ValueError("images must contain at least one example")
    maps = _column_maps(columns, n, h, w)
    if titles is not None:
        titles = [str(t) for t in titles]
        if len(titles) != n:
            raise ValueError(f"titles must have one entry per example ({n}), got {len(titles)}")
    out = _prepare_path(path)

    m = len(maps)
    col_titles = ["input"] + [textwrap.fill(name, 18) for name in maps]
    title_lines = max(t.count("\n") + 1 for t in col_titles)
    cell = 1.55 if max(h, w) <= 16 else 1.9
    height = max(cell * n + 0.2 + 0.18 * title_lines, 2.7)  # room for the colorbar label
    fig = _new_figure((cell * (m + 1) + 1.0, height))
    axes = fig.subplots(n, m + 1, squeeze=False)
    cmap = _CMAPS[sign]
    vmin = -1.0 if sign == "all" else 0.0
    mappable = None
    for i in range(n):
        ax = axes[i, 0]
        img = np.clip(imgs[i], 0.0, 1.0)
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
        _bare(ax)
        if titles is not None:
            ax.set_ylabel(titles[i], fontsize=9)
        row_scale = _scale(np.stack([_signed(a[i], sign) for a in maps.values()]), p) if shared_scale else None
        for j, a in enumerate(maps.values(), start=1):
            ax = axes[i, j]
            mappable = ax.imshow(_normalise(a[i], sign, p, scale=row_scale), cmap=cmap, vmin=vmin,
                                 vmax=1.0, interpolation="nearest")
            _bare(ax)
    for j, t in enumerate(col_titles):
        axes[0, j].set_title(t, fontsize=10)
    cbar = fig.colorbar(mappable, ax=axes[:, 1:].ravel().tolist(), shrink=1.0 if n > 1 else 0.9,
                        aspect=10 + 8 * n, pad=0.02)
    cbar.ax.tick_params(labelsize=8)
    ref = f"p{100 - p:g}" if p > 0 else "max"
    per = "per row" if shared_scale else "per map"
    cbar.set_label(f"{_SIGN_LABEL[sign]}\n\u00f7 {ref} of |values| {per}", fontsize=8)
    fig.savefig(out, dpi=_DPI, facecolor="white")
    return out


# --------------------------------------------------------------------------- path curve

def _vector(x, name: str, length: Optional[int] = None) -> np.ndarray:
    a = _to_numpy(x, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if length is not None and a.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def path_curve_plot(path: PathLike, probe_alphas, probe_curve, sample_alphas,
                    importance=None, weights=None, title: Optional[str] = None,
                    dense_alphas=None, dense_curve=None) -> Path:
    """Plot F along the straight path and where the gradient samples went (IDG Fig. 1/5 style).

    Top panel: ``F(p(alpha))`` against alpha, the dense curve as a line (when given) and
    the probe evaluations as markers; the gradient-sample positions as a rug of ticks
    on the alpha axis (dense where the adaptive schedule concentrated samples). Below,
    when given: the importance factors ``IF(alpha_k) = dF/dalpha`` at the samples (stem
    plot), and the quadrature weights ``w_k`` (stem plot).

    Args:
        path: output PNG file (parent folders are created).
        probe_alphas, probe_curve: ``(N + 1,)`` probe positions and F there.
        sample_alphas: ``(M,)`` positions of the gradient samples.
        importance: optional ``(M,)`` importance factors at ``sample_alphas``.
        weights: optional ``(M,)`` quadrature weights at ``sample_alphas``.
        title: optional figure title.
        dense_alphas, dense_curve: optional ``(K,)`` fine evaluation of the same curve
            (both or neither).

    Returns:
        ``pathlib.Path`` of the written PNG (120 dpi).
    """
    pa = _vector(probe_alphas, "probe_alphas")
    pc = _vector(probe_curve, "probe_curve", len(pa))
    sa = _vector(sample_alphas, "sample_alphas")
    imp = None if importance is None else _vector(importance, "importance", len(sa))
    wts = None if weights is None else _vector(weights, "weights", len(sa))
    if (dense_alphas is None) != (dense_curve is None):
        raise ValueError("dense_alphas and dense_curve must be given together")
    da = dc = None
    if dense_alphas is not None:
        da = _vector(dense_alphas, "dense_alphas")
        dc = _vector(dense_curve, "dense_curve", len(da))
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    out = _prepare_path(path)

    from matplotlib.transforms import blended_transform_factory

    extra = [x for x in (imp, wts) if x is not None]
    ratios = [3.0] + [1.4] * len(extra)
    fig = _new_figure((7.0, 3.3 + 1.55 * len(extra)))
    axes = fig.subplots(len(ratios), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": ratios})[:, 0]

    ax = axes[0]
    if da is not None:
        order = np.argsort(da)
        ax.plot(da[order], dc[order], color="C0", lw=1.6, label="F along the path", zorder=2)
    ax.plot(pa, pc, "o", ms=4.5, mfc="white", mec="C1", mew=1.3, zorder=3,
            label=f"probes ({len(pa)}, forward only)", ls="none" if da is not None else "-",
            color="C1", lw=0.9)
    rug = blended_transform_factory(ax.transData, ax.transAxes)
    # Leave room under the curve for the rug of sample positions (bottom 7 % of the panel).
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo - 0.1 * (hi - lo), hi)
    ax.vlines(sa, 0.0, 0.07, transform=rug, color="C3", lw=1.0, zorder=4,
              label=f"gradient samples ({len(sa)})")
    ax.set_ylabel(r"$F(x' + \alpha\,(x - x'))$")
    ax.grid(True, alpha=0.25, lw=0.6)
    ax.legend(fontsize=8, loc="best", frameon=False)
    if title:
        ax.set_title(title, fontsize=11)

    k = 1
    if imp is not None:
        ax = axes[k]
        k += 1
        stem = ax.stem(sa, imp, basefmt="none")
        stem.markerline.set_markersize(3.5)
        stem.markerline.set_color("C3")
        stem.stemlines.set_color("C3")
        stem.stemlines.set_linewidth(0.9)
        ax.axhline(0.0, color="0.4", lw=0.6)
        ax.set_ylabel("IF(\u03b1) = dF/d\u03b1", fontsize=9)
        ax.grid(True, alpha=0.25, lw=0.6)
    if wts is not None:
        ax = axes[k]
        stem = ax.stem(sa, wts, basefmt="none")
        stem.markerline.set_markersize(3.0)
        stem.markerline.set_color("0.3")
        stem.stemlines.set_color("0.3")
        stem.stemlines.set_linewidth(0.8)
        ax.set_ylim(bottom=0.0)
        ax.set_ylabel("weight $w_k$", fontsize=9)
        ax.grid(True, alpha=0.25, lw=0.6)
    axes[-1].set_xlabel(r"$\alpha$")
    axes[-1].set_xlim(-0.02, 1.02)
    fig.savefig(out, dpi=_DPI, facecolor="white")
    return out


# --------------------------------------------------------------------------- show (one map)

SHOW_METHODS = ("blended_heat_map", "heat_map", "original_image", "masked_image")
OUTLIER_RULES = ("percentile", "cumulative")
__all__ += ["show", "normalised_map", "common_scale", "comparison_grid", "error_curve_plot", "SHOW_METHODS", "OUTLIER_RULES"]


def _cumulative_threshold(mag: np.ndarray, outlier_perc: float) -> float:
    """Captum's rule: the smallest sorted |value| whose running sum reaches (100 - p) % of the total."""
    v = np.sort(mag.ravel())
    if v.size == 0 or not v[-1] > 0.0:
        return 0.0
    cums = np.cumsum(v)
    return float(v[np.nonzero(cums >= cums[-1] * (100.0 - outlier_perc) / 100.0)[0][0]])


def _threshold(values: np.ndarray, outlier_perc: float, rule: str) -> float:
    if rule not in OUTLIER_RULES:
        raise ValueError(f"outlier_rule must be one of {OUTLIER_RULES}, got {rule!r}")
    if rule == "percentile":
        return _scale(values, outlier_perc)
    return _cumulative_threshold(np.abs(values), outlier_perc)


def _map2d(attr, name: str = "attr") -> np.ndarray:
    """(H, W), (C, H, W) or (1, C, H, W) -> channel-summed (H, W) float64, finite."""
    a = _to_numpy(attr, name)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        a = a.sum(axis=0)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W), (C, H, W) or (1, C, H, W), got {_to_numpy(attr, name).shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _image_hwc(image, hw) -> np.ndarray:
    """(H, W), (C, H, W) or (1, C, H, W) with C in {1, 3} -> (H, W, C) clipped to [0, 1]."""
    im = _to_numpy(image, "image")
    if im.ndim == 4 and im.shape[0] == 1:
        im = im[0]
    if im.ndim == 2:
        im = im[None]
    if im.ndim != 3 or im.shape[0] not in (1, 3) or im.shape[1:] != tuple(hw):
        raise ValueError(f"image must have shape (C, H, W) with C = 1 or 3 and (H, W) = {tuple(hw)}, "
                         f"got {_to_numpy(image, 'image').shape}")
    if not np.all(np.isfinite(im)):
        raise ValueError("image contains NaN or infinite values")
    return np.clip(im, 0.0, 1.0).transpose(1, 2, 0)


def _check_scale(scale) -> Optional[float]:
    if scale is None:
        return None
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise TypeError(f"scale must be a positive number or None, got {type(scale).__name__}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number or None, got {scale}")
    return float(scale)


def normalised_map(attr, sign: str = "absolute_value", outlier_perc: float = 2.0,
                   scale: Optional[float] = None, outlier_rule: str = "percentile") -> np.ndarray:
    """The ``(H, W)`` map that ``show`` draws, in ``[0, 1]`` (``[-1, 1]`` for ``sign="all"``).

    Channels are summed first (as Captum does), then the sign is selected (|a|, max(a, 0),
    max(-a, 0) or a), then the values are divided by ``scale`` if given, else by a
    threshold that leaves ``outlier_perc`` % out, and clipped. ``outlier_rule``:
    ``"percentile"`` (default): the ``100 - outlier_perc`` percentile of the selected
    |values| (the max if that is 0); ``"cumulative"``: Captum's rule, the smallest
    |value| at which the sorted running sum reaches ``100 - outlier_perc`` % of the total.
    A map whose selected values are all 0 is all zeros.
    """
    sign = _check_sign(sign)
    p = _check_outlier_perc(outlier_perc)
    s = _check_scale(scale)
    a = _map2d(attr)
    if s is None:
        s = _threshold(_signed(a, sign), p, outlier_rule)
    elif outlier_rule not in OUTLIER_RULES:
        raise ValueError(f"outlier_rule must be one of {OUTLIER_RULES}, got {outlier_rule!r}")
    return _normalise(a, sign, p, scale=s)


def common_scale(attrs, sign: str = "absolute_value", outlier_perc: float = 2.0,
                 outlier_rule: str = "percentile") -> float:
    """One divisor for several maps (pass it as ``scale=``), so their colours compare.

    ``attrs``: an iterable of maps (each ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)``;
    channels summed) or one ``(n, C, H, W)`` batch. The threshold of ``normalised_map``
    is taken over all their sign-selected values pooled. Returns 1.0 when all are zero
    (any positive number would draw them blank).
    """
    sign = _check_sign(sign)
    p = _check_outlier_perc(outlier_perc)
    maps = [_map2d(a, "attrs[i]") for a in attrs]  # a list of maps, or the rows of a batch
    if not maps:
        raise ValueError("attrs must contain at least one map")
    s = _threshold(np.concatenate([_signed(m, sign).ravel() for m in maps]), p, outlier_rule)
    return s if s > 0 else 1.0


def show(attr, image=None, method: str = "blended_heat_map", sign: str = "absolute_value",
         outlier_perc: float = 2.0, scale: Optional[float] = None, ax=None, cmap=None,
         alpha_overlay: float = 0.5, title: Optional[str] = None, colorbar: bool = False,
         outlier_rule: str = "percentile"):
    """Draw one attribution map, in the spirit of Captum's ``visualize_image_attr``.

    Args:
        attr: ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)`` attributions (channels summed);
            may be None for ``method="original_image"``.
        image: the input, same ``(H, W)``, C = 1 (grey) or 3 (RGB), values in ``[0, 1]``
            (clipped for display). Needed by every method but ``"heat_map"``.
        method: ``"blended_heat_map"`` (default: the map over a grey copy of the image,
            opacity ``alpha_overlay``), ``"heat_map"`` (the map alone),
            ``"original_image"`` (the image alone) or ``"masked_image"`` (the image
            multiplied by the normalised map; not with ``sign="all"``).
        sign: ``"absolute_value"`` (default), ``"positive"``, ``"negative"`` (magnitudes
            of the negative part) or ``"all"`` (diverging map, signed, in ``[-1, 1]``).
        outlier_perc: percent of the largest values that saturate (default 2); see
            ``normalised_map`` and ``outlier_rule``. Ignored when ``scale`` is given.
        scale: a fixed divisor (e.g. from ``common_scale``) instead of the per-map
            threshold, so that maps of several methods or images stay comparable.
        ax: a matplotlib Axes to draw on; default: a new figure (Agg canvas, no pyplot).
        cmap: colormap name or object; default by sign (``inferno`` for |a|, ``Greens``,
            ``Reds``, ``RdBu_r`` for all).
        alpha_overlay: opacity of the map in ``"blended_heat_map"`` (default 0.5).
        title: optional axes title. colorbar: add a colorbar for the map.
        outlier_rule: ``"percentile"`` (default) or ``"cumulative"`` (Captum's).

    Returns:
        ``(figure, ax)``; save with ``figure.savefig(path)``.
    """
    if method not in SHOW_METHODS:
        raise ValueError(f"method must be one of {SHOW_METHODS}, got {method!r}")
    sign = _check_sign(sign)
    if method == "masked_image" and sign == "all":
        raise ValueError('sign="all" cannot mask an image (negative weights); use "absolute_value", '
                         '"positive" or "negative" with method="masked_image"')
    if not isinstance(alpha_overlay, (int, float)) or not 0.0 <= alpha_overlay <= 1.0:
        raise ValueError(f"alpha_overlay must be a number in [0, 1], got {alpha_overlay!r}")
    if attr is None and method != "original_image":
        raise ValueError(f'attr is required for method="{method}"')
    norm = None if attr is None else normalised_map(attr, sign, outlier_perc, scale, outlier_rule)
    img = None
    if method != "heat_map":
        if image is None:
            raise ValueError(f'image is required for method="{method}"')
        img = _image_hwc(image, norm.shape if norm is not None else _to_numpy(image, "image").shape[-2:])
    if ax is None:
        fig = _new_figure((3.2, 3.2))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    cmap = cmap if cmap is not None else _CMAPS[sign]
    vmin = -1.0 if sign == "all" else 0.0
    mappable = None
    if method == "original_image":
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                  vmin=0.0, vmax=1.0, interpolation="nearest")
    elif method == "masked_image":
        masked = img * norm[..., None]
        ax.imshow(masked[..., 0] if masked.shape[2] == 1 else masked,
                  cmap="gray" if masked.shape[2] == 1 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        if method == "blended_heat_map":
            ax.imshow(img.mean(axis=2), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        mappable = ax.imshow(norm, cmap=cmap, vmin=vmin, vmax=1.0, interpolation="nearest",
                             alpha=alpha_overlay if method == "blended_heat_map" else None)
    _bare(ax)
    if title:
        ax.set_title(str(title), fontsize=10)
    if colorbar and mappable is not None:
        fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=8)
    return fig, ax


# --------------------------------------------------------------------------- comparison grid

GRID_SCALES = ("map", "row", "column", "all")


def _finish(fig, path):
    if path is None:
        return fig
    out = _prepare_path(path)
    fig.savefig(out, dpi=_DPI, facecolor="white")
    return out


def comparison_grid(images, columns: Mapping[str, object], path: Optional[PathLike] = None,
                    method: str = "heat_map", sign: str = "absolute_value", outlier_perc: float = 2.0,
                    scale: Union[str, float] = "map", titles: Optional[Sequence[str]] = None,
                    masks=None, outlier_rule: str = "percentile", colorbar: bool = True):
    """Inputs in the first column and one column per method, one row per example.

    Args:
        images: ``(n, C, H, W)`` in ``[0, 1]``, C = 1 or 3.
        columns: ordered mapping ``{method name: (n, C', H, W) or (n, H, W)}``.
        path: PNG to write (parent folders created); None returns the figure instead.
        method: how each map is drawn (``show``'s methods but ``"original_image"``).
        sign, outlier_perc, outlier_rule: as in ``show``.
        scale: which maps share one divisor: ``"map"`` (default, each its own: compares
            patterns), ``"row"`` (the methods on one example: compares methods),
            ``"column"`` (one method across examples), ``"all"`` (the whole grid), or a
            positive number used for every map (comparable across figures).
        titles: optional ``n`` row labels. masks: optional ``(n, H, W)`` ground-truth
            masks, outlined in green on every cell (e.g. Burnt Snacks' target squares).
        colorbar: add one colorbar for the maps (default True).

    Returns:
        ``pathlib.Path`` of the PNG, or the ``matplotlib.figure.Figure`` when ``path`` is None.
    """
    sign = _check_sign(sign)
    p = _check_outlier_perc(outlier_perc)
    if method not in SHOW_METHODS or method == "original_image":
        raise ValueError(f"method must be one of {tuple(m for m in SHOW_METHODS if m != 'original_image')}, "
                         f"got {method!r}")
    imgs = _to_numpy(images, "images")
    if imgs.ndim != 4 or imgs.shape[1] not in (1, 3) or imgs.shape[0] == 0:
        raise ValueError(f"images must have shape (n, C, H, W) with n >= 1 and C = 1 or 3, got {imgs.shape}")
    n, _, h, w = imgs.shape
    maps = _column_maps(columns, n, h, w)
    if isinstance(scale, str):
        if scale not in GRID_SCALES:
            raise ValueError(f"scale must be one of {GRID_SCALES} or a positive number, got {scale!r}")
    else:
        _check_scale(scale)
    if titles is not None:
        titles = [str(t) for t in titles]
        if len(titles) != n:
            raise ValueError(f"titles must have one entry per example ({n}), got {len(titles)}")
    mk = None
    if masks is not None:
        mk = _to_numpy(masks, "masks")
        if mk.shape != (n, h, w):
            raise ValueError(f"masks must have shape ({n}, {h}, {w}), got {mk.shape}")

    def divisor(i: int, name: str) -> float:
        if not isinstance(scale, str):
            return float(scale)
        if scale == "map":
            chosen = [maps[name][i]]
        elif scale == "row":
            chosen = [m[i] for m in maps.values()]
        elif scale == "column":
            chosen = list(maps[name])
        else:
            chosen = [r for m in maps.values() for r in m]
        return common_scale(chosen, sign, p, outlier_rule)

    cell = 1.55 if max(h, w) <= 16 else 1.8
    fig = _new_figure((cell * (len(maps) + 1) + (0.9 if colorbar else 0.3), cell * n + 0.45))
    axes = fig.subplots(n, len(maps) + 1, squeeze=False)
    mappable = None
    for i in range(n):
        show(None, imgs[i], method="original_image", ax=axes[i, 0])
        if titles is not None:
            axes[i, 0].set_ylabel(titles[i], fontsize=9)
        for j, (name, a) in enumerate(maps.items(), start=1):
            show(a[i], imgs[i], method=method, sign=sign, outlier_perc=p, scale=divisor(i, name),
                 ax=axes[i, j], outlier_rule=outlier_rule)
            if axes[i, j].images:
                mappable = axes[i, j].images[-1]
        if mk is not None and mk[i].any():
            for ax in axes[i]:
                ax.contour(mk[i].astype(float), levels=[0.5], colors="lime", linewidths=0.9)
    axes[0, 0].set_title("input", fontsize=10)
    for j, name in enumerate(maps, start=1):
        axes[0, j].set_title(textwrap.fill(name, 18), fontsize=10)
    if colorbar and mappable is not None and method != "masked_image":
        cbar = fig.colorbar(mappable, ax=axes[:, 1:].ravel().tolist(), aspect=10 + 8 * n, pad=0.02)
        cbar.ax.tick_params(labelsize=8)
        how = f"scale {scale:g}" if not isinstance(scale, str) else f"shared per {scale}"
        cbar.set_label(f"{_SIGN_LABEL[sign]} ({how})", fontsize=8)
    return _finish(fig, path)


# --------------------------------------------------------------------------- error vs evaluations

def error_curve_plot(results: Mapping[str, object], path: Optional[PathLike] = None,
                     thresholds: Sequence[float] = (0.01, 0.001), title: Optional[str] = None,
                     xlabel: str = "gradient evaluations", ylabel: str = "relative L2 error", ax=None):
    """Error against cost on log-log axes, one line per rule/method (IDG paper Fig. 5 style).

    Args:
        results: ordered mapping ``{name: (evals, errors)}``, two 1-D sequences of equal
            length: positive evaluation counts and errors as fractions (0.01 = 1 %).
            Points are sorted by evals; errors <= 0 cannot sit on a log axis and are
            left out of the line (a zero error means "exact", below any threshold).
        path: PNG to write; None returns the figure.
        thresholds: horizontal dashed lines, labelled in percent (default 1 % and 0.1 %).
        title, xlabel, ylabel: labels. ax: draw on this Axes instead of a new figure.

    Returns:
        ``pathlib.Path`` of the PNG, or the ``Figure`` when ``path`` is None.
    """
    if not isinstance(results, Mapping) or len(results) == 0:
        raise TypeError("results must be a non-empty mapping {name: (evals, errors)}")
    curves = {}
    for name, pair in results.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"results[{name!r}] must be a pair (evals, errors)")
        ev = _vector(pair[0], f"results[{name!r}] evals")
        er = _vector(pair[1], f"results[{name!r}] errors", len(ev))
        if len(ev) == 0 or np.any(ev <= 0):
            raise ValueError(f"results[{name!r}] evals must be non-empty and positive")
        if np.any(er < 0):
            raise ValueError(f"results[{name!r}] errors must be >= 0")
        order = np.argsort(ev, kind="stable")
        curves[str(name)] = (ev[order], er[order])
    th = [float(t) for t in _vector(thresholds, "thresholds")]
    if any(not t > 0 for t in th):
        raise ValueError(f"thresholds must be positive, got {th}")
    if ax is None:
        fig = _new_figure((6.4, 4.4))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    markers = "osD^vP*X<>"
    for k, (name, (ev, er)) in enumerate(curves.items()):
        keep = er > 0
        ax.plot(ev[keep], er[keep], marker=markers[k % len(markers)], ms=4, lw=1.4, label=name)
    for t in th:
        ax.axhline(t, color="0.35", ls="--", lw=0.9, zorder=0)
        ax.annotate(f"{100 * t:g} %", xy=(1.0, t), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                    textcoords="offset points", ha="right", va="bottom", fontsize=8, color="0.3")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.2, lw=0.5)
    ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(str(title), fontsize=11)
    return _finish(fig, path)


def path_curve_from_result(result, path: PathLike, example: int = 0, title: Optional[str] = None,
                           dense_alphas=None, dense_curve=None) -> Path:
    """``path_curve_plot`` for one example of an ``AttributionResult`` (``return_details=True``).

    Uses the forward-only probe as the curve's markers when the schedule had one
    (adaptive IDG), else F at the gradient samples (``path_values``, with their alpha,
    sorted); importance factors and weights are drawn when the result has them.
    ``dense_alphas``/``dense_curve``: an optional fine curve, as in ``path_curve_plot``.
    """
    if result is None or getattr(result, "alphas", None) is None:
        raise ValueError("result must be an AttributionResult with alphas (call with return_details=True)")
    n = int(result.alphas.shape[0])
    if isinstance(example, bool) or not isinstance(example, int) or not 0 <= example < n:
        raise ValueError(f"example must be an int in [0, {n}), got {example!r}")
    k = example
    if result.probe_alphas is not None and result.probe_curve is not None:
        pa, pc = result.probe_alphas, result.probe_curve[k]
    elif result.path_values is not None:
        order = np.argsort(_to_numpy(result.alphas[k], "alphas"), kind="stable")
        pa, pc = _to_numpy(result.alphas[k], "alphas")[order], _to_numpy(result.path_values[k], "path_values")[order]
    else:
        raise ValueError("result has neither a probe curve nor path_values to draw")
    imp = None if result.importance is None else result.importance[k]
    wts = None if result.weights is None else result.weights[k]
    return path_curve_plot(path, pa, pc, result.alphas[k], importance=imp, weights=wts, title=title,
                           dense_alphas=dense_alphas, dense_curve=dense_curve)


__all__ += ["path_curve_from_result"]


def _column_maps(columns, n: int, h: int, w: int) -> dict:
    """{method name: (n, H, W) channel-summed, finite maps}, validated, for the grids."""
    if not isinstance(columns, Mapping) or len(columns) == 0:
        raise TypeError("columns must be a non-empty mapping {method name: attributions}")
    maps = {}
    for name, attr in columns.items():
        a = _to_numpy(attr, f"columns[{name!r}]")
        a = a.sum(axis=1) if a.ndim == 4 else a
        if a.shape != (n, h, w):
            raise ValueError(f"columns[{name!r}] must have shape ({n}, C, {h}, {w}) or ({n}, {h}, {w}), "
                             f"got {_to_numpy(attr, 'attr').shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"columns[{name!r}] contains NaN or infinite values")
        maps[str(name)] = a
    return maps
