"""Adaptive-sampling efficiency (issue #4; the IDG paper's Fig. 5 claim).

Relative L2 error of the IDG (and IG) map against an 8,000-point midpoint reference,
as a function of M, the gradient evaluations per input (one forward+backward pass of
one path point each). Schedules: the five uniform rules (IG and IDG from the same
gradients), the paper's Algorithm 1 (`schedule="paper"`: N = M probe intervals, left
placement, floor 0) and ours (`schedule="adaptive"`: N = max(2, M // 4), floor 1,
midpoint), both from the C++ scheduler the library uses, plus candidate variants of
ours written here in NumPy (probe size, floor, share exponent, placement, a second
probe inside the densest interval). Probe evaluations (forward only) are counted
separately: N + 1 per input (the probe includes alpha = 0 and 1).

Small models run in float64; the CNNs run in float32 (float64 convolutions are 2x
slower on CPU), with every sum in float64: float32 rounding of a gradient is ~1e-7
relative, far below the 0.1 % threshold.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from pathattr.engine import schedule as schedules
from pathattr.engine.core import PathEngine

GRID = (8, 16, 32, 64, 128, 256, 512, 1024)
QUICK_GRID = (8, 16, 32, 64)
REF_POINTS = 8000
THRESHOLDS = (0.01, 0.001)
RULES = schedules.RULES
CENSORED = 2  # "not reached by M = K" counts as CENSORED * K in geometric means and ratios


@dataclass(frozen=True)
class Candidate:
    """A variant of our adaptive schedule.

    probe_div: N = max(2, M // probe_div) probe intervals. floor: samples every
    interval gets first. power: interval j gets a share of the rest proportional to
    width_j * (|growth_j| / width_j) ** power (power 1: |growth|, ours). placement:
    "midpoint" (ours), "left" (the paper) or "gauss" (Gauss-Legendre nodes inside each
    interval). refine: extra probe points spread evenly inside the interval of largest
    |growth| (a second probe, forward only), splitting it into refine + 1 intervals.
    """

    name: str
    probe_div: int = 4
    floor: int = 1
    power: float = 1.0
    placement: str = "midpoint"
    refine: int = 0

    def n_probe(self, M: int) -> int:
        return max(2, M // self.probe_div)

    def probes(self, M: int) -> int:
        """Forward-only evaluations per input."""
        return self.n_probe(M) + 1 + self.refine

    def feasible(self, M: int) -> bool:
        return M >= self.floor * (self.n_probe(M) + self.refine)


OURS = Candidate("ours: N=M/4, floor 1, |Δ|, midpoint")
CANDIDATES = (
    OURS,
    Candidate("N=M/2", probe_div=2),
    Candidate("N=M/8", probe_div=8),
    Candidate("floor 2", floor=2),
    Candidate("floor 0", floor=0),
    Candidate("share |Δ|^0.5", power=0.5),
    Candidate("share |Δ|^0.75", power=0.75),
    Candidate("share |Δ|^1.5", power=1.5),
    Candidate("Gauss-Legendre placement", placement="gauss"),
    Candidate("second probe (+3 in densest)", refine=3),
    Candidate("N=M/8, second probe (+3)", probe_div=8, refine=3),
    Candidate("N=M/8, Gauss-Legendre", probe_div=8, placement="gauss"),
)


# ------------------------------------------------------------------ scheduling
def apportion(share: np.ndarray, M: int, floor: int) -> np.ndarray:
    """Counts per interval: `floor` each, the rest by largest remainder of `share`
    (ties to the lower index), summing to M exactly (docs/methods.md §2.1 step 3)."""
    N = share.shape[0]
    total = share.sum()
    q = share / total if total > 0 else np.full(N, 1.0 / N)
    R = M - floor * N
    x = R * q
    base = np.floor(x).astype(np.int64)
    left = int(R - base.sum())
    order = np.argsort(-(x - base), kind="stable")
    base[order[:left]] += 1
    return floor + base


def place(edges: np.ndarray, counts: np.ndarray, placement: str):
    """Alphas and weights of counts[j] samples inside [edges[j], edges[j+1])."""
    alphas, weights = [], []
    for j, n in enumerate(counts):
        if n == 0:
            continue
        a, b = edges[j], edges[j + 1]
        if placement == "gauss":
            nodes, w = schedules.quadrature("gausslegendre", int(n))
            alphas.append(a + (b - a) * nodes)
            weights.append((b - a) * w)
        else:
            o = 0.5 if placement == "midpoint" else 0.0
            t = (np.arange(n) + o) / n
            alphas.append(a + (b - a) * t)
            weights.append(np.full(n, (b - a) / n))
    return np.concatenate(alphas), np.concatenate(weights)


def candidate_grid(edges: np.ndarray, values: np.ndarray, M: int, cand: Candidate):
    """One input's (alphas (M,), weights (M,)) from probe values at `edges`."""
    growth = np.abs(np.diff(values))
    width = np.diff(edges)
    flat = growth.sum() <= 1e-12 * max(1.0, np.abs(values).max())
    share = width.copy() if flat else width * (growth / width) ** cand.power
    counts = apportion(share, M, cand.floor)
    return place(edges, counts, cand.placement)


def candidate_schedule(engine: PathEngine, batch, M: int, cand: Candidate):
    """(B, M) alphas and weights for every input, probing the model as the candidate says."""
    N = cand.n_probe(M)
    B = batch.size
    edges = np.arange(N + 1, dtype=np.float64) / N
    curve = engine.path_values(batch, torch.from_numpy(np.tile(edges, (B, 1)))).cpu().numpy()
    all_edges = [edges] * B
    all_values = list(curve)
    if cand.refine:
        extra = np.zeros((B, cand.refine))
        for b in range(B):
            j = int(np.argmax(np.abs(np.diff(curve[b]))))
            extra[b] = edges[j] + (edges[j + 1] - edges[j]) * np.arange(1, cand.refine + 1) / (cand.refine + 1)
        more = engine.path_values(batch, torch.from_numpy(extra)).cpu().numpy()
        all_edges, all_values = [], []
        for b in range(B):
            e = np.concatenate([edges, extra[b]])
            v = np.concatenate([curve[b], more[b]])
            order = np.argsort(e, kind="stable")
            all_edges.append(e[order])
            all_values.append(v[order])
    out = [candidate_grid(all_edges[b], all_values[b], M, cand) for b in range(B)]
    return torch.from_numpy(np.stack([a for a, _ in out])), torch.from_numpy(np.stack([w for _, w in out]))


def library_schedule(engine: PathEngine, batch, M: int, which: str):
    """The library's own grids: "ours" (schedule="adaptive") or "paper" (schedule="paper")."""
    N = max(2, M // 4) if which == "ours" else M
    probe = schedules.probe_alphas(N).view(1, -1).expand(batch.size, -1).contiguous()
    curve = engine.path_values(batch, probe)
    if which == "ours":
        s = schedules.adaptive(curve, M)
    else:
        s = schedules.adaptive(curve, M, placement="left", floor=0)
    return s.alphas, s.weights, N + 1


# --------------------------------------------------------------------- folding
def fold(engine: PathEngine, batch, alphas: torch.Tensor, weights: torch.Tensor, chunk: int = 2048):
    """IG and IDG maps (B, D) float64 from gradients at alphas (B, S) with weights (B, S).

    IG = (x - x') * sum_k w_k g_k; IDG = (x - x') * sum_k w_k (g_k . (x - x')) g_k.
    """
    diff = batch.diff().reshape(batch.size, -1)
    base = batch.baseline.expand_as(batch.x).reshape(batch.size, -1).to(diff.dtype)
    B, S = alphas.shape
    ig = torch.zeros_like(diff)
    idg = torch.zeros_like(diff)
    for b in range(B):
        for s in range(0, S, chunk):
            a = alphas[b, s:s + chunk].to(diff.dtype).view(-1, 1)
            w = weights[b, s:s + chunk].to(diff.dtype)
            pts = (base[b] + a * diff[b]).reshape((-1,) + tuple(batch.x.shape[1:])).to(batch.x.dtype)
            ex = torch.full((pts.shape[0],), b, dtype=torch.int64)
            _, g = engine.gradients(batch, pts, ex)
            g = g.reshape(pts.shape[0], -1).to(diff.dtype)
            imp = g @ diff[b]
            ig[b] += w @ g
            idg[b] += (w * imp) @ g
    return ig * diff, idg * diff


def relative_error(a: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    """Per-input ||a - ref|| / ||ref|| (B,)."""
    return ((a - ref).norm(dim=1) / ref.norm(dim=1)).numpy()


def evals_to(grid: Sequence[int], errors: Sequence[Optional[float]], threshold: float) -> Optional[int]:
    """The smallest M of the grid from which the error stays <= threshold (None: never)."""
    best = None
    for M, e in zip(reversed(list(grid)), reversed(list(errors))):
        if e is None or not e <= threshold:
            break
        best = M
    return best


def _count(e: Dict) -> int:
    return CENSORED * e["max_M"] if e["gradient_evals"] is None else e["gradient_evals"]


def geomean(entries: Sequence[Dict]) -> float:
    v = [_count(e) for e in entries]
    return float(math.exp(sum(math.log(x) for x in v) / len(v)))


# ------------------------------------------------------------------- one model
def study_model(scn, grid: Sequence[int] = GRID, candidates: Sequence[Candidate] = (), ref_points: int = REF_POINTS,
                progress=None, dtype: torch.dtype = torch.float64, candidate_max: Optional[int] = None,
                rules: Sequence[str] = RULES, paper: bool = True) -> Dict:
    """Errors against M for every schedule on one Scenario; the model runs in `dtype`,
    sums in float64.

    Returns {"name", "title", "n_inputs", "grid", "curves": {schedule: {"errors": [mean
    relative error per M or None], "per_input": [[...]], "probes": [forward evals per M]}}}.
    """
    model = scn.model.to(dtype).eval()
    x = scn.inputs.to(dtype)
    engine = PathEngine(model, output="logit", accumulate_dtype=torch.float64)
    batch = engine.prepare(x, scn.baseline.to(dtype), scn.target)
    B = batch.size
    mid_a, mid_w = schedules.quadrature("riemann_middle", ref_points)
    ra = torch.from_numpy(np.tile(mid_a, (B, 1)))
    rw = torch.from_numpy(np.tile(mid_w, (B, 1)))
    ref_ig, ref_idg = fold(engine, batch, ra, rw)
    if progress is not None:
        progress.update(1)
    curves: Dict[str, Dict[str, list]] = {}

    def record(key, M, err, probes):
        c = curves.setdefault(key, {"errors": [], "per_input": [], "probes": [], "grid": []})
        c["grid"].append(M)
        c["errors"].append(float(np.mean(err)))
        c["per_input"].append([float(e) for e in err])
        c["probes"].append(probes)

    for M in grid:
        for rule in rules:
            a, w = schedules.quadrature(rule, M)
            ig, idg = fold(engine, batch, torch.from_numpy(np.tile(a, (B, 1))), torch.from_numpy(np.tile(w, (B, 1))))
            record(f"IG {rule}", M, relative_error(ig, ref_ig), 0)
            record(f"IDG {rule}", M, relative_error(idg, ref_idg), 0)
        for which in ("paper", "ours") if paper else ("ours",):
            a, w, probes = library_schedule(engine, batch, M, which)
            _, idg = fold(engine, batch, a, w)
            record(f"IDG {which}", M, relative_error(idg, ref_idg), probes)
        for cand in candidates:
            if cand is OURS or not cand.feasible(M) or (candidate_max is not None and M > candidate_max):
                continue
            a, w = candidate_schedule(engine, batch, M, cand)
            _, idg = fold(engine, batch, a, w)
            record(f"cand {cand.name}", M, relative_error(idg, ref_idg), cand.probes(M))
        if progress is not None:
            progress.update(1)
    scn.model.float()
    return {"name": scn.name, "title": scn.title, "n_inputs": B, "curves": curves, "grid": list(grid),
            "dtype": str(dtype).replace("torch.", ""), "reference": {"rule": "riemann_middle", "points": ref_points}}


def summarise(models: List[Dict], thresholds: Sequence[float] = THRESHOLDS) -> Dict:
    """Evaluations to each threshold per (schedule, model), and geometric means over models."""
    names = []
    for m in models:
        for k in m["curves"]:
            if k not in names:
                names.append(k)
    table = {}
    for k in names:
        row = {}
        for m in models:
            c = m["curves"].get(k)
            if c is None:
                continue
            entry = {}
            for t in thresholds:
                M = evals_to(c["grid"], c["errors"], t)
                probes = None if M is None else c["probes"][c["grid"].index(M)]
                entry[f"{t:g}"] = {"gradient_evals": M, "probe_forwards": probes, "max_M": c["grid"][-1]}
            row[m["name"]] = entry
        gm = {f"{t:g}": geomean([row[n][f"{t:g}"] for n in row]) for t in thresholds}
        table[k] = {"models": row, "geomean": gm}
    return table


def judge(table: Dict, model_names: Sequence[str], threshold: float = 0.01) -> List[Dict]:
    """The issue's rule for each candidate against ours: kept only if the geometric mean of
    evaluations to `threshold` drops by >= 20 % and no model needs more than 1.5x ours."""
    key = f"{threshold:g}"
    ours = table["IDG ours"]
    verdicts = []
    for name, row in table.items():
        if not name.startswith("cand "):
            continue
        ratios = {}
        for m in model_names:
            a = row["models"].get(m, {}).get(key)
            if a is None:
                continue
            ratios[m] = _count(a) / _count(ours["models"][m][key])
        gm_ratio = row["geomean"][key] / ours["geomean"][key]
        worst = max(ratios.values())
        verdicts.append({"candidate": name[5:], "geomean": row["geomean"][key], "geomean_ratio": gm_ratio,
                         "worst_model_ratio": worst, "worst_model": max(ratios, key=ratios.get),
                         "kept": bool(gm_ratio <= 0.8 and worst <= 1.5)})
    return verdicts


def candidates_as_dicts(cands: Sequence[Candidate]) -> List[Dict]:
    return [asdict(c) for c in cands]
