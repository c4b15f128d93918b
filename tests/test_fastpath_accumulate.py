"""fastpath.accumulate: Triton (interpreter on CPU, native on CUDA) vs torch vs a naive loop."""
import importlib

import pytest
import torch

from conftest import assert_close
from layouts import KINDS, noncontig
from pathattr.fastpath import accumulate

_mod = importlib.import_module("pathattr.fastpath.accumulate")

BACKENDS = ("triton", "torch")
F64 = torch.float64


def tree_sum(v):
    """Pairwise sum with every addition rounded in v.dtype. (torch's CPU .sum() of fp32 or
    fp16 accumulates in a wider type, so it would not be "the same work" in that dtype.)"""
    v = v.flatten()
    if v.numel() == 0:
        return v.new_zeros(())
    while v.numel() > 1:
        if v.numel() % 2:
            v = torch.cat([v, v.new_zeros(1)])
        v = v[0::2] + v[1::2]
    return v[0]


def naive(grads, diff, weights, acc, row_start, importance, scale, dtype=F64):
    """acc[e] += w[e,s] * c_r * g[r], one row at a time, every op in `dtype`.
    Returns (new acc, IF) without touching the inputs."""
    S = weights.shape[1]
    acc = acc.to(dtype).clone()
    IF = []
    for i in range(grads.shape[0]):
        e, s = divmod(row_start + i, S)
        g = grads[i].to(dtype)
        prod = g * diff[e].to(dtype)
        f = prod.sum() if dtype == F64 else tree_sum(prod)
        IF.append(f)
        c = weights[e, s].to(dtype)
        if importance:
            c = c * f
        if scale is not None:
            c = c * scale[i].to(dtype)
        acc[e] += c * g
    return acc, (torch.stack(IF) if IF else torch.zeros(0, dtype=dtype))


def magnitudes(grads, diff, weights, acc, row_start, importance, scale):
    """First-order error scale of (acc, IF): the same sums over absolute values, so that
    |acc0| + sum_r |w c_r g_r| with |c_r| <= sum_d |g_r,d diff_e,d| |scale_r|."""
    return naive(grads.abs(), diff.abs(), weights.abs(), acc.abs(), row_start, importance,
                 None if scale is None else scale.abs())


def check_by_comparison(actual, ref64, plain, what, magnitude=None):
    """Low-precision rule: error vs fp64 <= 2x the error of plain torch in that precision,
    plus one ulp (of the plain dtype) of the error scale (the sum of absolute terms; default
    the largest value), so that a plain result exact or lucky by chance does not fail it."""
    ref64 = ref64.double().cpu()
    err = (actual.double().cpu() - ref64).abs().max().item()
    base = (plain.double().cpu() - ref64).abs().max().item()
    mag = (ref64 if magnitude is None else magnitude).double().abs().max().item()
    atol = torch.finfo(plain.dtype).eps * mag
    assert err <= 2 * base + atol, \
        f"{what}: max error {err:.3g} > 2 x plain {base:.3g} + {atol:.3g}"


def make(B, S, shape, gdtype, adtype=F64, device="cpu"):
    grads = torch.randn((B * S,) + shape, dtype=gdtype, device=device)
    diff = torch.randn((B,) + shape, dtype=adtype, device=device)
    weights = torch.rand(B, S, dtype=adtype, device=device)
    acc = torch.randn((B,) + shape, dtype=adtype, device=device)
    scale = torch.randn(B * S, dtype=adtype, device=device)
    return grads, diff, weights, acc, scale


def random_chunk(total):
    row_start = int(torch.randint(0, total, ()).item())
    n_rows = int(torch.randint(1, total - row_start + 1, ()).item())
    return row_start, n_rows


def random_cuts(total, n_cuts):
    cuts = sorted(set(torch.randint(1, total, (n_cuts,)).tolist())) if total > 1 else []
    return list(zip([0] + cuts, cuts + [total]))


