"""fastpath.interpolate: Triton (interpreter on CPU, native on CUDA) vs torch vs a naive loop."""
import importlib

import pytest
import torch

from conftest import assert_close
from layouts import KINDS, noncontig
from pathattr.fastpath import interpolate, resolve_backend, triton_available

_mod = importlib.import_module("pathattr.fastpath.interpolate")
_cfg = importlib.import_module("pathattr.fastpath._config")

BACKENDS = ("triton", "torch")


def naive(x, baseline, alphas, row_start, n_rows, dtype=torch.float64):
    """p[i] = b[e] + a[e, s] (x[e] - b[e]), one row at a time, every op in `dtype`."""
    S = alphas.shape[1]
    rows = []
    for i in range(n_rows):
        e, s = divmod(row_start + i, S)
        b = baseline[e if baseline.shape[0] > 1 else 0].to(dtype)
        rows.append(b + alphas[e, s].to(dtype) * (x[e].to(dtype) - b))
    return torch.stack(rows) if rows else torch.empty((0,) + tuple(x.shape[1:]), dtype=dtype)


def check_by_comparison(actual, ref64, plain, what):
    """Low-precision rule: error vs fp64 <= 2x the error of plain torch in that precision,
    plus one ulp of the largest value (so exact-by-luck plain results do not fail it)."""
    ref64 = ref64.double().cpu()
    err = (actual.double().cpu() - ref64).abs().max().item()
    base = (plain.double().cpu() - ref64).abs().max().item()
    atol = torch.finfo(plain.dtype).eps * ref64.abs().max().item()
    assert err <= 2 * base + atol, \
        f"{what}: max error {err:.3g} > 2 x plain {base:.3g} + {atol:.3g}"


def make(B, S, shape, dtype, shared, device="cpu", alpha_dtype=None):
    x = torch.randn((B,) + shape, dtype=dtype, device=device)
    b = torch.randn(((1 if shared else B),) + shape, dtype=dtype, device=device)
    a = torch.rand(B, S, dtype=alpha_dtype or dtype, device=device)
    return x, b, a


def random_chunk(B, S):
    total = B * S
    row_start = int(torch.randint(0, total, ()).item())
    n_rows = int(torch.randint(1, total - row_start + 1, ()).item())
    return row_start, n_rows


# --------------------------------------------------------------------------- fp64 exact
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(3, 7, 13), (1001,), (1,)])
@pytest.mark.parametrize("B,S", [(3, 4), (1, 5), (4, 1)])
@pytest.mark.parametrize("shared", [True, False])
def test_fp64_matches_naive(seed, backend, shape, B, S, shared):
    x, b, a = make(B, S, shape, torch.float64, shared)
    row_start, n_rows = random_chunk(B, S)
    p = interpolate(x, b, a, row_start, n_rows, backend=backend)
    assert p.shape == (n_rows,) + shape and p.dtype == torch.float64
    assert_close(p, naive(x, b, a, row_start, n_rows), 1e-14, 1e-14, "p")


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_rows_is_whole_batch(seed, backend):
    x, b, a = make(2, 3, (5,), torch.float64, False)
    assert_close(interpolate(x, b, a, backend=backend), naive(x, b, a, 0, 6), 1e-14, 1e-14, "p")
    p = interpolate(x, b, a, row_start=4, backend=backend)
    assert_close(p, naive(x, b, a, 4, 2), 1e-14, 1e-14, "p tail")
    assert interpolate(x, b, a, row_start=6, backend=backend).shape == (0, 5)


@pytest.mark.interpreter
def test_fp64_alpha_or_baseline_promotes_compute(seed):
    # fp32 x with fp64 alphas computes in fp64 and rounds once to fp32.
    x, b, _ = make(2, 3, (64,), torch.float32, True)
    a = torch.rand(2, 3, dtype=torch.float64)
    ref = naive(x, b, a, 0, 6).float()
    for backend in BACKENDS:
        p = interpolate(x, b, a, backend=backend)
        assert p.dtype == torch.float32
        assert_close(p, ref, 0, 0, f"p ({backend})")


# --------------------------------------------------------------- fp32 / fp16 by comparison
@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(3, 7, 13), (1001,), (1,)])
@pytest.mark.parametrize("shared", [True, False])
def test_low_precision_by_comparison(seed, dtype, shape, shared):
    B, S = 3, 4
    x, b, a = make(B, S, shape, dtype, shared)
    row_start, n_rows = random_chunk(B, S)
    ref = naive(x, b, a, row_start, n_rows)
    plain = naive(x, b, a, row_start, n_rows, dtype=dtype)
    pt = interpolate(x, b, a, row_start, n_rows, backend="triton")
    pc = interpolate(x, b, a, row_start, n_rows, backend="torch")
    assert pt.dtype == pc.dtype == dtype
    check_by_comparison(pt, ref, plain, "triton")
    check_by_comparison(pc, ref, plain, "torch")
    eps = torch.finfo(dtype).eps
    assert_close(pt, pc, eps, eps, "triton vs torch")


