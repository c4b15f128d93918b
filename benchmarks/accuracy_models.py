"""The models and inputs of the accuracy study (issue #15 item 8; benchmarks/accuracy.py).

Each case is (name, model, inputs, note): a float64 model in eval mode and a fixed,
seeded batch of inputs (zero baseline throughout). Trained models ship with the project
(pathattr.data); the others are random-initialised with fixed seeds. They cover what
makes path integrals hard: ReLU kinks (piecewise-constant gradients), saturation (sharp
transitions), softmax attention, and LayerNorm of a near-zero input, whose boundary layer
at alpha ~ 1e-4..1e-3 a zero baseline puts on the path (docs/methods.md §1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from pathattr.data.models import ResidualCNN, SmoothMLP, TanhMLP


@dataclass
class Case:
    name: str
    model: nn.Module
    inputs: torch.Tensor  # (B, *shape) float64
    note: str
    finer_inputs: Optional[int] = None  # check the reference on this many inputs (None: all); CNNs are slow
    ref_extra: int = 60000  # most extra reference points per input where panels are bisected (CNNs: fewer)


class TokenEncoder(nn.Module):
    """(B, T, D) tokens -> pre-LN transformer encoder layer -> mean over tokens -> Linear.

    norm_first=True puts LayerNorm on the layer's input: with a zero baseline LN(alpha x)
    jumps from LN(0) to LN(x) within alpha ~ sqrt(eps) / std(x), the boundary layer."""

    def __init__(self, d: int = 32, heads: int = 4, ff: int = 64, classes: int = 5):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True,
                                                norm_first=True, activation="gelu")
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        return self.head(self.layer(x).mean(1))


class AttentionBlock(nn.Module):
    """(B, T, D) -> x + MultiheadAttention(x) -> GELU MLP on the pooled tokens (no LayerNorm)."""

    def __init__(self, d: int = 24, heads: int = 3, classes: int = 5):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.head = nn.Sequential(nn.Linear(d, 32), nn.GELU(), nn.Linear(32, classes))

    def forward(self, x):
        h = x + self.attn(x, x, x, need_weights=False)[0]
        return self.head(h.mean(1))


class Mlp(nn.Module):
    """depth x (Linear -> act) then Linear; `gain` scales every hidden pre-activation."""

    def __init__(self, d_in: int, hidden: int, classes: int, depth: int, act: Callable[[], nn.Module],
                 gain: float = 1.0):
        super().__init__()
        layers, c = [], d_in
        for _ in range(depth):
            lin = nn.Linear(c, hidden)
            with torch.no_grad():
                lin.weight.mul_(gain)
                lin.bias.mul_(gain)
            layers += [lin, act()]
            c = hidden
        layers.append(nn.Linear(c, classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], -1))


class SiluResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.c2(nn.functional.silu(self.c1(nn.functional.silu(x))))


class SiluResCNN(nn.Module):
    """A smooth residual CNN: conv stem, `blocks` SiLU residual blocks, avg-pool, Linear."""

    def __init__(self, c_in: int = 3, width: int = 12, blocks: int = 3, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(c_in, width, 3, padding=1)
        self.blocks = nn.Sequential(*[SiluResBlock(width) for _ in range(blocks)])
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def _kaiming(model: nn.Module) -> nn.Module:
    """He-normal weights (std sqrt(2 / fan_in)): ReLU signals keep their scale through 6 layers
    (PyTorch's default init shrinks them, leaving F(x) - F(x') tiny next to the gradients)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model


