"""The one straight-path loop of DESIGN.md, shared by every straight-path method.

    schedule   per example: S alphas and S weights             (schedules / csrc)
    points     p = x' + alpha (x - x') for each (example, alpha) (fastpath.interpolate)
    gradients  g = dF(p)/dp, in chunks of path points           (the user's model)
    fold       acc += sum_k w_k * scale_k * g_k                  (fastpath.accumulate)

The path batch has B*S rows, example-major (row r is example r // S, sample r % S),
and is never materialised whole: each chunk of `internal_batch_size` rows is
interpolated into a reused buffer, run forward and backward, and folded into an
fp32/fp64 accumulator, so memory is bounded by one chunk. Forward-only passes
(endpoints, probe curves) run under no_grad in chunks of `probe_batch_size`.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

import torch

from .. import fastpath
from . import profiling as _profiling
from . import schedule as schedules
from .profiling import stage
from .checks import (all_finite, check_finite, check_inputs, check_model_device, check_positive_int, normalize_forward_args,
                     prepare_baselines)
from .targets import (check_model_output, check_output, check_target_range, parse_target, resolve_target,
                      select_output)

IMPORTANCE = ("none", "exact", "finite_difference")
# Default chunk: as many path points as fit a budget of input elements, within
# [MIN_ROWS, max rows]. Measured on this project's 2-core CPU (benchmarks/cpu.py,
# forward+backward of 1,600 points, ms): the digits CNN (64 features) takes 34 ms in
# chunks of 1024, 39 in one chunk of 1600, 51 in chunks of 64; a residual CNN on
# 3x32x32 takes 1118-1169 ms in chunks of 32-48, 1613 at 16 and 2740 at 512.
# 2**17 elements capped at 1024 points gives 1024 and 42. Forward-only passes keep no
# graph, so they get twice the chunk. On an H100 (benchmarks/gpu.py, ResNet-50 224x224,
# 1,600 points fwd+bwd) chunks of 64/128/256/400 took 614/582/563/554 ms in fp32 and
# 452/399/381/374 ms in bf16: bigger is better up to a few hundred images, so the CUDA
# budget of 2**26 elements gives 445 points at 224x224.
_BUDGET = {"cpu": 2 ** 17, "cuda": 2 ** 26}
_MAX_ROWS = {"cpu": 1024, "cuda": 4096}
MIN_ROWS = 16


@dataclass
class PathBatch:
    """One validated call: inputs, baselines, targets and extra forward args."""

    x: torch.Tensor  # (B, *shape)
    baseline: torch.Tensor  # (1, *shape) shared or (B, *shape) per input
    target: Optional[torch.Tensor]  # (B,) int64, or None until resolved by argmax
    args: Tuple[Any, ...]
    acc_dtype: torch.dtype
    zero_baseline: bool = False  # x' is all zeros (the default baseline): lets cheap paths skip ops
    target_range: Optional[Tuple[torch.Tensor, int, int]] = field(default=None, repr=False)  # (target, min, max) from parsing
    _checked_target: Optional[torch.Tensor] = field(default=None, repr=False)  # the target already range-checked
    _features: int = field(default=-1, repr=False)
    _diff: Optional[torch.Tensor] = field(default=None, repr=False)
    _row_target: Optional[Tuple[int, torch.Tensor]] = field(default=None, repr=False)
    _rows2d: Optional[Tuple[torch.Tensor, torch.Tensor]] = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return self.x.shape[0]

    @property
    def features(self) -> int:
        """D, the number of elements of one input (cached: the chunk logic asks often)."""
        if self._features < 0:
            self._features = math.prod(self.x.shape[1:])
        return self._features

    @property
    def shared_baseline(self) -> bool:
        return self.baseline.shape[0] == 1 and self.size != 1

    def batched_args(self) -> bool:
        return any(isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == self.size for a in self.args)

    def args_for(self, examples: torch.Tensor) -> Tuple[Any, ...]:
        """Extra forward args for rows belonging to `examples`: tensors with a batch
        dimension of B are gathered row by row; everything else is passed as is."""
        if not self.args:
            return ()
        return tuple(
            a.index_select(0, examples.to(a.device)) if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == self.size else a
            for a in self.args
        )

    def diff(self) -> torch.Tensor:
        """x - x' in the accumulator dtype, shape (B, *shape); computed once per batch."""
        if self._diff is None:
            if self.zero_baseline and self.x.dtype == self.acc_dtype:
                self._diff = self.x.contiguous()  # x - 0 is x, bit for bit
            else:
                self._diff = (self.x.to(self.acc_dtype) - self.baseline.to(self.acc_dtype)).expand_as(self.x).contiguous()
        return self._diff

    def rows2d(self):
        """x and x' as (B, D) and (1 or B, D) views with a unit last stride (cached)."""
        if self._rows2d is None:
            D = self.features if self.size else 0
            self._rows2d = (fastpath.as_rows(self.x, self.size, D), fastpath.as_rows(self.baseline, self.baseline.shape[0], D))
        return self._rows2d

    def row_examples(self, start: int, n: int, S: int) -> torch.Tensor:
        """The example index of path rows [start, start + n) (rows are example-major)."""
        return torch.arange(start, start + n, device=self.x.device) // S

    def row_targets(self, start: int, n: int, S: int) -> Optional[torch.Tensor]:
        """The targets of path rows [start, start + n) as an (n, 1) column, ready for
        gather (select_output also takes (n,); an output callable gets (n,))."""
        if self.target is None:
            return None
        if self._row_target is None or self._row_target[0] != S:
            # expand + reshape, not repeat_interleave: no host sync, so CUDA graphs can capture it
            self._row_target = (S, self.target.view(-1, 1, 1).expand(-1, S, 1).reshape(-1, 1))
        rows = self._row_target[1]
        return rows if start == 0 and n == rows.shape[0] else rows[start:start + n]


