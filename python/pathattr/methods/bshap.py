"""BShap: Shapley values of the features with absent features set to the baseline (docs/methods.md §9).

phi_i = sum_{S not containing i} |S|! (d - |S| - 1)! / d! [F(x_{S+i}; x'_rest) - F(x_S; x'_rest)].

Features are single elements of the input or groups given by an integer
`feature_mask` (as Captum's: every element of a group gets the group's value, so
images can use superpixels). With d <= max_exact_features (default 16) all 2^d
subset points of every input are evaluated in large forward-only chunks and the
sum is taken exactly; beyond that, `n_permutations` random orders per input
(seeded) each give d marginal contributions from d + 1 points along the order
(Castro et al.'s permutation sampling). Both are efficient by construction:
sum_i phi_i = F(x) - F(x') up to rounding. Subset points are built by selection
(torch.where), so they hold x's and x''s values exactly.
Cost per input: 2^d forward passes (exact) or n_permutations * (d - 1) + 2.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Tuple

import torch

from ..engine.checks import all_finite, broadcasts_to, check_positive_int, check_seed, check_steps
from ..engine.core import PathBatch, PathEngine
from ..result import AttributionResult
from ..engine.targets import check_target_range, select_output
from .common import empty_result

NAME = "bshap"
MAX_EXACT = 20  # 2^20 forward passes per input is the most exact enumeration allowed


def settings(feature_mask: Any = None, n_permutations: int = 25, max_exact_features: int = 16,
             seed: int = 0) -> Dict[str, Any]:
    """feature_mask: None (every element is a feature) or an integer tensor of group ids
    broadcastable to the inputs, as Captum's (one input's shape, (1, *shape), (B, *shape),
    (1, 1, H, W) for images: channels share groups); n_permutations per input when
    sampling (default 25); max_exact_features: enumerate all subsets up to this many
    features (default 16, at most 20); seed for the permutations."""
    if feature_mask is not None:
        if not isinstance(feature_mask, torch.Tensor):
            raise TypeError(f"feature_mask must be None or an integer tensor, got {type(feature_mask).__name__}")
        if feature_mask.is_floating_point() or feature_mask.is_complex() or feature_mask.dtype == torch.bool:
            raise TypeError(f"feature_mask must hold integer group ids, got dtype {feature_mask.dtype}")
    m = check_positive_int(max_exact_features, "max_exact_features", minimum=0)
    if m > MAX_EXACT:
        raise ValueError(f"max_exact_features must be <= {MAX_EXACT} (2^{MAX_EXACT} forward passes per input); got {m}")
    return {"feature_mask": feature_mask, "n_permutations": check_steps(n_permutations, "n_permutations"),
            "max_exact_features": m, "seed": check_seed(seed)}


def feature_groups(feature_mask, x: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """Group ids per element as (1 or B, D) int64, relabelled 0..d-1 per input, and d."""
    B, D = x.shape[0], x[0].numel() if x.shape[0] else 0
    if feature_mask is None:
        return torch.arange(D, device=x.device).view(1, D), D
    fm = feature_mask
    shape = tuple(x.shape[1:])
    if fm.dim() < x.dim():  # broadcasting aligns the trailing dimensions: (H, W), (1, H, W), ...
        fm = fm.reshape((1,) * (x.dim() - fm.dim()) + tuple(fm.shape))
    if not broadcasts_to(fm.shape, x.shape):
        raise ValueError(f"feature_mask of shape {tuple(feature_mask.shape)} does not broadcast to inputs of shape "
                         f"{tuple(x.shape)}; expected {shape}, (1, *{shape}), ({B}, *{shape}) or a shape broadcastable "
                         f"to them, e.g. (1, 1, H, W) for (B, C, H, W) images")
    if fm.device != x.device:
        raise ValueError(f"feature_mask is on {fm.device} but inputs are on {x.device}")
    fm = fm.expand((fm.shape[0],) + shape)  # (1 or B, *shape): every element gets its group's id
    if B == 0:
        return torch.zeros((1, D), dtype=torch.long, device=x.device), 0
    rows, d = [], None
    for r in fm.reshape(fm.shape[0], -1).to(torch.long):
        ids, inv = torch.unique(r, return_inverse=True)
        if d is not None and ids.numel() != d:
            raise ValueError(f"feature_mask must give every input the same number of groups; got {d} and {ids.numel()}")
        d = ids.numel()
        rows.append(inv)
    return torch.stack(rows), int(d)


def run(engine: PathEngine, batch: PathBatch, cfg: Dict[str, Any], want_delta: bool, want_details: bool) -> AttributionResult:
    shown = {k: v for k, v in cfg.items() if k != "feature_mask"}
    groups, d = feature_groups(cfg["feature_mask"], batch.x)
    if batch.size == 0 or d == 0:
        return empty_result(batch, NAME, shown)
    exact = d <= cfg["max_exact_features"]
    if exact:
        if batch.target is None:
            engine.endpoints(batch, baselines=False)
        values = _exact_values(engine, batch, groups, d)  # (B, 2^d)
        phi = _shapley_from_subsets(values.double(), d)
        f_x, f_b = values[:, -1], values[:, 0]
    else:
        f_x, f_b = engine.endpoints(batch)
        perms = permutations(batch.size, cfg["n_permutations"], d, cfg["seed"])
        values = _permutation_values(engine, batch, groups, perms, f_x, f_b)  # (B, P, d + 1)
        phi = _shapley_from_permutations(values.double(), perms.to(values.device))
    phi = phi.to(batch.acc_dtype)
    attr = phi.gather(1, groups.expand(batch.size, -1)).view(batch.x.shape)
    delta = phi.sum(1) - (f_x - f_b)
    return AttributionResult(
        attributions=attr.to(batch.x.dtype), target=batch.target, delta=delta, path_values=values,
        start_value=f_b, end_value=f_x, method=NAME,
        settings=dict(shown, n_features=d, mode="exact" if exact else "permutation"),
    )


def permutations(batch: int, n: int, d: int, seed: int) -> torch.Tensor:
    """(B, P, d) int64 random orders of the d features from a seeded generator (CPU)."""
    g = torch.Generator().manual_seed(seed)
    return torch.argsort(torch.rand((batch, n, d), generator=g, dtype=torch.float64), dim=-1)


def _shapley_weights(d: int) -> torch.Tensor:
    """|S|! (d - |S| - 1)! / d! for |S| = 0..d-1, float64 (exact integers, one rounding)."""
    return torch.tensor([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) for s in range(d)],
                        dtype=torch.float64)


def _shapley_from_subsets(values: torch.Tensor, d: int) -> torch.Tensor:
    """phi (B, d) from F at every subset (B, 2^d); subset s holds feature i iff bit i of s is set.

    phi_i = sum_S F(S) c_i(S) with c_i(S) = w(|S| - 1) if i in S else -w(|S|): the same
    sum as the pairwise differences, regrouped into one (B, 2^d) x (2^d, d) product.
    """
    s = torch.arange(1 << d, device=values.device)
    bits = ((s.view(-1, 1) >> torch.arange(d, device=values.device)) & 1).bool()  # (2^d, d)
    size = bits.sum(1, keepdim=True)
    w = _shapley_weights(d).to(device=values.device, dtype=values.dtype)
    coef = torch.where(bits, w[(size - 1).clamp_min(0)], -w[size.clamp_max(d - 1)])
    return values @ coef


def _shapley_from_permutations(values: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """phi (B, d): mean over orders of F(after adding feature) - F(before); values (B, P, d + 1)."""
    gains = values[..., 1:] - values[..., :-1]  # gains[b, p, t] belongs to feature perms[b, p, t]
    phi = torch.zeros(perms.shape[0], perms.shape[2], dtype=values.dtype, device=values.device)
    phi.scatter_add_(1, perms.reshape(perms.shape[0], -1), gains.reshape(perms.shape[0], -1))
    return phi / perms.shape[1]


def _exact_values(engine: PathEngine, batch: PathBatch, groups: torch.Tensor, d: int) -> torch.Tensor:
    """F at all 2^d subset points of every input: (B, 2^d) in the accumulator dtype."""
    N = 1 << d

    def members(rows: torch.Tensor) -> torch.Tensor:
        subset = (rows % N).view(-1, 1)
        return ((subset >> _groups_of(groups, rows // N)) & 1).bool()

    return _values(engine, batch, members, N).view(batch.size, N)


def _permutation_values(engine, batch, groups, perms, f_x, f_b) -> torch.Tensor:
    """F after each prefix of every order: (B, P, d + 1), the ends from F(x') and F(x)."""
    B, P, d = perms.shape
    rank = torch.argsort(perms, dim=-1).to(batch.x.device)  # rank[b, p, g]: position of group g in order p
    inner = d - 1  # prefixes of length 1..d-1 need the model; lengths 0 and d are x' and x

    def members(rows: torch.Tensor) -> torch.Tensor:
        b, rest = rows // (P * inner), rows % (P * inner)
        p, t = rest // inner, rest % inner + 1
        r = rank[b, p]  # (n, d)
        return r.gather(1, _groups_of(groups, b)) < t.view(-1, 1)

    out = torch.empty((B, P, d + 1), dtype=batch.acc_dtype, device=batch.x.device)
    out[..., 0] = f_b.view(B, 1)
    out[..., d] = f_x.view(B, 1)
    if inner > 0:
        out[..., 1:d] = _values(engine, batch, members, P * inner).view(B, P, inner)
    return out


def _groups_of(groups: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
    return groups.expand(len(examples), -1) if groups.shape[0] == 1 else groups[examples]


def _values(engine: PathEngine, batch: PathBatch, members: Callable[[torch.Tensor], torch.Tensor],
            per_input: int) -> torch.Tensor:
    """F at B * per_input points, forward only, in the runner's chunks; row r belongs to
    input r // per_input.

    members(rows) -> (n, D) bool says which elements of each row's point come from x
    (the rest from x')."""
    x2 = batch.x.reshape(batch.size, -1)
    b2 = batch.baseline.reshape(batch.baseline.shape[0], -1)
    total = batch.size * per_input
    out = torch.empty(total, dtype=batch.acc_dtype, device=batch.x.device)

    def step(s, n):
        rows = torch.arange(s, s + n, device=batch.x.device)
        ex = rows // per_input
        base = b2.expand(n, -1) if b2.shape[0] == 1 else b2[ex]
        points = torch.where(members(rows), x2[ex], base).view((n,) + tuple(batch.x.shape[1:]))
        raw = engine.check_output(engine.runner.call(points, batch.args_for(ex) if batch.args else ()), n, batch,
                                  "subset points")
        tgt = None if batch.target is None else batch.target[ex]
        if s == 0:
            check_target_range(tgt, raw, engine.output)
        return select_output(raw, tgt, engine.output)

    def keep(s, n, v):
        out[s:s + n] = v

    engine.runner.chunks(total, batch.features, batch.x.device.type, step, keep, forward_only=True)
    if not all_finite(out):
        bad = (~torch.isfinite(out)).nonzero().flatten() // per_input
        raise FloatingPointError(f"the model's output is NaN or Inf at some BShap subset points, for inputs "
                                 f"{batch.user_inputs(bad.tolist())[:5]}")
    return out
