"""Timings of Expected Gradients, IG with a distribution baseline, LPI and BShap on the
bundled digits CNN (8x8 inputs), on whatever device is present, plus the one-at-a-time
reference loops (CPU) that the fast paths replace.

    python -m benchmarks.refs_methods [--out results.json] [--batch 32]

Prints one line per (case, provider) with the median of `repeat` timed calls after
`warmup` calls; the JSON rows say the device. Inputs are the first `batch` test digits;
references are the training digits.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import pathattr as pa
from pathattr.data.digits import load_digits_data, load_digits_model
from pathattr.reference import expected_gradients as ref_eg
from pathattr.reference import lpi as ref_lpi


def _time(fn, device, warmup=2, repeat=5):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), samples


def _bare_forward(model, points, chunk=2048):
    with torch.no_grad():
        for s in range(0, points.shape[0], chunk):
            model(points[s:s + chunk])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reference", action="store_true", help="also time the EG and LPI reference loops (CPU only; slow)")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_digits_model().eval().to(device)
    x, _ = load_digits_data("test")
    refs, _ = load_digits_data("train")
    x, refs = x[:args.batch].to(device), refs.to(device)
    target = model(x).argmax(1)
    bank = pa.build_reference_bank(model, refs, n_neighbourhoods=9, n_references=20, seed=0)
    r = torch.arange(8, device=device)
    mask = ((r.view(8, 1) // 2) * 4 + r.view(1, 8) // 2).view(1, 8, 8)  # 16 superpixels of 2x2
    cases = {
        "expected_gradients J=20 k=1": lambda: pa.expected_gradients(model, x, refs, target=target, n_references=20),
        "ig distribution K=8, 32 steps": lambda: pa.integrated_gradients(
            model, x, pa.distribution_baseline(refs, 8), target=target, n_steps=32),
        "lpi m=20 k=1": lambda: pa.local_path_integration(model, x, bank, target=target),
        # BShap costs 2^16 forwards per input: one input, against the bare model on as many points
        "bshap exact d=16 (1 input)": lambda: pa.bshap(model, x[:1], target=target[:1], feature_mask=mask),
        "bare forward, 2^16 points": lambda: _bare_forward(model, x[:1].expand(1 << 16, -1, -1, -1)),
        "bshap 25 permutations d=64": lambda: pa.bshap(model, x, target=target, n_permutations=25),
    }
    if args.reference:
        xc, rc, mc = x.cpu(), refs.cpu(), model.cpu() if device.type == "cpu" else None
        if mc is not None:
            cases["reference expected_gradients J=20"] = lambda: ref_eg.expected_gradients(mc, xc, rc, target.cpu(), 20)
            cases["reference lpi m=20"] = lambda: ref_lpi.lpi(mc, xc, bank.references, bank.densities, bank.centres,
                                                               target.cpu())
    rows = []
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    for case, fn in cases.items():
        reps = 1 if case.startswith("reference") else 5
        med, samples = _time(fn, device, warmup=0 if reps == 1 else 2, repeat=reps)
        rows.append({"case": case, "batch": args.batch, "device": name, "median_s": med, "samples_s": samples,
                     "torch": torch.__version__})
        print(f"{case:45s} batch {args.batch:3d}  {med * 1e3:9.1f} ms  ({name})", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
