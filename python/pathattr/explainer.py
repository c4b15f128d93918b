"""The reusable entry point: an Explainer owns a model, a method's settings and the
engine's buffers, so repeated calls allocate nothing new and two Explainers can
live side by side in one process (no global state).
"""
from __future__ import annotations

import threading
import time
import warnings
from typing import Any, Optional

import torch

from . import methods
from .engine import packing
from .engine.deadline import CallTimer, DeadlineExceeded, acquire_before, check_can_finish, resolve_deadline
from .engine.core import PathEngine
from .engine.runner import outside_inference_mode
from .methods import distribution
from .engine.checks import check_bool, check_device, check_device_of, check_positive_int, check_shape, first_tensor
from .baselines.sets import DistributionBaseline
from .result import AttributionResult

__all__ = ["Explainer", "DeadlineExceeded"]

# A fixed-step call whose completeness gap exceeds this warns (once per Explainer) and names rtol.
WARN_ESTIMATE = 0.05
_FUNCTIONS_WARNED: set = set()  # the function API builds an Explainer per call: it warns once per process


class Explainer:
    """Explain a model's outputs with one method and fixed settings.

    Args:
        model: a torch.nn.Module (or any callable) mapping (B, *shape) to (B, C) logits,
            returned as a tensor, a tuple/list (logits first), a dict or a Hugging Face
            ModelOutput (a "logits" entry); no wrapper needed. With a tuple of inputs it is
            called as model(x1, x2, ..., *additional_forward_args).
            Use it in eval mode: BatchNorm in training mode mixes path points.
        method: "idg" (default), "ig", "left_ig", "guided_ig", "agi", "expected_gradients",
            "lpi", "icg" or "bshap" (aliases in `methods.ALIASES`).
        output: what is explained of the model's output for class `target`:
            "logit" (default), "softmax" or "log_softmax" of the model's logits (the output
            itself if a tensor; its "logits" entry if a dict or ModelOutput; element 0 if a
            tuple or list); "KEY:FUNC", FUNC one of those three, for another entry: KEY is a
            dict/ModelOutput key or attribute, or an integer index into a tuple (e.g.
            "start_logits:softmax", "1:logit"); or a callable f(model_output, target) -> (B,)
            that gets the model's output as the model returned it (tensor, tuple, dict,
            ModelOutput) and a (B,) int64 target, never None: with target=None it is the
            argmax of the logits at the inputs (an error naming `target` if the output has
            no (B, C) logits). A bad string raises ValueError naming `output` at once.
        internal_batch_size: path points per forward+backward pass (None: measured default).
        probe_batch_size: path points per forward-only pass (None: measured default).
        autocast: None, torch.bfloat16 or torch.float16: run the model under autocast;
            accumulation stays fp32.
        backend: "auto" (Triton kernels for CUDA tensors, torch for CPU), "triton" or "torch".
        accumulate_dtype: None (fp64 for fp64 inputs, else fp32), torch.float32 or torch.float64.
        cuda_graphs: capture each new input shape's passes (forward-only endpoints and
            probe, gradient pass) as CUDA graphs and replay them on later calls of the
            same shape: no allocation, no per-kernel launch cost. CUDA inputs with named
            outputs and no extra forward args only; anything else, or a model that
            cannot be captured, runs eagerly (with one warning). Use `warmup` to capture
            before the first request.
        max_batch: None (no limit) or the largest number of inputs one `attribute` call
            accepts; larger calls raise ValueError (bounds a call's memory and latency;
            `pathattr.apps.serve` batches requests up to it).
        **method_settings: the method's own settings, e.g. n_steps, schedule, n_probe,
            rule (the quadrature rule, `method=` in the functions), importance, normalize (see `methods.ig.settings`
            and `methods.idg.settings`).
            Settings that count samples per input (n_steps, n_probe, n_references, n_alphas,
            n_permutations, max_iter) are at most `pathattr.engine.checks.MAX_STEPS` (100,000).

    Every argument is checked before the model first runs (ValueError/TypeError naming it).
    """

    def __init__(self, model, method: str = "idg", *, output="logit", internal_batch_size: Optional[int] = None,
                 probe_batch_size: Optional[int] = None, autocast: Optional[torch.dtype] = None,
                 backend: str = "auto", accumulate_dtype: Optional[torch.dtype] = None, cuda_graphs: bool = False,
                 max_batch: Optional[int] = None, **method_settings: Any):
        self._method = methods.get(method)
        self.settings = methods.settings_of(self._method, method_settings, f"Explainer(method={method!r})")
        self.engine = PathEngine(model, output=output, internal_batch_size=internal_batch_size,
                                 probe_batch_size=probe_batch_size, autocast=autocast, backend=backend,
                                 accumulate_dtype=accumulate_dtype)
        if not isinstance(cuda_graphs, bool):
            raise TypeError(f"cuda_graphs must be True or False, got {cuda_graphs!r}")
        if cuda_graphs:
            from .engine.graphs import GraphCache

            self.engine.graphs = GraphCache(self.engine)
        # The engine reuses one interpolation buffer: calls from several threads are
        # serialised so they cannot overwrite each other's path points.
        self._lock = threading.Lock()
        self.max_batch = check_positive_int(max_batch, "max_batch", allow_none=True)
        self._timer = CallTimer()  # fastest warm run per batch size: refuses calls that cannot meet their deadline
        self._warned = False  # the large-error warning is given once per Explainer
        self._warn_scope: Optional[str] = None  # set by the function API: once per process and function

    @property
    def method(self) -> str:
        return self._method.NAME

    @property
    def model(self):
        return self.engine.model

    def attribute(self, inputs: torch.Tensor, baselines: Any = None, target: Any = None,
                  additional_forward_args: Any = None, return_convergence_delta: bool = False,
                  return_details: bool = False, *, deadline: Optional[float] = None,
                  timeout: Optional[float] = None):
        """Attribute F (the `output` of class `target`) of every input to its features.

        Args:
            inputs: (B, *shape) floating tensor, on the model's device, finite; or a tuple of
                such tensors (x1, x2, ...), one per model input, with one B, on one device
                (methods "ig", "idg", "left_ig", "guided_ig", "expected_gradients"; the
                attributions are then a tuple, one per input, each of its input's shape and
                dtype; delta and details stay (B, ...) per input row).
            baselines: None (zeros in the model's input space), a number, a tensor of
                shape `shape`, (1, *shape) or (B, *shape), or anything broadcastable to inputs.
                With tuple inputs: None, one number for every input, or a tuple of one
                baseline per input (each None, a number or a tensor as above); a reference
                set (expected_gradients) or distribution_baseline(...) is a tuple of tensors
                (R, *shape_i) with one R.
            target: None (argmax of model(inputs), reported in details), an int, or B ints.
            additional_forward_args: extra positional args for the model; tensors whose
                first dimension is B are matched to their input's path points.
            return_convergence_delta: also return delta (B,) (see AttributionResult.delta).
            return_details: return an AttributionResult with the alphas, weights, probe
                curve, importance factors, targets and delta.
            deadline: None, or a `time.monotonic()` value by which the call must have started
                and be able to finish; timeout: the same in seconds from now. A call that waits
                for the lock past it, or whose batch size has never run in the time left,
                raises `pathattr.DeadlineExceeded` without computing anything (a call already
                running is not interrupted).

        Returns:
            attributions (B, *shape) in the inputs' dtype (a tuple of them for tuple inputs); (attributions, delta) when
            return_convergence_delta; an AttributionResult when return_details.
        """
        check_bool(return_convergence_delta, "return_convergence_delta")
        check_bool(return_details, "return_details")
        limit = None if deadline is None and timeout is None else resolve_deadline(deadline, timeout)
        first = inputs[0] if packing.is_tuple(inputs) and len(inputs) else inputs
        rows = first.shape[0] if isinstance(first, torch.Tensor) and first.dim() > 0 else None
        if self.max_batch is not None and rows is not None and rows > self.max_batch:
            raise ValueError(f"inputs has {rows} rows but this Explainer's max_batch is {self.max_batch}")
        acquire_before(self._lock, limit)
        try:
            if rows is not None and limit is not None and self.settings.get("rtol") is None:  # rtol: cut short instead
                check_can_finish(limit, self._timer, rows)
            start = time.perf_counter()
            res = self._run(inputs, baselines, target, additional_forward_args, return_convergence_delta,
                            return_details, limit)
            if rows is not None:
                self._timer.record(rows, time.perf_counter() - start)
        finally:
            self._lock.release()
        if return_details:
            return res
        if return_convergence_delta:
            return res.attributions, res.delta
        return res.attributions

    def with_settings(self, **changes: Any) -> "Explainer":
        """An Explainer of the same method on the same engine (model, buffers, learnt chunk
        sizes) with some method settings changed, e.g. rtol per request in the service.
        Checked like the constructor's (ValueError/TypeError naming the setting)."""
        merged = dict(self.settings)
        merged.update(changes)
        new = object.__new__(Explainer)
        new.__dict__.update(self.__dict__)
        new.settings = methods.settings_of(self._method, merged, f"Explainer(method={self.method!r})")
        new._lock = threading.Lock()
        new._timer = CallTimer()
        new._warned = False
        return new

    def warmup(self, example_shape, batch_size: int = 1, dtype: Optional[torch.dtype] = None, device=None,
               target: Any = None, baselines: Any = None, **kwargs) -> "Explainer":
        """Run one call on random inputs of shape (batch_size, *example_shape) so buffers are
        allocated, cuDNN has chosen its algorithms and, with cuda_graphs, the passes of that
        shape are captured before the first real request. Returns self."""
        shape = check_shape(example_shape, "example_shape")
        batch_size = check_positive_int(batch_size, "batch_size")
        if self.max_batch is not None and batch_size > self.max_batch:
            raise ValueError(f"batch_size ({batch_size}) must be <= max_batch ({self.max_batch})")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be None or a floating torch.dtype (the random inputs' dtype), got {dtype!r}")
        ref = first_tensor(self.model)
        dev = check_device(device) if device is not None else (ref.device if ref is not None else torch.device("cpu"))
        check_device_of(self.model, dev)
        dt = dtype or (ref.dtype if ref is not None and ref.is_floating_point() else torch.float32)
        x = torch.rand((batch_size,) + shape, device=dev, dtype=dt)
        for _ in range(2):  # the first call captures; the second replays (checks the replay path)
            self.attribute(x, baselines=baselines, target=target, **kwargs)
        return self

    @outside_inference_mode  # gradients need autograd: leave inference mode for the call
    def _run(self, inputs, baselines, target, additional_forward_args, want_delta, want_details, limit=None):
        settings = self.settings
        if limit is not None and settings.get("rtol") is not None:  # rtol mode stops refining at the deadline
            self.settings = dict(settings, deadline=limit)
        try:
            res = self._run_packed(inputs, baselines, target, additional_forward_args, want_delta, want_details)
        finally:
            self.settings = settings
        self._warn_if_inaccurate(res)
        return res

    def _warn_if_inaccurate(self, res) -> None:
        """Once per Explainer: a call whose error estimate is large says so and names rtol
        (docs/methods.md §14)."""
        if self._warned or not isinstance(res, AttributionResult) or self._warn_scope in _FUNCTIONS_WARNED:
            return
        est = res.extras.get("error_estimate")
        if est is None or not isinstance(est, torch.Tensor) or est.numel() == 0:
            return
        worst = float(est.max())
        rtol = self.settings.get("rtol")
        if rtol is not None:
            conv = res.extras.get("converged")
            if conv is None or bool(conv.all()):
                return
            msg = (f"{int((~conv).sum())} of {conv.numel()} inputs did not reach rtol={rtol:g} (worst estimated "
                   f"relative error {worst:.2g}) within max_steps={self.settings['max_steps']} or the deadline; "
                   f"raise max_steps to refine further")
            low = self.engine.autocast or (res.attributions.dtype if res.attributions.dtype in
                                           (torch.float16, torch.bfloat16) else None)
            if low is not None and rtol < torch.finfo(low).eps:
                msg = (f"rtol={rtol:g} is below what {low} arithmetic resolves (epsilon {torch.finfo(low).eps:.2g}): "
                       f"{int((~conv).sum())} of {conv.numel()} inputs stopped at that floor; compute in float32 "
                       f"(autocast=None) for a smaller error")
        elif worst > WARN_ESTIMATE:
            msg = (f"estimated relative error up to {worst:.2g} (the completeness gap) with n_steps="
                   f"{self.settings.get('n_steps')}; pass rtol= (e.g. rtol=0.01) to refine each input until its "
                   f"map is that accurate")
        else:
            return
        self._warned = True
        if self._warn_scope is not None:
            _FUNCTIONS_WARNED.add(self._warn_scope)
        warnings.warn(msg, RuntimeWarning, stacklevel=5)

    def _run_packed(self, inputs, baselines, target, additional_forward_args, want_delta, want_details):
        if packing.is_tuple(inputs):  # several inputs: packed into one, the model wrapped for the call
            return packing.attribute(self._run_one, self.engine, self.method, inputs, baselines, target,
                                     additional_forward_args, want_delta, want_details, self.settings.get("references"))
        return self._run_one(inputs, baselines, target, additional_forward_args, want_delta, want_details)

    def _run_one(self, inputs, baselines, target, additional_forward_args, want_delta, want_details):
        # A method with its own `prepare` reads `baselines` itself (a reference set, or
        # None for LPI's bank); a distribution_baseline expands the inputs into pairs.
        prepare = getattr(self._method, "prepare", None)
        if prepare is None and isinstance(baselines, DistributionBaseline):
            return distribution.attribute(self._method, self.engine, self.settings, inputs, baselines, target,
                                          additional_forward_args, want_delta, want_details)
        if prepare is not None:
            batch = prepare(self.engine, self.settings, inputs, baselines, target, additional_forward_args)
        else:
            batch = self.engine.prepare(inputs, baselines, target, additional_forward_args)
        return self._method.run(self.engine, batch, self.settings, want_delta=want_delta, want_details=want_details)

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"Explainer(method={self.method!r}, {cfg})"
