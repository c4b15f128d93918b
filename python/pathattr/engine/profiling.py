"""Named stage ranges (probe, schedule, interpolate, forward, backward, fold) for profilers.

Off by default (each range costs a few microseconds of host time). With the
environment variable PATHATTR_PROFILE=1 (read when pathattr is imported) or
`set_profiling(True)` every engine created afterwards names its stages: each is a
`torch.profiler` record_function (so `key_averages()` splits the time by stage) and,
on CUDA, an NVTX range (so nsys / ncu timelines line up with the stages).
"""
from __future__ import annotations

import contextlib
import os

import torch


# Read once: os.environ.get costs ~15 us on a cold call path, and every Explainer asks.
_enabled = os.environ.get("PATHATTR_PROFILE", "") == "1"


def enabled() -> bool:
    return _enabled


def set_profiling(on: bool) -> None:
    """Turn the stage ranges on or off for engines (Explainers) created from now on."""
    global _enabled
    if not isinstance(on, bool):
        raise TypeError(f"on must be True or False, got {on!r}")
    _enabled = on


@contextlib.contextmanager
def _both(name: str):
    with torch.profiler.record_function(name):
        if torch.cuda.is_available():
            torch.cuda.nvtx.range_push(name)
            try:
                yield
            finally:
                torch.cuda.nvtx.range_pop()
        else:
            yield


_OFF = contextlib.nullcontext()  # reusable and reentrant: no object per stage when off


def stage(name: str, on: bool):
    """A context naming one stage `pathattr.<name>` when `on`, else a no-op."""
    return _both("pathattr." + name) if on else _OFF