@pytest.mark.interpreter
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.float32])
def test_out_dtype_rounds_once(seed, out_dtype):
    # fp32/fp64 inputs, low-precision output: computed wide, rounded once on store.
    x, b, a = make(2, 5, (3, 7, 13), torch.float64, False)
    ref = naive(x, b, a, 3, 6)
    plain = naive(x.to(out_dtype), b.to(out_dtype), a.to(out_dtype), 3, 6, dtype=out_dtype)
    # Correctly rounded fp64 -> out_dtype (numpy rounds directly; torch's CPU fp64 -> fp16
    # goes through fp32 and may double-round at near-ties): accept either.
    direct = torch.from_numpy(ref.numpy().astype(str(out_dtype).replace("torch.", "")))
    for backend in BACKENDS:
        p = interpolate(x, b, a, 3, 6, out_dtype=out_dtype, backend=backend)
        assert p.dtype == out_dtype
        once = (p == direct) | (p == ref.to(out_dtype))
        assert once.all(), f"{backend}: {(~once).sum().item()} values not rounded once from fp64"
        check_by_comparison(p, ref, plain, backend)


# ------------------------------------------------------------------- layouts and tiles
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_non_contiguous_inputs(seed, backend, kind):
    B, S, shape = 3, 4, (3, 7, 13)
    x = noncontig(kind, B, shape, torch.float64)
    b = noncontig(kind, B, shape, torch.float64)[:1]
    a = torch.rand(S, B, dtype=torch.float64).t()  # transposed alphas
    assert not x.is_contiguous() and not a.is_contiguous()
    row_start, n_rows = random_chunk(B, S)
    p = interpolate(x, b, a, row_start, n_rows, backend=backend)
    assert p.is_contiguous()
    assert_close(p, naive(x, b, a, row_start, n_rows), 1e-14, 1e-14, f"p ({kind})")


@pytest.mark.interpreter
@pytest.mark.parametrize("shared", [True, False])
def test_several_ragged_tiles(seed, monkeypatch, shared):
    monkeypatch.setattr(_mod, "_BLOCK_CAP", 256)  # D = 1001 -> 4 tiles, the last ragged
    x, b, a = make(2, 3, (1001,), torch.float64, shared)
    p = interpolate(x, b, a, 1, 4, backend="triton")
    assert_close(p, naive(x, b, a, 1, 4), 1e-14, 1e-14, "p")


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_buffer_reuse(seed, backend):
    B, S, shape = 3, 4, (3, 7, 13)
    x, b, a = make(B, S, shape, torch.float32, True)
    buf = torch.full((6,) + shape, float("nan"), dtype=torch.float16)
    ptr = buf.data_ptr()
    for row_start, n_rows in [(0, 5), (5, 6), (11, 1)]:
        buf.fill_(float("nan"))
        p = interpolate(x, b, a, row_start, n_rows, out_dtype=torch.float16, out=buf,
                        backend=backend)
        assert p.data_ptr() == ptr and p.shape == (n_rows,) + shape
        # fp32 compute, one rounding to fp16: the same ops as the fp32 loop, then .half()
        expected = naive(x, b, a, row_start, n_rows, dtype=torch.float32).half()
        assert_close(p, expected, 0, 0, "p in out")
        assert torch.isnan(buf[n_rows:]).all(), "rows beyond n_rows must be left alone"
    # out_dtype defaults to out.dtype when out is given
    p = interpolate(x, b, a, 0, 2, out=buf, backend=backend)
    assert p.dtype == torch.float16 and p.data_ptr() == ptr


# ------------------------------------------------------------------------- validation
def _args():
    x = torch.randn(2, 3, 4)
    return dict(x=x, baseline=torch.zeros(1, 3, 4), alphas=torch.rand(2, 5))


