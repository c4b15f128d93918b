"""Fold a chunk of path gradients into the attribution accumulator, deterministically.

Design trade-off: no float atomics. The importance factors IF_r = g_r . (x - x')_e are
partial dot products per (row, D-tile) written to a small buffer and summed in a fixed
order; the fold runs one program per (example in the chunk, D-tile), each looping over
that example's rows, so every accumulator element has exactly one writer. This costs
an extra tiny launch for IF and serialises the rows of one example inside a program,
but results are bit-for-bit repeatable and chunks may split an example's samples.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ._config import as_rows, block_config, check_grid_dim, resolve_backend, triton_available

__all__ = ["accumulate", "accumulate_rows"]

# Largest D-tile per program; tests lower it to exercise several ragged tiles.
_BLOCK_CAP = 2048
# On CUDA, shrink the fold's D-tile (not below this) until the grid has enough programs.
_MIN_FOLD_BLOCK = 256
_FOLD_TARGET_PROGRAMS = 1024

if triton_available():
    import triton
    import triton.language as tl

    # Chunk-dependent ints stay runtime values (no recompiles when they hit 1 or %16).
    @triton.jit(do_not_specialize=["row_start"])
    def _row_dot_kernel(
        g_ptr, diff_ptr, part_ptr,
        row_start, S, D, n_tiles,
        stride_g, stride_diff,
        BLOCK_D: tl.constexpr,
    ):
        # Grid: (rows of the chunk, D-tiles); part[i, tile] = sum over the tile of g * diff.
        i = tl.program_id(0).to(tl.int64)
        tile = tl.program_id(1)
        e = (i + row_start) // S
        cols = tile * BLOCK_D + tl.arange(0, BLOCK_D)
        mask = cols < D
        g = tl.load(g_ptr + i * stride_g + cols, mask=mask, other=0.0).to(part_ptr.dtype.element_ty)
        d = tl.load(diff_ptr + e * stride_diff + cols, mask=mask, other=0.0)
        tl.store(part_ptr + i * n_tiles + tile, tl.sum(g * d, axis=0))

    @triton.jit(do_not_specialize=["row_start", "n_rows", "e_first"])
    def _accumulate_kernel(
        g_ptr, w_ptr, if_ptr, scale_ptr, acc_ptr,
        row_start, n_rows, S, D, e_first,
        stride_g, stride_w0, stride_w1, stride_scale, stride_acc,
        HAS_IMPORTANCE: tl.constexpr, HAS_SCALE: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        # Grid: (examples present in the chunk, D-tiles). One writer per acc element.
        e = tl.program_id(0).to(tl.int64) + e_first
        cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        mask = cols < D
        lo = tl.maximum(e * S, row_start)             # this example's rows in the chunk
        hi = tl.minimum(e * S + S, row_start + n_rows)
        tot = tl.zeros([BLOCK_D], dtype=acc_ptr.dtype.element_ty)
        for r in range(lo, hi):
            i = r - row_start
            c = tl.load(w_ptr + e * stride_w0 + (r - e * S) * stride_w1)
            if HAS_IMPORTANCE:
                c = c * tl.load(if_ptr + i)
            if HAS_SCALE:
                c = c * tl.load(scale_ptr + i * stride_scale).to(acc_ptr.dtype.element_ty)
            g = tl.load(g_ptr + i * stride_g + cols, mask=mask, other=0.0)
            tot += c * g.to(acc_ptr.dtype.element_ty)
        a = tl.load(acc_ptr + e * stride_acc + cols, mask=mask, other=0.0)
        tl.store(acc_ptr + e * stride_acc + cols, a + tot, mask=mask)


def _accumulate_torch(g2, diff2, weights, acc2, row_start, S, importance, scale):
    """Plain-torch twin: pad the chunk to whole examples, then batched matrix products
    per example (no index_add_, which uses atomics on CUDA; no (E, S, D) temporary).
    Same products, computed in the acc dtype."""
    R, D = g2.shape
    ad = acc2.dtype
    e_lo, e_hi = row_start // S, (row_start + R - 1) // S + 1
    lead, trail = row_start - e_lo * S, e_hi * S - (row_start + R)
    g = g2 if g2.dtype == ad else g2.to(ad)
    gp = (F.pad(g, (0, 0, lead, trail)) if lead or trail else g).view(e_hi - e_lo, S, D)  # padded rows are 0
    whole = e_lo == 0 and e_hi == acc2.shape[0]  # the chunk covers every example: no slicing
    coef = weights if whole else weights[e_lo:e_hi]
    coef = coef if coef.dtype == ad else coef.to(ad)
    IF = None
    if importance:
        IFp = torch.bmm(gp, (diff2 if whole else diff2[e_lo:e_hi]).unsqueeze(2)).squeeze(2)
        coef = coef * IFp
        IF = IFp.reshape(-1)[lead:lead + R]
    if scale is not None:
        coef = coef * F.pad(scale.to(ad), (lead, trail)).view(e_hi - e_lo, S)
    # acc += coef @ g per example, in place (one op: the caller's overhead on small models)
    (acc2 if whole else acc2[e_lo:e_hi]).unsqueeze(1).baddbmm_(coef.unsqueeze(1), gp)
    return IF


def accumulate(
    grads: torch.Tensor,
    diff: torch.Tensor,
    weights: torch.Tensor,
    acc: torch.Tensor,
    row_start: int = 0,
    importance: bool = False,
    scale: Optional[torch.Tensor] = None,
    backend: str = "auto",
) -> Optional[torch.Tensor]:
    """``acc[e] += weights[e, s] * c_r * grads[r]`` for the path rows of one chunk, in place.

    Path rows are example-major (global row ``r``: example ``e = r // S``, sample
    ``s = r % S``); ``grads`` holds rows ``[row_start, row_start + R)``. The chunk may
    split an example's samples or cover many examples: ``acc`` just keeps adding.
    ``c_r = IF_r`` if ``importance`` else 1, times ``scale[r - row_start]`` if given,
    with ``IF_r = sum_d grads[r, d] * diff[e, d]`` (the IDG importance factor).

    Args:
        grads: ``(R, *shape)`` model-output gradients at the chunk's rows; fp16, bf16,
            fp32 or fp64; any strides (copied to a unit last stride when needed).
        diff: ``(B, *shape)`` = ``x - x'``, dtype equal to ``acc.dtype``. Reused by every
            chunk: pass it contiguous, or each call copies it.
        weights: ``(B, S)`` quadrature weights, dtype equal to ``acc.dtype``.
        acc: ``(B, *shape)`` fp32 or fp64 accumulator, updated in place. If it cannot be
            viewed as ``(B, D)`` with a unit last stride (e.g. channels_last), the work is
            done on a contiguous copy that is written back (two extra passes per call).
        row_start: first global path row of the chunk; ``row_start + R <= B*S``. Default 0.
        importance: multiply each row by its importance factor (IDG). Default False.
        scale: optional ``(R,)`` floating per-row factor (e.g. a finite-difference
            importance), cast to ``acc.dtype``. Default None.
        backend: ``"auto"``, ``"triton"`` or ``"torch"``; see `resolve_backend`.

    Returns:
        ``IF`` of shape ``(R,)`` and dtype ``acc.dtype`` when ``importance``, else ``None``.

    Numerics: everything is computed in ``acc.dtype`` (grads are cast on load). The
    result is deterministic on either backend; the two backends sum in different orders
    (tiles then rows vs. torch reductions), so they agree to rounding, not bitwise.
    """
    # ---- validation ------------------------------------------------------------------
    for name, t in (("grads", grads), ("diff", diff), ("weights", weights), ("acc", acc)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if acc.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"acc must be float32 or float64, got {acc.dtype}")
    for name, t in (("diff", diff), ("weights", weights)):
        if t.dtype != acc.dtype:
            raise TypeError(f"{name} must have the accumulator dtype {acc.dtype}, got {t.dtype}")
    if grads.dim() < 1 or acc.dim() < 1:
        raise ValueError("grads and acc need a leading (rows / batch) dimension")
    R, shape = grads.shape[0], tuple(grads.shape[1:])
    B = acc.shape[0]
    if tuple(acc.shape[1:]) != shape:
        raise ValueError(f"acc must have shape (B, *shape) with shape = grads.shape[1:] = "
                         f"{shape}, got {tuple(acc.shape)}")
    if tuple(diff.shape) != tuple(acc.shape):
        raise ValueError(f"diff must have the shape of acc {tuple(acc.shape)}, "
                         f"got {tuple(diff.shape)}")
    if weights.dim() != 2 or weights.shape[0] != B:
        raise ValueError(f"weights must have shape (B, S) with B={B}, got {tuple(weights.shape)}")
    S = weights.shape[1]
    if not isinstance(row_start, int) or isinstance(row_start, bool):
        raise TypeError(f"row_start must be an int, got {type(row_start).__name__}")
    if row_start < 0 or row_start + R > B * S:
        raise ValueError(f"row_start={row_start} with R={R} grads rows leaves the path batch "
                         f"of B*S = {B * S} rows")
    if not isinstance(importance, bool):
        raise TypeError(f"importance must be a bool, got {type(importance).__name__}")
    if scale is not None:
        if not isinstance(scale, torch.Tensor) or not scale.is_floating_point():
            raise TypeError("scale must be a floating-point tensor or None")
        if tuple(scale.shape) != (R,):
            raise ValueError(f"scale must have shape (R,) = ({R},), got {tuple(scale.shape)}")
    devices = {t.device for t in (grads, diff, weights, acc, scale) if t is not None}
    if len(devices) > 1:
        raise ValueError(f"grads, diff, weights, acc and scale must be on one device, got "
                         f"{sorted(str(d) for d in devices)}")
    which = resolve_backend(backend, grads, diff, weights, acc, scale)

    D = 1
    for n in shape:
        D *= n
    if R == 0 or D == 0:
        return torch.zeros(R, dtype=acc.dtype, device=acc.device) if importance else None

    # acc must be written in place: use a (B, D) view, or a contiguous copy written back.
    try:
        acc2 = acc.view(B, D)
        if D > 1 and acc2.stride(1) != 1:
            raise RuntimeError
        write_back = False
    except RuntimeError:
        acc2 = acc.contiguous().view(B, D)
        write_back = True
    g2 = as_rows(grads, R, D)
    diff2 = as_rows(diff, B, D)

    IF = accumulate_rows(g2, diff2, weights, acc2, row_start, importance, scale, which)
    if write_back:
        acc.copy_(acc2.view(acc.shape))
    return IF


def accumulate_rows(g2: torch.Tensor, diff2: torch.Tensor, weights: torch.Tensor, acc2: torch.Tensor,
                    row_start: int, importance: bool, scale: Optional[torch.Tensor], which: str) -> Optional[torch.Tensor]:
    """`accumulate` for a trusted caller, without validation: 2-D views only.

    g2 ``(R, D)``, diff2 and acc2 ``(B, D)`` with unit last strides (acc2 a view that
    writes through), weights ``(B, S)`` and diff2 in acc2's dtype, ``which`` from
    `resolve_backend`. Used by the engine once per chunk.
    """
    R, D = g2.shape
    if R == 0 or D == 0:
        return torch.zeros(R, dtype=acc2.dtype, device=acc2.device) if importance else None
    if which == "torch":
        return _accumulate_torch(g2, diff2, weights, acc2, row_start, weights.shape[1], importance, scale)
    return _accumulate_triton(g2, diff2, weights, acc2, row_start, weights.shape[1], importance, scale)


def _accumulate_triton(g2, diff2, weights, acc2, row_start, S, importance, scale):
    R, D = g2.shape
    IF = None
    if importance:
        BLOCK_D, num_warps = block_config(D, _BLOCK_CAP)
        n_tiles = check_grid_dim(triton.cdiv(D, BLOCK_D), "accumulate (D-tiles)")
        part = torch.empty((R, n_tiles), dtype=acc2.dtype, device=acc2.device)
        _row_dot_kernel[(R, n_tiles)](
            g2, diff2, part, row_start, S, D, n_tiles, g2.stride(0), diff2.stride(0),
            BLOCK_D=BLOCK_D, num_warps=num_warps,
        )
        IF = part.sum(dim=1)  # fixed-order reduction: deterministic

    e_first = row_start // S
    n_ex = (row_start + R - 1) // S + 1 - e_first
    BLOCK_D, num_warps = block_config(D, _BLOCK_CAP)
    if acc2.is_cuda:  # few examples in the chunk: smaller tiles for more programs
        while BLOCK_D > _MIN_FOLD_BLOCK and n_ex * triton.cdiv(D, BLOCK_D) < _FOLD_TARGET_PROGRAMS:
            BLOCK_D //= 2
        BLOCK_D, num_warps = block_config(D, BLOCK_D)
    n_tiles = check_grid_dim(triton.cdiv(D, BLOCK_D), "accumulate (D-tiles)")
    dummy = acc2  # stands in for absent optional pointers (never read: flags are off)
    _accumulate_kernel[(n_ex, n_tiles)](
        g2, weights, IF if IF is not None else dummy, scale if scale is not None else dummy, acc2,
        row_start, R, S, D, e_first,
        g2.stride(0), weights.stride(0), weights.stride(1),
        scale.stride(0) if scale is not None else 0, acc2.stride(0),
        HAS_IMPORTANCE=importance, HAS_SCALE=scale is not None,
        BLOCK_D=BLOCK_D, num_warps=num_warps,
    )
    return IF
