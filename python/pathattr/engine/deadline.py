"""Per-call deadlines for the Explainer: fail fast instead of queueing forever.

A deadline is an absolute `time.monotonic()` value. A call waits for the Explainer's
lock only until its deadline, and refuses to start when the fastest run seen for a
batch of its size would already overshoot it. The first run of each size is not
counted: it pays one-time costs (allocation, oneDNN kernel builds, CUDA graph
capture) that would make the bound too pessimistic.
"""
from __future__ import annotations

import math
import numbers
import threading
import time
from typing import Any, Dict, Optional


class DeadlineExceeded(TimeoutError):
    """The call could not finish before its deadline; nothing was computed for it."""


def resolve_deadline(deadline: Any = None, timeout: Any = None) -> Optional[float]:
    """The absolute monotonic deadline from `deadline` (a `time.monotonic()` value) or
    `timeout` (seconds from now); the earlier of the two when both are given; None: no limit."""
    out = None
    for name, value in (("deadline", deadline), ("timeout", timeout)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise TypeError(f"{name} must be a finite number of seconds or None, got {value!r}")
        if name == "timeout" and value < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {value}")
        t = float(value) if name == "deadline" else time.monotonic() + float(value)
        out = t if out is None else min(out, t)
    return out


class CallTimer:
    """The fastest observed duration of a call per batch size, the first call of each
    size left out (thread-safe)."""

    def __init__(self):
        self._best: Dict[int, float] = {}
        self._seen: set = set()
        self._lock = threading.Lock()

    def record(self, batch: int, seconds: float) -> None:
        with self._lock:
            if batch not in self._seen:  # a cold call: one-time costs, not a bound
                self._seen.add(batch)
                return
            old = self._best.get(batch)
            self._best[batch] = seconds if old is None else min(old, seconds)

    def lower_bound(self, batch: int) -> float:
        """The fastest warm run seen for exactly `batch` inputs, in seconds (0.0 if none yet)."""
        with self._lock:
            return self._best.get(batch, 0.0)


def acquire_before(lock: threading.Lock, deadline: Optional[float]) -> None:
    """Take `lock`, waiting at most until `deadline`; DeadlineExceeded if it is not free in time."""
    if deadline is None:
        lock.acquire()
        return
    left = deadline - time.monotonic()
    if left <= 0 or not lock.acquire(timeout=left):
        raise DeadlineExceeded(f"deadline exceeded while waiting for the Explainer (another call held it for the "
                               f"whole {max(left, 0.0) * 1e3:.1f} ms that were left)")


def check_can_finish(deadline: Optional[float], timer: CallTimer, batch: int) -> None:
    """Raise DeadlineExceeded if even the fastest run seen for `batch` inputs would end past `deadline`."""
    if deadline is None:
        return
    left = deadline - time.monotonic()
    need = timer.lower_bound(batch)
    if left <= 0 or need > left:
        raise DeadlineExceeded(f"deadline exceeded: {max(left, 0.0) * 1e3:.1f} ms left, but a batch of {batch} "
                               f"has never taken less than {need * 1e3:.1f} ms")
