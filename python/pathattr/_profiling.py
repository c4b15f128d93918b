"""Named stage ranges (probe, schedule, interpolate, forward, backward, fold) for profilers.

Off by default (each range costs a few microseconds of host time). With the
environment variable PATHATTR_PROFILE=1 every stage is a `torch.profiler`
record_function (so `key_averages()` splits the time by stage) and, on CUDA, an NVTX
range (so nsys / ncu timelines line up with the stages).
"""
from __future__ import annotations

import contextlib
import os

import torch


def enabled() -> bool:
    return os.environ.get("PATHATTR_PROFILE", "") == "1"


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


def stage(name: str, on: bool):
    """A context naming one stage `pathattr.<name>` when `on`, else a no-op."""
    return _both("pathattr." + name) if on else contextlib.nullcontext()
