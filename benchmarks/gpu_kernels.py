"""Fast-path kernels against the device's copy ceiling (GPU only).

    python -m benchmarks.gpu_kernels [--out PATH]

The ceiling is a large device-to-device copy (bytes read + bytes written). Each op is
charged the fewest bytes it must move: interpolate writes every path point once and
reads x, x' once; accumulate reads every gradient once and reads + writes the
accumulator once. With importance factors every gradient is read twice: IF_r =
g_r . (x - x') needs all of row r before row r can be folded, and a chunk's rows do
not fit in L2, so two passes (row dots, then the fold) are the minimum; x - x' once. Achieved GB/s =
those bytes / median time (CUDA events via triton.testing.do_bench).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pathattr import fastpath

from .harness import environment


def _bench(fn):
    import triton.testing

    return triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median") * 1e-3


def copy_ceiling(n_bytes=2 ** 30):
    a = torch.randn(n_bytes // 4, device="cuda")
    b = torch.empty_like(a)
    t = _bench(lambda: b.copy_(a))
    return 2 * n_bytes / t


def cases(B=8, S=50, D=3 * 224 * 224):
    """(name, fn, bytes) for both backends at the ResNet-50 input size."""
    dev = "cuda"
    R = B * S
    x = torch.rand(B, D, device=dev)
    base = torch.rand(1, D, device=dev)
    alphas = torch.rand(B, S, device=dev)
    weights = torch.rand(B, S, device=dev)
    diff = (x - base).contiguous()
    acc = torch.zeros(B, D, device=dev)
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        buf = torch.empty(R, D, device=dev, dtype=dtype)
        g = torch.randn(R, D, device=dev).to(dtype)
        e = g.element_size()
        for which in ("triton", "torch"):
            out.append((f"interpolate/{str(dtype)[6:]}/{which}",
                        lambda which=which, buf=buf: fastpath.interpolate_rows(x, base, alphas, 0, R, buf, which),
                        R * D * e + 2 * B * D * 4))
            out.append((f"accumulate/{str(dtype)[6:]}/{which}",
                        lambda which=which, g=g: fastpath.accumulate_rows(g, diff, weights, acc, 0, False, None, which),
                        R * D * e + 2 * B * D * 4))
            out.append((f"accumulate_if/{str(dtype)[6:]}/{which}",
                        lambda which=which, g=g: fastpath.accumulate_rows(g, diff, weights, acc, 0, True, None, which),
                        2 * R * D * e + 3 * B * D * 4))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu_kernels needs a CUDA device")
    ceiling = copy_ceiling()
    rows = []
    print(f"copy ceiling: {ceiling / 1e9:.0f} GB/s (read + write)")
    print(f"{'op':<34}{'us':>9}{'GB/s':>9}{'of ceiling':>12}")
    for name, fn, nbytes in cases():
        t = _bench(fn)
        rows.append({"op": name, "median_s": t, "bytes": nbytes, "gbps": nbytes / t / 1e9, "fraction": nbytes / t / ceiling})
        print(f"{name:<34}{t * 1e6:>9.1f}{nbytes / t / 1e9:>9.0f}{nbytes / t / ceiling:>12.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"environment": environment(), "copy_ceiling_Bps": ceiling,
                                              "shape": {"B": 8, "S": 50, "D": 150528}, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
