"""The latency path: IG and probe-scheduled IDG of a few inputs on the CPU, every path
point in one model call, in as few Python frames as the arithmetic allows.

Why it exists: at batch 1 on a ~2 ms model the general path (Explainer -> method ->
engine: argument objects, a batch, a schedule, a result; ~20 Python frames) cost
7-15 % of the call on this project's 2-core CPU, mostly because the model's passes
have just evicted that code from the caches; the same ops and checks written flat
cost ~3 % (benchmarks/cpu.py, digits CNN, batch 1, session 5). The arithmetic is the
engine's one-chunk path (points a (x - 0), one forward+backward, for IG the weights
seeding the backward and one sum over the samples, for IDG the same two `bmm` folds),
so the results agree bit for bit (tests/test_quick.py).

Anything unusual returns None before the model runs and the general path takes the
call: a baseline, extra forward args, a delta or details, target=None, a target that
is not an int or a (B,) int64 tensor, a negative target, non-finite inputs, inputs
that are not float32/float64 CPU tensors or that require grad, grad mode off (inside
torch.no_grad or inference_mode), a model on another device, more path points than
one chunk, engine settings it does not handle
(autocast, the triton backend, an accumulate dtype, CUDA graphs, profiling ranges,
an output callable). So every argument error is still raised by one piece of code.
An out-of-memory error in a pass also returns None: the general path backs off.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch

from .. import _scheduler
from . import profiling as _profiling
from . import schedule as schedules
from .checks import model_device_ref
from .core import _check_finite_values, check_integral_finite, chunk_rows
from .targets import check_class_index, check_model_output, select_output

_FLOATS = (torch.float32, torch.float64)
_NUMPY_NAME = {torch.float32: "float32", torch.float64: "float64"}


def engine_ready(engine) -> bool:
    """The engine's settings allow the latency path (read per call: they are public)."""
    return (engine.autocast is None and engine.backend != "triton" and engine.accumulate_dtype is None
            and engine.graphs is None and not engine._ranges and isinstance(engine.output, str))


def integrated_gradients(model, x, target, cfg: Dict[str, Any], output: str, internal_batch_size: Optional[int],
                         probe_batch_size: Optional[int] = None, oom_rows: int = 0) -> Optional[torch.Tensor]:
    """IG attributions of `x` (cfg: ig.settings), or None where the general path must run.
    (probe_batch_size: unused, IG has no forward-only pass; the signature is IDG's.)"""
    ready = _ready(model, x, target)
    if ready is None:
        return None
    B, D, lo, hi, t = ready
    S = cfg["n_steps"]
    if B * S > chunk_rows(internal_batch_size, None, oom_rows, D, "cpu"):
        return None
    a, w = schedules.uniform(cfg["rule"], S, B).on(x.device, x.dtype, x.dtype)
    xc = x.contiguous()
    try:  # the weights ride on the backward: sum_k w_k g_k is then one sum over k
        g = _gradients(model, _points(xc, a, B, S, D), B * S, lo, hi, t, S, output, w.reshape(-1))
    except torch.OutOfMemoryError:
        return None  # the general path backs off to smaller chunks
    return (xc.view(B, D) * _checked(g.view(B, S, D).sum(1))).view(x.shape)


