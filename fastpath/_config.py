"""Shared helpers for the fast-path ops: backend choice and block sizes.

Every op picks its backend with `resolve_backend` and its tile sizes with
`block_config`, so the rules live in one place instead of being repeated per file.
"""
from __future__ import annotations

import functools
import os

import torch

__all__ = [
    "triton_available",
    "resolve_backend",
    "next_power_of_2",
    "block_config",
    "check_grid_dim",
    "as_rows",
    "MAX_BLOCK",
    "MAX_GRID_Y",
]

# The largest tile any op may ask for (elements per program). Triton allows more,
# but beyond this registers spill and nothing is gained for elementwise work.
MAX_BLOCK = 16384
# CUDA limits grid dimensions 1 and 2 to 65535 programs (dimension 0 may be 2**31-1).
MAX_GRID_Y = 65535

_BACKENDS = ("auto", "triton", "torch")


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True when `triton` and `triton.language` import (checked once, then cached)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # ImportError, or a broken install raising something else
        return False
    return True


def _interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def resolve_backend(backend: str, *tensors: torch.Tensor) -> str:
    """Decide which implementation runs: ``"triton"`` or ``"torch"``.

    Args:
        backend: ``"auto"`` picks ``"triton"`` when every tensor is on CUDA and Triton
            imports, else ``"torch"``. ``"triton"`` insists on the kernel: allowed for
            CUDA tensors, or for CPU tensors when ``TRITON_INTERPRET=1`` is set and
            Triton imports (set it before ``pathattr.fastpath`` is first imported: the
            kernels are decorated, hence interpreted or compiled, at import time);
            otherwise a ``ValueError`` says why. ``"torch"`` always gives the plain-torch fallback.
        *tensors: the tensors the op will touch (``None`` entries are ignored).

    Returns:
        ``"triton"`` or ``"torch"``.
    """
    if not isinstance(backend, str) or backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    ts = [t for t in tensors if t is not None]
    all_cuda = bool(ts) and all(t.is_cuda for t in ts)
    if backend == "auto":
        return "triton" if all_cuda and triton_available() else "torch"
    # backend == "triton"
    if not triton_available():
        raise ValueError("backend='triton' but triton cannot be imported; install triton>=3.0 "
                         "or use backend='torch'")
    if all_cuda:
        return "triton"
    devices = sorted({str(t.device) for t in ts})
    if all(t.device.type == "cpu" for t in ts):
        if _interpreter_on():
            return "triton"
        raise ValueError("backend='triton' with CPU tensors needs the Triton interpreter: set "
                         "TRITON_INTERPRET=1 before the first `import triton`, or use "
                         "backend='torch' (or 'auto')")
    raise ValueError(f"backend='triton' needs all tensors on CUDA (or all on CPU under "
                     f"TRITON_INTERPRET=1); got devices {devices}")


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1)."""
    n = int(n)
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def _num_warps(block: int) -> int:
    # Roughly 4-16 elements per thread for elementwise tiles (32 threads per warp).
    if block < 512:
        return 2
    if block < 2048:
        return 4
    if block < 8192:
        return 8
    return 16


def block_config(n: int, cap: int, min_block: int = 16) -> tuple[int, int]:
    """Tile size and warp count for a dimension of ``n`` elements.

    Args:
        n: the length to cover (e.g. D features); tiles beyond it are masked.
        cap: the largest tile the op wants (a power of two, at most `MAX_BLOCK`);
            longer dimensions are covered by several tiles.
        min_block: the smallest tile (a power of two; Triton wants at least 16 for
            some layouts).

    Returns:
        ``(BLOCK, num_warps)`` with ``BLOCK = min(next_power_of_2(max(n, min_block)), cap)``.
    """
    for name, v in (("cap", cap), ("min_block", min_block)):
        if not isinstance(v, int) or v < 1 or v & (v - 1):
            raise ValueError(f"{name} must be a positive power of two, got {v!r}")
    if cap > MAX_BLOCK:
        raise ValueError(f"cap={cap} exceeds the hard limit MAX_BLOCK={MAX_BLOCK}")
    if min_block > cap:
        raise ValueError(f"min_block={min_block} exceeds cap={cap}")
    block = min(next_power_of_2(max(int(n), min_block)), cap)
    return block, _num_warps(block)


def check_grid_dim(n: int, what: str, limit: int = MAX_GRID_Y) -> int:
    """Raise a clear ValueError when a grid dimension exceeds the hardware limit."""
    if n > limit:
        raise ValueError(f"{what} needs {n} programs along one grid axis, over the CUDA "
                         f"limit of {limit}; the input is too large for this launch")
    return n


def as_rows(t: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """View ``t`` as ``(n, d)`` with a unit last stride, copying only when it must.

    Row strides are free (slices along dim 0 stay views); anything else that cannot be
    viewed that way (``x[..., ::2]``, transposes, channels_last) is copied once.
    """
    t2 = t.reshape(n, d)  # a view whenever the layout allows it
    if d > 1 and t2.stride(1) != 1:
        t2 = t2.contiguous()
    return t2
