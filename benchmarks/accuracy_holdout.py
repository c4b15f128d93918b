"""rtol mode on models the estimator was not tuned on (issue #15: "never tuned to the study").

    python -m benchmarks.accuracy_holdout --out benchmarks/results/accuracy-holdout-cpu-2026-12-07.json
        [--cache DIR] [--models NAME ...] [--inputs 8] [--jobs 2]

The constants of engine/tolerance.py were chosen on benchmarks/accuracy.py's study. These
models differ from it in architecture, width, depth, activation, seeds and inputs:

  set A ("seen"): four models looked at while the constants were chosen (a post-LN
    encoder with LayerNorm on its input, a tanh MLP, a 6-layer ReLU MLP, the bundled digits
    CNN on other images); the completeness stop (COMPLETENESS_STOP) was added after two of
    their IDG maps came out 1.7 % and 1.04 % off at rtol = 0.01 (and RSS_FLOOR = 1 after a
    small ReLU CNN outside both sets). Reported apart.
  set B ("unseen"): built after the constants were fixed and run only to report.

Each map's true error comes from the study's reference (accuracy_reference: graded composite
Gauss-Legendre with bisection of unresolved panels, float64, zero baseline, target = argmax);
pathattr runs IG and IDG with rtol = 0.01 and 0.001 through the public API. Reported per
set: maps within rtol, above 3 x rtol, the worst error, evaluations, and the calibration of
the estimate (estimate / true error within [1/3, 3]).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from torch import nn

from . import accuracy as study
from . import accuracy_models as am
from . import accuracy_reference as ar


class PostLNEncoder(nn.Module):
    """LayerNorm on the tokens, a post-LN encoder layer (ReLU FF), mean pool, Linear."""

    def __init__(self, d=32, heads=4, ff=64, classes=5):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        return self.head(self.layer(self.ln(x)).mean(1))


class GeluConvNet(nn.Module):
    """Two GELU convolutions (the second strided), global average pool, Linear."""

    def __init__(self, classes=6):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 12, 3, stride=2, padding=1),
                                  nn.GELU())
        self.head = nn.Linear(12, classes)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


class PostLNAttention(nn.Module):
    """Self-attention with a post-residual LayerNorm, a GELU head on the first token."""

    def __init__(self, d=16, heads=2, classes=4):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln = nn.LayerNorm(d)
        self.head = nn.Sequential(nn.Linear(d, 24), nn.GELU(), nn.Linear(24, classes))

    def forward(self, x):
        return self.head(self.ln(x + self.attn(x, x, x, need_weights=False)[0])[:, 0])


class MaxPoolCNN(nn.Module):
    """ReLU convolutions with max pooling: piecewise-constant gradients from two sources."""

    def __init__(self, classes=5):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * 2 * 2, classes)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def _mlp(d_in, width, depth, act, classes=4):
    layers, i = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(i, width), act()]
        i = width
    return nn.Sequential(*layers, nn.Linear(i, classes))


def _seeded(seed, build):
    torch.manual_seed(seed)
    return build().double().eval()


def _randn(seed, *shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _rand(seed, *shape):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64)


def _digits_other(n):
    from pathattr.data.digits import load_digits_data, load_digits_model

    x = load_digits_data()[0][200:200 + n].double()
    return am.Case("digits_other", load_digits_model().double().eval(), x,
                   "the bundled digits CNN on images 200.. (the study uses the first ones)", 2, 4000)


def build_cases(n: int) -> Dict[str, List[am.Case]]:
    seen = [
        am.Case("enc_postln", _seeded(21, PostLNEncoder), _randn(121, n, 8, 32),
                "LayerNorm(tokens) + post-LN encoder layer (d 32, ReLU FF 64), mean pool, 8 tokens"),
        am.Case("tanh_mlp20", _seeded(22, lambda: _mlp(20, 64, 3, nn.Tanh)), _randn(122, n, 20),
                "3 x (Linear 64, tanh), 20 inputs ~ N(0, 1), default init"),
        am.Case("relu_mlp6_d20", _seeded(23, lambda: _mlp(20, 64, 6, nn.ReLU)), _randn(123, n, 20),
                "6 x (Linear 64, ReLU), default init, 20 inputs"),
        _digits_other(n),
    ]
    unseen = [
        am.Case("gelu_convnet", _seeded(31, GeluConvNet), _rand(131, n, 3, 8, 8),
                "Conv 8 + GELU, strided Conv 12 + GELU, average pool, 3x8x8 in [0, 1]", 2, 4000),
        am.Case("softplus_mlp4", _seeded(32, lambda: _mlp(16, 48, 4, lambda: nn.Softplus(beta=5))),
                2 * _randn(132, n, 16), "4 x (Linear 48, Softplus beta 5), 16 inputs ~ N(0, 2²)"),
        am.Case("attention_postln", _seeded(33, PostLNAttention), _randn(133, n, 6, 16),
                "self-attention + post-residual LayerNorm, GELU head on token 0, 6 tokens x 16"),
        am.Case("maxpool_cnn", _seeded(34, MaxPoolCNN), _rand(134, n, 1, 8, 8),
                "ReLU convolutions with max pooling, 1x8x8 in [0, 1]", 2, 4000),
        am.Case("elu_mlp_wide", _seeded(35, lambda: _mlp(24, 128, 2, nn.ELU)), 3 * _randn(135, n, 24),
                "2 x (Linear 128, ELU), 24 inputs ~ N(0, 3²)"),
        am.Case("silu_mlp_deep", _seeded(36, lambda: _mlp(12, 32, 8, nn.SiLU)), 2 * _randn(136, n, 12),
                "8 x (Linear 32, SiLU), 12 inputs ~ N(0, 2²)"),
    ]
    return {"A": seen, "B": unseen}


CHECKED_INPUTS = 2  # the reference is checked against the finer rule on this many inputs per model


def _reference(case: am.Case, target, cache: Path = None):
    """(IG map, IDG map, largest relative difference from the finer rule on the first inputs)."""
    key = None if cache is None else cache / f"holdout-{case.name}-{case.inputs.shape[0]}-{ar.REF_K}.pt"
    if key is not None and key.is_file():
        saved = torch.load(key, weights_only=True)
        if torch.equal(saved["inputs"], case.inputs) and torch.equal(saved["target"], target) and "check" in saved:
            return saved["ig"], saved["idg"], float(saved["check"])
    base = torch.zeros_like(case.inputs)
    ref = ar.path_integrals(case.model, case.inputs, base, target, *ar.reference_rule(), k=ar.REF_K,
                            max_extra=case.ref_extra)
    k = min(CHECKED_INPUTS, case.inputs.shape[0])
    fine = ar.path_integrals(case.model, case.inputs[:k], base[:k], target[:k], *ar.finer_rule(), k=ar.FINER_K,
                             max_extra=case.ref_extra)
    check = max(float(ar.rel_l2(ref[m][:k], fine[m]).max()) for m in ("ig", "idg"))
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"inputs": case.inputs, "target": target, "ig": ref["ig"], "idg": ref["idg"], "check": check}, key)
    return ref["ig"], ref["idg"], check


def run_case(job) -> Dict:
    case, cache, threads = job
    torch.set_num_threads(threads)
    study._quiet()
    with torch.no_grad():
        target = case.model(case.inputs).argmax(1)
    t0 = time.perf_counter()
    ig_ref, idg_ref, check = _reference(case, target, cache)
    refs = {"ig": ig_ref, "idg": idg_ref}
    out = {"note": case.note, "n_inputs": int(case.inputs.shape[0]), "reference_seconds": time.perf_counter() - t0,
           "reference_vs_finer": check, "methods": {}}
    for kind in ("ig", "idg"):
        out["methods"][kind] = {str(r): study.run_rtol(kind, case, target, refs[kind], r) for r in study.RTOLS}
    return out


def summarize(models: Dict[str, Dict]) -> Dict:
    s = {}
    for kind in ("ig", "idg"):
        for r in study.RTOLS:
            runs = [m["methods"][kind][str(r)] for m in models.values()]
            err = np.concatenate([np.asarray(v["errors"]) for v in runs])
            ratio = np.concatenate([np.asarray(v["ratio"]) for v in runs])
            s[f"{kind} {r}"] = {"maps": int(err.size), "within": float(np.mean(err <= r)),
                                "above_3x": int(np.sum(err > 3 * r)), "worst": float(err.max()),
                                "evaluations": int(sum(sum(v["n_evaluations"]) for v in runs)),
                                "calibration_within_1/3_3": float(np.mean((ratio >= 1 / 3) & (ratio <= 3)))}
    return s


def markdown(result: Dict) -> str:
    lines = ["# rtol mode on hold-out models (CPU, float64)", "",
             f"`{result['command']}` — {result['environment']['machine_note']}; torch "
             f"{result['environment']['torch']}, {result['environment']['date']}.", "",
             "Set A: looked at while engine/tolerance.py's constants were chosen (the completeness stop was "
             "added after two of its IDG maps came out 1.7 % and 1.04 % off at rtol = 0.01; the root-sum-square "
             "floor of 1 after a small ReLU CNN outside both sets). "
             "Set B: built after the constants were fixed, run only to report.", ""]
    for set_name in result["sets"]:
        lines += [f"## Set {set_name}", "", "| model | what | reference vs finer rule (largest relative L2, first "
                  f"{CHECKED_INPUTS} inputs) |", "|---|---|---|"]
        lines += [f"| {k} | {m['note']} | {m['reference_vs_finer']:.1e} |"
                  for k, m in result["sets"][set_name]["models"].items()]
        lines += ["", "| method, rtol | maps | within rtol | above 3×rtol | worst error | evaluations | "
                      "estimate within [1/3, 3] |", "|---|---|---|---|---|---|---|"]
        for key, v in result["sets"][set_name]["summary"].items():
            lines.append(f"| {key} | {v['maps']} | {100 * v['within']:.1f} % | {v['above_3x']} | "
                         f"{100 * v['worst']:.2f} % | {v['evaluations']:,} | "
                         f"{100 * v['calibration_within_1/3_3']:.1f} % |")
        lines += ["", "Per model at rtol = 0.01 (worst error, evaluations IG / IDG):", ""]
        for k, m in result["sets"][set_name]["models"].items():
            ig, idg = m["methods"]["ig"]["0.01"], m["methods"]["idg"]["0.01"]
            lines.append(f"- {k}: IG {100 * max(ig['errors']):.2f} % / {sum(ig['n_evaluations'])}, "
                         f"IDG {100 * max(idg['errors']):.2f} % / {sum(idg['n_evaluations'])}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy-holdout-cpu-2026-12-07.json"))
    p.add_argument("--cache", type=Path, default=None, help="folder keeping the reference maps between runs")
    p.add_argument("--inputs", type=int, default=8)
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--jobs", type=int, default=1)
    a = p.parse_args(argv)
    if not study.rtol_available():
        raise SystemExit("this pathattr has no rtol mode")
    sets = build_cases(a.inputs)
    jobs = [(c, a.cache, 1) for cases in sets.values() for c in cases if a.models is None or c.name in a.models]
    t0 = time.perf_counter()
    if a.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(a.jobs) as pool:
            done = pool.map(run_case, jobs)
    else:
        done = [run_case(j) for j in jobs]
    by_name = {j[0].name: d for j, d in zip(jobs, done)}
    result = {"command": "python -m benchmarks.accuracy_holdout " + " ".join(sys.argv[1:] if argv is None else argv),
              "environment": study.environment(1), "seconds": time.perf_counter() - t0, "sets": {}}
    for set_name, cases in sets.items():
        models = {c.name: by_name[c.name] for c in cases if c.name in by_name}
        if models:
            result["sets"][set_name] = {"models": models, "summary": summarize(models)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    a.out.with_suffix(".md").write_text(markdown(result))
    for set_name, v in result["sets"].items():
        for key, s in v["summary"].items():
            print(f"set {set_name} {key}: within {100 * s['within']:.1f} %, above 3x {s['above_3x']}, worst "
                  f"{100 * s['worst']:.2f} %, evals {s['evaluations']}, calibration {100 * s['calibration_within_1/3_3']:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
