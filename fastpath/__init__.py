"""Fast path: Triton kernels for the straight-path engine, each with a torch fallback.

`interpolate` builds path points, `accumulate` folds path gradients into attributions.
Both run as Triton kernels on CUDA (or on CPU under ``TRITON_INTERPRET=1``) and as
plain torch elsewhere; `resolve_backend` decides which.
"""
from ._config import resolve_backend, triton_available
from .accumulate import accumulate
from .interpolate import interpolate

__all__ = ["interpolate", "accumulate", "triton_available", "resolve_backend"]
