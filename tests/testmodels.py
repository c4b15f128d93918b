"""Small models written for the tests (no torchvision): random weights, seeded by the caller."""
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, d_in=12, hidden=16, classes=5, act=nn.ReLU):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(d_in, hidden), act(), nn.Linear(hidden, hidden), act(),
                                 nn.Linear(hidden, classes))

    def forward(self, x):
        return self.net(x)


class SmoothMLP(nn.Module):
    """GELU + LayerNorm: a smooth path, so quadrature converges fast."""

    def __init__(self, d_in=10, hidden=24, classes=4):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(d_in, hidden), nn.LayerNorm(hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, classes))

    def forward(self, x):
        return self.net(x)


class BNCNN(nn.Module):
    """A CNN with BatchNorm (used in eval mode) on (B, 3, 9, 7) inputs."""

    def __init__(self, classes=6):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def randomize_bn(model):
    """Give BatchNorm layers non-trivial running statistics, then switch to eval."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


class GatedMLP(nn.Module):
    """Takes additional forward args: a per-input gate tensor and a python float scale."""

    def __init__(self, d_in=8, classes=3):
        super().__init__()
        self.lin1 = nn.Linear(d_in, 16)
        self.lin2 = nn.Linear(16, classes)

    def forward(self, x, gate, scale=1.0):
        h = torch.tanh(self.lin1(x)) * gate
        return self.lin2(h) * scale


class Lambda(nn.Module):
    """Wraps a function of the input as a module (for analytic models)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def band(t):
    """docs/methods.md §12.3: 1 on [0.3, 0.45], 0 outside (0.2, 0.55), linear edges in between."""
    return torch.clamp((t - 0.2) / 0.1, 0, 1) * torch.clamp((0.55 - t) / 0.1, 0, 1)


class BandModel(nn.Module):
    """docs/methods.md §12.3 (the ICG paper, Table 1 made exact): F(x) = max(band(x1), band(x2)), one output."""

    def forward(self, x):
        return torch.maximum(band(x[:, 0]), band(x[:, 1])).unsqueeze(1)
class TinyTransformer(nn.Module):
    """Token ids (B, T) -> (B, classes): embedding + learned positions, one attention
    block (own code, no fused kernels) with LayerNorm and an MLP, mean pooling."""

    def __init__(self, vocab=20, dim=8, seq=6, classes=3, heads=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(seq, dim) * 0.3)
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, ids):
        h = self.embed(ids) + self.pos[: ids.shape[1]]
        B, T, D = h.shape
        q, k, v = self.qkv(h).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / (D // self.heads) ** 0.5, dim=-1)
        h = self.norm1(h + self.proj((att @ v).transpose(1, 2).reshape(B, T, D)))
        h = self.norm2(h + self.mlp(h))
        return self.head(h.mean(1))