def _bn_stats(model: nn.Module) -> nn.Module:
    """Trained-like BatchNorm statistics and affine terms: with the defaults (mean 0, var 1, no
    shift) a bias-free ReLU ResNet is positively homogeneous and its gradient constant on a path
    from 0."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.3 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
    return model


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(seed)
    return build().double().eval()


def _randn(seed: int, *shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _rand(seed: int, *shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64)


def _digits(n: int) -> Case:
    from pathattr.data.digits import load_digits_data, load_digits_model

    x, _ = load_digits_data("test")
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(15))[:n]
    return Case("digits_cnn", load_digits_model().double().eval(), x[idx].double(),
                "DigitsCNN, trained (bundled), 1x8x8 test images, ReLU + max-pool", 2, 4000)


def _burnt(n: int) -> Case:
    from pathattr.data.scenario_models import HELDOUT_SEED, load_burnt_snacks_model
    from pathattr.data.scenarios import make_burnt_snacks

    # 12x12 canvases of the held-out generator (4-5 px objects; the model's global max-pool takes
    # any size; it classifies all 64 right): 1/7 of the 32x32 cost, which keeps the study within
    # ~15 CPU minutes
    data = make_burnt_snacks(64, seed=HELDOUT_SEED, size=12, max_squares=1, max_shapes=1, max_object=5)
    # half overcooked (class 1), half not: both decisions are explained
    pos = torch.nonzero(data.labels == 1).flatten()[: (n + 1) // 2]
    neg = torch.nonzero(data.labels == 0).flatten()[: n // 2]
    idx = torch.cat([pos, neg])
    return Case("burnt_snacks_cnn", load_burnt_snacks_model().double().eval(), data.images[idx].double(),
                "Burnt Snacks CNN, trained (bundled), 1x12x12 held-out-seed images, ReLU + max-pools", 1, 4000)


def _local_minimum(n: int) -> Case:
    from pathattr.data.scenario_models import load_local_minimum_model, local_minimum_heldout

    data = local_minimum_heldout(n)
    x = data.inputs if hasattr(data, "inputs") else data.x
    return Case("local_minimum_mlp", load_local_minimum_model().double().eval(), torch.as_tensor(x[:n]).double(),
                "Local Minimum MLP, trained (bundled), d = 6 in [0, 1], shared ReLU MLP per component")


GAIN = 40.0  # the saturating MLP's gain on every hidden pre-activation


def build_cases(n_inputs: int = 8, names: Optional[List[str]] = None) -> List[Case]:
    """The study's cases, in a fixed order; `names` keeps a subset (in this order)."""
    makers: Dict[str, Callable[[], Case]] = {
        "linear": lambda: Case("linear", _seeded(1, lambda: nn.Linear(12, 3)), _randn(101, n_inputs, 12),
                               "Linear 12 -> 3: IG is exact for any rule (a sanity row)"),
        "transformer_ln": lambda: Case(
            "transformer_ln", _seeded(2, TokenEncoder), _randn(102, n_inputs, 8, 32),
            "pre-LN TransformerEncoderLayer (d 32, 4 heads, GELU FF 64), 8 tokens: LayerNorm on the input"),
        "attention": lambda: Case(
            "attention", _seeded(3, AttentionBlock), 3 * _randn(103, n_inputs, 8, 24),
            "residual multi-head self-attention (d 24, 3 heads) + GELU head, 8 tokens ~ N(0, 3²), no LayerNorm"),
        "gelu_mlp": lambda: Case(
            "gelu_mlp", _seeded(4, lambda: SmoothMLP(32, hidden=64, out_features=10, depth=3)),
            _randn(104, n_inputs, 32), "SmoothMLP: 3 x (Linear 64, LayerNorm, GELU), 32 inputs"),
        "tanh_mlp": lambda: Case(
            "tanh_mlp", _seeded(5, lambda: TanhMLP(32, hidden=64, out_features=10, depth=3)),
            3 * _randn(105, n_inputs, 32), "TanhMLP: 3 x (Linear 64, tanh), 32 inputs ~ N(0, 3²)"),
        "relu_mlp6": lambda: Case(
            "relu_mlp6", _seeded(6, lambda: _kaiming(Mlp(32, 64, 10, 6, nn.ReLU))), _randn(106, n_inputs, 32),
            "6 x (Linear 64, ReLU), He init, 32 inputs: piecewise-constant gradients"),
        "saturating_mlp": lambda: Case(
            "saturating_mlp", _seeded(7, lambda: Mlp(32, 64, 10, 3, nn.Sigmoid, gain=GAIN)),
            _randn(107, n_inputs, 32), f"3 x (Linear 64 x{GAIN:g} gain, sigmoid): saturating, sharp transitions"),
        "resnet_relu": lambda: Case(
            "resnet_relu", _seeded(8, lambda: _bn_stats(ResidualCNN(3, 10, width=8, blocks=2, image_size=8))),
            _rand(108, n_inputs, 3, 8, 8), "ResidualCNN (ReLU, BatchNorm eval) width 8, 2 blocks, 3x8x8", 2, 4000),
        "resnet_silu": lambda: Case(
            "resnet_silu", _seeded(9, lambda: SiluResCNN(3, 8, 2, 10)), _rand(109, n_inputs, 3, 8, 8),
            "residual CNN, SiLU, width 8, 2 blocks, 3x8x8", 2, 4000),
        "digits_cnn": lambda: _digits(n_inputs),
        "burnt_snacks_cnn": lambda: _burnt(n_inputs),
        "local_minimum_mlp": lambda: _local_minimum(n_inputs),
    }
    wanted = list(makers) if names is None else names
    unknown = [w for w in wanted if w not in makers]
    if unknown:
        raise ValueError(f"models must be among {tuple(makers)}, got {unknown}")
    return [makers[w]() for w in makers if w in wanted]


ALL_MODELS = ("linear", "transformer_ln", "attention", "gelu_mlp", "tanh_mlp", "relu_mlp6", "saturating_mlp",
              "resnet_relu", "resnet_silu", "digits_cnn", "burnt_snacks_cnn", "local_minimum_mlp")
# the study's default set: every model but the linear sanity row (IG is exact there for any n)
STUDY_MODELS = tuple(m for m in ALL_MODELS if m != "linear")
# rough relative cost of a model's study (for --jobs: the slow ones start first)
COST_HINT = {"burnt_snacks_cnn": 10, "resnet_relu": 8, "digits_cnn": 5, "resnet_silu": 4, "transformer_ln": 3}
