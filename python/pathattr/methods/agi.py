"""Adversarial Gradient Integration (Pan et al. 2021) on the shared engine: docs/methods.md §5.

For the explained class c (the target; argmax of model(x) by default) and `topk`
other classes l: walk from x_0 = x toward class l by signed steps of the gradient of
its softmax probability, x_{i+1} = clamp(x_i + eps sign(d softmax_l / dx (x_i)), lo, hi),
for at most max_iter steps, stopping once argmax model(x_i) = l, and accumulate
-d softmax_c / dx (x_i) * (x_{i+1} - x_i). The attribution is the sum over the classes.

All (input, class) pairs walk together: each iteration is one `engine.gradients`
call over the live pairs, twice each (the gradients of softmax_l and of softmax_c at
the same point); the argmax for the early stop comes from the same forward pass.
AGI always explains softmax probabilities (the paper's definition): the Explainer's
`output` setting does not apply, and there is no completeness (so no delta).

Classes: topk of them (default None: min(20, C - 1), the paper's 20 where the model
has that many others, else every other class; the count used is in the result's
settings), from the C - 1 classes other than c in increasing order, sampled at evenly
spaced positions floor((i + u) (C - 1) / topk), i = 0..topk-1, with one offset
u ~ U[0, 1) per input drawn from torch.Generator().manual_seed(seed): spread over
the label set, distinct, deterministic given `seed`.

restart=True reproduces the authors' code: every step restarts from x_0,
x_{i+1} = clamp(x_0 + eps sign(...)), and accumulates -grad_c(x_i) * (x_{i+1} - x_0).

Cost per input: at most 2 * topk * max_iter forward+backward passes (fewer when the
walks stop early), plus one forward of x.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

from ..engine.checks import check_bool, check_positive_int, check_real, check_seed, check_steps
from ..engine.core import PathBatch, PathEngine
from ..result import AttributionResult
from .common import empty_result

NAME = "agi"


TOPK = 20  # the paper's number of adversarial classes, where the model has that many others


def settings(epsilon: float = 0.05, max_iter: int = 20, topk: Optional[int] = None, seed: int = 0,
             lo: Optional[float] = None, hi: Optional[float] = None, restart: bool = False) -> Dict[str, Any]:
    """Validated settings: epsilon > 0 (step size), max_iter >= 1, topk: None (default: adapts
    to the model, min(20, C - 1) for C classes) or an int >= 1 (must be <= C - 1 at call
    time), seed >= 0 (class sampling), lo/hi clamp bounds (None = no clamp), restart."""
    epsilon = check_real(epsilon, "epsilon", 0.0, low_open=True)
    lo_, hi_ = check_real(lo, "lo", allow_none=True), check_real(hi, "hi", allow_none=True)  # None: no clamp
    if lo_ is not None and hi_ is not None and not lo_ < hi_:
        raise ValueError(f"lo must be below hi; got lo={lo_}, hi={hi_}")
    restart = check_bool(restart, "restart")
    return {"epsilon": epsilon, "max_iter": check_steps(max_iter, "max_iter"),
            "topk": check_positive_int(topk, "topk", allow_none=True), "seed": check_seed(seed),
            "lo": lo_, "hi": hi_, "restart": restart}


def class_count(topk: Optional[int], num_classes: int) -> int:
    """The number of adversarial classes: `topk`, or for None min(20, C - 1)."""
    if num_classes < 2:
        raise ValueError(f"AGI needs a model with at least 2 classes (it walks toward the other classes); "
                         f"this one has {num_classes} output")
    return min(TOPK, num_classes - 1) if topk is None else topk


def pick_classes(explained: torch.Tensor, num_classes: int, topk: Optional[int], seed: int) -> torch.Tensor:
    """(B, K) int64 adversarial classes per input, spread evenly, never the explained class;
    K = class_count(topk, num_classes)."""
    topk = class_count(topk, num_classes)
    if topk > num_classes - 1:
        raise ValueError(f"topk must be at most the number of classes - 1 = {num_classes - 1} (the classes other than "
                         f"the explained one); got topk={topk}")
    B = explained.shape[0]
    u = torch.rand(B, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    pos = torch.floor((torch.arange(topk, dtype=torch.float64) + u[:, None]) * ((num_classes - 1) / topk)).long()
    pos = pos.clamp_max(num_classes - 2)  # rounding guard; the formula stays below C - 1
    return pos + (pos >= explained.cpu().view(-1, 1)).long()


class _SoftmaxArgmax:
    """Engine output: softmax probability of the row's class; records each row's argmax."""

    def __init__(self):
        self.argmax: List[torch.Tensor] = []

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if out.dim() != 2:
            raise ValueError(f"AGI needs class outputs of shape (batch, classes); the model returned {tuple(out.shape)}")
        self.argmax.append(out.detach().argmax(1))
        return torch.softmax(out, dim=1).gather(1, target.view(-1, 1)).view(-1)


def _class_count(engine: PathEngine, batch: PathBatch) -> int:
    """C, and target=None resolved to the argmax of model(x), in one forward-only pass
    (of one input when the targets are given: only C is needed)."""
    rows = batch.size if batch.target is None else 1
    out = engine.with_output("logit").forward_rows(batch, batch.x[:rows], what="inputs")
    if batch.target is None:
        batch.target = out.argmax(1)
    C = out.shape[1]
    if int(batch.target.max()) >= C:
        raise ValueError(f"target must lie in [0, {C}) for a model with {C} outputs; got {int(batch.target.max())}")
    return C


def run(engine: PathEngine, batch: PathBatch, cfg: Dict[str, Any], want_delta: bool, want_details: bool) -> AttributionResult:
    if want_delta:
        raise ValueError("return_convergence_delta: AGI has no completeness property, so no convergence delta")
    if batch.size == 0:
        return empty_result(batch, NAME, cfg)
    C = _class_count(engine, batch)
    B, K = batch.size, class_count(cfg["topk"], C)
    classes = pick_classes(batch.target, C, K, cfg["seed"]).to(batch.x.device)
    rec = _SoftmaxArgmax()
    sm = engine.with_output(rec)  # the same runner (one model, one OOM cap), another output
    dev = batch.x.device
    ex = torch.arange(B, device=dev).repeat_interleave(K)  # pair r is input r // K, class classes[r // K, r % K]
    adv = classes.reshape(-1)
    own = batch.target.to(dev)[ex]
    x0 = batch.x.index_select(0, ex)
    cur = x0.clone()
    acc = torch.zeros(x0.shape, dtype=batch.acc_dtype, device=dev)
    live = torch.ones(B * K, dtype=torch.bool, device=dev)
    steps = torch.zeros(B * K, dtype=torch.long, device=dev)
    eps, lo, hi = cfg["epsilon"], cfg["lo"], cfg["hi"]
    for _ in range(cfg["max_iter"]):
        idx = live.nonzero().flatten()
        if idx.numel() == 0:
            break
        n = idx.numel()
        pts = cur.index_select(0, idx)
        rec.argmax.clear()
        _, grads = sm.gradients(batch, torch.cat([pts, pts]), torch.cat([ex[idx], ex[idx]]),
                                torch.cat([adv[idx], own[idx]]))
        hit = torch.cat(rec.argmax)[:n] == adv[idx]
        live[idx[hit]] = False
        go, keep = idx[~hit], ~hit
        start = x0.index_select(0, go) if cfg["restart"] else pts[keep]
        new = start + eps * torch.sign(grads[:n][keep])
        if lo is not None or hi is not None:
            new = new.clamp(min=lo, max=hi)
        acc[go] -= grads[n:][keep].to(acc.dtype) * (new - start).to(acc.dtype)
        cur[go] = new
        steps[go] += 1
    attr = acc.view((B, K) + tuple(batch.x.shape[1:])).sum(1)
    # reached: argmax became l at an iterate before the budget ran out (the last
    # iterate of a walk that used all max_iter steps is not evaluated).
    return AttributionResult(attributions=attr.to(batch.x.dtype), target=batch.target, method=NAME,
                             settings=dict(cfg, topk=K),  # the count used, also where topk=None adapted it
                             extras={"classes": classes, "steps": steps.view(B, K), "reached": (~live).view(B, K)})
