"""CPU benchmark: pathattr IG / IDG against Captum and against the bare model cost.

    python -m benchmarks.cpu [--quick] [--repeat 5] [--cases digits_cnn/b1 ...] [--out benchmarks/results/cpu-DATE.json]

Cases: the bundled DigitsCNN (1x8x8) and a deeper ResidualCNN (3x32x32), batch 1
and 32, and a 2-layer transformer encoder (16 tokens x 64, a classifier head over the
mean of the tokens) at batch 16; 50 steps. Providers:
  pathattr_ig       pa.integrated_gradients, default settings (gausslegendre, auto chunk:
                    the element budget, then the size chunk tuning chose; engine/chunk_tuning.py)
  pathattr_ig_budget  the same at the element budget's chunks (internal_batch_size set to
                    them): pathattr before chunk tuning
  pathattr_idg      pa.integrated_decision_gradients, default (adaptive, M=50, N=12)
  pathattr_*_explainer  the same through one reused Explainer (the service path)
  captum_ig         Captum 0.9 IntegratedGradients, its defaults (one batch of B*50)
  captum_ig_best    Captum with its best internal_batch_size (multiples of B)
  bare_fwd_bwd      the floor for IG: forward + input-gradient backward of the same
                    B*50 pre-built path points, at the best of many chunk sizes
                    (pathattr's default among them)
  bare_idg          the floor for IDG: bare forward-only of B*13 probe points at their
                    best chunk, then bare_fwd_bwd, in one call (the passes IDG makes)
Before timing, pathattr's providers are called until chunk tuning has chosen for every
pass of the model (`tuning_calls` in the JSON: how many calls and seconds that took; the
timed rounds are the steady state after it).
Providers are sampled round-robin, so drifts of a shared machine hit all alike, and
each acceptance ratio is reported paired (the median over rounds of the two providers'
quotient, in which a drift between rounds cancels) and as the quotient of medians. On
CPU only ratios in one run mean anything; absolute times are for this machine.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import time
from pathlib import Path

import torch
from torch import nn

import pathattr as pa
from pathattr.data.digits import load_digits_data, load_digits_model
from pathattr.data.models import ResidualCNN
from pathattr.engine.runner import chunk_rows

try:  # absent before chunk tuning (benchmarks of older versions run this same file)
    from pathattr.engine import chunk_tuning
except ImportError:
    chunk_tuning = None

from .harness import Row, best_chunk, environment, paired_ratio, table, time_interleaved, write_results

STEPS = 50
CHUNKS = [8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024]
TUNING_CALLS = 80  # at most this many untimed calls for chunk tuning to choose


class TransformerEncoderClassifier(nn.Module):
    """2 encoder layers (d_model 64, 4 heads, feed-forward 128, no dropout) on (B, 16, 64)
    token embeddings; a linear head over the mean of the tokens, 10 classes."""

    def __init__(self, d_model=64, layers=2, classes=10):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, 4, 2 * d_model, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


def settle(model, calls, cap=TUNING_CALLS):
    """Call `calls` round-robin until chunk tuning has chosen for every pass of `model`;
    (calls made, seconds). Nothing to do for a version without chunk tuning."""
    if chunk_tuning is None:
        return 0, 0.0
    n, t0 = 0, time.perf_counter()
    while n < cap and (n == 0 or any(c["chosen"] is None for c in chunk_tuning.choices(model))):
        calls[n % len(calls)]()
        n += 1
    return n, time.perf_counter() - t0


def _precision(device, autocast):
    """The same precision for every provider of a case: autocast or nothing."""
    return torch.autocast(device_type=device.split(":")[0], dtype=autocast) if autocast else contextlib.nullcontext()


def _bare_fwd_bwd(model, points, target, chunk, device="cpu", autocast=None):
    def run():
        for s in range(0, points.shape[0], chunk):
            p = points[s:s + chunk].detach().requires_grad_(True)
            with _precision(device, autocast):
                out = model(p)
            torch.autograd.grad(out.float().gather(1, target[s:s + chunk].view(-1, 1)).sum(), p)
    return run


def _bare_fwd(model, points, target, chunk, device="cpu", autocast=None):
    def run():
        with torch.no_grad(), _precision(device, autocast):
            for s in range(0, points.shape[0], chunk):
                model(points[s:s + chunk]).gather(1, target[s:s + chunk].view(-1, 1))
    return run


def _path_points(x, n):
    alphas = torch.rand(n)
    return (alphas.view(1, -1, *([1] * (x.dim() - 1))) * x.unsqueeze(1)).reshape((-1,) + tuple(x.shape[1:]))


def rounds(repeat, floor_s):
    """Rounds of round-robin sampling for a case whose floor takes `floor_s`: cheap cases
    get more (their ratios move most with the machine's phases, and a round of every
    provider costs well under a second there), the 1 s+ cases keep `repeat`."""
    if floor_s < 0.02:
        return max(repeat, 25)
    if floor_s < 0.2:
        return max(repeat, 11)
    return repeat


def run_case(name, model, x, repeat, device="cpu", steps=STEPS, autocast=None):
    """Time every provider on one (model, batch). `device` names where x and model live.

    First the chunk sizes of the floor and Captum's internal_batch_size are chosen by
    sweeps (3 samples each); then every provider is timed round-robin (`repeat` rounds).
    """
    B = x.shape[0]
    with torch.no_grad():
        target = model(x).argmax(1)
    print(f"{name}: batch {B}, {steps} steps on {device}", flush=True)
    pts = _path_points(x, steps)
    tgt = target.repeat_interleave(steps)
    eng = pa.Explainer(model, "ig").engine
    ours = eng.rows_per_chunk(eng.prepare(x, target=target), total=B * steps)
    # The floor is the best over many chunk sizes, pathattr's own default among them.
    chunks = sorted(set([c for c in CHUNKS + [ours] if c < pts.shape[0]] + [pts.shape[0]]))
    c, _, med = best_chunk(lambda c: _bare_fwd_bwd(model, pts, tgt, c, device, autocast), chunks, 3, device)
    n_probe = max(2, steps // 4) + 1
    ppts = _path_points(x, n_probe)
    ptgt = target.repeat_interleave(n_probe)
    pours = eng.rows_per_chunk(eng.prepare(x, target=target), forward_only=True, total=ppts.shape[0])
    pchunks = sorted(set([c for c in CHUNKS + [pours] if c < ppts.shape[0]] + [ppts.shape[0]]))
    cf, _, medf = best_chunk(lambda c: _bare_fwd(model, ppts, ptgt, c, device, autocast), pchunks, 3, device)

    kw = dict(n_steps=steps, autocast=autocast)
    ex_ig, ex_idg = pa.Explainer(model, "ig", **kw), pa.Explainer(model, "idg", **kw)
    budget = chunk_rows(None, None, 0, x[0].numel(), x.device.type, False, B * steps)
    bare_ig = _bare_fwd_bwd(model, pts, tgt, c, device, autocast)
    bare_probe = _bare_fwd(model, ppts, ptgt, cf, device, autocast)

    def bare_idg():  # the same two passes IDG makes, in the same order, one after the other
        bare_probe()
        bare_ig()

    providers = {
        "bare_fwd_bwd": bare_ig,
        "bare_fwd_probe": bare_probe,
        "bare_idg": bare_idg,
        "pathattr_ig": lambda: pa.integrated_gradients(model, x, target=target, **kw),
        "pathattr_ig_budget": lambda: pa.integrated_gradients(model, x, target=target, internal_batch_size=budget, **kw),
        "pathattr_idg": lambda: pa.integrated_decision_gradients(model, x, target=target, **kw),
        "pathattr_ig_explainer": lambda: ex_ig.attribute(x, target=target),
        "pathattr_idg_explainer": lambda: ex_idg.attribute(x, target=target),
    }
    n_tune, s_tune = settle(model, [providers["pathattr_ig"], providers["pathattr_idg"]])
    tuned = eng.rows_per_chunk(eng.prepare(x, target=target), total=B * steps)
    print(f"  chunk tuning: {n_tune} calls ({s_tune:.1f} s) to choose; IG chunk {ours} -> {tuned}", flush=True)
    extra = {"bare_fwd_bwd": {"chunk": c, "chunk_medians": med}, "bare_fwd_probe": {"chunk": cf, "chunk_medians": medf},
             "pathattr_ig": {"chunk": tuned, "budget_chunk": ours, "tuning_calls": n_tune, "tuning_s": round(s_tune, 3),
                             "choices": chunk_tuning.choices(model) if chunk_tuning else None},
             "pathattr_ig_budget": {"chunk": budget}}
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        print("  captum not installed: skipping the peer")
        IntegratedGradients = None
    if IntegratedGradients is not None:
        ig = IntegratedGradients(model)

        def captum(ibs=None):
            with _precision(device, autocast):
                return ig.attribute(x, target=target, n_steps=steps, internal_batch_size=ibs)

        cands = sorted(set(B * k for k in (1, 2, 4, 8, 16, 32, 50) if B * k <= B * steps))
        cb, _, medb = best_chunk(lambda c: (lambda: captum(c)), cands, 3, device)
        providers["captum_ig"] = captum
        providers["captum_ig_best"] = lambda: captum(cb)
        extra["captum_ig_best"] = {"internal_batch_size": cb, "chunk_medians": medb}
    samples = time_interleaved(providers, rounds(repeat, med[c]), device=device)
    extra["bare_idg"] = {"note": "bare_fwd_probe then bare_fwd_bwd in one call"}
    rows = []
    for provider, smp in samples.items():
        rows.append(Row(name, provider, B, steps, device, smp, extra=extra.get(provider, {})))
        print(f"  {provider:<24} median {1e3 * rows[-1].median_s:9.2f} ms", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="batch 1 and 8 only, 3 repeats (a smoke run)")
    ap.add_argument("--cases", nargs="+", default=None, metavar="CASE",
                    help="run only these cases (e.g. digits_cnn/b1 residual_cnn/b32 transformer_enc/b16; default all)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    repeat = 3 if args.quick else args.repeat
    batches = [1, 8] if args.quick else [1, 32]
    digits_model = load_digits_model()
    digits, _ = load_digits_data("test")
    resnet = ResidualCNN(width=16, blocks=4).eval()
    encoder = TransformerEncoderClassifier().eval()
    for p in list(digits_model.parameters()) + list(resnet.parameters()) + list(encoder.parameters()):
        p.requires_grad_(False)  # both sides see the same frozen model
    cases = []
    for B in batches:
        cases += [(f"digits_cnn/b{B}", digits_model, digits[:B].clone()),
                  (f"residual_cnn/b{B}", resnet, torch.rand(B, 3, 32, 32))]
    cases.append(("transformer_enc/b16", encoder, torch.randn(16, 16, 64)))
    rows = []
    for name, model, x in cases:
        if args.cases is None or name in args.cases:
            rows += run_case(name, model, x, repeat)
    env = environment()
    out = Path(args.out or f"benchmarks/results/cpu-{datetime.date.today().isoformat()}.json")
    write_results(rows, out, env, {"steps": STEPS, "repeat": repeat, "chunks": CHUNKS}, summary=ratios(rows))
    base = {r.case: "bare_fwd_bwd" for r in rows}
    print()
    print(table(rows, base))
    print()
    summary = summarize(rows)
    for line in summary:
        print(line)
    print(f"\nwrote {out}")
    return rows


RATIOS = (  # (name, numerator, denominator): the acceptance ratios of the foundation issue and IDG's own
    ("IG/captum", "pathattr_ig", "captum_ig"),
    ("IG/captum_best", "pathattr_ig", "captum_ig_best"),
    ("IG/IG_budget", "pathattr_ig", "pathattr_ig_budget"),
    ("IG/bare", "pathattr_ig", "bare_fwd_bwd"),
    ("IG/bare (Explainer)", "pathattr_ig_explainer", "bare_fwd_bwd"),
    ("IDG/bare", "pathattr_idg", "bare_idg"),
    ("IDG/bare (Explainer)", "pathattr_idg_explainer", "bare_idg"),
)


def ratios(rows):
    """Every acceptance ratio per case, two ways: `paired`, the median over rounds of the
    two providers' quotient (drift between rounds cancels: the headline number), and
    `of_medians`, the quotient of their medians. {case: {ratio name: {...}}}."""
    by = {}
    for r in rows:
        by.setdefault(r.case, {})[r.provider] = r
    out = {}
    for case, p in by.items():
        out[case] = {name: {"paired": paired_ratio(p[a].samples_s, p[b].samples_s),
                            "of_medians": p[a].median_s / p[b].median_s}
                     for name, a, b in RATIOS if a in p and b in p}
    return out


def summarize(rows):
    """The acceptance ratios as text: paired (median of per-round quotients), and the
    quotient of medians in brackets."""
    table_ = ratios(rows)
    names = [n for n, _, _ in RATIOS]
    lines = [f"{'case':<20}" + "".join(f"{n:>24}" for n in names)]
    for case, r in table_.items():
        cells = [f"{r[n]['paired']:.3f} ({r[n]['of_medians']:.3f})" if n in r else "n/a" for n in names]
        lines.append(f"{case:<20}" + "".join(f"{c:>24}" for c in cells))
    return lines


if __name__ == "__main__":
    main()