def integrated_decision_gradients(model, x, target, cfg: Dict[str, Any], output: str,
                                  internal_batch_size: Optional[int], probe_batch_size: Optional[int],
                                  oom_rows: int = 0) -> Optional[torch.Tensor]:
    """Adaptive / paper-schedule IDG with exact importance and no normalisation (cfg:
    idg.settings), or None where the general path must run."""
    if cfg["schedule"] == "uniform" or cfg["importance"] != "exact" or cfg["normalize"] != "none":
        return None
    ready = _ready(model, x, target)
    if ready is None:
        return None
    B, D, lo, hi, t = ready
    M, P = cfg["n_steps"], cfg["n_probe"] + 1
    if (B * M > chunk_rows(internal_batch_size, probe_batch_size, oom_rows, D, "cpu")
            or B * P > chunk_rows(internal_batch_size, probe_batch_size, oom_rows, D, "cpu", forward_only=True)):
        return None
    xc = x.contiguous()
    # The probe: F at the N + 1 evenly spaced points, forward only.
    try:
        with torch.no_grad():
            out = model(_points(xc, schedules.probe_grid(cfg["n_probe"], B, x.device, x.dtype), B, P, D))
    except torch.OutOfMemoryError:
        return None  # the general path backs off to smaller chunks
    out = _check_output(out, B * P, hi, output)
    curve = select_output(out, lo if lo == hi else _row_targets(t, P), output)
    curve = (curve if curve.dtype == x.dtype else curve.to(x.dtype)).view(B, P)
    try:
        a, w, _ = _scheduler.adaptive_grid(curve.numpy(), M, growth=cfg["growth"], placement=cfg["placement"],
                                           floor=cfg["floor"], dtype=_NUMPY_NAME[x.dtype])
    except ValueError:  # the scheduler refuses non-finite curves: say it as the engine does
        _check_finite_values(curve, "F along the path")
        raise
    a, w = torch.from_numpy(a), torch.from_numpy(w)  # already in x's dtype (rounded once in C++)
    # The gradient pass at the scheduled alphas; IF = g . (x - x') per sample.
    try:
        g3 = _gradients(model, _points(xc, a, B, M, D), B * M, lo, hi, t, M, output).view(B, M, D)
    except torch.OutOfMemoryError:
        return None
    importance = torch.bmm(g3, xc.view(B, D, 1)).view(B, M)
    return xc * _checked(torch.bmm((w * importance).unsqueeze(1), g3)).view(x.shape)


def _ready(model, x, target):
    """(B, D, lo, hi, target tensor or None) when the call qualifies (see the module
    docstring), else None. Costs one reduction: the inputs' finiteness."""
    if not (isinstance(x, torch.Tensor) and x.dtype in _FLOATS and x.dim() >= 1 and x.device.type == "cpu"
            and not x.requires_grad and callable(model) and torch.is_grad_enabled() and not _profiling.enabled()):
        return None
    B = x.shape[0]
    if B == 0:
        return None
    if type(target) is int:
        lo = hi = target
        t = None
    elif (isinstance(target, torch.Tensor) and target.dtype == torch.long and target.dim() == 1
          and target.shape[0] == B and target.device.type == "cpu"):
        vals = target.tolist()
        lo, hi, t = min(vals), max(vals), target
    else:
        return None
    if lo < 0 or hi > 2 ** 63 - 1 or not math.isfinite(float(x.sum())):  # the general path names the error
        return None
    ref = model_device_ref(model)
    if ref is not None and ref.device.type != "cpu":
        return None
    return B, x.numel() // B, lo, hi, t


def _points(xc: torch.Tensor, a: torch.Tensor, B: int, S: int, D: int) -> torch.Tensor:
    """The B*S path points a (x - 0) (the zero baseline: one multiply, as the engine's
    one-chunk path), as a new (B*S, *shape) tensor: at this size a fresh allocation
    measured no slower than the engine's reused buffer (within ~1 %), and keeps no state."""
    return torch.mul(a.unsqueeze(2), xc.view(B, 1, D)).view((B * S,) + tuple(xc.shape[1:]))


def _row_targets(t: torch.Tensor, S: int) -> torch.Tensor:
    """Each input's target repeated for its S path rows, as an (B*S, 1) column."""
    return t.view(-1, 1, 1).expand(-1, S, 1).reshape(-1, 1)


def _check_output(out: Any, rows: int, hi: int, output: str) -> torch.Tensor:
    if type(output) is not str or not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != rows:
        out = check_model_output(out, rows, output)  # a tuple/dict output's logits, or raises naming what was expected
    check_class_index(hi, out.shape[1])
    return out


def _gradients(model, points, rows, lo, hi, t, S, output, weights=None) -> torch.Tensor:
    """dF/dp at the path points in one forward+backward (grad mode is on: `_ready`), each
    row scaled by `weights` (rows,) when given; zeros where F does not depend on the input."""
    points.requires_grad_(True)
    out = model(points)
    out = _check_output(out, rows, hi, output)
    f = select_output(out, lo if lo == hi else _row_targets(t, S), output)
    g = None
    if f.requires_grad:
        seed = f.sum() if weights is None else f
        grad_out = None if weights is None else (weights if weights.dtype == f.dtype else weights.to(f.dtype))
        g = torch.autograd.grad(seed, points, grad_outputs=grad_out, allow_unused=True)[0]
    return torch.zeros_like(points) if g is None else g


def _checked(acc: torch.Tensor) -> torch.Tensor:
    """The folded sum, checked finite (one reduction)."""
    if not math.isfinite(float(acc.sum())):
        check_integral_finite(acc)
    return acc
