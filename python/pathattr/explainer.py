"""The reusable entry point: an Explainer owns a model, a method's settings and the
engine's buffers, so repeated calls allocate nothing new and two Explainers can
live side by side in one process (no global state).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

import torch

from . import methods
from .engine.deadline import CallTimer, DeadlineExceeded, acquire_before, check_can_finish, resolve_deadline
from .engine.core import PathEngine
from .methods import distribution
from .engine.checks import check_positive_int
from .baselines.sets import DistributionBaseline

__all__ = ["Explainer", "DeadlineExceeded"]


class Explainer:
    """Explain a model's outputs with one method and fixed settings.

    Args:
        model: a torch.nn.Module (or callable) mapping (B, *shape) to (B, C) outputs.
            Use it in eval mode: BatchNorm in training mode mixes path points.
        method: "idg" (default), "ig", "left_ig", "guided_ig", "agi", "expected_gradients",
            "lpi", "icg" or "bshap" (aliases in `methods.ALIASES`).
        output: "logit" (default), "softmax", "log_softmax", or f(model_output, target) -> (B,).
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
    """

    def __init__(self, model, method: str = "idg", *, output="logit", internal_batch_size: Optional[int] = None,
                 probe_batch_size: Optional[int] = None, autocast: Optional[torch.dtype] = None,
                 backend: str = "auto", accumulate_dtype: Optional[torch.dtype] = None, cuda_graphs: bool = False,
                 max_batch: Optional[int] = None, **method_settings: Any):
        self._method = methods.get(method)
        self.settings = self._method.settings(**method_settings)
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
            inputs: (B, *shape) floating tensor, on the model's device, finite.
            baselines: None (zeros in the model's input space), a number, a tensor of
                shape `shape`, (1, *shape) or (B, *shape), or anything broadcastable to inputs.
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
            attributions (B, *shape) in the inputs' dtype; (attributions, delta) when
            return_convergence_delta; an AttributionResult when return_details.
        """
        limit = None if deadline is None and timeout is None else resolve_deadline(deadline, timeout)
        rows = inputs.shape[0] if isinstance(inputs, torch.Tensor) and inputs.dim() > 0 else None
        if self.max_batch is not None and rows is not None and rows > self.max_batch:
            raise ValueError(f"inputs has {rows} rows but this Explainer's max_batch is {self.max_batch}")
        acquire_before(self._lock, limit)
        try:
            if rows is not None and limit is not None:
                check_can_finish(limit, self._timer, rows)
            start = time.perf_counter()
            if torch.is_inference_mode_enabled():  # gradients need autograd: leave inference mode for the call
                with torch.inference_mode(False):
                    res = self._run(inputs, baselines, target, additional_forward_args, return_convergence_delta,
                                    return_details)
            else:
                res = self._run(inputs, baselines, target, additional_forward_args, return_convergence_delta,
                                return_details)
            if rows is not None:
                self._timer.record(rows, time.perf_counter() - start)
        finally:
            self._lock.release()
        if return_details:
            return res
        if return_convergence_delta:
            return res.attributions, res.delta
        return res.attributions

    def warmup(self, example_shape, batch_size: int = 1, dtype: Optional[torch.dtype] = None, device=None,
               target: Any = None, baselines: Any = None, **kwargs) -> "Explainer":
        """Run one call on random inputs of shape (batch_size, *example_shape) so buffers are
        allocated, cuDNN has chosen its algorithms and, with cuda_graphs, the passes of that
        shape are captured before the first real request. Returns self."""
        from .engine.checks import first_tensor

        if self.max_batch is not None and batch_size > self.max_batch:
            raise ValueError(f"batch_size ({batch_size}) must be <= max_batch ({self.max_batch})")

        ref = first_tensor(self.model)
        dev = torch.device(device) if device is not None else (ref.device if ref is not None else torch.device("cpu"))
        dt = dtype or (ref.dtype if ref is not None and ref.is_floating_point() else torch.float32)
        x = torch.rand((batch_size,) + tuple(example_shape), device=dev, dtype=dt)
        for _ in range(2):  # the first call captures; the second replays (checks the replay path)
            self.attribute(x, baselines=baselines, target=target, **kwargs)
        return self

    def _run(self, inputs, baselines, target, additional_forward_args, want_delta, want_details):
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
