"""First GPU benchmark: ResNet-50 (torchvision, random weights, 224x224) IG/IDG vs Captum.

    python -m benchmarks.gpu [--out PATH] [--batches 1 32] [--repeat 5]

Same harness and providers as benchmarks/cpu.py, on CUDA, fp32 and bf16 autocast.
Needs torchvision (present on the GPU image; not a project dependency).
"""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import torch

from .cpu import run_case, summarize
from .harness import environment, table, write_results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu needs a CUDA device")
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).cuda().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    rows = []
    for B in args.batches:
        x = torch.rand(B, 3, 224, 224, device="cuda")
        rows += run_case(f"resnet50/b{B}/fp32", model, x, args.repeat, device="cuda")
        rows += run_case(f"resnet50/b{B}/bf16", model, x, args.repeat, device="cuda", autocast=torch.bfloat16)
    out = Path(args.out or f"benchmarks/results/gpu-{datetime.date.today().isoformat()}.json")
    write_results(rows, out, environment(), {"steps": 50, "repeat": args.repeat})
    print(table(rows, {r.case: "bare_fwd_bwd" for r in rows}))
    print("\n".join(summarize(rows)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