@pytest.mark.parametrize(
    "change,exc,match",
    [
        (dict(baseline=torch.zeros(1, 4, 3)), ValueError, "baseline"),
        (dict(baseline=torch.zeros(3, 3, 4)), ValueError, "baseline"),
        (dict(baseline=torch.zeros(3, 4)), ValueError, "baseline"),
        (dict(alphas=torch.rand(10)), ValueError, "alphas"),
        (dict(alphas=torch.rand(3, 5)), ValueError, "alphas"),
        (dict(x=torch.ones(2, 3, 4, dtype=torch.int64)), TypeError, "x"),
        (dict(alphas=torch.ones(2, 5, dtype=torch.int32)), TypeError, "alphas"),
        (dict(baseline=[0.0]), TypeError, "baseline"),
        (dict(row_start=-1), ValueError, "row_start"),
        (dict(row_start=11), ValueError, "row_start"),
        (dict(row_start=1.0), TypeError, "row_start"),
        (dict(row_start=4, n_rows=7), ValueError, "n_rows"),
        (dict(n_rows=-1), ValueError, "n_rows"),
        (dict(out_dtype=torch.int32), TypeError, "out_dtype"),
        (dict(out=torch.empty(9, 3, 4)), ValueError, "out"),
        (dict(out=torch.empty(10, 4, 3)), ValueError, "out"),
        (dict(out=torch.empty(10, 3, 4, dtype=torch.float64), out_dtype=torch.float32),
         TypeError, "out"),
        (dict(out=torch.empty(4, 10, 3).permute(1, 2, 0)), ValueError, "out"),
        (dict(baseline=torch.zeros(1, 3, 4, device="meta")), ValueError, "device"),
        (dict(backend="cuda"), ValueError, "backend"),
    ],
)
def test_validation(change, exc, match):
    kw = _args()
    kw.update(change)
    with pytest.raises(exc, match=match):
        interpolate(**kw)


def test_triton_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        interpolate(**_args(), backend="triton")


# ---------------------------------------------------------------------- resolve_backend
def test_resolve_backend_on_cpu(monkeypatch):
    t = torch.zeros(2)
    assert triton_available()
    assert resolve_backend("auto", t) == "torch"
    assert resolve_backend("auto") == "torch"
    assert resolve_backend("torch", t) == "torch"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("triton", t, None) == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        resolve_backend("triton", t)
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("Triton", t)
    with pytest.raises(ValueError, match="backend"):
        resolve_backend(None, t)


def test_resolve_backend_mixed_devices_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ValueError, match="devices"):
        resolve_backend("triton", torch.zeros(1), torch.zeros(1, device="meta"))


def test_block_config():
    assert _cfg.block_config(1001, 4096) == (1024, 4)
    assert _cfg.block_config(1, 4096)[0] == 16
    assert _cfg.block_config(10**6, 4096)[0] == 4096
    assert _cfg.next_power_of_2(1) == 1 and _cfg.next_power_of_2(17) == 32
    with pytest.raises(ValueError, match="cap"):
        _cfg.block_config(10, 1000)
    with pytest.raises(ValueError, match="cap"):
        _cfg.block_config(10, 2 * _cfg.MAX_BLOCK)
    with pytest.raises(ValueError, match="65535"):
        _cfg.check_grid_dim(70000, "tiles")


# ------------------------------------------------------------------------ native CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 7, 13), (5001,), (1,), (3, 224, 224)])
@pytest.mark.parametrize("shared", [True, False])
def test_cuda_native(seed, dtype, shape, shared):
    B, S = 3, 5
    x, b, a = make(B, S, shape, dtype, shared, device="cuda")
    assert resolve_backend("auto", x) == "triton"
    row_start, n_rows = 2, 11
    ref = naive(x, b, a, row_start, n_rows)
    pt = interpolate(x, b, a, row_start, n_rows)  # auto -> triton on CUDA
    pc = interpolate(x, b, a, row_start, n_rows, backend="torch")
    assert pt.dtype == dtype and pt.is_cuda
    if dtype == torch.float64:
        assert_close(pt, ref, 1e-14, 1e-14, "p")
    else:
        plain = naive(x, b, a, row_start, n_rows, dtype=dtype)
        check_by_comparison(pt, ref, plain, "triton")
        check_by_comparison(pc, ref, plain, "torch")


@pytest.mark.cuda
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16])
def test_cuda_low_precision_out(seed, out_dtype):
    x, b, a = make(4, 8, (3, 32, 32), torch.float32, True, device="cuda")
    x = x.to(memory_format=torch.channels_last)
    buf = torch.empty((16, 3, 32, 32), dtype=out_dtype, device="cuda")
    ref = naive(x, b, a, 5, 16)
    p = interpolate(x, b, a, 5, 16, out_dtype=out_dtype, out=buf)
    assert p.data_ptr() == buf.data_ptr()
    # computed in fp32, rounded once: at most half an ulp of out_dtype from the fp64 value
    assert_close(p, ref, torch.finfo(out_dtype).eps, 1e-6, "p")
    check_by_comparison(p, ref, naive(x.to(out_dtype), b.to(out_dtype), a.to(out_dtype), 5, 16,
                                      dtype=out_dtype), "triton")
