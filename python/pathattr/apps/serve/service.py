"""An ExplanationService ties a ModelSpec, its Explainer, the DynamicBatcher, the
metrics and the readiness flag together; `build_app` puts HTTP in front of it."""
from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any, Dict, List, Optional

import torch

from ...explainer import Explainer
from .batcher import DynamicBatcher
from .codec import BadRequest
from .metrics import ServiceMetrics
from .spec import ModelSpec

log = logging.getLogger("pathattr.serve")


class ServiceBase:
    """What every service shares (ExplanationService, serve/text.py's TextExplanationService):
    the checked limits, the metrics, readiness, and the worker that warms up first."""

    def _setup(self, max_batch, timeout_ms, max_body_bytes, auto_warmup, torch_threads) -> None:
        """Check the shared arguments (ValueError naming them) and set the shared state;
        subclasses then set `self.batcher` and define `warmup`."""
        for name, v in (("timeout_ms", timeout_ms), ("max_body_bytes", max_body_bytes)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if torch_threads is not None and (isinstance(torch_threads, bool) or not isinstance(torch_threads, int)
                                          or torch_threads < 1):
            raise ValueError(f"torch_threads must be None or an int >= 1, got {torch_threads!r}")
        self.metrics = ServiceMetrics()
        self.max_batch, self.timeout_ms, self.max_body_bytes = max_batch, float(timeout_ms), int(max_body_bytes)
        self.auto_warmup, self.torch_threads = bool(auto_warmup), torch_threads
        self.warmup_error: Optional[str] = None
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        """Start the worker; with auto_warmup it warms up first (on the worker thread, the
        one thread that runs the model from then on)."""
        self.batcher.start(on_start=self._on_worker_start)

    def _on_worker_start(self) -> None:
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        if self.auto_warmup:
            self.warmup()

    def _mark_ready(self) -> None:
        self._ready.set()
        self.metrics.ready.set(1)

    def close(self) -> None:
        """Finish every queued request and stop the worker."""
        self._ready.clear()
        self.metrics.ready.set(0)
        self.batcher.close()


class ExplanationService(ServiceBase):
    """Serve one model with one method.

    Args:
        spec: the ModelSpec (model, name, input shape, dtype, classes).
        method: a method of `pathattr.methods.REGISTRY` (default "idg").
        max_batch: most instances attributed in one call, and per request (default 32).
        max_wait_ms: how long a request waits for others to join its batch (default 5).
        max_queue: most instances waiting before requests get 503 (default 1024).
        timeout_ms: default per-request deadline (default 30000).
        max_body_bytes: largest request body (default 8 MiB).
        auto_warmup: warm up in a background thread when the app starts (default True);
            False: call `warmup()` yourself (/readyz answers 503 until then).
        torch_threads: None (torch's default) or the intra-op threads of the worker (set on
            the worker thread; for a small model on a few cores 1 can be faster, since the
            event loop and the clients need the other cores).
        explainer_kwargs: passed to Explainer (method settings such as n_steps, backend...).
    """

    def __init__(self, spec: ModelSpec, method: str = "idg", *, max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 1024, timeout_ms: float = 30_000.0, max_body_bytes: int = 8 << 20,
                 auto_warmup: bool = True, torch_threads: Optional[int] = None, explainer_kwargs: Optional[Dict[str, Any]] = None):
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
        self._setup(max_batch, timeout_ms, max_body_bytes, auto_warmup, torch_threads)
        self.spec = spec
        kw = dict(explainer_kwargs or {})
        if spec.autocast is not None:
            kw.setdefault("autocast", spec.autocast)
        self.explainer = Explainer(spec.model, method, max_batch=max_batch, **kw)
        self.batcher = DynamicBatcher(self.explainer, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                      max_queue=max_queue, metrics=self.metrics)
        self._by_rtol: Dict[float, Any] = {}

    def explainer_for(self, rtol: Optional[float]):
        """The Explainer for a request's rtol (None: the service's own), kept per value;
        a BadRequest (422) where the method has no rtol."""
        if rtol is None:
            return None
        ex = self._by_rtol.get(rtol)
        if ex is None:
            try:
                ex = self.explainer.with_settings(rtol=rtol)
            except (TypeError, ValueError) as err:
                raise BadRequest(422, f"parameters.rtol: {err}") from None
            if len(self._by_rtol) < 16:  # a few distinct values are usual; do not grow without bound
                self._by_rtol[rtol] = ex
        return ex

    @property
    def method(self) -> str:
        return self.explainer.method

    def warmup_sizes(self) -> List[int]:
        """The batch sizes the warm-up runs. On CPU only 1: nothing is captured or tuned
        per shape there, so a call at --max-batch only costs start-up time (resnet18 at
        3x112x112 took 182 s to be ready at max_batch 32). On CUDA 1 and max_batch: cuDNN
        picks its algorithms per shape, and with cuda_graphs each shape is captured."""
        return [1] if self.spec.device.type == "cpu" else sorted({1, self.max_batch})

    def warmup(self) -> None:
        """Learn the number of classes, run the Explainer on the warm-up batch sizes, then
        mark the service ready. Progress and failures are logged (logger pathattr.serve);
        a failure also shows on /readyz."""
        spec = self.spec
        t0 = time.perf_counter()
        try:
            x = torch.zeros((1,) + spec.input_shape, dtype=spec.dtype, device=spec.device)
            with torch.no_grad():
                out = self.explainer.engine.runner.call(x)  # the one place that calls the model
            if spec.num_classes is None and isinstance(out, torch.Tensor) and out.dim() == 2:
                spec.num_classes = int(out.shape[1])
            sizes = self.warmup_sizes()
            for i, b in enumerate(sizes, 1):
                log.info("warm-up %d/%d: %s on a batch of %d %s on %s", i, len(sizes), self.explainer.method, b,
                         "x".join(map(str, spec.input_shape)), spec.device)
                t = time.perf_counter()
                self.explainer.warmup(spec.input_shape, batch_size=b, dtype=spec.dtype, device=spec.device)
                log.info("warm-up %d/%d done in %.2f s", i, len(sizes), time.perf_counter() - t)
        except Exception as err:  # keep serving /healthz and say why on /readyz and in the log
            self.warmup_error = "".join(traceback.format_exception_only(type(err), err)).strip()
            log.error("warm-up failed after %.2f s; the service stays unready (see /readyz): %s",
                      time.perf_counter() - t0, self.warmup_error, exc_info=err)
            return
        self._mark_ready()
        log.info("ready: model %r, method %s, %.2f s of warm-up", spec.name, self.explainer.method,
                 time.perf_counter() - t0)
