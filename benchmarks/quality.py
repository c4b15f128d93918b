"""The quality study of issue #4: every method on every metric, then adaptive-sampling efficiency.

    python -m benchmarks.quality [--quick] [--out DIR] [--skip-efficiency] [--skip-table]

Part 1 (`table`): each method of `quality_methods` (equal budget: 50 gradient
evaluations per input) on the digits CNN, the Burnt Snacks CNN, the certainty-aware
Burnt Snacks CNN (with ICG) and the Local Minimum MLP, scored by insertion/deletion
AUC, DiffID, AIC/SIC (PIC; Burnt Snacks only), localisation on the target squares, and
on Local Minimum agreement with exact BShap (d = 6). Mean over images with a seeded
bootstrap 95 % interval. Part 2 (`efficiency`): `quality_efficiency`. Writes
quality.json, quality.md, efficiency-*.png, examples-*.png into the output folder
(default benchmarks/results/quality/) and the HTML report (pathattr.apps.quality_report).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from . import quality_data as qd
from . import quality_efficiency as qe
from . import quality_methods as qm

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "quality"
N_BOOT = 1000
CNN_PATHS = ("burnt_snacks", "icg_path")
HIGHER_IS_BETTER = {"insertion": True, "deletion": False, "diffid": True, "sic": True, "aic": True,
                    "energy": True, "pointing": True, "cosine": True, "spearman": True, "top1": True}
METRIC_TITLES = {
    "insertion": "insertion AUC ↑", "deletion": "deletion AUC ↓", "diffid": "DiffID (mean over r) ↑",
    "sic": "SIC AUC ↑", "aic": "AIC AUC ↑", "energy": "energy in mask ↑", "pointing": "pointing game ↑",
    "cosine": "cosine with BShap ↑", "spearman": "Spearman with BShap ↑", "top1": "top-1 feature = BShap's ↑",
}


def bootstrap(values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0) -> Dict[str, float]:
    """Mean over images and its percentile 95 % interval from n_boot resamples (NaNs dropped, counted)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi), "n": int(v.size)}


def _rank(a: np.ndarray) -> np.ndarray:
    r = np.empty_like(a)
    r[np.argsort(a, kind="stable")] = np.arange(a.size)
    return r


def agreement_with_bshap(attr: torch.Tensor, ref: torch.Tensor) -> Dict[str, np.ndarray]:
    """Per input: cosine similarity, Spearman rank correlation and top-|value| feature match."""
    a = attr.reshape(attr.shape[0], -1).double().numpy()
    r = ref.reshape(ref.shape[0], -1).double().numpy()
    cos = (a * r).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(r, axis=1) + 1e-300)
    sp = np.array([np.corrcoef(_rank(a[i]), _rank(r[i]))[0, 1] for i in range(a.shape[0])])
    top = (np.abs(a).argmax(1) == np.abs(r).argmax(1)).astype(np.float64)
    return {"cosine": cos, "spearman": sp, "top1": top}


def score_images(scn, attr: torch.Tensor, use_pic: bool) -> Dict[str, np.ndarray]:
    """Per-image scores of one method's maps on an image Scenario."""
    import pathattr.metrics as pm

    out = {}
    idr = pm.insertion_deletion(scn.model, scn.inputs, attr, target=scn.target)
    out["insertion"] = idr.insertion_auc.numpy()
    out["deletion"] = idr.deletion_auc.numpy()
    out["diffid"] = pm.diffid(scn.model, scn.inputs, attr, target=scn.target).output_score.numpy()
    if use_pic:
        u8 = (scn.inputs * 255).round().clamp(0, 255).to(torch.uint8)
        p = pm.pic(scn.model, u8, attr, target=scn.target, seed=0)
        out["sic"], out["aic"] = p.sic.auc, p.aic.auc
        out["_pic"] = {"sic_median_auc": p.sic.median_auc, "aic_median_auc": p.aic.median_auc,
                       "skip_counts": p.sic.skip_counts, "n_scored": p.sic.n_scored}
    if scn.masks is not None:
        loc = pm.localisation(attr, scn.masks)
        out["energy"], out["pointing"] = loc.energy.numpy(), loc.pointing.numpy()
    return out