@dataclass
class PathIntegral:
    """What the gradient pass returns: the folded sum and the per-sample diagnostics."""

    acc: torch.Tensor  # (B, *shape): sum_k w_k * scale_k * g_k in the accumulator dtype
    values: torch.Tensor  # (B, S): F at every path point (from the same forward passes)
    importance: Optional[torch.Tensor]  # (B, S): importance factors, when a scale was used


class PathEngine:
    """Evaluates a model along straight paths, in bounded chunks.

    Args:
        model: callable mapping a batch (rows, *shape) (plus extra args) to outputs
            (rows, C), or anything `output` (a callable) can reduce to (rows,).
        output: "logit" (default), "softmax", "log_softmax" or f(model_output, target) -> (rows,).
        internal_batch_size: path points per forward+backward chunk; None picks a
            budget of input elements per chunk (2**17 on CPU, as measured; see
            _BUDGET), clamped to [16, 1024] points on CPU, [16, 4096] on CUDA.
        probe_batch_size: path points per forward-only chunk; None = twice the
            gradient chunk (forward-only passes keep no graph).
        autocast: None or a dtype (torch.bfloat16 / torch.float16) to run the model
            under torch.autocast; gradients are accumulated in fp32 regardless.
        backend: "auto" (Triton on CUDA, torch on CPU), "triton" or "torch" for the fast-path ops.
        accumulate_dtype: accumulator dtype; None = float64 for float64 inputs, else float32.
    """

    def __init__(self, model, *, output="logit", internal_batch_size=None, probe_batch_size=None,
                 autocast=None, backend="auto", accumulate_dtype=None):
        if not callable(model):
            raise TypeError(f"model must be a callable (a torch.nn.Module or a function), got {type(model).__name__}")
        self.model = model
        self.output = check_output(output)
        self.internal_batch_size = check_positive_int(internal_batch_size, "internal_batch_size", allow_none=True)
        self.probe_batch_size = check_positive_int(probe_batch_size, "probe_batch_size", allow_none=True)
        if autocast is not None and autocast not in (torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be None, torch.bfloat16 or torch.float16; got {autocast!r}")
        self.autocast = autocast
        if backend not in ("auto", "triton", "torch"):
            raise ValueError(f"backend must be 'auto', 'triton' or 'torch'; got {backend!r}")
        self.backend = backend
        if accumulate_dtype is not None and accumulate_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"accumulate_dtype must be None, torch.float32 or torch.float64; got {accumulate_dtype!r}")
        self.accumulate_dtype = accumulate_dtype
        self._buffer: Optional[torch.Tensor] = None  # reused interpolation buffer
        self._oom_rows = 0  # a chunk cap learnt from an out-of-memory error (0: none)
        self._zeros = None  # (key, tensor): the last default baseline
        self._ranges = _profiling.enabled()  # named stage ranges for profilers (PATHATTR_PROFILE=1)
        self._capturing = False  # inside a CUDA-graph capture: no host syncs (checks run after replay)
        self.graphs = None  # a graphs.GraphCache when the Explainer asked for CUDA graphs

    # ------------------------------------------------------------------ set-up
    def prepare(self, inputs, baselines=None, target=None, additional_forward_args=None) -> PathBatch:
        x = check_inputs(inputs, finite=False)  # types, shapes and devices first, then values
        if x.requires_grad:  # attributions are not differentiable; the path ops write into buffers (out=)
            x = x.detach()
        check_model_device(None, x, self.model)  # the model's remembered first tensor (model_device_ref)
        base = self._zeros_like_input(x) if baselines is None else prepare_baselines(baselines, x)
        check_finite(x, "inputs")
        if base.requires_grad:
            base = base.detach()
        tgt, bounds = parse_target(target, x.shape[0], x.device, return_range=True)
        args = normalize_forward_args(additional_forward_args)
        acc = self.accumulate_dtype or (torch.float64 if x.dtype == torch.float64 else torch.float32)
        return PathBatch(x, base, tgt, args, acc, zero_baseline=baselines is None,
                         target_range=None if bounds is None else (tgt,) + bounds)

    def _zeros_like_input(self, x: torch.Tensor) -> torch.Tensor:
        """The default baseline, zeros of shape (1, *shape), kept for the next call of the
        same shape (nothing writes into a batch's baseline)."""
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        if self._zeros is None or self._zeros[0] != key:
            self._zeros = (key, torch.zeros((1,) + key[0], dtype=x.dtype, device=x.device))
        return self._zeros[1]

    def check_target(self, batch: PathBatch, out: torch.Tensor) -> None:
        """The batch's targets against the model's C outputs, once per target tensor
        (the max is known from parsing, so this costs no reduction)."""
        t = batch.target
        if t is None or t is batch._checked_target:
            return
        hi = batch.target_range[2] if batch.target_range is not None and batch.target_range[0] is t else None
        check_target_range(t, out, self.output, hi)
        batch._checked_target = t

    def _row_select(self, batch: PathBatch, start: int, n: int, S: int):
        """What select_output needs for path rows [start, start + n): one int when every
        input has the same target and the output is named (a column view), else per-row targets."""
        r = batch.target_range
        if r is not None and r[0] is batch.target and r[1] == r[2] and isinstance(self.output, str):
            return r[1]
        return batch.row_targets(start, n, S)

    def rows_per_chunk(self, batch: "PathBatch", forward_only: bool = False, total: Optional[int] = None) -> int:
        """Path points per model call: the caller's setting, else the element budget.

        With the default budget and `total` rows to cover, the same number of model calls
        is made with equal chunks instead of full ones and a small tail (50 rows under a
        cap of 42: 25 + 25, not 42 + 8; measured on the residual CNN, 3x32x32, batch 1:
        38 ms against 48 ms).
        """
        return chunk_rows(self.internal_batch_size, self.probe_batch_size, self._oom_rows, batch.features,
                          batch.x.device.type, forward_only, total)

    def _back_off(self, step: int) -> int:
        """After a CUDA out-of-memory error: halve the chunk, remember the cap for later
        calls of this engine, and retry the same rows (never a crash unless one row fails)."""
        if self._capturing:  # no retry inside a CUDA-graph capture: the capture fails, eager takes over
            raise torch.OutOfMemoryError(f"out of memory with {step} path points per chunk during CUDA-graph capture")
        if step <= 1:
            raise torch.OutOfMemoryError("out of memory with a chunk of one path point: the model does not fit "
                                         "the device even for one input")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        new = max(1, step // 2)
        self._oom_rows = new if not self._oom_rows else min(self._oom_rows, new)
        warnings.warn(f"pathattr: out of memory with {step} path points per chunk; retrying with {new} "
                      f"(set internal_batch_size to choose)", RuntimeWarning, stacklevel=3)
        return new

    # ----------------------------------------------------------------- forward
    def _context(self, device: torch.device):
        if self.autocast is None:
            return contextlib.nullcontext()
        # No weight-cast cache: each chunk is its own autocast region anyway, and a cache
        # would hold tensors that a captured CUDA graph must not depend on.
        return torch.autocast(device_type=device.type, dtype=self.autocast, cache_enabled=False)

    def _forward(self, batch: PathBatch, points: torch.Tensor, start: int, S: int) -> torch.Tensor:
        """The model on path rows [start, start + len(points)), with their extra args."""
        args = batch.args_for(batch.row_examples(start, points.shape[0], S)) if batch.args else ()
        with self._context(points.device):
            out = self.model(points, *args)
        return check_model_output(out, points.shape[0], self.output)

    def _points(self, batch: PathBatch, alphas: torch.Tensor, start: int, rows: int, capacity: int,
                which: str) -> torch.Tensor:
        """Interpolate rows [start, start + rows) of the path batch into the reused buffer."""
        x2, b2 = batch.rows2d()
        D = x2.shape[1]
        buf = self._buffer
        if (buf is None or buf.shape[0] < capacity or buf.shape[1] != D or buf.dtype != batch.x.dtype
                or buf.device != batch.x.device):
            buf = self._buffer = torch.empty((capacity, D), dtype=batch.x.dtype, device=batch.x.device)
        # The torch backend reuses x - x' (computed once per batch anyway) to save ops per chunk.
        diff2 = batch.diff().view(batch.size, D) if which == "torch" else None
        fastpath.interpolate_rows(x2, b2, alphas, start, rows, buf[:rows], which, diff2, batch.zero_baseline)
        return buf[:rows].view((rows,) + tuple(batch.x.shape[1:]))

    def _backend(self, batch: PathBatch) -> str:
        if self.backend == "auto" and not batch.x.is_cuda:
            return "torch"
        return fastpath.resolve_backend(self.backend, batch.x)

    def probe_grid(self, batch: PathBatch, n_probe: int) -> torch.Tensor:
        """The N + 1 evenly spaced probe alphas for every input, (B, N + 1), in the dtype
        and on the device the passes use (cached per process)."""
        adt = torch.float64 if batch.x.dtype == torch.float64 else torch.float32
        return schedules.probe_grid(n_probe, batch.size, batch.x.device, adt)

    def schedule_tensors(self, batch: PathBatch, sched) -> Tuple[torch.Tensor, torch.Tensor]:
        """A schedule's (alphas, weights) in the dtypes and on the device the passes use."""
        adt = torch.float64 if batch.x.dtype == torch.float64 else torch.float32
        return sched.on(batch.x.device, adt, batch.acc_dtype)

    def _alphas_on_device(self, batch: PathBatch, alphas: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if batch.x.dtype == torch.float64 else torch.float32
        if alphas.dtype == dtype and alphas.device == batch.x.device:
            return alphas
        return alphas.to(device=batch.x.device, dtype=dtype)  # any strides: every consumer takes them

    def endpoints(self, batch: PathBatch, baselines: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """F(x) and F(x') for every input, in one forward-only pass over x and x'.

        Resolves target=None to the argmax of model(x) (stored on the batch). A
        shared baseline is evaluated once unless extra forward args are per input.
        With baselines=False only x is evaluated and F(x') is None.
        """
        B = batch.size
        per_input = not batch.shared_baseline or batch.batched_args()
        if not baselines:
            points, examples = batch.x, torch.arange(B)
        else:
            base_rows = batch.baseline.expand_as(batch.x) if per_input else batch.baseline[:1]
            points = torch.cat([batch.x, base_rows.to(batch.x.dtype)], 0)
            examples = torch.cat([torch.arange(B), torch.arange(B) if per_input else torch.zeros(1, dtype=torch.long)])
        with stage("endpoints", self._ranges):
            if self.graphs is not None and not batch.args and points.is_cuda and not callable(self.output):
                out = self.graphs.forward(batch, points)
            else:
                out = self.forward_rows(batch, points, examples)
        if batch.target is None:  # argmax of the logits at x, before any output callable runs
            batch.target = batch._checked_target = resolve_target(out[:B], self.output)  # in range by construction
        self.check_target(batch, out)
        f_x = select_output(out[:B], batch.target, self.output)
        _check_finite_values(f_x, "F(x) at the inputs")
        if not baselines:
            return f_x.to(batch.acc_dtype), None
        base_out = out[B:] if per_input else out[B:].expand((B,) + tuple(out.shape[1:]))
        f_b = select_output(base_out, batch.target, self.output)
        _check_finite_values(f_b, "F(x') at the baselines")
        return f_x.to(batch.acc_dtype), f_b.to(batch.acc_dtype)

    def forward_rows(self, batch: PathBatch, points: torch.Tensor, examples: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The model's outputs on `points`, forward only, in chunks (rows' extra args
        from `examples`, the input index of each row)."""
        step = self.rows_per_chunk(batch, forward_only=True, total=points.shape[0])
        outs = []
        s = 0
        with torch.no_grad(), self._context(points.device):
            while s < points.shape[0]:
                chunk = points[s:s + step]
                args = batch.args_for(examples[s:s + step].to(points.device)) if batch.args else ()
                try:
                    outs.append(check_model_output(self.model(chunk, *args), chunk.shape[0], self.output))
                except torch.OutOfMemoryError:
                    step = self._back_off(step)
                    continue
                s += chunk.shape[0]
        return outs[0] if len(outs) == 1 else torch.cat(outs, 0)

    def path_values(self, batch: PathBatch, alphas: torch.Tensor) -> torch.Tensor:
        """F(x' + alpha (x - x')) for alphas (B, S), forward only: (B, S) in the accumulator dtype."""
        if self.graphs is not None and self.graphs.supports(batch):
            return self.graphs.path_values(batch, alphas)
        B, S = alphas.shape
        a = self._alphas_on_device(batch, alphas)
        if not self._capturing and self._single_chunk_ok(batch, B * S, forward_only=True):
            try:
                return self._path_values_single_chunk(batch, a)
            except torch.OutOfMemoryError:
                self._back_off(B * S)  # remembers a smaller cap: the chunk loop below takes over
        chunks = []
        step = self.rows_per_chunk(batch, forward_only=True, total=B * S)
        which = self._backend(batch)
        s = 0
        with torch.no_grad(), stage("probe", self._ranges):
            while s < B * S:
                n = min(step, B * S - s)
                try:
                    out = self._forward(batch, self._points(batch, a, s, n, min(step, B * S), which), s, S)
                except torch.OutOfMemoryError:
                    out = None
                    step = self._back_off(step)
                    continue
                if s == 0 and not self._capturing:
                    self.check_target(batch, out)
                chunks.append(select_output(out, self._row_select(batch, s, n, S), self.output))
                s += n
        values = _joined(chunks, batch.acc_dtype).view(B, S)
        if not self._capturing:
            _check_finite_values(values, "F along the path")
        return values

    # ------------------------------------------- gradients at arbitrary points
    def gradients(self, batch: PathBatch, points: torch.Tensor, examples: torch.Tensor,
                  targets: Optional[torch.Tensor] = None, check_finite: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """F and dF/dp at arbitrary points, for methods whose path depends on gradients.

        Args:
            points: (R, *shape), any rows (e.g. Guided IG's current points, AGI's
                adversarial iterates); not modified.
            examples: (R,) int64, the input each row belongs to (for its target and
                its per-input extra forward args).
            targets: (R,) int64 overriding the batch's targets row by row (e.g. AGI's
                adversarial classes); None uses batch.target[examples].
        Returns:
            values (R,) in the accumulator dtype, grads (R, *shape) in the points' dtype
            (zeros where the output does not depend on the input). Chunked like the
            gradient pass; no graph is kept between chunks.
        """
        R = points.shape[0]
        if examples.shape != (R,):
            raise ValueError(f"examples must have shape ({R},), one input index per point; got {tuple(examples.shape)}")
        if targets is None:
            if batch.target is None and not callable(self.output):
                raise RuntimeError("internal: target must be resolved before gradients()")
            targets = None if batch.target is None else batch.target[examples.to(batch.target.device)]
        elif targets.shape != (R,):
            raise ValueError(f"targets must have shape ({R},); got {tuple(targets.shape)}")
        values = torch.empty(R, dtype=batch.acc_dtype, device=points.device)
        grads = torch.empty_like(points)
        step = self.rows_per_chunk(batch, total=R)
        s = 0
        while s < R:
            p = points[s:s + step].detach().requires_grad_(True)
            ex = examples[s:s + step]
            args = batch.args_for(ex) if batch.args else ()
            try:
                with torch.enable_grad(), self._context(p.device):
                    out = check_model_output(self.model(p, *args), p.shape[0], self.output)
                    if s == 0:
                        check_target_range(targets, out, self.output)
                    f = select_output(out, None if targets is None else targets[s:s + step], self.output)
                    g = torch.autograd.grad(f.sum(), p, allow_unused=True)[0] if f.requires_grad else None
            except torch.OutOfMemoryError:
                out = f = g = None
                step = self._back_off(step)
                continue
            values[s:s + p.shape[0]] = f.detach()
            grads[s:s + p.shape[0]] = 0 if g is None else g
            s += p.shape[0]
        if check_finite:
            _check_finite_values(values, "F at the requested points")
            if not all_finite(grads):
                raise FloatingPointError("the model's gradient is NaN or Inf at some requested points")
        return values, grads

    # ------------------------------------------------------------ gradient pass
    def integrate(self, batch: PathBatch, alphas: torch.Tensor, weights: torch.Tensor, importance: str = "none",
                  baseline_values: Optional[torch.Tensor] = None) -> PathIntegral:
        """Fold sum_k w_k * scale_k * dF/dp(alpha_k) for every input.

        importance: "none" (scale 1: IG), "exact" (scale = g . (x - x'), IDG) or
        "finite_difference" (scale = backward difference of F between consecutive
        samples, starting from F(x') at alpha 0, given as `baseline_values`).
        """
        if importance not in IMPORTANCE:
            raise ValueError(f"importance must be one of {IMPORTANCE}; got {importance!r}")
        if batch.target is None and not callable(self.output):
            raise RuntimeError("internal: target must be resolved before the gradient pass")
        if self.graphs is not None and self.graphs.supports(batch, importance):
            return self.graphs.integrate(batch, alphas, weights, importance)
        B, S = alphas.shape
        dev = batch.x.device
        a = self._alphas_on_device(batch, alphas)
        w = weights if weights.dtype == batch.acc_dtype and weights.device == dev else weights.to(dev, batch.acc_dtype)
        if self._single_chunk_ok(batch, B * S, importance):
            try:
                return self._integrate_single_chunk(batch, a, w, importance == "exact")
            except torch.OutOfMemoryError:
                self._back_off(B * S)  # remembers a smaller cap: the chunk loop below takes over
        diff = batch.diff()
        D = batch.features
        diff2 = diff.view(B, D)
        acc = torch.zeros(batch.x.shape, dtype=batch.acc_dtype, device=dev)
        acc2 = acc.view(B, D)
        # F at each row, chunk by chunk (one chunk: no copy at all); finite differences
        # read earlier rows, so they need the whole vector written as it grows.
        fd_mode = importance == "finite_difference"
        values = torch.empty(B * S, dtype=batch.acc_dtype, device=dev) if fd_mode else None
        chunks, scale_chunks = [], []
        step = self.rows_per_chunk(batch, total=B * S)
        which = self._backend(batch)
        on = self._ranges
        s = 0
        while s < B * S:
            n = min(step, B * S - s)
            try:
                with stage("interpolate", on):
                    points = self._points(batch, a, s, n, min(step, B * S), which).detach().requires_grad_(True)
                with torch.enable_grad():
                    with stage("forward", on):
                        out = self._forward(batch, points, s, S)
                        if s == 0 and not self._capturing:
                            self.check_target(batch, out)
                        f = select_output(out, self._row_select(batch, s, n, S), self.output)
                    with stage("backward", on):
                        if f.requires_grad:
                            (g,) = torch.autograd.grad(f.sum(), points, allow_unused=True)
                        else:  # the output does not depend on the input at all
                            g = None
            except torch.OutOfMemoryError:
                out = f = points = g = None
                step = self._back_off(step)
                continue
            with stage("fold", on):
                g2 = fastpath.as_rows(g, n, D) if g is not None else torch.zeros((n, D), dtype=points.dtype, device=dev)
                if fd_mode:
                    values[s:s + n].copy_(f.detach())
                else:
                    chunks.append(f.detach())
                if importance == "exact":
                    scale_chunks.append(fastpath.accumulate_rows(g2, diff2, w, acc2, s, True, None, which))
                elif importance == "finite_difference":
                    fd = self._finite_difference(values, a.to(batch.acc_dtype), baseline_values, s, n, S, g2, diff2,
                                                 batch.row_examples(s, n, S))
                    scale_chunks.append(fd)
                    fastpath.accumulate_rows(g2, diff2, w, acc2, s, False, fd, which)
                else:
                    fastpath.accumulate_rows(g2, diff2, w, acc2, s, False, None, which)
            s += n
        if not self._capturing:
            check_integral_finite(acc)
        if not fd_mode:
            values = _joined(chunks, batch.acc_dtype)
        scales = _joined(scale_chunks, batch.acc_dtype).view(B, S) if scale_chunks else None
        return PathIntegral(acc, values.view(B, S), scales)

    def _single_chunk_ok(self, batch: PathBatch, rows: int, importance: str = "none", forward_only: bool = False) -> bool:
        """The common small case on CPU: every path row in one chunk, one dtype throughout,
        no extra args, no profiling ranges. It runs without the chunk loop's bookkeeping,
        which at batch 1 on a 2 ms model is measurable (see _integrate_single_chunk)."""
        return (not batch.x.is_cuda and self.backend != "triton" and not batch.args and not self._ranges
                and importance != "finite_difference" and batch.x.dtype == batch.acc_dtype
                and rows <= self.rows_per_chunk(batch, forward_only=forward_only, total=rows))

    def _single_chunk_points(self, batch: PathBatch, a: torch.Tensor) -> torch.Tensor:
        """All B*S path points, b + a (x - b) (multiply, then add: the kernel's roundings),
        written into the reused buffer: (B*S, *shape)."""
        B, S = a.shape
        n, D = B * S, batch.features
        buf = self._buffer
        if buf is None or buf.shape[0] < n or buf.shape[1] != D or buf.dtype != batch.x.dtype or buf.device != batch.x.device:
            buf = self._buffer = torch.empty((n, D), dtype=batch.x.dtype, device=batch.x.device)
        flat = buf if buf.shape[0] == n else buf[:n]
        p3 = flat.view(B, S, D)
        torch.mul(a.unsqueeze(2), batch.diff().view(B, 1, D), out=p3)
        if not batch.zero_baseline:
            p3.add_(batch.baseline.reshape(-1, 1, D))
        return flat.view((n,) + tuple(batch.x.shape[1:]))

    def _path_values_single_chunk(self, batch: PathBatch, a: torch.Tensor) -> torch.Tensor:
        """`path_values` for all rows in one forward-only chunk on CPU (see _single_chunk_ok)."""
        B, S = a.shape
        with torch.no_grad():
            out = check_model_output(self.model(self._single_chunk_points(batch, a)), B * S, self.output)
            self.check_target(batch, out)
            values = select_output(out, self._row_select(batch, 0, B * S, S), self.output)
        values = (values if values.dtype == batch.acc_dtype else values.to(batch.acc_dtype)).view(B, S)
        _check_finite_values(values, "F along the path")
        return values

    def _integrate_single_chunk(self, batch: PathBatch, a: torch.Tensor, w: torch.Tensor,
                                exact: bool) -> PathIntegral:
        """`integrate` for all B*S rows in one chunk on CPU, in the fewest torch calls.

        Same formulas as the chunk loop with the torch backend (points b + a (x - b),
        IF = g . (x - x'), acc = sum_k w_k IF_k g_k as one batched product per input; for
        IG the weights w_k seed the backward and acc is one sum over k), so the results
        agree to rounding; it exists because each small op costs a few microseconds on
        this path (measured: benchmarks/cpu.py, digits CNN at batch 1).
        """
        B, S = a.shape
        n, D = B * S, batch.features
        points = self._single_chunk_points(batch, a).detach().requires_grad_(True)
        with torch.enable_grad():
            out = check_model_output(self.model(points), n, self.output)
            self.check_target(batch, out)
            f = select_output(out, self._row_select(batch, 0, n, S), self.output)
            g = None
            if f.requires_grad and exact:
                g = torch.autograd.grad(f.sum(), points, allow_unused=True)[0]
            elif f.requires_grad:  # IG: the weights ride on the backward, the fold is one sum over k
                wr = w.reshape(-1)
                g = torch.autograd.grad(f, points, grad_outputs=wr if wr.dtype == f.dtype else wr.to(f.dtype),
                                        allow_unused=True)[0]
        g3 = torch.zeros((B, S, D), dtype=batch.x.dtype) if g is None else g.reshape(B, S, D)
        scales = None
        if exact:
            scales = torch.bmm(g3, batch.diff().view(B, D, 1)).view(B, S)
            acc = torch.bmm((w * scales).unsqueeze(1), g3).view(batch.x.shape)
        else:
            acc = g3.sum(1).view(batch.x.shape)
        check_integral_finite(acc)
        values = f.detach()
        return PathIntegral(acc, (values if values.dtype == batch.acc_dtype else values.to(batch.acc_dtype)).view(B, S),
                            scales)

    @staticmethod
    def _finite_difference(values, alphas, baseline_values, start, n, S, g, diff, examples):
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


def chunk_rows(internal_batch_size: Optional[int], probe_batch_size: Optional[int], oom_rows: int, features: int,
               device_type: str, forward_only: bool = False, total: Optional[int] = None) -> int:
    """`PathEngine.rows_per_chunk` from its parts (the latency path asks without an engine)."""
    if forward_only and probe_batch_size:
        rows = probe_batch_size
    elif internal_batch_size is not None:
        rows = 2 * internal_batch_size if forward_only else internal_batch_size
    else:
        kind = device_type if device_type in _BUDGET else "cpu"
        rows = int(min(_MAX_ROWS[kind], max(MIN_ROWS, _BUDGET[kind] // max(1, features))))
        rows = 2 * rows if forward_only else rows
        if total is not None and total > 0:
            calls = -(-total // rows)
            rows = -(-total // calls)
    return min(rows, oom_rows) if oom_rows else rows


def _joined(chunks, dtype: torch.dtype) -> torch.Tensor:
    """Per-chunk vectors as one, in `dtype` (a single chunk is not copied)."""
    return (chunks[0] if len(chunks) == 1 else torch.cat(chunks)).to(dtype)


def _check_finite_values(values: torch.Tensor, what: str) -> None:
    """No silent NaNs: a non-finite model output stops the call and says where."""
    if not all_finite(values):
        bad = (~torch.isfinite(values.reshape(values.shape[0], -1))).any(1).nonzero().flatten()[:5].tolist()
        raise FloatingPointError(f"the model's output is NaN or Inf: {what}, for inputs {bad}")


def check_integral_finite(acc: torch.Tensor) -> None:
    """No silent NaNs: a non-finite path integral stops the call and names the inputs."""
    if not all_finite(acc):
        bad = (~torch.isfinite(acc.reshape(acc.shape[0], -1))).any(1).nonzero().flatten()[:5].tolist()
        raise FloatingPointError(
            f"the path integral is not finite for inputs {bad}: the model produced NaN/Inf gradients or outputs "
            f"along the path (check for overflow, e.g. under fp16 autocast)"
        )


def check_values_finite(values: torch.Tensor, what: str) -> None:
    _check_finite_values(values, what)