# --------------------------------------------------------------------------- fp64 exact
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(3, 7, 13), (1001,), (1,)])
@pytest.mark.parametrize("B,S", [(3, 4), (1, 5), (4, 1)])
@pytest.mark.parametrize("importance", [False, True])
@pytest.mark.parametrize("use_scale", [False, True])
def test_fp64_matches_naive(seed, backend, shape, B, S, importance, use_scale):
    grads, diff, weights, acc, scale = make(B, S, shape, F64)
    r0, n = random_chunk(B * S)
    g, sc = grads[r0:r0 + n], (scale[r0:r0 + n] if use_scale else None)
    ref_acc, ref_if = naive(g, diff, weights, acc, r0, importance, sc)
    ptr = acc.data_ptr()
    IF = accumulate(g, diff, weights, acc, r0, importance=importance, scale=sc, backend=backend)
    assert acc.data_ptr() == ptr
    assert_close(acc, ref_acc, 1e-12, 1e-12, "acc")
    if importance:
        assert IF.shape == (n,) and IF.dtype == F64
        assert_close(IF, ref_if, 1e-12, 1e-12, "IF")
    else:
        assert IF is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("importance", [False, True])
@pytest.mark.parametrize("B,S,n_cuts", [(5, 7, 6), (2, 9, 3), (6, 1, 3), (1, 8, 4)])
def test_chunking_matches_one_chunk(seed, backend, importance, B, S, n_cuts):
    grads, diff, weights, acc0, scale = make(B, S, (3, 7, 13), F64)
    whole = acc0.clone()
    IF_whole = accumulate(grads, diff, weights, whole, 0, importance, scale, backend=backend)
    chunked = acc0.clone()
    IFs = []
    for a, b in random_cuts(B * S, n_cuts):  # boundaries fall inside examples' samples
        IFs.append(accumulate(grads[a:b], diff, weights, chunked, a, importance, scale[a:b],
                              backend=backend))
    assert_close(chunked, whole, 1e-12, 1e-12, "chunked vs one chunk")
    ref_acc, ref_if = naive(grads, diff, weights, acc0, 0, importance, scale)
    assert_close(chunked, ref_acc, 1e-12, 1e-12, "chunked vs naive")
    if importance:
        assert_close(torch.cat(IFs), IF_whole, 1e-12, 1e-12, "IF chunked vs whole")
        assert_close(IF_whole, ref_if, 1e-12, 1e-12, "IF vs naive")


@pytest.mark.interpreter
def test_triton_matches_torch_and_is_deterministic(seed):
    grads, diff, weights, acc0, scale = make(4, 6, (1001,), torch.float32, torch.float32)
    outs = []
    for backend in ("triton", "triton", "torch"):
        acc = acc0.clone()
        IF = accumulate(grads[3:20], diff, weights, acc, 3, True, scale[3:20], backend=backend)
        outs.append((acc, IF))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    ref_acc, ref_if = naive(grads[3:20], diff, weights, acc0, 3, True, scale[3:20])
    plain_acc, plain_if = naive(grads[3:20], diff, weights, acc0, 3, True, scale[3:20],
                                dtype=torch.float32)
    mag_acc, mag_if = magnitudes(grads[3:20], diff, weights, acc0, 3, True, scale[3:20])
    for acc, IF in (outs[0], outs[2]):
        check_by_comparison(acc, ref_acc, plain_acc, "acc", mag_acc)
        check_by_comparison(IF, ref_if, plain_if, "IF", mag_if)


# --------------------------------------------------------------- fp32 / fp16 by comparison
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gdtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(3, 7, 13), (1001,), (1,)])
@pytest.mark.parametrize("importance", [False, True])
def test_low_precision_by_comparison(seed, backend, gdtype, shape, importance):
    B, S = 3, 4
    grads, diff, weights, acc, scale = make(B, S, shape, gdtype, torch.float32)
    r0, n = random_chunk(B * S)
    g, sc = grads[r0:r0 + n], scale[r0:r0 + n]
    ref_acc, ref_if = naive(g, diff, weights, acc, r0, importance, sc)
    plain_acc, plain_if = naive(g, diff, weights, acc, r0, importance, sc, dtype=gdtype)
    mag_acc, mag_if = magnitudes(g, diff, weights, acc, r0, importance, sc)
    IF = accumulate(g, diff, weights, acc, r0, importance, sc, backend=backend)
    assert acc.dtype == torch.float32
    check_by_comparison(acc, ref_acc, plain_acc, "acc", mag_acc)
    if importance:
        assert IF.dtype == torch.float32
        check_by_comparison(IF, ref_if, plain_if, "IF", mag_if)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gdtype", [torch.float16, torch.float32])
