"""The engine: the straight-path stages composed, shared by every straight-path method.

    batch      validated inputs, baselines, targets, extra args   (batch.py)
    schedule   per example: S alphas and S weights                 (schedule.py, csrc)
    points     p = x' + alpha (x - x') for each (example, alpha)   (points.py, fastpath.interpolate)
    gradients  g = dF(p)/dp, in chunks of path points              (runner.py: the user's model)
    fold       acc += sum_k w_k * scale_k * g_k                     (fold.py, fastpath.accumulate)

`PathEngine` offers the passes the methods need: `endpoints` (F(x), F(x')),
`path_values` (forward only along the path), `integrate` (the gradient pass and fold)
and `gradients` (F and dF/dp at arbitrary points). Small CPU calls whose every path
row fits one chunk take one branch without the chunk loop's bookkeeping
(`_one_chunk`, chosen in one place); everything else runs the runner's chunk loop.
See docs/design.md.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch

from .. import fastpath
from . import batch as _batch
from . import fold as _fold
from . import schedule as schedules
from .batch import PathBatch
from .checks import all_finite, check_positive_int
from .fold import IMPORTANCE, check_integral_finite, check_values_finite
from .points import PathPoints, backend as _backend
from .profiling import stage
from .runner import MIN_ROWS, ModelRunner, chunk_rows  # noqa: F401  (re-exported for older imports)
from .targets import check_model_output, check_output, check_target_range, resolve_target, select_output

_GRAD = contextlib.nullcontext()  # grad mode already on: nothing to enter

__all__ = ["PathEngine", "PathBatch", "PathIntegral", "IMPORTANCE", "check_integral_finite", "check_values_finite"]


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
        internal_batch_size: path points per forward+backward chunk; None starts from a
            budget of input elements per chunk (2**17 on CPU; see runner.py), clamped to
            [16, 1024] points on CPU, [16, 4096] on CUDA, then keeps the fastest size
            measured on the model's own chunks (engine/chunk_tuning.py).
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
        self.output = check_output(output)
        ibs = check_positive_int(internal_batch_size, "internal_batch_size", allow_none=True)
        pbs = check_positive_int(probe_batch_size, "probe_batch_size", allow_none=True)
        if autocast is not None and autocast not in (torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be None, torch.bfloat16 or torch.float16; got {autocast!r}")
        if backend not in ("auto", "triton", "torch"):
            raise ValueError(f"backend must be 'auto', 'triton' or 'torch'; got {backend!r}")
        self.backend = backend
        if accumulate_dtype is not None and accumulate_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"accumulate_dtype must be None, torch.float32 or torch.float64; got {accumulate_dtype!r}")
        self.accumulate_dtype = accumulate_dtype
        self.runner = ModelRunner(model, autocast, ibs, pbs)
        self.points = PathPoints()
        self._zeros = None  # (key, tensor): the last default baseline
        self.graphs = None  # a graphs.GraphCache when the Explainer asked for CUDA graphs

    # The runner owns the model and its settings; these read and write through to it.
    model = property(lambda self: self.runner.model, lambda self, v: setattr(self.runner, "model", v))
    autocast = property(lambda self: self.runner.autocast, lambda self, v: setattr(self.runner, "autocast", v))
    internal_batch_size = property(lambda self: self.runner.internal_batch_size,
                                   lambda self, v: setattr(self.runner, "internal_batch_size", v))
    probe_batch_size = property(lambda self: self.runner.probe_batch_size,
                                lambda self, v: setattr(self.runner, "probe_batch_size", v))
    _ranges = property(lambda self: self.runner.ranges, lambda self, v: setattr(self.runner, "ranges", v))
    _capturing = property(lambda self: self.runner.capturing, lambda self, v: setattr(self.runner, "capturing", v))
    _oom_rows = property(lambda self: self.runner.oom_rows)
    _buffer = property(lambda self: self.points.buffer)

    def __copy__(self) -> "PathEngine":
        """A copy with its own runner state and buffers (CUDA-graph captures own theirs)."""
        new = object.__new__(PathEngine)
        new.__dict__.update(self.__dict__)
        new.runner = copy.copy(self.runner)
        new.points = PathPoints()
        return new

    def with_output(self, output) -> "PathEngine":
        """An engine on the same runner and buffers (one model, one OOM cap) that
        explains another output (e.g. AGI's softmax of varying classes)."""
        new = object.__new__(PathEngine)
        new.__dict__.update(self.__dict__)
        new.output = check_output(output)
        new.graphs = None
        return new

    # ------------------------------------------------------------------ set-up
    def prepare(self, inputs, baselines=None, target=None, additional_forward_args=None) -> PathBatch:
        return _batch.prepare(self.model, inputs, baselines, target, additional_forward_args, self.accumulate_dtype,
                              self._zeros_like_input)

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

    def check_output(self, out: Any, rows: int, batch: PathBatch, what: str = "path points") -> torch.Tensor:
        """The model's output for `rows` points of `batch`, in the user's terms when wrong
        (their batch size, not the internal row count)."""
        if isinstance(out, torch.Tensor) and type(self.output) is str:  # a plain named output: the hot path
            if out.dim() == 2 and out.shape[0] == rows:
                return out
            raise ValueError(
                f"the model's output has shape {tuple(out.shape)} when called on {rows} {what} for your batch of "
                f"{batch.inputs} inputs; expected (batch, classes), one row per point it is given: ({rows}, classes). "
                f"Pass output=callable f(model_output, target) -> (batch,) to explain another kind of output")
        return check_model_output(out, rows, self.output)  # callables, keys and raw outputs (engine/targets.py)

    def _row_select(self, batch: PathBatch, start: int, n: int, S: int):
        """What select_output needs for path rows [start, start + n): one int when every
        input has the same target and the output is named (a column view), else per-row targets."""
        r = batch.target_range
        if r is not None and r[0] is batch.target and r[1] == r[2] and isinstance(self.output, str):
            return r[1]
        return batch.row_targets(start, n, S)

    def rows_per_chunk(self, batch: PathBatch, forward_only: bool = False, total: Optional[int] = None) -> int:
        """Path points per model call (the runner's chunk sizing for this batch's inputs)."""
        return self.runner.rows(batch.features, batch.x.device.type, forward_only, total)

    def _backend(self, batch: PathBatch) -> str:
        return _backend(batch, self.backend)

    def probe_grid(self, batch: PathBatch, n_probe: int) -> torch.Tensor:
        """The N + 1 evenly spaced probe alphas for every input, (B, N + 1), in the dtype
        and on the device the passes use (cached per process: read only)."""
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

    def _one_chunk(self, batch: PathBatch, rows: int, importance: str = "none", forward_only: bool = False) -> bool:
        """The one place that chooses the one-chunk branch: the common small case on CPU
        (every path row in one chunk, one dtype throughout, no extra args, no profiling
        ranges), which runs without the chunk loop's bookkeeping (measurable at batch 1
        on a 2 ms model: benchmarks/cpu.py)."""
        return (not batch.x.is_cuda and self.backend != "triton" and not batch.args and not self.runner.ranges
                and not self.runner.capturing and importance != "finite_difference"
                and batch.x.dtype == batch.acc_dtype
                and rows <= self.runner.rows(batch.features, "cpu", forward_only, rows))

    # ----------------------------------------------------------------- forward
    def endpoints(self, batch: PathBatch, baselines: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """F(x) and F(x') for every input, in one forward-only pass over x and x'.

        Resolves target=None to the argmax of model(x) (stored on the batch). A
        shared baseline is evaluated once unless extra forward args are per input.
        With baselines=False only x is evaluated and F(x') is None.
        """
        B = batch.size
        per_input = not batch.shared_baseline or batch.batched_args()
        if not baselines:
            points, examples = batch.x, None
        else:
            base_rows = batch.baseline.expand_as(batch.x) if per_input else batch.baseline[:1]
            points = torch.cat([batch.x, base_rows.to(batch.x.dtype)], 0)
            examples = torch.cat([torch.arange(B), torch.arange(B) if per_input else torch.zeros(1, dtype=torch.long)])
        with stage("endpoints", self.runner.ranges):
            if self.graphs is not None and not batch.args and points.is_cuda and not callable(self.output):
                out = self.graphs.forward(batch, points)
            else:
                out = self.forward_rows(batch, points, examples, what="inputs and baselines")
        if batch.target is None:  # argmax of the logits at x, before any output callable runs
            batch.target = batch._checked_target = resolve_target(out[:B], self.output)  # in range by construction
        self.check_target(batch, out)
        f_x = select_output(out[:B], batch.target, self.output)
        check_values_finite(f_x, "F(x) at the inputs", batch)
        if not baselines:
            return f_x.to(batch.acc_dtype), None
        base_out = out[B:] if per_input else out[B:].expand((B,) + tuple(out.shape[1:]))
        f_b = select_output(base_out, batch.target, self.output)
        check_values_finite(f_b, "F(x') at the baselines", batch)
        return f_x.to(batch.acc_dtype), f_b.to(batch.acc_dtype)

    def forward_rows(self, batch: PathBatch, points: torch.Tensor, examples: Optional[torch.Tensor] = None,
                     what: str = "points") -> torch.Tensor:
        """The model's raw outputs on `points`, forward only, in chunks (rows' extra args
        from `examples`, the input index of each row; None: row r is input r)."""

        def make(s, n):
            if not batch.args:
                return points[s:s + n], ()
            ex = torch.arange(s, s + n) if examples is None else examples[s:s + n]
            return points[s:s + n], batch.args_for(ex.to(points.device))

        return self.runner.outputs(points.shape[0], batch.features, points.device.type, make,
                                   lambda out, s, n: self.check_output(out, n, batch, what))

    def path_values(self, batch: PathBatch, alphas: torch.Tensor, check_finite: bool = True) -> torch.Tensor:
        """F(x' + alpha (x - x')) for alphas (B, S), forward only: (B, S) in the accumulator dtype.

        check_finite=False leaves the NaN/Inf check to the caller (IDG's scheduler refuses a
        non-finite curve anyway; one reduction fewer per call)."""
        if self.graphs is not None and self.graphs.supports(batch):
            return self.graphs.path_values(batch, alphas)
        B, S = alphas.shape
        a = self._alphas_on_device(batch, alphas)
        runner = self.runner
        if self._one_chunk(batch, B * S, forward_only=True):
            try:
                with torch.no_grad():
                    out = self.check_output(runner.call(self.points.all(batch, a)), B * S, batch)
                    self.check_target(batch, out)
                    values = select_output(out, self._row_select(batch, 0, B * S, S), self.output)
                values = (values if values.dtype == batch.acc_dtype else values.to(batch.acc_dtype)).view(B, S)
                if check_finite:
                    check_values_finite(values, "F along the path", batch)
                return values
            except torch.OutOfMemoryError:
                runner.back_off(B * S)  # remembers a smaller cap: the chunk loop below takes over
        which = self._backend(batch)
        chunks = []

        def step(s, n):
            out = self.check_output(runner.call(self.points.rows(batch, a, s, n, which), self._args(batch, s, n, S)),
                                    n, batch)
            if s == 0 and not runner.capturing:
                self.check_target(batch, out)
            return select_output(out, self._row_select(batch, s, n, S), self.output)

        runner.chunks(B * S, batch.features, batch.x.device.type, step, lambda s, n, v: chunks.append(v),
                      forward_only=True, name="probe")
        values = _fold.joined(chunks, batch.acc_dtype).view(B, S)
        if check_finite and not runner.capturing:
            check_values_finite(values, "F along the path", batch)
        return values

    @staticmethod
    def _args(batch: PathBatch, start: int, n: int, S: int):
        return batch.args_for(batch.row_examples(start, n, S)) if batch.args else ()

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
        runner = self.runner

        def step(s, n):
            p = points[s:s + n].detach().requires_grad_(True)
            out = self.check_output(runner.call(p, batch.args_for(examples[s:s + n]) if batch.args else ()), n, batch)
            if s == 0:
                check_target_range(targets, out, self.output)
            f = select_output(out, None if targets is None else targets[s:s + n], self.output)
            return f.detach(), runner.backward(f, p)

        def keep(s, n, r):
            values[s:s + n] = r[0]
            grads[s:s + n] = 0 if r[1] is None else r[1]

        runner.chunks(R, batch.features, points.device.type, step, keep)
        if check_finite:
            for t, what in ((values, "F at the requested points"), (grads, "the model's gradient at the requested points")):
                if not all_finite(t):
                    rows = _fold._bad_rows(t)
                    who = batch.user_inputs(sorted(set(examples[rows].tolist())))[:5]
                    raise FloatingPointError(f"the model's output or gradient is NaN or Inf: {what}, for inputs {who}")
        return values, grads

    # ------------------------------------------------ ragged rows (rtol mode)
    def ragged(self, batch: PathBatch, examples: torch.Tensor, alphas: torch.Tensor,
               scaled: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """F, IF and the integrand at path rows (example e_r, alpha a_r) of many inputs.

        Rows of any inputs share each chunk (the runner's fixed-size chunks), so inputs
        that need few samples and inputs that need many are evaluated together; used by
        the error-controlled rounds of engine/tolerance.py (docs/methods.md §14).
        Returns values (R,), importance IF = g . (x - x') (R,) and the integrand rows
        (R, D): g * (x - x'), times IF when `scaled` (IDG), all in the accumulator dtype.
        """
        if self.graphs is not None and not self.runner.capturing and self.graphs.supports(batch, "exact"):
            return self.graphs.ragged(batch, examples, alphas, scaled)  # fixed-size chunks, replayed
        R = examples.shape[0]
        dev = batch.x.device
        D = batch.features
        acc = batch.acc_dtype
        d2 = batch.diff().view(batch.size, D)
        ex = examples.to(dev)
        a = alphas.to(device=dev, dtype=acc)
        targets = None if batch.target is None else batch.target[ex]
        values = torch.empty(R, dtype=acc, device=dev)
        importance = torch.empty(R, dtype=acc, device=dev)
        rows = torch.empty((R, D), dtype=acc, device=dev)
        runner = self.runner

        def step(s, n):
            e = ex[s:s + n]
            p = batch.points_at(e, a[s:s + n]).requires_grad_(True)
            out = self.check_output(runner.call(p, batch.args_for(e) if batch.args else ()), n, batch)
            if s == 0 and not runner.capturing:
                self.check_target(batch, out)
            f = select_output(out, None if targets is None else targets[s:s + n], self.output)
            return f.detach(), runner.backward(f, p)

        def keep(s, n, r):
            f, g = r
            e = ex[s:s + n]
            gd = torch.zeros((n, D), dtype=acc, device=dev) if g is None else g.reshape(n, D).to(acc) * d2[e]
            importance[s:s + n] = gd.sum(1)
            rows[s:s + n] = gd * importance[s:s + n, None] if scaled else gd
            values[s:s + n] = f

        runner.chunks(R, D, dev.type, step, keep)
        if not runner.capturing:  # a replay checks the rows it assembles (engine/graphs.py)
            _fold.check_ragged_finite(values, rows, ex, batch)
        return values, importance, rows

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
        if self._one_chunk(batch, B * S, importance):
            try:
                return self._integrate_one_chunk(batch, a, w, importance == "exact")
            except torch.OutOfMemoryError:
                self.runner.back_off(B * S)  # remembers a smaller cap: the chunk loop below takes over
        return self._integrate_chunks(batch, a, w, importance, baseline_values)

    def _integrate_one_chunk(self, batch: PathBatch, a: torch.Tensor, w: torch.Tensor, exact: bool) -> PathIntegral:
        """`integrate` for all B*S rows in one model call and one backward, folded in one
        batched product per input (fold.all_at_once): the fewest torch calls."""
        B, S = a.shape
        runner = self.runner
        points = self.points.all(batch, a).detach().requires_grad_(True)
        with _GRAD if torch.is_grad_enabled() else torch.enable_grad():  # (entering enable_grad costs frames)
            out = self.check_output(runner.call(points), B * S, batch)
            self.check_target(batch, out)
            f = select_output(out, self._row_select(batch, 0, B * S, S), self.output)
            g = runner.backward(f, points)
        acc, scales = _fold.all_at_once(batch, g, w, exact)
        check_integral_finite(acc, batch)
        values = f.detach()
        return PathIntegral(acc, (values if values.dtype == batch.acc_dtype else values.to(batch.acc_dtype)).view(B, S),
                            scales)

    def _integrate_chunks(self, batch: PathBatch, a: torch.Tensor, w: torch.Tensor, importance: str,
                          baseline_values: Optional[torch.Tensor]) -> PathIntegral:
        """The chunk loop: each chunk interpolated into the reused buffer, run forward and
        backward through the runner, and folded (memory bounded by one chunk)."""
        B, S = a.shape
        dev = batch.x.device
        D = batch.features
        diff2 = batch.diff().view(B, D)
        acc = torch.zeros(batch.x.shape, dtype=batch.acc_dtype, device=dev)
        acc2 = acc.view(B, D)
        # F at each row, chunk by chunk (one chunk: no copy at all); finite differences
        # read earlier rows, so they need the whole vector written as it grows.
        fd_mode = importance == "finite_difference"
        values = torch.empty(B * S, dtype=batch.acc_dtype, device=dev) if fd_mode else None
        chunks, scale_chunks = [], []
        which = self._backend(batch)
        runner = self.runner
        on = runner.ranges

        def step(s, n):
            with stage("interpolate", on):
                points = self.points.rows(batch, a, s, n, which).detach().requires_grad_(True)
            out = self.check_output(runner.call(points, self._args(batch, s, n, S)), n, batch)
            if s == 0 and not runner.capturing:
                self.check_target(batch, out)
            f = select_output(out, self._row_select(batch, s, n, S), self.output)
            return f.detach(), runner.backward(f, points), points.dtype

        def fold(s, n, r):
            f, g, dtype = r
            g2 = fastpath.as_rows(g, n, D) if g is not None else torch.zeros((n, D), dtype=dtype, device=dev)
            fd = None
            if fd_mode:
                values[s:s + n].copy_(f)
                fd = _fold.finite_difference(values, a.to(batch.acc_dtype), baseline_values, s, n, S, g2, diff2,
                                             batch.row_examples(s, n, S))
                scale_chunks.append(fd)
            else:
                chunks.append(f)
            scale = _fold.chunk(importance, g2, diff2, w, acc2, s, which, fd)
            if scale is not None:
                scale_chunks.append(scale)

        runner.chunks(B * S, D, dev.type, step, fold)
        if not runner.capturing:
            check_integral_finite(acc, batch)
        if not fd_mode:
            values = _fold.joined(chunks, batch.acc_dtype)
        scales = _fold.joined(scale_chunks, batch.acc_dtype).view(B, S) if scale_chunks else None
        return PathIntegral(acc, values.view(B, S), scales)
