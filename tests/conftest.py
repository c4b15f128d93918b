"""Shared test setup.

Without a GPU, TRITON_INTERPRET=1 must be set before the first `import triton`
anywhere, so that the Triton kernels run on CPU tensors (interpreter mode). With a
GPU it is left unset, so the `cuda` tests run the compiled kernels natively.
(`import torch` does not import triton, so asking torch about CUDA first is safe.)
"""
import os
import zlib

import numpy as np
import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"


def _runs_triton_on_cpu(item) -> bool:
    # Marked explicitly, or parametrised with the "triton" backend (ids like [slice-triton]).
    params = item.nodeid.partition("[")[2]
    return "interpreter" in item.keywords or ("triton" in params.split("]")[0].split("-"))


def pytest_collection_modifyitems(config, items):
    # The skip rules: `cuda` tests need a GPU; kernels on CPU tensors need the
    # interpreter, which is off on a GPU machine (Triton decides at import time).
    # Everything is collected everywhere.
    no_gpu = pytest.mark.skip(reason="needs a CUDA device")
    no_interp = pytest.mark.skip(reason="runs Triton on CPU tensors; TRITON_INTERPRET is off (GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            if not HAS_CUDA:
                item.add_marker(no_gpu)
        elif not INTERPRETER and _runs_triton_on_cpu(item):
            item.add_marker(no_interp)


@pytest.fixture
def seed(request):
    """A per-test seed derived from the test's name, so failures reproduce."""
    s = zlib.crc32(request.node.nodeid.encode()) + int(os.environ.get("PATHATTR_SEED_OFFSET", "0"))
    torch.manual_seed(s)
    np.random.seed(s)
    return s


def assert_close(actual, expected, rtol, atol, what="values"):
    """torch.testing-like check that reports where the worst mismatch is."""
    # Python floats and lists are read as float64 (torch.as_tensor would make them float32).
    a = (actual if isinstance(actual, torch.Tensor) else torch.as_tensor(np.asarray(actual, dtype=np.float64)))
    e = (expected if isinstance(expected, torch.Tensor) else torch.as_tensor(np.asarray(expected, dtype=np.float64)))
    a, e = a.detach().cpu().double(), e.detach().cpu().double()
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {tuple(a.shape)} != expected {tuple(e.shape)}")
    if not torch.isfinite(a).all():
        bad = (~torch.isfinite(a)).nonzero()[:5].tolist()
        raise AssertionError(f"{what}: non-finite values at {bad}")
    if isinstance(atol, torch.Tensor):  # an elementwise error scale (e.g. sums of |terms|)
        atol = atol.detach().cpu().double()
    err = (a - e).abs()
    tol = atol + rtol * e.abs()
    if (err > tol).any():
        idx = torch.argmax(err - tol)
        where = np.unravel_index(int(idx), tuple(a.shape)) if a.dim() else ()
        raise AssertionError(
            f"{what}: {(err > tol).sum().item()} of {a.numel()} differ; worst at {where}: "
            f"got {a.flatten()[idx].item():.17g}, expected {e.flatten()[idx].item():.17g}, "
            f"|diff| {err.flatten()[idx].item():.3g} > tol {tol.flatten()[idx].item():.3g} "
            f"(max rel err {(err / e.abs().clamp_min(1e-300)).max().item():.3g})"
        )


@pytest.fixture
def one_thread():
    """One OpenMP thread: two spin against each other on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _fresh_function_warnings():
    """The function API's large-error warning is once per process: each test starts afresh."""
    from pathattr import explainer

    explainer._FUNCTIONS_WARNED.clear()
    yield