def test_low_precision_grads_fp64_acc(seed, backend, gdtype):
    # grads are upcast exactly; all arithmetic in fp64.
    grads, diff, weights, acc, scale = make(3, 5, (3, 7, 13), gdtype, F64)
    sc32 = scale[2:13].float()  # scale of another float dtype is cast to acc dtype
    ref_acc, ref_if = naive(grads[2:13], diff, weights, acc, 2, True, sc32)
    IF = accumulate(grads[2:13], diff, weights, acc, 2, True, sc32, backend=backend)
    assert_close(acc, ref_acc, 1e-12, 1e-12, "acc")
    assert_close(IF, ref_if, 1e-12, 1e-12, "IF")


# ------------------------------------------------------------------- layouts and tiles
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_non_contiguous(seed, backend, kind):
    B, S, shape = 3, 4, (3, 7, 13)
    grads = noncontig(kind, B * S, shape, torch.float32)
    diff = noncontig(kind, B, shape, F64)
    acc = noncontig(kind, B, shape, F64)
    weights = torch.rand(S, B, dtype=F64).t()
    scale = torch.randn(2 * B * S, dtype=F64)[::2]
    assert not (grads.is_contiguous() or acc.is_contiguous() or weights.is_contiguous())
    ref_acc, ref_if = naive(grads[1:10], diff, weights, acc, 1, True, scale[1:10])
    ptr = acc.data_ptr()
    IF = accumulate(grads[1:10], diff, weights, acc, 1, True, scale[1:10], backend=backend)
    assert acc.data_ptr() == ptr, "acc must be updated in place"
    assert_close(acc, ref_acc, 1e-12, 1e-12, f"acc ({kind})")
    assert_close(IF, ref_if, 1e-12, 1e-12, f"IF ({kind})")


@pytest.mark.interpreter
@pytest.mark.parametrize("importance", [False, True])
def test_several_ragged_tiles(seed, monkeypatch, importance):
    monkeypatch.setattr(_mod, "_BLOCK_CAP", 128)  # D = 1001 -> 8 tiles, the last ragged
    grads, diff, weights, acc, scale = make(2, 3, (1001,), F64)
    ref_acc, ref_if = naive(grads[1:5], diff, weights, acc, 1, importance, scale[1:5])
    IF = accumulate(grads[1:5], diff, weights, acc, 1, importance, scale[1:5], backend="triton")
    assert_close(acc, ref_acc, 1e-12, 1e-12, "acc")
    if importance:
        assert_close(IF, ref_if, 1e-12, 1e-12, "IF")


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_chunk(backend):
    grads, diff, weights, acc, _ = make(2, 3, (4,), F64)
    before = acc.clone()
    IF = accumulate(grads[:0], diff, weights, acc, 6, True, backend=backend)
    assert IF.shape == (0,) and torch.equal(acc, before)
    assert accumulate(grads[:0], diff, weights, acc, 0, backend=backend) is None


# ------------------------------------------------------------------------- validation
def _args():
    return dict(grads=torch.randn(6, 3, 4), diff=torch.randn(2, 3, 4), weights=torch.rand(2, 5),
                acc=torch.zeros(2, 3, 4))


@pytest.mark.parametrize(
    "change,exc,match",
    [
        (dict(acc=torch.zeros(2, 3, 4, dtype=torch.float16)), TypeError, "acc"),
        (dict(acc=torch.zeros(2, 4, 3)), ValueError, "acc"),
        (dict(diff=torch.randn(2, 3, 4, dtype=torch.float64)), TypeError, "diff"),
        (dict(diff=torch.randn(1, 3, 4)), ValueError, "diff"),
        (dict(weights=torch.rand(2, 5, dtype=torch.float64)), TypeError, "weights"),
        (dict(weights=torch.rand(10)), ValueError, "weights"),
        (dict(weights=torch.rand(3, 5)), ValueError, "weights"),
        (dict(grads=torch.ones(6, 3, 4, dtype=torch.int32)), TypeError, "grads"),
        (dict(grads=torch.randn(6, 12)), ValueError, "acc"),
        (dict(grads=torch.randn(11, 3, 4)), ValueError, "row_start"),
        (dict(row_start=5), ValueError, "row_start"),
        (dict(row_start=-1), ValueError, "row_start"),
        (dict(row_start=True), TypeError, "row_start"),
        (dict(importance=1), TypeError, "importance"),
        (dict(scale=torch.ones(5)), ValueError, "scale"),
        (dict(scale=torch.ones(6, dtype=torch.int64)), TypeError, "scale"),
        (dict(scale=torch.ones(6, device="meta")), ValueError, "device"),
        (dict(backend="gpu"), ValueError, "backend"),
    ],
)
def test_validation(change, exc, match):
    kw = _args()
    kw.update(change)
    with pytest.raises(exc, match=match):
        accumulate(**kw)


