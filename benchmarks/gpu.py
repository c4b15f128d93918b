"""GPU benchmark: ResNet-50 and ViT-B/16 (torchvision, random weights, 224x224) against Captum and the bare cost.

    python -m benchmarks.gpu [--out PATH] [--batch 32] [--repeat 7] [--requests 200] [--quick]

Modes (all on one CUDA device, every time with CUDA events / synchronisation):
  throughput  a batch of inputs, 50 steps: bare fwd+bwd of the same path points at
              the best of a few chunk sizes (the limit), pathattr IG / IDG through
              an Explainer, Captum 0.9 IntegratedGradients at its best
              internal_batch_size; fp32 and bf16 autocast. images/s and efficiency
              = bare time / pathattr time.
  latency     one input per request, `--requests` requests, p50 / p99 (ms).
  profile     torch.profiler over one IDG call: the top CUDA kernels and every
              host-device synchronisation, written as a table.
Needs torchvision (present on the GPU image; not a project dependency).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import time
from pathlib import Path

import torch

import pathattr as pa

from .harness import environment

STEPS = 50


def _sync():
    torch.cuda.synchronize()


def time_calls(fn, repeat, warmup=2):
    """Seconds per call, each call synchronised (median of `repeat`)."""
    for _ in range(warmup):
        fn()
    _sync()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync()
        out.append(time.perf_counter() - t0)
    return out


def _ctx(dtype):
    return torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def bare_fwd_bwd(model, pts, tgt, chunk, dtype):
    def run():
        for s in range(0, pts.shape[0], chunk):
            p = pts[s:s + chunk].detach().requires_grad_(True)
            with _ctx(dtype):
                out = model(p)
            torch.autograd.grad(out.float().gather(1, tgt[s:s + chunk].view(-1, 1)).sum(), p)
    return run


def bare_fwd(model, pts, tgt, chunk, dtype):
    def run():
        with torch.no_grad(), _ctx(dtype):
            for s in range(0, pts.shape[0], chunk):
                model(pts[s:s + chunk]).float().gather(1, tgt[s:s + chunk].view(-1, 1))
    return run


def path_points(x, n):
    a = torch.rand(n, device=x.device)
    return (a.view(1, -1, 1, 1, 1) * x.unsqueeze(1)).reshape((-1,) + tuple(x.shape[1:])).contiguous()


def best_of(make, chunks, repeat):
    """Best chunk by median time; a chunk that runs out of memory is skipped (inf)."""
    meds = {}
    for c in chunks:
        try:
            meds[c] = statistics.median(time_calls(make(c), repeat, warmup=1))
        except torch.OutOfMemoryError:
            meds[c] = float("inf")
        torch.cuda.empty_cache()
    c = min(meds, key=meds.get)
    return c, meds


def throughput(model, B, dtype, repeat, captum=True):
    name = f"b{B}/{'fp32' if dtype is None else str(dtype)[6:]}"
    x = torch.rand(B, 3, 224, 224, device="cuda")
    with torch.no_grad():
        target = model(x).argmax(1)
    rows = {}
    pts = path_points(x, STEPS)
    tgt = target.repeat_interleave(STEPS)
    c, meds = best_of(lambda c: bare_fwd_bwd(model, pts, tgt, c, dtype), [64, 128, 256, 400], 3)
    rows["bare_fwd_bwd"] = {"median_s": meds[c], "chunk": c, "chunk_medians": meds}
    ppts, ptgt = path_points(x, 13), target.repeat_interleave(13)
    cf, medf = best_of(lambda c: bare_fwd(model, ppts, ptgt, c, dtype), [104, 208, 416], 3)
    ppts51, ptgt51 = path_points(x, 51), target.repeat_interleave(51)
    cf51, medf51 = best_of(lambda c: bare_fwd(model, ppts51, ptgt51, c, dtype), [128, 256, 512], 3)
    rows["bare_fwd_probe13"] = {"median_s": medf[cf], "chunk": cf}
    rows["bare_fwd_probe51"] = {"median_s": medf51[cf51], "chunk": cf51}
    for meth, kw in (("ig", {}), ("idg", {}), ("idg_n50", {"n_probe": 50}), ("ig_graphs", {"cuda_graphs": True}),
                     ("idg_n50_graphs", {"n_probe": 50, "cuda_graphs": True})):
        k = f"pathattr_{meth}"
        # One Explainer alive at a time: a captured graph keeps its chunk's activations.
        ex = pa.Explainer(model, meth.split("_")[0], n_steps=STEPS, autocast=dtype, **kw)
        try:
            rows[k] = {"median_s": statistics.median(time_calls(lambda ex=ex: ex.attribute(x, target=target), repeat))}
        except Exception as exc:  # report and go on: one call of the suite measures everything
            print(f"  {k} failed: {type(exc).__name__}: {exc}", flush=True)
            rows[k] = {"median_s": float("nan"), "error": f"{type(exc).__name__}: {exc}"[:300]}
        del ex
        torch.cuda.empty_cache()
    if captum:
        try:
            from captum.attr import IntegratedGradients
        except ImportError:
            IntegratedGradients = None
        if IntegratedGradients is not None:
            ig = IntegratedGradients(model)

            def cap(ibs):
                def run():
                    with _ctx(dtype):
                        ig.attribute(x, target=target, n_steps=STEPS, internal_batch_size=ibs)
                return run
            cb, medc = best_of(cap, sorted({min(B * STEPS, B * k) for k in (4, 8, 16, 50)}), 3)
            rows["captum_ig_best"] = {"median_s": statistics.median(time_calls(cap(cb), repeat)), "internal_batch_size": cb,
                                      "chunk_medians": medc}
    bare = rows["bare_fwd_bwd"]["median_s"]
    bare_idg = bare + rows["bare_fwd_probe13"]["median_s"]
    bare_idg50 = bare + rows["bare_fwd_probe51"]["median_s"]
    for k, r in rows.items():
        r["images_per_s"] = B / r["median_s"]
    for k, floor in (("pathattr_ig", bare), ("pathattr_ig_graphs", bare), ("pathattr_idg", bare_idg),
                     ("pathattr_idg_n50", bare_idg50), ("pathattr_idg_n50_graphs", bare_idg50)):
        rows[k]["efficiency"] = floor / rows[k]["median_s"]
    return name, rows


def latency(model, dtype, requests, method="idg", **kw):
    """Requests of one input each (target=None: the predicted class), one at a time."""
    ex = pa.Explainer(model, method, n_steps=STEPS, autocast=dtype, **kw)
    xs = [torch.rand(1, 3, 224, 224, device="cuda") for _ in range(8)]
    for i in range(5):
        ex.attribute(xs[i % 8])
    _sync()
    t = []
    for i in range(requests):
        t0 = time.perf_counter()
        ex.attribute(xs[i % 8])
        _sync()
        t.append(time.perf_counter() - t0)
    t.sort()
    return {"p50_ms": 1e3 * t[len(t) // 2], "p99_ms": 1e3 * t[min(len(t) - 1, int(0.99 * len(t)))], "samples_s": t}


def _spearman(a, b):
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def accuracy(model, B):
    """bf16 autocast against fp32 (TF32 off) on the same inputs: relative L2 error and
    Spearman rank correlation of the attributions, per method, averaged over inputs."""
    x = torch.rand(B, 3, 224, 224, device="cuda")
    tf32 = torch.backends.cudnn.allow_tf32
    out = {}
    for meth in ("ig", "idg"):
        torch.backends.cudnn.allow_tf32 = False
        ref = pa.Explainer(model, meth, n_steps=STEPS).attribute(x).float()
        torch.backends.cudnn.allow_tf32 = tf32
        for name, dt in (("tf32", None), ("bf16", torch.bfloat16)):
            got = pa.Explainer(model, meth, n_steps=STEPS, autocast=dt).attribute(x).float()
            rel = [float((g - r).norm() / r.norm()) for g, r in zip(got, ref)]
            rho = [_spearman(g.flatten(), r.flatten()) for g, r in zip(got, ref)]
            out[f"{meth}/{name}/rel_l2"] = statistics.mean(rel)
            out[f"{meth}/{name}/spearman"] = statistics.mean(rho)
    return out


def profile(model, B, dtype, out_dir):
    from torch.profiler import ProfilerActivity, profile as prof

    from pathattr.engine.profiling import set_profiling

    set_profiling(True)  # named stage ranges in the engine
    ex = pa.Explainer(model, "idg", n_steps=STEPS, autocast=dtype, n_probe=50)
    set_profiling(False)
    x = torch.rand(B, 3, 224, 224, device="cuda")
    ex.attribute(x)
    _sync()
    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        ex.attribute(x)
        _sync()
    stages = [e for e in p.key_averages() if e.key.startswith("pathattr.")]
    head = "\n".join(f"{e.key:<24} calls {e.count:>4}  cpu {e.cpu_time_total / 1e3:9.2f} ms  "
                     f"cuda {getattr(e, 'device_time_total', getattr(e, 'cuda_time_total', 0)) / 1e3:9.2f} ms" for e in stages)
    tab = head + "\n\n" + p.key_averages().table(sort_by="cuda_time_total", row_limit=30)
    syncs = p.key_averages().table(sort_by="cpu_time_total", row_limit=60)
    if out_dir:
        Path(out_dir, f"profile-idg-b{B}.txt").write_text(tab + "\n\n" + syncs)
    return tab


def targets(result):
    """The issue's targets, measured (H100), as the last lines of the output."""
    tp, lat = result["throughput"], result["latency"]
    B = result["settings"]["batch"]
    nan = float("nan")

    def g(case, prov, key="median_s"):
        return tp.get(case, {}).get(prov, {}).get(key, nan)

    lines = ["", f"targets (batch {B}, 50 steps)", f"{'target':<58}{'measured':>14}{'goal':>10}"]

    def row(name, value, goal):
        lines.append(f"{name:<58}{value:>14.3f}{goal:>10}")

    for case in ("b%d/fp32" % B, "b%d/bfloat16" % B, "b%d/bfloat16/channels_last" % B):
        row(f"efficiency IG {case}", g(case, "pathattr_ig", "efficiency"), ">=0.97")
        row(f"efficiency IDG N=M=50 {case}", g(case, "pathattr_idg_n50", "efficiency"), ">=0.97")
    best_bf16 = max(g(c, p, "images_per_s") for c in ("b%d/bfloat16" % B, "b%d/bfloat16/channels_last" % B)
                    for p in ("pathattr_idg_n50", "pathattr_idg_n50_graphs"))
    row("IDG N=M=50 bf16 images/s", best_bf16, ">=300")
    cap32 = g("b%d/fp32" % B, "captum_ig_best")
    row("IG fp32 speed / Captum best fp32", cap32 / g("b%d/fp32" % B, "pathattr_ig"), ">=1.3")
    best_ig = min(g(c, p) for c in ("b%d/bfloat16" % B, "b%d/bfloat16/channels_last" % B)
                  for p in ("pathattr_ig_graphs", "pathattr_ig"))
    row("IG bf16+graphs speed / Captum best fp32", cap32 / best_ig, ">=4")
    for key in ("idg/bf16/graphs", "idg/bf16/graphs/channels_last"):
        if key in lat:
            row(f"single-request {key} p50 ms", lat[key]["p50_ms"], "<=8")
            row(f"single-request {key} p99/p50", lat[key]["p99_ms"] / lat[key]["p50_ms"], "<=1.25")
    kern = result.get("kernels")
    if kern:
        for r in kern["rows"]:
            if r["op"].endswith("/triton"):
                row(f"kernel {r['op']} fraction of copy ceiling", r["fraction"], ">=0.8")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-vit", dest="vit", action="store_false", help="skip the ViT-B/16 case")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu needs a CUDA device")
    import torchvision

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    model = torchvision.models.resnet50(weights=None).cuda().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    out_dir = Path(args.out).parent if args.out else None
    result = {"environment": environment(), "settings": vars(args), "throughput": {}, "latency": {}}
    kern = Path(args.out).parent / "gpu-kernels.json" if args.out else None
    if kern is not None and kern.exists():
        result["kernels"] = json.loads(kern.read_text())
    result["accuracy"] = accuracy(model, min(args.batch, 8))
    print("accuracy of bf16 against fp32:", {k: round(v, 4) for k, v in result["accuracy"].items()}, flush=True)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    for dtype, m, suffix in ((None, model, ""), (torch.bfloat16, model, ""), (torch.bfloat16, model_cl, "/channels_last")):
        name, rows = throughput(m, args.batch, dtype, 3 if args.quick else args.repeat, captum=not suffix)
        name += suffix
        result["throughput"][name] = rows
        print(f"\n{name}")
        for k, r in rows.items():
            extra = "".join(f"  {kk}={vv:.3f}" if isinstance(vv, float) else f"  {kk}={vv}"
                            for kk, vv in r.items() if kk not in ("median_s", "chunk_medians", "images_per_s"))
            print(f"  {k:<20}{1e3 * r['median_s']:>10.1f} ms {r['images_per_s']:>9.1f} img/s{extra}", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
    for dtype, m, graphs, tag in ((None, model, False, "fp32"), (torch.bfloat16, model, False, "bf16"),
                                  (torch.bfloat16, model, True, "bf16/graphs"),
                                  (torch.bfloat16, model_cl, True, "bf16/graphs/channels_last")):
        for meth, kw in (("idg", {"n_probe": 50}), ("ig", {})):
            key = f"{meth}/{tag}"
            try:
                r = latency(m, dtype, 50 if args.quick else args.requests, meth, cuda_graphs=graphs, **kw)
            except Exception as exc:
                print(f"latency {key} failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            result["latency"][key] = r
            torch.cuda.empty_cache()
            print(f"latency {key:<30} p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
    if args.vit:  # the second model: ViT-B/16, bf16, throughput and single-request latency
        vit = torchvision.models.vit_b_16(weights=None).cuda().eval()
        for p in vit.parameters():
            p.requires_grad_(False)
        try:
            name, rows = throughput(vit, args.batch, torch.bfloat16, 3 if args.quick else args.repeat)
            result["throughput"]["vit_b_16/" + name] = rows
            for k, r in rows.items():
                print(f"  vit {k:<20}{1e3 * r['median_s']:>10.1f} ms {r['images_per_s']:>9.1f} img/s", flush=True)
            for meth, kw in (("idg", {"n_probe": 50}), ("ig", {})):
                r = latency(vit, torch.bfloat16, 50 if args.quick else args.requests, meth, cuda_graphs=True, **kw)
                result["latency"][f"vit_b_16/{meth}/bf16/graphs"] = r
                print(f"latency vit_b_16/{meth}/bf16/graphs p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms", flush=True)
        except Exception as exc:
            print(f"vit_b_16 failed: {type(exc).__name__}: {exc}", flush=True)
        del vit
        torch.cuda.empty_cache()
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
    try:
        print(profile(model_cl, args.batch, torch.bfloat16, out_dir)[:3000])
    except Exception as exc:
        print(f"profile failed: {type(exc).__name__}: {exc}")
    print(targets(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
