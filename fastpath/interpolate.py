"""Straight-path points p = x' + alpha (x - x') for a chunk of the path batch.

Design trade-off: one program per (path row, D-tile) on a 2-D grid rather than one
program per row looping over D. A chunk often holds few rows (tens) while D is large
(1e5 for an image), so tiling D as well keeps the GPU busy; the cost is that x[e] and
x'[e] are re-read once per sample of example e (they stay in L2, so the op remains
bound by the write of p). Compute happens in fp32 (fp64 when an input is fp64) and
is cast once on store, so a low-precision model gets correctly rounded points.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._config import as_rows, block_config, check_grid_dim, resolve_backend, triton_available

__all__ = ["interpolate", "interpolate_rows"]

# Largest D-tile per program; tests lower it to exercise several ragged tiles.
_BLOCK_CAP = 4096

if triton_available():
    import triton
    import triton.language as tl

    # row_start changes every chunk: keep it a runtime int (no recompiles for 1 or %16).
    @triton.jit(do_not_specialize=["row_start"])
    def _interpolate_kernel(
        x_ptr, b_ptr, a_ptr, out_ptr,
        row_start, S, D,
        stride_x, stride_b, stride_a0, stride_a1, stride_out,
        FP64: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        # Grid: (rows of the chunk, D-tiles). int64 row arithmetic: rows * D may pass 2**31.
        i = tl.program_id(0).to(tl.int64)
        r = i + row_start                       # global path row
        e = r // S                              # example (rows are example-major)
        s = r - e * S                           # sample of that example
        cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        mask = cols < D
        a = tl.load(a_ptr + e * stride_a0 + s * stride_a1)
        x = tl.load(x_ptr + e * stride_x + cols, mask=mask, other=0.0)
        b = tl.load(b_ptr + e * stride_b + cols, mask=mask, other=0.0)  # stride_b == 0: shared
        if FP64:
            a = a.to(tl.float64)
            x = x.to(tl.float64)
            b = b.to(tl.float64)
        else:
            a = a.to(tl.float32)
            x = x.to(tl.float32)
            b = b.to(tl.float32)
        p = b + a * (x - b)
        tl.store(out_ptr + i * stride_out + cols, p.to(out_ptr.dtype.element_ty), mask=mask)


def _interpolate_torch(x2, b2, alphas, row_start, n_rows, S, out2, compute, diff2=None, zero_base=False):
    """Plain-torch twin of the kernel: same formula, same compute dtype, one cast.

    Works on whole examples as (E, S, D) with broadcasting (written straight into the
    output when the chunk is aligned to examples and needs no cast): on CPU with small models this
    runs once per chunk and its per-op overhead is what the caller pays on top of
    the model. `diff2` (x - x' in the compute dtype, optional) saves the subtraction;
    `zero_base` (x' is all zeros) the addition: b + a * d is then exactly a * d.
    """
    e_lo, e_hi = row_start // S, (row_start + n_rows - 1) // S + 1
    E, D = e_hi - e_lo, x2.shape[1]
    lead = row_start - e_lo * S
    whole = e_lo == 0 and e_hi == alphas.shape[0]  # every example: no slicing
    a = alphas if whole else alphas[e_lo:e_hi]
    a = (a if a.dtype == compute else a.to(compute)).unsqueeze(2)  # (E, S, 1)
    aligned = lead == 0 and n_rows == E * S and out2.dtype == compute and out2.is_contiguous()
    if aligned and diff2 is not None and diff2.dtype == compute:
        # Separate multiply and add (no addcmul): the same roundings as the kernel's.
        o = out2.view(E, S, D)
        torch.mul(a, (diff2 if whole else diff2[e_lo:e_hi]).unsqueeze(1), out=o)
        if not zero_base:
            o.add_((b2 if b2.shape[0] == 1 or whole else b2[e_lo:e_hi]).to(compute).unsqueeze(1))
        return
    b = (b2 if b2.shape[0] == 1 else b2[e_lo:e_hi]).to(compute).unsqueeze(1)  # (1 or E, 1, D)
    x = x2[e_lo:e_hi].to(compute).unsqueeze(1)  # (E, 1, D)
    if aligned:
        torch.add(b, a * (x - b), out=out2.view(E, S, D))
    else:
        out2.copy_((b + a * (x - b)).reshape(E * S, D)[lead:lead + n_rows])


def interpolate(
    x: torch.Tensor,
    baseline: torch.Tensor,
    alphas: torch.Tensor,
    row_start: int = 0,
    n_rows: Optional[int] = None,
    out_dtype: Optional[torch.dtype] = None,
    out: Optional[torch.Tensor] = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Points on the straight paths for the path rows ``[row_start, row_start + n_rows)``.

    The path batch has ``B*S`` rows, example-major: global row ``r`` is example
    ``e = r // S``, sample ``s = r % S``. Output row ``i`` (global ``r = row_start + i``) is
    ``baseline[e] + alphas[e, s] * (x[e] - baseline[e])``.

    Args:
        x: ``(B, *shape)`` floating inputs. Any strides; only a unit last stride after
            flattening to ``(B, D)`` avoids a copy.
        baseline: ``(1, *shape)`` (shared by all examples) or ``(B, *shape)`` (one per
            example), floating.
        alphas: ``(B, S)`` floating path positions (any strides).
        row_start: first global path row of the chunk, ``0 <= row_start <= B*S``. Default 0.
        n_rows: rows in the chunk; default ``B*S - row_start``. The chunk may start or end
            inside an example's samples.
        out_dtype: dtype of the result; default ``out.dtype`` if ``out`` is given, else
            ``x.dtype``. E.g. fp16/bf16 for a model run in low precision.
        out: optional preallocated contiguous buffer ``(>= n_rows, *shape)`` of dtype
            ``out_dtype``; ``out[:n_rows]`` is written and returned (no allocation).
        backend: ``"auto"`` (Triton on CUDA, torch elsewhere), ``"triton"`` or ``"torch"``;
            see `resolve_backend`.

    Returns:
        ``(n_rows, *shape)`` tensor of dtype ``out_dtype`` (a view of ``out`` if given).

    Numerics: computed in fp32, or fp64 when any of ``x``, ``baseline``, ``alphas`` is
    fp64, then rounded once to ``out_dtype``. On GPU the compiler may fuse the multiply
    and add (an FMA), so the two backends can differ in the last bit. fp64 compute with a
    bf16 output rounds through fp32 in the kernel (Triton's rule); torch rounds directly.
    """
    # ---- validation ------------------------------------------------------------------
    for name, t in (("x", x), ("baseline", baseline), ("alphas", alphas)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if x.dim() < 1:
        raise ValueError("x must have a batch dimension: shape (B, *shape)")
    B, shape = x.shape[0], tuple(x.shape[1:])
    if (baseline.dim() != x.dim() or tuple(baseline.shape[1:]) != shape
            or baseline.shape[0] not in (1, B)):
        raise ValueError(f"baseline must have shape (1, *shape) or (B, *shape) = "
                         f"{(1,) + shape} or {(B,) + shape}, got {tuple(baseline.shape)}")
    if alphas.dim() != 2 or alphas.shape[0] != B:
        raise ValueError(f"alphas must have shape (B, S) with B={B}, got {tuple(alphas.shape)}")
    S = alphas.shape[1]
    total = B * S
    if not isinstance(row_start, int) or isinstance(row_start, bool):
        raise TypeError(f"row_start must be an int, got {type(row_start).__name__}")
    if not 0 <= row_start <= total:
        raise ValueError(f"row_start must lie in [0, B*S] = [0, {total}], got {row_start}")
    if n_rows is None:
        n_rows = total - row_start
    if not isinstance(n_rows, int) or isinstance(n_rows, bool):
        raise TypeError(f"n_rows must be an int or None, got {type(n_rows).__name__}")
    if n_rows < 0 or row_start + n_rows > total:
        raise ValueError(f"n_rows={n_rows} with row_start={row_start} leaves the path batch "
                         f"of B*S = {total} rows")
    if out_dtype is None:
        out_dtype = out.dtype if isinstance(out, torch.Tensor) else x.dtype
    if not isinstance(out_dtype, torch.dtype) or not out_dtype.is_floating_point:
        raise TypeError(f"out_dtype must be a floating-point torch.dtype, got {out_dtype!r}")
    if out is not None:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"out must be a torch.Tensor or None, got {type(out).__name__}")
        if out.dtype != out_dtype:
            raise TypeError(f"out has dtype {out.dtype} but out_dtype is {out_dtype}")
        if out.dim() != len(shape) + 1 or tuple(out.shape[1:]) != shape or out.shape[0] < n_rows:
            raise ValueError(f"out must have shape (>= {n_rows}, *{shape}), got {tuple(out.shape)}")
        if not out.is_contiguous():
            raise ValueError("out must be contiguous")
    devices = {t.device for t in (x, baseline, alphas, out) if t is not None}
    if len(devices) > 1:
        raise ValueError(f"x, baseline, alphas and out must be on one device, got "
                         f"{sorted(str(d) for d in devices)}")
    which = resolve_backend(backend, x, baseline, alphas, out)

    # ---- output ----------------------------------------------------------------------
    if out is None:
        result = torch.empty((n_rows,) + shape, dtype=out_dtype, device=x.device)
    else:
        result = out[:n_rows]
    D = 1
    for n in shape:
        D *= n
    if n_rows == 0 or D == 0:
        return result
    out2 = result.view(n_rows, D)
    x2 = as_rows(x, B, D)
    b2 = as_rows(baseline, baseline.shape[0], D)
    interpolate_rows(x2, b2, alphas, row_start, n_rows, out2, which)
    return result


def interpolate_rows(x2: torch.Tensor, b2: torch.Tensor, alphas: torch.Tensor, row_start: int, n_rows: int,
                     out2: torch.Tensor, which: str, diff2: Optional[torch.Tensor] = None,
                     zero_base: bool = False) -> None:
    """`interpolate` for a trusted caller, without validation: 2-D views only.

    x2 ``(B, D)``, b2 ``(1 or B, D)``, out2 ``(n_rows, D)``, all with a unit last stride;
    alphas ``(B, S)``; ``which`` from `resolve_backend`. The engine calls this once per
    chunk after validating the whole batch once, so a chunk pays no Python checks.
    Torch backend only: ``diff2`` ``(B, D)`` = x - x' (used when it is in the compute
    dtype) and ``zero_base`` (b2 is all zeros) let it skip ops; results are unchanged.
    """
    S = alphas.shape[1]
    D = x2.shape[1]
    if n_rows == 0 or D == 0:
        return
    fp64 = torch.float64 in (x2.dtype, b2.dtype, alphas.dtype)
    if which == "torch":
        _interpolate_torch(x2, b2, alphas, row_start, n_rows, S, out2,
                           torch.float64 if fp64 else torch.float32, diff2, zero_base)
        return
    BLOCK_D, num_warps = block_config(D, _BLOCK_CAP)
    n_tiles = check_grid_dim(triton.cdiv(D, BLOCK_D), "interpolate (D-tiles)")
    check_grid_dim(n_rows, "interpolate (rows)", limit=2**31 - 1)
    _interpolate_kernel[(n_rows, n_tiles)](
        x2, b2, alphas, out2,
        row_start, S, D,
        x2.stride(0), b2.stride(0) if b2.shape[0] > 1 else 0,
        alphas.stride(0), alphas.stride(1), out2.stride(0),
        FP64=fp64, BLOCK_D=BLOCK_D, num_warps=num_warps,
    )
