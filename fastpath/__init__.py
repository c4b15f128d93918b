"""Fast path: Triton kernels for the straight-path engine, each with a torch fallback.

`interpolate` builds path points, `accumulate` folds path gradients into attributions.
Both run as Triton kernels on CUDA (or on CPU under ``TRITON_INTERPRET=1``) and as
plain torch elsewhere; `resolve_backend` decides which. The `*_rows` variants skip
validation for a caller (the engine) that has validated the whole batch once.
"""
from ._config import as_rows, resolve_backend, triton_available
from .accumulate import accumulate, accumulate_rows
from .interpolate import interpolate, interpolate_rows

__all__ = ["interpolate", "accumulate", "interpolate_rows", "accumulate_rows", "triton_available",
           "resolve_backend", "as_rows"]
