"""Certainty-aware models and Integrated Certainty Gradients (docs/methods.md §8, the ICG paper).

Input layout. A certainty-aware network takes one tensor z = cat([values, c], dim=1):
values (B, C, ...) followed by the certainty c (B, Cc, ...) with Cc = 1 (one
certainty per position, shared by its C channels) or Cc = C (one per feature), and
c in [0, 1] (1 = the value is known, 0 = no information). `CertaintyModel` wraps
such a network and records C and Cc, so its layout travels with it.

Training with `damage` teaches c = 0 to mean "missing": per example an extent
e ~ U(0, 1); certainties with mean 1 - e, either binary (Bernoulli) or continuous
(a continuous Bernoulli reparameterised by its mean, the ICG paper §A.3.2); each feature
is kept with probability c, and a feature not kept is replaced by the same feature
of another example of the batch ("adversarial") or by U(0, 1) noise ("noise").
"mixed" draws the variant per example; the paper found mixing trained best.

ICG itself (method "icg", `integrated_certainty_gradients`) integrates along c from
0 to 1 with the values held at x; the two checks of the ICG paper §A.3.1 are
`information_absence` and `neutrality`, which return measured numbers.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ..engine.checks import check_choice, check_inputs, check_positive_int
from ..engine.runner import ModelRunner

CERTAINTY_KINDS = ("binary", "continuous", "mixed")
BACKGROUNDS = ("adversarial", "noise", "mixed")


class CertaintyModel(nn.Module):
    """A network over cat([values, certainty], dim=1), with its layout recorded.

    Args:
        net: module mapping (B, C + Cc, ...) to (B, classes).
        value_channels: C, the channels of the values.
        certainty_channels: Cc, 1 (default; one certainty per position) or C.
    forward(z) runs net(z) on the joint tensor (what attribution engines see);
    `combine(values, certainty)` builds z, `predict(values, certainty=None)` runs the
    model on values (certainty 1 when None: undamaged use).
    """

    def __init__(self, net: nn.Module, value_channels: int, certainty_channels: int = 1):
        super().__init__()
        if not callable(net):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        self.value_channels = check_positive_int(value_channels, "value_channels")
        cc = check_positive_int(certainty_channels, "certainty_channels")
        if cc not in (1, self.value_channels):
            raise ValueError(f"certainty_channels must be 1 or value_channels ({self.value_channels}); got {cc}")
        self.certainty_channels = cc

    def forward(self, z: torch.Tensor, *args: Any) -> torch.Tensor:
        return self.net(z, *args)

    def certainty_shape(self, values: torch.Tensor):
        return (values.shape[0], self.certainty_channels) + tuple(values.shape[2:])

    def combine(self, values: torch.Tensor, certainty: Any = None) -> torch.Tensor:
        """z = cat([values, c], 1); certainty None = 1 everywhere, a number, or a tensor
        broadcastable to (B, Cc, ...)."""
        values = check_inputs(values, "values")
        if values.dim() < 2 or values.shape[1] != self.value_channels:
            raise ValueError(f"values must have shape (B, {self.value_channels}, ...); got {tuple(values.shape)}")
        shape = self.certainty_shape(values)
        if certainty is None:
            certainty = 1.0
        c = torch.as_tensor(certainty, dtype=values.dtype, device=values.device)
        try:
            c = c.expand(shape)
        except RuntimeError:
            raise ValueError(f"certainty of shape {tuple(c.shape)} does not broadcast to {shape} (B, Cc, ...)") from None
        return torch.cat([values, c], 1)

    def split(self, z: torch.Tensor):
        """(values, certainty) views of a joint tensor."""
        return z[:, :self.value_channels], z[:, self.value_channels:]

    def predict(self, values: torch.Tensor, certainty: Any = None) -> torch.Tensor:
        return self.net(self.combine(values, certainty))


# ------------------------------------------------------------------ damage
def _rand(shape, generator, device, dtype):
    return torch.rand(shape, generator=generator, device=device, dtype=dtype)


# The continuous Bernoulli CB(lambda) is parameterised here by t = logit(lambda), which
# keeps means near 0 and 1 in reach (the mean approaches them only like 1/|t|):
#     mean(t) = 1 / (1 - exp(-t)) - 1 / t,  icdf(u) = log1p(u (exp(t) - 1)) / t.
@functools.lru_cache(maxsize=1)
def _cb_mean_table():
    """(t, mean(t)) on 40,001 points, t in [-2e4, 2e4] densest near 0 (computed once)."""
    s = torch.linspace(-1, 1, 40001, dtype=torch.float64) * torch.log1p(torch.tensor(2e4, dtype=torch.float64))
    t = torch.sign(s) * torch.expm1(s.abs())
    small = t.abs() < 1e-3
    safe = torch.where(small, torch.ones_like(t), t)
    mean = torch.where(small, 0.5 + t / 12, 1 / (-torch.expm1(-safe)) - 1 / safe)
    return t, mean


def continuous_bernoulli_logit(mean: torch.Tensor) -> torch.Tensor:
    """t = logit(lambda) of the continuous Bernoulli with the given mean (the paper's
    reparameterisation by the mean, the ICG paper §A.3.2), by linear interpolation in a
    table (mean error below 1e-6). The mean is clamped to [1e-4, 1 - 1e-4]."""
    t, means = _cb_mean_table()
    target = mean.detach().double().cpu().clamp(1e-4, 1 - 1e-4)
    hi = torch.searchsorted(means, target).clamp(1, means.numel() - 1)
    lo = hi - 1
    w = (target - means[lo]) / (means[hi] - means[lo])
    return (t[lo] + w * (t[hi] - t[lo])).to(device=mean.device)


def _cb_icdf(u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Inverse CDF of CB with logit t; x = u near t = 0 (the density is 1 + O(t) there);
    for t > 0 the form 1 + log(u + (1 - u) exp(-t)) / t avoids overflow."""
    u, t = u.double(), t.double()
    flat = t.abs() < 1e-6
    safe = torch.where(flat, torch.ones_like(t), t)
    neg = torch.log1p(u * torch.expm1(torch.clamp(safe, max=0))) / safe
    pos = 1 + torch.log(u + (1 - u) * torch.exp(-torch.clamp(safe, min=0))) / safe
    return torch.where(flat, u, torch.where(safe < 0, neg, pos)).clamp(0, 1)


