"""Small PyTorch models for the demo, the tests and the benchmarks.

Plain ``torch.nn`` only (no torchvision/timm), so every model here builds offline in
milliseconds. ``DigitsCNN`` ships with trained weights (see ``digits.py`` and
``train_digits.py``); the others are used with random weights, which is all that the
tests of attribution identities and the speed benchmarks need.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["DigitsCNN", "ResidualCNN", "SmoothMLP", "TanhMLP", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


class DigitsCNN(nn.Module):
    """The demo classifier for scikit-learn's 8x8 handwritten digits.

    Input ``(B, 1, 8, 8)`` float in ``[0, 1]``: the dataset's pixel values 0..16 divided
    by 16. This scaling *is* the model's input space, so the default zero baseline of an
    attribution method is a black image. Output ``(B, 10)`` logits.

    Three 3x3 convolutions with ReLU, one 2x2 max-pool (8x8 -> 4x4), then a linear head
    on the flattened 4x4 feature map; about 33.5k parameters (~135 kB of fp32 weights).
    Trained weights are loaded with ``pathattr.data.digits.load_digits_model``.
    """

    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(64 * 4 * 4, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a skip connection (1x1 conv + BN when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResidualCNN(nn.Module):
    """The benchmarks' "deeper residual CNN" (ResNet-style, ReLU, BatchNorm).

    Default input ``(B, 3, 32, 32)``: ``(B, in_channels, image_size, image_size)``;
    output ``(B, num_classes)`` logits. A 3x3 stem at ``width`` channels, then
    ``blocks`` basic residual blocks; the blocks are split into up to three stages, each
    stage after the first halving the resolution and doubling the channels; then global
    average pooling and a linear head. Used with random weights in eval mode (BatchNorm
    then uses its running statistics, so the model is a fixed piecewise-linear function
    of its input). ``image_size`` is not needed by the layers (pooling is global); it is
    recorded in ``input_shape`` for the benchmarks and checked in ``forward``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 32,
                 blocks: int = 4, image_size: int = 32) -> None:
        super().__init__()
        for name, value in [("in_channels", in_channels), ("num_classes", num_classes),
                            ("width", width), ("blocks", blocks), ("image_size", image_size)]:
            _check_positive_int(name, value)
        self.input_shape = (in_channels, image_size, image_size)
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        n_stages = min(3, blocks)
        per_stage = [blocks // n_stages + (1 if s < blocks % n_stages else 0) for s in range(n_stages)]
        layers, c = [], width
        for s, n in enumerate(per_stage):
            c_out = width * 2 ** s
            for b in range(n):
                stride = 2 if (s > 0 and b == 0 and image_size >= 2 ** (s + 1)) else 1
                layers.append(_BasicBlock(c, c_out, stride))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x must have shape (B, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )
        h = self.pool(self.layers(self.stem(x)))
        return self.head(torch.flatten(h, 1))


class _MLP(nn.Module):
    def __init__(self, in_features, hidden, out_features, depth, block) -> None:
        super().__init__()
        for name, value in [("in_features", in_features), ("hidden", hidden),
                            ("out_features", out_features), ("depth", depth)]:
            _check_positive_int(name, value)
        self.in_features = in_features
        layers, c = [], in_features
        for _ in range(depth):
            layers += block(c, hidden)
            c = hidden
        layers.append(nn.Linear(c, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Any (B, *shape) input with prod(shape) == in_features is flattened.
        if x.dim() < 2 or x[0].numel() != self.in_features:
            raise ValueError(f"x must be (B, ...) with {self.in_features} features per example, "
                             f"got shape {tuple(x.shape)}")
        return self.net(x.reshape(x.shape[0], -1))


class SmoothMLP(_MLP):
    """A smooth (C-infinity) MLP: ``depth`` x (Linear -> LayerNorm -> GELU), then Linear.

    Input ``(B, in_features)`` (or any ``(B, *shape)`` with ``in_features`` elements per
    example, flattened); output ``(B, out_features)``. Smoothness makes path integrals
    converge fast, so tests of the IDG identity ``sum_i IDG_i = int (dF/dalpha)^2`` and
    of quadrature accuracy can use tight tolerances.
    """

    def __init__(self, in_features: int, hidden: int = 64, out_features: int = 10,
                 depth: int = 2) -> None:
        super().__init__(in_features, hidden, out_features, depth,
                         lambda i, o: [nn.Linear(i, o), nn.LayerNorm(o), nn.GELU()])


class TanhMLP(_MLP):
    """A smooth MLP without normalisation: ``depth`` x (Linear -> tanh), then Linear.

    Input ``(B, in_features)`` (or ``(B, *shape)``, flattened); output
    ``(B, out_features)``. Bounded, analytic activations: a second smooth model for the
    IDG integral identity and for fp64 reference comparisons (call ``.double()``).
    """

    def __init__(self, in_features: int, hidden: int = 32, out_features: int = 10,
                 depth: int = 2) -> None:
        super().__init__(in_features, hidden, out_features, depth,
                         lambda i, o: [nn.Linear(i, o), nn.Tanh()])


__all__ += ["BurntSnacksCNN", "LocalMinimumMLP"]


class BurntSnacksCNN(nn.Module):
    """The Burnt Snacks classifier (the ICG paper §5.1): is there a square of 25-50 % lightness?

    Input ``(B, 1, H, W)`` float in ``[0, 1]`` (0 = black; any H, W >= 4, trained at
    32x32); with ``certainty=True`` the input is ``(B, 2, H, W)``: the image and a
    per-pixel certainty channel in ``[0, 1]`` appended on the channel dim (1 = the pixel
    is known, 0 = no information; docs/methods.md §8). Output ``(B, 2)`` logits (class 1 = overcooked).

    Four 3x3 convolutions with ReLU and two 2x2 max-pools, then a global max-pool (the
    class asks "does some square exist anywhere") and a linear head; ~33k parameters.
    Trained weights: ``pathattr.data.scenario_models.load_burnt_snacks_model``.
    """

    num_classes = 2

    def __init__(self, certainty: bool = False) -> None:
        super().__init__()
        if not isinstance(certainty, bool):
            raise TypeError(f"certainty must be a bool, got {type(certainty).__name__}")
        self.certainty = certainty
        self.in_channels = 2 if certainty else 1
        self.features = nn.Sequential(
            nn.Conv2d(self.in_channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
        )
        self.head = nn.Linear(64, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return self.head(torch.flatten(self.features(x), 1))


class LocalMinimumMLP(nn.Module):
    """The Local Minimum classifier (the ICG paper §5.2): is ``S(x) = sum_i f(x_i) > 0``?

    Input ``(B, d)`` float in ``[0, 1]``; output ``(B, 2)`` logits. As in the paper's
    architecture (its Fig. 13, a layer that sums the components), one small MLP
    ``g: R -> R`` (``depth`` x Linear -> ReLU at width ``hidden``, then Linear) is
    shared by all components and its outputs are summed: ``s = sum_i g(x_i)``; the
    logits are an affine map of ``s``. The model is additive in the score and not in
    the logits' softmax, as in the paper.
    """

    num_classes = 2

    def __init__(self, d: int = 6, hidden: int = 64, depth: int = 2) -> None:
        super().__init__()
        for name, value in [("d", d), ("hidden", hidden), ("depth", depth)]:
            _check_positive_int(name, value)
        self.d = d
        layers, c = [], 1
        for _ in range(depth):
            layers += [nn.Linear(c, hidden), nn.ReLU()]
            c = hidden
        layers.append(nn.Linear(c, 1))
        self.component = nn.Sequential(*layers)
        self.head = nn.Linear(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must have shape (B, {self.d}), got {tuple(x.shape)}")
        s = self.component(x.unsqueeze(-1)).sum(dim=1)  # (B, d, 1) -> (B, 1)
        return self.head(s)
