"""The models and inputs of the quality study (issue #4), all bundled: no download.

One `Scenario` per model: the model, held-out inputs to explain, the baseline, the
explained class, ground-truth masks where they exist, and a reference set (training
data) for Expected Gradients and LPI. Held-out data are never trained on
(scenario_models.HELDOUT_SEED); reference sets come from the training streams.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from pathattr.data import scenario_models as sm
from pathattr.data.digits import load_digits_data, load_digits_model
from pathattr.data.scenarios import make_burnt_snacks, make_local_minimum


@dataclass
class Scenario:
    """name: key in tables; model: (n, *shape) -> (n, C) logits; inputs (B, *shape);
    baseline: broadcastable to inputs; target (B,) int64; masks (B, H, W) bool or None;
    references (R, *shape): training data for EG/LPI; image: inputs are (B, C, H, W)
    images in [0, 1] (metrics that perturb pixels apply); classes: C."""

    name: str
    title: str
    model: torch.nn.Module
    inputs: torch.Tensor
    baseline: torch.Tensor
    target: torch.Tensor
    references: torch.Tensor
    masks: Optional[torch.Tensor] = None
    image: bool = True
    classes: int = 2


class ValuesAtFullCertainty(torch.nn.Module):
    """The certainty-aware CNN seen as a function of the values alone, at c = 1.

    Every method but ICG (and every metric) explains this function, so all rows of the
    certainty block score the same model; ICG integrates over c with the values at x.
    """

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.net(sm.with_certainty(v, 1.0))


def _predicted(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def digits(n: int) -> Scenario:
    """The first n held-out digits (8x8), black baseline, the predicted class."""
    model = load_digits_model()
    x, _ = load_digits_data("test")
    refs, _ = load_digits_data("train")
    x = x[:n].contiguous()
    return Scenario("digits", "digits CNN (8x8)", model, x, torch.zeros(1, *x.shape[1:]), _predicted(model, x),
                    refs, classes=10)


def _snack_positives(n: int):
    held = sm.burnt_snacks_heldout(max(4 * n, 64))
    keep = torch.nonzero(held.labels == 1).flatten()[:n]
    return held.images[keep].contiguous(), held.masks[keep].contiguous()


def burnt_snacks(n: int, n_refs: int = 600) -> Scenario:
    """The first n class-1 held-out Burnt Snacks images; class 1 explained; target-square masks."""
    model = sm.load_burnt_snacks_model()
    x, masks = _snack_positives(n)
    refs = make_burnt_snacks(n_refs, seed=sm.TRAIN_SEED).images
    return Scenario("burnt_snacks", "Burnt Snacks CNN (32x32)", model, x, torch.zeros(1, *x.shape[1:]),
                    torch.ones(x.shape[0], dtype=torch.int64), refs, masks)


def burnt_snacks_certainty(n: int, n_refs: int = 600) -> Scenario:
    """As burnt_snacks, for the certainty-aware CNN at c = 1 (ICG's model)."""
    net = sm.load_burnt_snacks_certainty_model()
    model = ValuesAtFullCertainty(net).eval()
    x, masks = _snack_positives(n)
    refs = make_burnt_snacks(n_refs, seed=sm.TRAIN_SEED).images
    return Scenario("burnt_snacks_certainty", "certainty-aware Burnt Snacks CNN (c = 1)", model, x,
                    torch.zeros(1, *x.shape[1:]), torch.ones(x.shape[0], dtype=torch.int64), refs, masks)


def local_minimum(n: int, n_refs: int = 2000) -> Scenario:
    """The first n held-out Local Minimum vectors (d = 6), baseline 0, the predicted class."""
    model = sm.load_local_minimum_model()
    x = sm.local_minimum_heldout(n).inputs.contiguous()
    refs = make_local_minimum(n_refs, seed=sm.TRAIN_SEED).inputs
    return Scenario("local_minimum", "Local Minimum MLP (d = 6)", model, x, torch.zeros(1, x.shape[1]),
                    _predicted(model, x), refs, image=False)


SCENARIOS: dict = {
    "digits": digits,
    "burnt_snacks": burnt_snacks,
    "burnt_snacks_certainty": burnt_snacks_certainty,
    "local_minimum": local_minimum,
}


def load(name: str, n: int) -> Scenario:
    if name not in SCENARIOS:
        raise ValueError(f"scenario must be one of {sorted(SCENARIOS)}; got {name!r}")
    return SCENARIOS[name](n)


# ------------------------------------------------------------- synthetic paths
class SigmoidPath(torch.nn.Module):
    """F(z) = height * sigmoid(sharpness (w.z - centre)) + sum_i c_i tanh(v_i z_i), one logit.

    w is the least-norm solution of X w = 1 for the given inputs X, so along every
    input's straight path from 0, w.p(alpha) = alpha: the logit has a sharp transition
    at alpha = centre. The small tanh term turns the gradient's direction along the path,
    so the map is not a fixed vector times a scalar.
    """

    def __init__(self, inputs: torch.Tensor, centre: float, sharpness: float, height: float = 10.0, seed: int = 0):
        super().__init__()
        X = inputs.reshape(inputs.shape[0], -1).to(torch.float64)
        w = torch.linalg.lstsq(X, torch.ones(X.shape[0], 1, dtype=torch.float64), driver="gelsd").solution[:, 0]
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("w", w)
        self.register_buffer("v", torch.rand(X.shape[1], generator=g, dtype=torch.float64) * 2.0 + 0.5)
        self.register_buffer("c", torch.rand(X.shape[1], generator=g, dtype=torch.float64) * 0.1)
        self.centre, self.sharpness, self.height = float(centre), float(sharpness), float(height)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z2 = z.reshape(z.shape[0], -1)
        w, v, c = (t.to(z.dtype) for t in (self.w, self.v, self.c))
        s = torch.sigmoid(self.sharpness * (z2 @ w - self.centre)) * self.height
        return (s + (c * torch.tanh(v * z2)).sum(1)).unsqueeze(1)


SYNTHETIC = {
    # name: (centre, sharpness)
    "sigmoid_early": (0.05, 200.0),
    "sigmoid_mid": (0.6, 60.0),
    "sigmoid_late": (0.8, 200.0),
}
SYNTHETIC_TITLES = {
    "sigmoid_early": "10·sigmoid(200(α − 0.05))",
    "sigmoid_mid": "10·sigmoid(60(α − 0.6))",
    "sigmoid_late": "10·sigmoid(200(α − 0.8))",
}


def synthetic(name: str, n: int, d: int = 16, seed: int = 0) -> Scenario:
    """n random inputs in [0.5, 1.5]^d and a SigmoidPath model with the named transition."""
    if name not in SYNTHETIC:
        raise ValueError(f"synthetic path must be one of {sorted(SYNTHETIC)}; got {name!r}")
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64) + 0.5
    centre, sharp = SYNTHETIC[name]
    model = SigmoidPath(x, centre, sharp, seed=seed + 1).eval()
    return Scenario(name, SYNTHETIC_TITLES[name], model, x.float(), torch.zeros(1, d),
                    torch.zeros(n, dtype=torch.int64), x.float(), image=False, classes=1)


def certainty_path(n: int) -> Scenario:
    """ICG's path as a straight path of the joint input: (x, c = 0) -> (x, c = 1)."""
    net = sm.load_burnt_snacks_certainty_model()
    x, masks = _snack_positives(n)
    z = sm.with_certainty(x, 1.0)
    z0 = sm.with_certainty(x, 0.0)
    return Scenario("icg_path", "certainty CNN, ICG path c: 0 → 1", net, z, z0,
                    torch.ones(n, dtype=torch.int64), z, masks)



def fresh(name: str, n: int, offset: int) -> Scenario:
    """Inputs offset..offset+n-1 of a study model (the confirmation run: inputs not used to
    pick a candidate); synthetic paths get a new seed, the ICG path the next images."""
    if name in SYNTHETIC:
        return synthetic(name, n, seed=offset)
    scn = certainty_path(offset + n) if name == "icg_path" else load(name, offset + n)
    scn.inputs, scn.target = scn.inputs[offset:], scn.target[offset:]
    if scn.baseline.shape[0] > 1:
        scn.baseline = scn.baseline[offset:]
    if scn.masks is not None:
        scn.masks = scn.masks[offset:]
    return scn