def sample_certainty(shape, kind: str = "mixed", extent: Optional[torch.Tensor] = None, generator=None,
                     device=None, dtype=torch.float32) -> torch.Tensor:
    """Certainties of `shape` (B, Cc, ...) with mean 1 - extent per example.

    kind: "binary" (c in {0, 1}, Bernoulli(1 - e)), "continuous" (continuous Bernoulli
    with mean 1 - e) or "mixed" (either, per example, with probability 1/2).
    extent: (B,) damage extents in [0, 1]; None draws e ~ U(0, 1).
    """
    check_choice(kind, "kind", CERTAINTY_KINDS)
    B = shape[0]
    if extent is None:
        extent = _rand((B,), generator, device, dtype)
    view = (B,) + (1,) * (len(shape) - 1)
    mean = (1 - extent).to(dtype).view(view).expand(shape)
    u = _rand(shape, generator, device, dtype)
    binary = (u < mean).to(dtype)
    if kind == "binary":
        return binary
    logit = continuous_bernoulli_logit(mean[(slice(None),) + (0,) * (len(shape) - 1)]).view(view).expand(shape)
    cont = _cb_icdf(_rand(shape, generator, device, dtype), logit).to(dtype)
    if kind == "continuous":
        return cont
    pick = _rand((B,), generator, device, dtype).view(view) < 0.5
    return torch.where(pick, binary, cont)