def run_table(scenarios: Sequence[str], n_images: int, methods: Sequence[str], progress=None,
              seed: int = 0) -> Dict:
    """Part 1: {scenario: {"title", "n", "budget", "methods": {m: {metric: bootstrap}}, "seconds"}}."""
    results = {}
    example_maps = {}
    for name in scenarios:
        scn = qd.load(name, n_images)
        runners = qm.make_runners(scn, seed=seed)
        if name == "burnt_snacks_certainty":
            runners["ICG"] = qm.icg_runner()
        wanted = [m for m in list(methods) + (["ICG"] if "ICG" in runners else []) if m in runners]
        ref = None
        if name == "local_minimum":
            import pathattr as pa
            ref = pa.bshap(scn.model, scn.inputs, scn.baseline, scn.target)
        entry = {"title": scn.title, "n": scn.inputs.shape[0], "budget": {m: qm.budget_note(scn.classes)[m] for m in wanted},
                 "methods": {}, "seconds": {}, "pic": {}}
        maps = {}
        for m in wanted:
            t0 = time.perf_counter()
            attr = runners[m](scn.inputs, scn.target).detach().float()
            entry["seconds"][m] = time.perf_counter() - t0
            maps[m] = attr
            if scn.image:
                scores = score_images(scn, attr, use_pic=name.startswith("burnt_snacks"))
                pic = scores.pop("_pic", None)
                if pic is not None:
                    entry["pic"][m] = pic
            else:
                scores = agreement_with_bshap(attr, ref)
            entry["methods"][m] = {k: bootstrap(v, seed=seed) for k, v in scores.items()}
            entry["methods"][m]["_per_image"] = {k: [float(x) for x in v] for k, v in scores.items()}
            if progress is not None:
                progress.update(1)
        results[name] = entry
        if scn.image:
            example_maps[name] = (scn.inputs[:4], {m: a[:4] for m, a in maps.items()},
                                  None if scn.masks is None else scn.masks[:4])
    return results, example_maps


