"""Dynamic batching: one worker thread owns the Explainer and attributes together the
requests that arrive within `max_wait_ms` of the first one, up to `max_batch` rows,
then routes each request's rows back to its own future.

Requests are concurrent.futures.Future objects, so both threads and asyncio
(`asyncio.wrap_future`) can wait on them. A request cancelled by its caller, or past its
deadline, is dropped before the call. If a merged call fails, its requests are retried
one by one so that one bad request cannot fail the others; the worker never dies.
"""
from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future
from typing import Callable, Deque, List, Optional, Sequence

import torch

from ...engine.deadline import CallTimer, DeadlineExceeded


class QueueFull(RuntimeError):
    """The batcher holds `max_queue` rows already; try again later."""


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and accepts no new requests."""


class _Request:
    __slots__ = ("inputs", "targets", "deadline", "future", "explainer")

    def __init__(self, inputs, targets, deadline, explainer=None):
        self.inputs, self.targets, self.deadline, self.future = inputs, targets, deadline, Future()
        self.explainer = explainer  # None: the batcher's; else one with other settings (a request's rtol)


class DynamicBatcher:
    """Merge concurrent requests into Explainer calls.

    Args:
        explainer: a pathattr.Explainer; the batcher's worker thread is its only caller
            once started (a warm-up before `start` is fine).
        max_batch: most rows in one call (>= 1).
        max_wait_ms: how long the worker waits after a request arrives for more to join
            (0: take only what is already queued).
        max_queue: most rows waiting; `submit` raises QueueFull beyond it.
        metrics: a ServiceMetrics (optional).

    The result of each request's future is (attributions (n, *shape), targets (n,) int64).
    """

    def __init__(self, explainer, max_batch: int = 32, max_wait_ms: float = 5.0, max_queue: int = 1024, metrics=None):
        if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
        if not isinstance(max_wait_ms, (int, float)) or isinstance(max_wait_ms, bool) or not 0 <= max_wait_ms < 60_000:
            raise ValueError(f"max_wait_ms must be a number in [0, 60000), got {max_wait_ms!r}")
        if not isinstance(max_queue, int) or isinstance(max_queue, bool) or max_queue < max_batch:
            raise ValueError(f"max_queue must be an int >= max_batch ({max_batch}), got {max_queue!r}")
        self.explainer, self.max_batch, self.max_wait = explainer, max_batch, max_wait_ms / 1e3
        self.max_queue, self.metrics = max_queue, metrics
        self._queue: Deque[_Request] = collections.deque()
        self._rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self._timer = CallTimer()
        self._thread: Optional[threading.Thread] = None

    # -- the callers' side -------------------------------------------------------------
    def start(self, on_start: Optional[Callable[[], None]] = None) -> "DynamicBatcher":
        """Start the worker; it first runs `on_start` (e.g. the warm-up): keeping every
        torch call on one thread matters on CPU, where each calling thread gets its own
        OpenMP team and two teams fight over the cores (calls from a second thread ran
        2x slower on a 2-core machine)."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, args=(on_start,), name="pathattr-batcher",
                                                daemon=True)
                self._thread.start()
        return self

    def submit(self, inputs: torch.Tensor, targets: Sequence[Optional[int]], deadline: Optional[float] = None,
               explainer=None) -> Future:
        """Queue (n, *shape) inputs with n targets (None: argmax). Returns a Future.
        explainer: another Explainer for this request (e.g. `with_settings(rtol=...)`);
        only requests with the same explainer are merged."""
        n = self.rows_of(inputs)
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"inputs must have between 1 and max_batch ({self.max_batch}) rows, got {n}")
        if len(targets) != n:
            raise ValueError(f"targets has {len(targets)} entries for {n} rows")
        req = _Request(inputs, list(targets), deadline, explainer)
        with self._cond:
            if self._closed:
                raise BatcherClosed("the service is shutting down")
            if self._rows + n > self.max_queue:
                raise QueueFull(f"{self._rows} instances are already queued (max_queue={self.max_queue})")
            self._queue.append(req)
            self._rows += n
            self._gauge()
            self._cond.notify()
        return req.future

    def close(self, timeout: Optional[float] = None) -> None:
        """Refuse new requests, finish every queued one, stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def queued_rows(self) -> int:
        return self._rows

    # -- the worker --------------------------------------------------------------------
    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self._rows)

    def _take(self) -> Optional[List[_Request]]:
        """Block for the next batch; None once closed and drained."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            batch = [self._queue.popleft()]
            rows = self.rows_of(batch[0].inputs)
            until = time.monotonic() + self.max_wait
            while rows < self.max_batch:
                if self._queue:
                    if rows + self.rows_of(self._queue[0].inputs) > self.max_batch:
                        break
                    if self._queue[0].explainer is not batch[0].explainer:  # another rtol: its own call
                        break
                    req = self._queue.popleft()
                    batch.append(req)
                    rows += self.rows_of(req.inputs)
                    continue
                left = until - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            self._rows -= rows
            self._gauge()
            return batch

    def _loop(self, on_start=None) -> None:
        if on_start is not None:
            on_start()
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self._serve(batch)
            except BaseException as err:  # never let the worker die: fail what is left
                for req in batch:
                    if not req.future.done():
                        req.future.set_exception(err)

    def _serve(self, batch: List[_Request]) -> None:
        live = []
        now = time.monotonic()
        for req in batch:
            if not req.future.set_running_or_notify_cancel():
                continue  # the caller gave up
            if req.deadline is not None and req.deadline <= now:
                self._expire(req, "deadline exceeded while queued")
            else:
                live.append(req)
        rows = sum(self.rows_of(r.inputs) for r in live)
        need = self._timer.lower_bound(rows)
        ok = []
        for req in live:  # a request whose deadline falls before the fastest call of this size would end
            if req.deadline is not None and req.deadline - now < need:
                self._expire(req, f"deadline exceeded: a batch of {rows} never took less than {need * 1e3:.1f} ms")
            else:
                ok.append(req)
        if not ok:
            return
        try:
            results = self._attribute(ok)
        except Exception:
            if len(ok) == 1:
                raise
            for req in ok:  # isolate the failing request(s)
                try:
                    (res,) = self._attribute([req])
                    req.future.set_result(res)
                except Exception as err:
                    req.future.set_exception(err)
            return
        for req, res in zip(ok, results):
            req.future.set_result(res)

    @staticmethod
    def rows_of(inputs) -> int:
        """Rows (instances) in one request's inputs: a tensor's first dimension here;
        a subclass batching other inputs (serve/text.py: lists of token ids) says its own."""
        return inputs.shape[0]

    def record(self, rows: int, n_requests: int, took: float) -> None:
        """One attribute call's size and time, for the deadline estimate and the metrics."""
        self._timer.record(rows, took)
        if self.metrics is not None:
            self.metrics.batch_size.observe(rows)
            self.metrics.batch_requests.observe(n_requests)
            self.metrics.compute.observe(took)

    def _expire(self, req: _Request, why: str) -> None:
        if self.metrics is not None:
            self.metrics.deadline_exceeded.inc()
        req.future.set_exception(DeadlineExceeded(why))

    def _attribute(self, reqs: List[_Request]):
        ex = reqs[0].explainer or self.explainer
        x = torch.cat([r.inputs for r in reqs])
        targets = [t for r in reqs for t in r.targets]
        dev = _device(ex.model)
        x = x.to(dev)
        # rtol mode refines until a little before the earliest deadline, then answers with
        # what it has (each explanation says its estimate and whether it converged).
        tol = getattr(ex, "settings", {}).get("rtol") is not None
        limit = _refine_until(reqs) if tol else None
        # The plain library call: rows without a target get the library's own argmax
        # (reported back in the result's targets); rows with one keep theirs. A batch that
        # mixes both makes one call per kind, so the batcher never runs the model itself.
        start = time.perf_counter()
        none = [i for i, t in enumerate(targets) if t is None]
        given = [i for i, t in enumerate(targets) if t is not None]
        attr = tout = None
        stats: dict = {}
        for rows in (none, given):
            if not rows:
                continue
            idx = torch.tensor(rows, device=dev)
            part = x if len(rows) == x.shape[0] else x.index_select(0, idx)
            tg = None if rows is none else torch.tensor([targets[i] for i in rows], dtype=torch.long, device=dev)
            if tg is None or tol:
                res = ex.attribute(part, target=tg, return_details=True, **({"deadline": limit} if tol else {}))
                a, t = res.attributions, res.target.to(dev)
            else:
                a, t, res = ex.attribute(part, target=tg), tg, None
            if attr is None:
                attr = torch.empty((x.shape[0],) + tuple(a.shape[1:]), dtype=a.dtype, device=a.device)
                tout = torch.empty(x.shape[0], dtype=torch.long, device=dev)
            attr[idx.to(attr.device)], tout[idx] = a, t
            if tol:
                for key in ("error_estimate", "converged", "n_evaluations"):
                    v = res.extras[key]
                    if key not in stats:
                        stats[key] = torch.empty(x.shape[0], dtype=v.dtype)
                    stats[key][idx.cpu()] = v.detach().cpu()
        self.record(x.shape[0], len(reqs), time.perf_counter() - start)
        attr = attr.detach().cpu()
        tout = tout.detach().cpu()
        sizes = [self.rows_of(r.inputs) for r in reqs]
        if not tol:
            return list(zip(torch.split(attr, sizes), torch.split(tout, sizes)))
        per = {k: torch.split(v, sizes) for k, v in stats.items()}
        return [(a, t, {k: per[k][i] for k in per}) for i, (a, t) in
                enumerate(zip(torch.split(attr, sizes), torch.split(tout, sizes)))]


# rtol calls stop refining this share of the time left before the earliest deadline (at
# least 5 ms), so the answer, its encoding and the response still fit.
ANSWER_MARGIN = 0.2


def _refine_until(reqs: List[_Request]) -> Optional[float]:
    deadlines = [r.deadline for r in reqs if r.deadline is not None]
    if not deadlines:
        return None
    first = min(deadlines)
    left = first - time.monotonic()
    return first - max(ANSWER_MARGIN * left, 0.005)


def _device(model) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for t in model.parameters():
            return t.device
    return torch.device("cpu")
