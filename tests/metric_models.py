"""A toy with a known answer for the faithfulness metrics: the model looks only at a
fixed region and scores how closely it matches a template there, so revealing (or
keeping) that region first is the best possible ordering and revealing it last the worst."""
import numpy as np
import torch
from torch import nn


class TemplateModel(nn.Module):
    """Two classes; logit_1 = a - b * mean |x - template| over `region`, logit_0 = 0."""

    def __init__(self, template, region, a=6.0, b=40.0):
        super().__init__()
        self.register_buffer("template", template)
        self.register_buffer("region", region.to(template.dtype))
        self.a, self.b = a, b

    def forward(self, x):
        d = ((x - self.template).abs() * self.region).sum((1, 2, 3)) / (self.region.sum() * x.shape[1])
        return torch.stack([torch.zeros_like(d), self.a - self.b * d], 1)


def toy(batch, channels, height, width, seed, dtype=torch.float64):
    """(model, float images in [0, 1], the same images as uint8, region (H, W) bool).

    Images: a random texture, with the template's pixels inside a square region."""
    g = np.random.default_rng(seed)
    region = np.zeros((height, width), dtype=bool)
    r0, c0 = g.integers(1, height // 2), g.integers(1, width // 2)
    region[r0:r0 + height // 3, c0:c0 + width // 3] = True
    template = g.integers(0, 256, (channels, height, width))
    u8 = g.integers(0, 256, (batch, channels, height, width))
    u8[:, :, region] = template[:, region]
    u8 = torch.from_numpy(u8.astype(np.uint8))
    model = TemplateModel(torch.from_numpy(template / 255.0).to(dtype), torch.from_numpy(region)).eval()
    return model, u8.to(dtype) / 255.0, u8, torch.from_numpy(region)


def orderings(region, batch, seed):
    """Oracle (region first), random, and inverted (region last) saliency maps (B, H, W)."""
    g = torch.Generator().manual_seed(seed)
    h, w = region.shape
    jitter = torch.rand(batch, h, w, generator=g, dtype=torch.float64) * 0.1  # breaks ties within each set
    oracle = region.double() + jitter
    random = torch.rand(batch, h, w, generator=g, dtype=torch.float64)
    inverted = (1.0 - region.double()) + jitter
    return {"oracle": oracle, "random": random, "inverted": inverted}