def damage(values: torch.Tensor, certainty_channels: int = 1, certainty: str = "mixed", background: str = "mixed",
           extent: Optional[torch.Tensor] = None, generator=None):
    """Damage a batch for certainty training: returns (damaged values (B, C, ...), c (B, Cc, ...)).

    Each feature is kept with probability c; a feature not kept takes the background:
    "adversarial" (the same feature of another example of the batch, B >= 2), "noise"
    (U(0, 1)) or "mixed" (either, per example). See the module docstring.
    """
    values = check_inputs(values, "values")
    check_choice(certainty, "certainty", CERTAINTY_KINDS)
    check_choice(background, "background", BACKGROUNDS)
    if values.dim() < 2:
        raise ValueError(f"values must have shape (B, C, ...); got {tuple(values.shape)}")
    B, C = values.shape[:2]
    if certainty_channels not in (1, C):
        raise ValueError(f"certainty_channels must be 1 or the values' channels ({C}); got {certainty_channels}")
    if background != "noise" and B < 2:
        raise ValueError("values must hold at least 2 examples for the 'adversarial' or 'mixed' background")
    dev, dt = values.device, values.dtype
    shape = (B, certainty_channels) + tuple(values.shape[2:])
    c = sample_certainty(shape, certainty, extent, generator, dev, dt)
    keep = _rand(shape, generator, dev, dt) < c  # P(keep) = c; exact for binary c
    view = (B,) + (1,) * (values.dim() - 1)
    # Another example for every example: a shift of 1..B-1 never maps i to itself.
    shift = torch.randint(1, max(B, 2), (1,), generator=generator, device=dev) if B > 1 else torch.zeros(1, dtype=torch.long)
    other = values[(torch.arange(B, device=dev) + shift.to(dev)) % B] if B > 1 else values
    noise = _rand(values.shape, generator, dev, dt)
    if background == "adversarial":
        bg = other
    elif background == "noise":
        bg = noise
    else:
        bg = torch.where(_rand((B,), generator, dev, dt).view(view) < 0.5, other, noise)
    return torch.where(keep.expand_as(values), values, bg), c


