"""The fold stage: acc += sum_k w_k * scale_k * g_k, per input, in the accumulator dtype.

scale_k is 1 (IG), the exact importance factor g_k . (x - x') (IDG), or the backward
finite difference of F between consecutive samples. The chunk loop folds each chunk
with fastpath.accumulate_rows; the one-chunk CPU branch folds all samples at once in
two batched products (same formulas, so the two agree to rounding).
"""
from __future__ import annotations

from typing import List, Optional

import torch

from .. import fastpath
from .batch import PathBatch
from .checks import all_finite

IMPORTANCE = ("none", "exact", "finite_difference")


def chunk(importance: str, g2: torch.Tensor, diff2: torch.Tensor, w: torch.Tensor, acc2: torch.Tensor, start: int,
          which: str, fd: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """Fold one chunk's gradients g2 (n, D) into acc2 (B, D); returns the chunk's exact
    importance factors (n,) for importance "exact", else None."""
    if importance == "exact":
        return fastpath.accumulate_rows(g2, diff2, w, acc2, start, True, None, which)
    fastpath.accumulate_rows(g2, diff2, w, acc2, start, False, fd, which)
    return None


def all_at_once(batch: PathBatch, g: Optional[torch.Tensor], w: torch.Tensor, exact: bool):
    """(acc, scales) for all B*S rows at once from their gradients g (B*S, *shape):
    acc = sum_k w_k scale_k g_k as one (1, S) x (S, D) product per input."""
    B, S = w.shape
    D = batch.features
    g3 = torch.zeros((B, S, D), dtype=batch.x.dtype, device=batch.x.device) if g is None else g.reshape(B, S, D)
    if not exact:
        return torch.bmm(w.unsqueeze(1), g3).view(batch.x.shape), None
    scales = torch.bmm(g3, batch.diff().view(B, D, 1)).view(B, S)
    return torch.bmm((w * scales).unsqueeze(1), g3).view(batch.x.shape), scales


def finite_difference(values, alphas, baseline_values, start, n, S, g, diff, examples):
    """Backward differences (F_k - F_{k-1}) / (a_k - a_{k-1}) for rows [start, start+n).

    The sample before the first is alpha = 0 with F(x'). Where the two alphas
    coincide (a first sample at alpha = 0) there is no difference to take, and
    the exact derivative g . (x - x') is used instead.
    """
    if baseline_values is None:
        raise RuntimeError("internal: finite_difference importance needs F(x') (baseline_values)")
    rows = torch.arange(start, start + n, device=values.device)
    first = (rows % S) == 0
    prev_rows = (rows - 1).clamp_min(0)
    flat = alphas.reshape(-1)
    cur_a = flat[rows]
    prev_a = torch.where(first, torch.zeros_like(cur_a), flat[prev_rows])
    prev_f = torch.where(first, baseline_values[examples], values[prev_rows])
    step = cur_a - prev_a
    fd = (values[rows] - prev_f) / torch.where(step > 0, step, torch.ones_like(step))
    same = step <= 0
    if bool(same.any()):
        k = int(same.sum())
        fd[same] = (g[same].reshape(k, -1).to(diff.dtype) * diff[examples[same]].reshape(k, -1)).sum(1)
    return fd


def joined(chunks: List[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """Per-chunk vectors as one, in `dtype` (a single chunk is not copied)."""
    return (chunks[0] if len(chunks) == 1 else torch.cat(chunks)).to(dtype)


def _bad_rows(t: torch.Tensor) -> List[int]:
    return (~torch.isfinite(t.reshape(t.shape[0], -1))).any(1).nonzero().flatten().tolist()


def _named(batch: Optional[PathBatch], rows: List[int], per_input: int = 1) -> List[int]:
    """The user's input indices behind rows of a (B * per_input)-row tensor, first five."""
    ex = sorted(set(r // per_input for r in rows))
    return (ex if batch is None else batch.user_inputs(ex))[:5]


def check_values_finite(values: torch.Tensor, what: str, batch: Optional[PathBatch] = None) -> None:
    """No silent NaNs: a non-finite model output stops the call and names the user's
    inputs (values: one row per batch row)."""
    if not all_finite(values):
        raise FloatingPointError(f"the model's output is NaN or Inf: {what}, for inputs {_named(batch, _bad_rows(values))}")


def check_integral_finite(acc: torch.Tensor, batch: Optional[PathBatch] = None) -> None:
    """No silent NaNs: a non-finite path integral stops the call and names the user's inputs."""
    if not all_finite(acc):
        raise FloatingPointError(
            f"the path integral is not finite for inputs {_named(batch, _bad_rows(acc))}: the model produced NaN/Inf "
            f"gradients or outputs along the path (check for overflow, e.g. under fp16 autocast)"
        )


def check_ragged_finite(values: torch.Tensor, rows: torch.Tensor, examples: torch.Tensor, batch: PathBatch) -> None:
    """Ragged rows (rtol rounds): F and the integrand finite, or the inputs whose rows are not."""
    for t, what in ((values, "F along the path"), (rows, "the path integral")):
        if not all_finite(t):
            who = batch.user_inputs(sorted(set(examples[_bad_rows(t)].tolist())))[:5]
            raise FloatingPointError(f"the model's output or gradient is NaN or Inf: {what}, for inputs {who}")
