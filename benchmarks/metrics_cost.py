"""What the faithfulness metrics cost and say on the bundled digits model (CPU or GPU).

    python -m benchmarks.metrics_cost [--images 64] [--device cpu]

For IG (pathattr defaults) and a random map on the first N test digits: scores of
every metric, and the wall time of each metric over the whole batch. For
insertion/deletion and DiffID also the time of the one-image-at-a-time reference
loops on 8 images (what the batching saves). Prints a table; nothing is written.
"""
from __future__ import annotations

import argparse
import time

import torch

import pathattr as pa
import pathattr.metrics as pm
from pathattr.data.digits import load_digits_data, load_digits_model
from pathattr.reference import metrics as ref


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    model = load_digits_model(dev).eval()
    x, _ = load_digits_data("test")
    x = x[: args.images].to(dev)
    u8 = (x * 255).round().to(torch.uint8).cpu()
    maps = {"ig": pa.integrated_gradients(model, x, target=model(x).argmax(1)).detach(),
            "random": torch.rand(x.shape, generator=torch.Generator().manual_seed(0)).to(dev)}
    print(f"{x.shape[0]} digits on {dev}; times are for the whole batch")
    print(f"{'map':<8}{'metric':<22}{'score':>10}{'seconds':>10}")
    for name, attr in maps.items():
        r, t = timed(lambda: pm.insertion_deletion(model, x, attr))
        print(f"{name:<8}{'insertion AUC':<22}{r.insertion_auc.mean().item():>10.4f}{t:>10.3f}")
        print(f"{name:<8}{'deletion AUC':<22}{r.deletion_auc.mean().item():>10.4f}{'':>10}")
        r, t = timed(lambda: pm.diffid(model, x, attr))
        print(f"{name:<8}{'DiffID (output, mean)':<22}{r.output_mean:>10.4f}{t:>10.3f}")
        r, t = timed(lambda: pm.pic(model, u8, attr.cpu(), min_pred_value=0.5))
        print(f"{name:<8}{'SIC (median AUC)':<22}{r.sic.median_auc:>10.4f}{t:>10.3f}"
              f"   scored {r.sic.n_scored}, skipped {r.sic.skip_counts}")
        print(f"{name:<8}{'AIC (median AUC)':<22}{r.aic.median_auc:>10.4f}{'':>10}")
    n = min(8, x.shape[0])
    attr = maps["ig"]
    tgt = model(x[:n]).argmax(1).tolist()
    zero = torch.zeros_like(x[0])
    _, t_ref = timed(lambda: [ref.insertion_deletion_one(model, x[i], attr[i], tgt[i], zero, 8, g)
                              for i in range(n) for g in ("insertion", "deletion")])
    _, t_new = timed(lambda: pm.insertion_deletion(model, x[:n], attr[:n]))
    print(f"insertion/deletion on {n} images: reference loop {t_ref:.3f} s, batched {t_new:.3f} s")
    _, t_ref = timed(lambda: [ref.diffid_one(model, x[i], attr[i], tgt[i], pm.DIFFID_FRACTIONS) for i in range(n)])
    _, t_new = timed(lambda: pm.diffid(model, x[:n], attr[:n]))
    print(f"DiffID on {n} images: reference loop {t_ref:.3f} s, batched {t_new:.3f} s")


if __name__ == "__main__":
    main()