def train_certainty_model(model: CertaintyModel, values: torch.Tensor, labels: torch.Tensor, epochs: int = 10,
                          batch_size: int = 64, lr: float = 1e-3, certainty: str = "mixed", background: str = "mixed",
                          undamaged_fraction: float = 0.1, empty_fraction: float = 0.1, seed: int = 0) -> List[float]:
    """Train `model` in place with Adam and cross-entropy on damaged batches.

    A fraction `undamaged_fraction` of each batch is shown with c = 1 and no damage
    (the model's ordinary use), and a fraction `empty_fraction` with extent 1 (c = 0
    everywhere, every value from the background): ICG's starting point, which the
    paper's U(0, 1) extents reach with probability 0 (our addition; 0 turns it off;
    measured on the test's synthetic task: it is what brings information absence
    below 5 %). Returns the mean loss of every epoch. Deterministic
    for a given seed on CPU.
    """
    if not isinstance(model, CertaintyModel):
        raise TypeError(f"model must be a CertaintyModel, got {type(model).__name__}")
    values = check_inputs(values, "values")
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32) or labels.shape != values.shape[:1]:
        raise ValueError(f"labels must be an integer tensor of shape ({values.shape[0]},)")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size", minimum=2)
    if not 0 <= undamaged_fraction <= 1:
        raise ValueError(f"undamaged_fraction must lie in [0, 1]; got {undamaged_fraction}")
    if not 0 <= empty_fraction <= 1 - undamaged_fraction:
        raise ValueError(f"empty_fraction must lie in [0, 1 - undamaged_fraction]; got {empty_fraction}")
    gen = torch.Generator(device=values.device).manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(values.shape[0], generator=gen, device=values.device)
        total, count = 0.0, 0
        for s in range(0, values.shape[0] - 1, batch_size):
            idx = order[s:s + batch_size]
            if idx.numel() < 2:
                continue
            xb, yb = values[idx], labels[idx].long()
            n_clean = int(round(undamaged_fraction * idx.numel()))
            n_empty = int(round(empty_fraction * idx.numel()))
            extent = torch.rand(idx.numel(), generator=gen, device=xb.device, dtype=xb.dtype)
            extent[n_clean:n_clean + n_empty] = 1.0
            damaged, c = damage(xb, model.certainty_channels, certainty, background, extent=extent, generator=gen)
            if n_clean:
                damaged[:n_clean], c[:n_clean] = xb[:n_clean], 1.0
            loss = nn.functional.cross_entropy(model(torch.cat([damaged, c], 1)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
            count += idx.numel()
        losses.append(total / max(count, 1))
    model.eval()
    return losses


# ------------------------------------------------------------------ checks
def _outputs(model: CertaintyModel, values: torch.Tensor, certainty: float, output: str) -> torch.Tensor:
    """model.predict(values, certainty), forward only through the engine's model runner."""
    z = model.combine(values, certainty)
    out = ModelRunner(model).outputs(z.shape[0], z[0].numel() if z.shape[0] else 1, z.device.type,
                                     lambda s, n: (z[s:s + n], ()))
    if output == "softmax":
        return out.softmax(1)
    if output == "log_softmax":
        return out.log_softmax(1)
    return out


def information_absence(model: CertaintyModel, values: torch.Tensor, output: str = "softmax") -> Dict[str, float]:
    """Seed 004 §A.3.1: with c = 0 the output must not depend on the values.

    Over the inputs `values` (B >= 2; use random x), measures
        spread_at_zero = mean_i || o(x_i, c=0) - mean_j o(x_j, c=0) ||_2
        change = mean_i || o(x_i, c=1) - o(x_i, c=0) ||_2
        ratio = spread_at_zero / change   (a well-trained model: well below 1)
    and max_spread_at_zero, the largest such distance. o is the model output taken as
    `output` ("softmax" default, "logit", "log_softmax").
    """
    if not isinstance(model, CertaintyModel):
        raise TypeError(f"model must be a CertaintyModel, got {type(model).__name__}")
    check_choice(output, "output", ("softmax", "logit", "log_softmax"))
    values = check_inputs(values, "values")
    if values.shape[0] < 2:
        raise ValueError("values must hold at least 2 inputs to measure how the output varies")
    o0 = _outputs(model, values, 0.0, output).double()
    o1 = _outputs(model, values, 1.0, output).double()
    dist = (o0 - o0.mean(0, keepdim=True)).norm(dim=1)
    change = float((o1 - o0).norm(dim=1).mean())
    spread = float(dist.mean())
    return {"spread_at_zero": spread, "max_spread_at_zero": float(dist.max()), "change": change,
            "ratio": spread / change if change > 0 else float("inf")}


def neutrality(model: CertaintyModel, values: torch.Tensor, class_prior: torch.Tensor) -> Dict[str, Any]:
    """Seed 004 §A.3.1: at c = 0 the predicted probabilities should match the class prior.

    class_prior: (classes,) probabilities, or integer training labels (N,) from which the
    class proportions are counted. Returns mean_probabilities (classes,), prior
    (classes,), max_abs_error and total_variation = 0.5 * sum |p - prior| (floats).
    """
    if not isinstance(model, CertaintyModel):
        raise TypeError(f"model must be a CertaintyModel, got {type(model).__name__}")
    values = check_inputs(values, "values")
    p = _outputs(model, values, 0.0, "softmax").double().mean(0).cpu()
    if not isinstance(class_prior, torch.Tensor):
        raise TypeError(f"class_prior must be a tensor of probabilities or integer labels, got {type(class_prior).__name__}")
    if class_prior.is_floating_point():
        prior = class_prior.double().cpu()
        if prior.shape != p.shape or abs(float(prior.sum()) - 1) > 1e-6 or bool((prior < 0).any()):
            raise ValueError(f"class_prior must be {tuple(p.shape)} probabilities summing to 1")
    else:
        if class_prior.numel() == 0 or int(class_prior.min()) < 0 or int(class_prior.max()) >= p.numel():
            raise ValueError(f"class_prior labels must lie in [0, {p.numel()}) and not be empty")
        prior = torch.bincount(class_prior.reshape(-1).cpu().long(), minlength=p.numel()).double()
        prior = prior / prior.sum()
    err = (p - prior).abs()
    return {"mean_probabilities": p, "prior": prior, "max_abs_error": float(err.max()),
            "total_variation": float(err.sum() / 2)}


def suppression_check(model: CertaintyModel, values: torch.Tensor, region_mask: torch.Tensor, target: Any = None,
                      baselines=(0.0, 1.0), n_steps: int = 50) -> Dict[str, float]:
    """Seed 004 §A.3.1's visual test as numbers: with c = 0 on a region, ordinary IG (over
    the values, c held fixed) should give that region almost no attribution.

    For each baseline value b (default 0 and 1, as in the paper's Figure 7), IG of the
    values from b to x is taken with c = 1 - region_mask, and again with c = 1. Returns,
    per baseline, the share of the total |IG| that falls in the region, averaged over
    inputs: "masked_share_b" and "unmasked_share_b"; "suppression_b", the region's total
    |IG| with c = 0 there divided by the same with c = 1 (near 0 for a well-trained
    model); and "area_share", the region's fraction of the value features.

    region_mask: 0/1 tensor broadcastable to the certainty (B, Cc, ...), e.g. (Cc, H, W).
    """
    from ..api import integrated_gradients  # IG proper: the check uses a non-certainty method

    if not isinstance(model, CertaintyModel):
        raise TypeError(f"model must be a CertaintyModel, got {type(model).__name__}")
    values = check_inputs(values, "values")
    shape = model.certainty_shape(values)
    if not isinstance(region_mask, torch.Tensor):
        raise TypeError(f"region_mask must be a tensor, got {type(region_mask).__name__}")
    try:
        region = region_mask.to(values.dtype).expand(shape)
    except RuntimeError:
        raise ValueError(f"region_mask of shape {tuple(region_mask.shape)} does not broadcast to the certainty {shape}") from None
    if not bool(((region == 0) | (region == 1)).all()):
        raise ValueError("region_mask must hold only 0 and 1")
    in_region = region.expand_as(values) if model.certainty_channels == 1 else region
    out: Dict[str, float] = {"area_share": float(in_region.mean())}
    C = model.value_channels
    for b in baselines:
        mass = {}
        for name, c in (("masked", 1 - region), ("unmasked", torch.ones_like(region))):
            z, zb = model.combine(values, c), model.combine(torch.full_like(values, float(b)), c)
            ig = integrated_gradients(model, z, zb, target=target, n_steps=n_steps)[:, :C].abs()
            inside = (ig * in_region).flatten(1).sum(1)
            mass[name] = float(inside.sum())
            out[f"{name}_share_{b:g}"] = float((inside / ig.flatten(1).sum(1).clamp_min(1e-30)).mean())
        out[f"suppression_{b:g}"] = mass["masked"] / mass["unmasked"] if mass["unmasked"] > 0 else float("nan")
    return out


# ------------------------------------------------------------------ ICG
def integrated_certainty_gradients(model, inputs: torch.Tensor, target: Any = None, additional_forward_args: Any = None,
                                   n_steps: int = 100, method: str = "riemann_middle",
                                   certainty_channels: Optional[int] = None, internal_batch_size: Optional[int] = None,
                                   return_convergence_delta: bool = False, return_details: bool = False,
                                   output="logit", autocast: Optional[torch.dtype] = None, backend: str = "auto",
                                   accumulate_dtype: Optional[torch.dtype] = None):
    """Integrated Certainty Gradients: ICG_i = int_0^1 dF(x, c = alpha)/dc_i dalpha.

    Args:
        model: a CertaintyModel (or a network over cat([values, c], 1); then give
            certainty_channels, default 1).
        inputs: the values x (B, C, ...), held fixed along the path.
        n_steps, method: the quadrature rule over alpha (default 100 midpoint steps).
        target, additional_forward_args, output ("logit" default; the paper attributes
            "softmax" probabilities), internal_batch_size, autocast, backend,
            accumulate_dtype: as in `integrated_gradients`.
    Returns:
        attributions (B, Cc, ...) (the certainty's shape); with return_convergence_delta
        also delta (B,) = sum ICG - (F(x, c=1) - F(x, c=0)).
    Cost: n_steps forward+backward passes per input (+1 forward of (x, 1) and (x, 0)
        when target is None or a delta is asked for).
    """
    from ..explainer import Explainer

    ex = Explainer(model, "icg", n_steps=n_steps, rule=method, certainty_channels=certainty_channels, output=output,
                   internal_batch_size=internal_batch_size, autocast=autocast, backend=backend,
                   accumulate_dtype=accumulate_dtype)
    return ex.attribute(inputs, None, target, additional_forward_args, return_convergence_delta, return_details)