def run_efficiency(models: Sequence[str], n_inputs: int, grid, candidates, progress=None,
                   ref_points: int = qe.REF_POINTS) -> Dict:
    """Part 2: curves per model, the evaluations table and the candidates' verdicts."""
    out = []
    for name in models:
        dtype, g, n = torch.float64, grid, n_inputs
        if name in qd.SYNTHETIC:
            scn = qd.synthetic(name, n)
        elif name in CNN_PATHS:
            # float32, M <= 512, candidates to M <= 256, 2 inputs: a 32x32 CNN takes ~600
            # gradients/s on this shared CPU, and the 8,000-point reference alone costs 14 s
            dtype, g, n = torch.float32, [M for M in grid if M <= 512], max(2, n_inputs // 4)
            scn = qd.certainty_path(n) if name == "icg_path" else qd.load(name, n)
            out.append(qe.study_model(scn, g, candidates, progress=progress, dtype=dtype, candidate_max=256,
                                      ref_points=ref_points))
            continue
        else:
            dtype = torch.float32 if name == "digits" else torch.float64
            scn = qd.load(name, n)
        out.append(qe.study_model(scn, g, candidates, progress=progress, dtype=dtype, ref_points=ref_points))
    table = qe.summarise(out)
    names = [m["name"] for m in out]
    verdicts = qe.judge(table, names) if candidates else []
    return {"models": out, "table": table, "verdicts": verdicts, "grid": list(grid),
            "candidates": qe.candidates_as_dicts(candidates), "censored_as": f"{qe.CENSORED} x the largest M tried",
            "reference_points": ref_points}


# ----------------------------------------------------------------- writing out
def _fmt(b: Dict[str, float]) -> str:
    if b["n"] == 0 or not np.isfinite(b["mean"]):
        return "—"
    return f"{b['mean']:.3f} [{b['lo']:.3f}, {b['hi']:.3f}]"


def markdown_tables(table: Dict, eff: Optional[Dict]) -> str:
    lines = []
    for name, entry in table.items():
        metrics = [k for k in METRIC_TITLES if any(k in v for v in entry["methods"].values())]
        lines.append(f"### {entry['title']} — {entry['n']} images, mean [95 % bootstrap CI]\n")
        lines.append("| method | " + " | ".join(METRIC_TITLES[k] for k in metrics) + " | budget per input |")
        lines.append("|---|" + "---|" * (len(metrics) + 1))
        best = {}
        for k in metrics:
            vals = {m: v[k]["mean"] for m, v in entry["methods"].items() if k in v and np.isfinite(v[k]["mean"])}
            if vals:
                best[k] = (max if HIGHER_IS_BETTER[k] else min)(vals, key=vals.get)
        for m, v in entry["methods"].items():
            cells = []
            for k in metrics:
                c = _fmt(v[k]) if k in v else "—"
                cells.append(f"**{c}**" if best.get(k) == m else c)
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {entry['budget'][m]} |")
        if entry.get("pic"):
            any_pic = next(iter(entry["pic"].values()))
            lines.append(f"\nPIC: {any_pic['n_scored']} of {entry['n']} images scored; skipped by reason "
                         f"{any_pic['skip_counts']} (SIC/AIC columns are means of per-image AUCs over the scored images).")
        lines.append("")
    if eff:
        lines.append(efficiency_markdown(eff))
    return "\n".join(lines)


def _evals_cell(e: Dict) -> str:
    M = e["gradient_evals"]
    if M is None:
        return f"> {e['max_M']}"
    return f"{M}" + (f" (+{e['probe_forwards']})" if e["probe_forwards"] else "")


def _md(name: str) -> str:
    return name.replace("|", "\\|")


def efficiency_markdown(eff: Dict, keys: Optional[Sequence[str]] = None) -> str:
    names = [m["name"] for m in eff["models"]]
    table = eff["table"]
    keys = keys or [k for k in table if not k.startswith("cand ")]
    out = []
    for t in ("0.01", "0.001"):
        out.append(f"### Gradient evaluations M to reach {float(t) * 100:g} % error "
                   f"(+ forward-only probe evaluations per input; > K: not reached by M = K)\n")
        out.append("| schedule | " + " | ".join(names) + " | geometric mean |")
        out.append("|---|" + "---|" * (len(names) + 1))
        for k in keys:
            row = table[k]
            cells = [_evals_cell(row["models"][n][t]) if n in row["models"] else "—" for n in names]
            out.append(f"| {_md(k)} | " + " | ".join(cells) + f" | {row['geomean'][t]:.0f} |")
        out.append("")
    if eff.get("verdicts"):
        out.append(f"### Candidates against ours{' (fresh inputs)' if 'offset' in eff else ''} (evaluations to 1 %; kept if geometric mean ≤ 0.8× ours "
                   "and no model > 1.5× ours)\n")
        out.append("| candidate | geometric mean | ratio to ours | worst model (ratio) | kept |")
        out.append("|---|---|---|---|---|")
        for v in eff["verdicts"]:
            out.append(f"| {_md(v['candidate'])} | {v['geomean']:.0f} | {v['geomean_ratio']:.2f} | "
                       f"{v['worst_model']} ({v['worst_model_ratio']:.2f}) | {'yes' if v['kept'] else 'no'} |")
        out.append("")
    return "\n".join(out)


def write_plots(out: Path, eff: Optional[Dict], example_maps: Dict) -> List[str]:
    from pathattr.apps import viz

    files = []
    if eff:
        shown = ["IDG riemann_right", "IDG riemann_middle", "IDG gausslegendre", "IDG paper", "IDG ours",
                 "IG riemann_middle", "IG gausslegendre"]
        for m in eff["models"]:
            curves = {k: (m["curves"][k]["grid"], m["curves"][k]["errors"]) for k in shown if k in m["curves"]}
            p = viz.error_curve_plot(curves, out / f"efficiency-{m['name']}.png", title=m["title"])
            files.append(p.name)
    for name, (images, maps, masks) in example_maps.items():
        p = viz.comparison_grid(images, maps, out / f"examples-{name}.png", masks=masks)
        files.append(p.name)
    return files


def _strip(obj):
    """JSON-safe: NaN -> None."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strip(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _strip(obj.item())
    return obj


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 methods, 4 images, digits, a short grid, a 2,000-point reference")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    ap.add_argument("--images", type=int, default=None, help="images per scenario (default 64; quick 4)")
    ap.add_argument("--eff-inputs", type=int, default=None, help="inputs per model in the efficiency study (default 8)")
    ap.add_argument("--skip-table", action="store_true")
    ap.add_argument("--skip-efficiency", action="store_true")
    ap.add_argument("--no-candidates", action="store_true", help="skip part 3 (candidate schedules)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--render", action="store_true", help="only rewrite quality.md, plots and report.html from quality.json")
    ap.add_argument("--confirm", nargs="+", metavar="CANDIDATE", default=None,
                    help="re-measure these candidates against ours on fresh inputs (after a full run)")
    args = ap.parse_args(argv)
    if args.confirm:
        confirm(args.out, args.confirm, quiet=args.quiet)
        args.render = True
    if args.render:
        print(render(args.out))
        return 0
    return run(args.out, quick=args.quick, images=args.images, eff_inputs=args.eff_inputs,
               table=not args.skip_table, efficiency=not args.skip_efficiency,
               candidates=not args.no_candidates, quiet=args.quiet)


def confirm(out, names: Sequence[str], n_inputs: int = 8, offset: int = 64, quiet: bool = False) -> Dict:
    """Re-measure ours against the named candidates on fresh inputs (offset..), every model
    to M = 512/1024 for every schedule, and store it as quality.json["confirmation"]."""
    from tqdm import tqdm

    cands = [c for c in qe.CANDIDATES if c.name in names]
    models = ["digits", "burnt_snacks", "icg_path", "local_minimum", *qd.SYNTHETIC]
    bar = tqdm(total=len(models) * 9, desc="confirmation", disable=quiet)
    res = []
    t0 = time.perf_counter()
    for name in models:
        cnn = name in CNN_PATHS
        n = max(2, n_inputs // 4) if cnn else n_inputs
        scn = qd.fresh(name, n, offset if name not in qd.SYNTHETIC else 1)
        g = [M for M in qe.GRID if M <= 512] if cnn else qe.GRID
        dtype = torch.float32 if cnn or name == "digits" else torch.float64
        res.append(qe.study_model(scn, g, cands, progress=bar, dtype=dtype, rules=(), paper=False))
    bar.close()
    table = qe.summarise(res)
    conf = {"models": res, "table": table, "verdicts": qe.judge(table, [m["name"] for m in res]),
            "offset": offset, "seconds": time.perf_counter() - t0, "grid": list(qe.GRID),
            "reference_points": qe.REF_POINTS}
    p = Path(out) / "quality.json"
    doc = json.loads(p.read_text())
    doc["confirmation"] = _strip(conf)
    p.write_text(json.dumps(doc, indent=1))
    return conf


def render(out) -> Path:
    """(Re)write quality.md, the efficiency plots and report.html from quality.json."""
    from pathattr.apps.quality_report import write_quality_report

    out = Path(out)
    doc = json.loads((out / "quality.json").read_text())
    write_plots(out, doc.get("efficiency"), {})
    md = []
    if doc.get("table"):
        md += ["## Headline (mean ± half the 95 % bootstrap interval; best in bold)", "", headline_markdown(doc), ""]
    md.append(markdown_tables(doc.get("table") or {}, doc.get("efficiency")))
    if doc.get("confirmation"):
        md += ["## Confirmation on fresh inputs (candidates that passed above, against ours)", "",
               efficiency_markdown(doc["confirmation"], keys=list(doc["confirmation"]["table"]))]
    (out / "quality.md").write_text("\n".join(md))
    return write_quality_report(out)


def run(out, quick: bool = False, images: Optional[int] = None, eff_inputs: Optional[int] = None,
        table: bool = True, efficiency: bool = True, candidates: bool = True, quiet: bool = False) -> int:
    from tqdm import tqdm

    torch.manual_seed(0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if quick:
        scenarios, methods = ["digits"], ["IG", "IDG adaptive"]
        eff_models, grid, cands = ["digits", "sigmoid_late"], qe.QUICK_GRID, (qe.OURS, qe.CANDIDATES[1])
    else:
        scenarios, methods = list(qd.SCENARIOS), list(qm.METHODS)
        eff_models = ["digits", "burnt_snacks", "icg_path", "local_minimum", *qd.SYNTHETIC]
        grid, cands = qe.GRID, qe.CANDIDATES
    if not candidates:
        cands = ()
    n_img = images or (4 if quick else 64)
    n_eff = eff_inputs or (2 if quick else 8)
    total = (len(scenarios) * (len(methods) + 1) if table else 0) + (sum(len([M for M in grid if M <= 512 or m not in CNN_PATHS]) + 1 for m in eff_models) if efficiency else 0)
    bar = tqdm(total=total, desc="quality study", disable=quiet, unit="step")
    t0 = time.perf_counter()
    tab, maps, eff = {}, {}, None
    if table:
        tab, maps = run_table(scenarios, n_img, methods, progress=bar)
    if efficiency:
        eff = run_efficiency(eff_models, n_eff, grid, cands, progress=bar, ref_points=2000 if quick else qe.REF_POINTS)
    bar.close()
    seconds = time.perf_counter() - t0
    plots = write_plots(out, eff, maps)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": seconds, "quick": quick,
            "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "images_per_scenario": n_img, "efficiency_inputs": n_eff,
            "budget": qm.BUDGET, "bootstrap": {"resamples": N_BOOT, "seed": 0, "interval": "percentile 95 %"}}
    doc = {"kind": "pathattr-quality", "meta": meta, "table": tab, "efficiency": eff, "plots": plots,
           "metric_titles": METRIC_TITLES, "higher_is_better": HIGHER_IS_BETTER}
    (out / "quality.json").write_text(json.dumps(_strip(doc), indent=1))
    report = render(out)
    if not quiet:
        print(f"wrote {out / 'quality.json'}, quality.md, {len(plots)} plots and {report} in {seconds:.0f} s")
    return 0



HEADLINE = (("digits", "insertion"), ("digits", "deletion"), ("digits", "diffid"),
            ("burnt_snacks", "insertion"), ("burnt_snacks", "deletion"), ("burnt_snacks", "sic"),
            ("burnt_snacks", "energy"), ("burnt_snacks_certainty", "energy"), ("local_minimum", "cosine"))
SHORT = {"digits": "digits", "burnt_snacks": "Snacks", "burnt_snacks_certainty": "Snacks (cert.)",
         "local_minimum": "LocalMin"}


def headline_markdown(doc: Dict) -> str:
    """One compact table (means, best in bold) over the scenarios, for the README."""
    tab = doc["table"]
    cols = [(s, k) for s, k in HEADLINE if s in tab]
    methods = []
    for s, _ in cols:
        methods += [m for m in tab[s]["methods"] if m not in methods]
    lines = ["| method | " + " | ".join(f"{SHORT[s]} {METRIC_TITLES[k]}" for s, k in cols) + " |",
             "|---|" + "---|" * len(cols)]
    best = {}
    for s, k in cols:
        vals = {m: v[k]["mean"] for m, v in tab[s]["methods"].items() if k in v and v[k]["mean"] is not None}
        best[(s, k)] = (max if HIGHER_IS_BETTER[k] else min)(vals, key=vals.get)
    for m in methods:
        cells = []
        for s, k in cols:
            v = tab[s]["methods"].get(m, {}).get(k)
            if v is None or v["mean"] is None:
                cells.append("—")
                continue
            c = f"{v['mean']:.3f} ±{(v['hi'] - v['lo']) / 2:.3f}"
            cells.append(f"**{c}**" if best[(s, k)] == m else c)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
