"""Shared test setup.

TRITON_INTERPRET must be set before the first `import triton` anywhere, so that the
Triton kernels run on CPU tensors (interpreter mode) on machines without a GPU.
"""
import os
import zlib

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    # One skip rule for the `cuda` marker: everything is collected everywhere.
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


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