# ------------------------------------------------------------------------ native CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("gdtype,adtype", [
    (torch.float64, torch.float64), (torch.float32, torch.float32), (torch.float16, torch.float32),
    (torch.bfloat16, torch.float32), (torch.bfloat16, torch.float64),
])
@pytest.mark.parametrize("shape", [(3, 7, 13), (1,), (3, 224, 224)])
@pytest.mark.parametrize("importance", [False, True])
def test_cuda_native(seed, gdtype, adtype, shape, importance):
    B, S = 3, 5
    grads, diff, weights, acc0, scale = make(B, S, shape, gdtype, adtype, device="cuda")
    ref_acc, ref_if = naive(grads, diff, weights, acc0, 0, importance, scale)
    results = []
    for _ in range(2):
        acc = acc0.clone()
        IFs = [accumulate(grads[a:b], diff, weights, acc, a, importance, scale[a:b])  # auto
               for a, b in [(0, 2), (2, 9), (9, 10), (10, 15)]]
        results.append((acc, torch.cat(IFs) if importance else None))
    assert torch.equal(results[0][0], results[1][0]), "acc not deterministic"
    assert not importance or torch.equal(results[0][1], results[1][1]), "IF not deterministic"
    acc, IF = results[0]
    mag_acc, mag_if = magnitudes(grads, diff, weights, acc0, 0, importance, scale)
    if adtype == torch.float64:  # grads upcast exactly: all arithmetic in fp64
        # Summation order differs from the reference (tiles, D up to 150k), so the bound
        # is fp64 rounding of the sum of absolute terms, not of the (cancelling) value.
        assert_close(acc, ref_acc, 0, 1e-12 * mag_acc, "acc")
        if importance:
            assert_close(IF, ref_if, 0, 1e-12 * mag_if, "IF")
    else:
        plain_acc, plain_if = naive(grads, diff, weights, acc0, 0, importance, scale, dtype=gdtype)
        check_by_comparison(acc, ref_acc, plain_acc, "acc", mag_acc)
        if importance:
            check_by_comparison(IF, ref_if, plain_if, "IF", mag_if)
    torch_acc = acc0.clone()
    accumulate(grads, diff, weights, torch_acc, 0, importance, scale, backend="torch")
    if adtype == torch.float64:
        assert_close(torch_acc, ref_acc, 0, 1e-12 * mag_acc, "torch backend")
    else:
        check_by_comparison(torch_acc, ref_acc, plain_acc, "torch backend", mag_acc)


@pytest.mark.cuda
def test_cuda_channels_last_acc_in_place(seed):
    B, S = 2, 8
    grads, diff, weights, acc, scale = make(B, S, (3, 64, 64), torch.float16, torch.float32,
                                            device="cuda")
    grads = grads.to(memory_format=torch.channels_last)
    acc = acc.to(memory_format=torch.channels_last)
    ref_acc, _ = naive(grads[3:14], diff, weights, acc, 3, True, scale[3:14])
    plain_acc, _ = naive(grads[3:14], diff, weights, acc, 3, True, scale[3:14], dtype=torch.float16)
    mag_acc, _ = magnitudes(grads[3:14], diff, weights, acc, 3, True, scale[3:14])
    ptr = acc.data_ptr()
    accumulate(grads[3:14], diff, weights, acc, 3, True, scale[3:14], backend="triton")
    assert acc.data_ptr() == ptr
    check_by_comparison(acc, ref_acc, plain_acc, "acc", mag_acc)
