"""Pieces every faithfulness metric shares: argument checks, the per-pixel saliency,
its ranking, and chunked no-grad forward passes that return class probabilities.

Metrics perturb images, never differentiate, so every forward pass here runs forward
only through the engine's model runner, in chunks of `batch_size` rows, whatever device
the model is on.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch

from ..engine.runner import ModelRunner
from ..engine.checks import check_finite, check_model_device, check_positive_int, first_tensor
from ..engine.targets import parse_target

DEFAULT_BATCH_SIZE = 256


def check_model(model: Any) -> None:
    if not callable(model):
        raise TypeError(f"model must be a callable (e.g. a torch.nn.Module) returning (batch, classes) logits, "
                        f"got {type(model).__name__}")


def check_images(images: Any, name: str = "inputs", finite: bool = True) -> torch.Tensor:
    """A floating (B, C, H, W) tensor, finite everywhere (finite=False: checked later by
    the caller, after the device checks)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, channels, height, width), "
                        f"got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape (batch, channels, height, width), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor in the model's input space, got dtype {images.dtype}")
    if images.shape[0] == 0 or images.shape[2] * images.shape[3] == 0:
        raise ValueError(f"{name} must hold at least one image with at least one pixel, got {tuple(images.shape)}")
    if finite:
        check_finite(images, name)
    return images


def saliency_map(attributions: Any, batch: int, hw: Tuple[int, int], name: str = "attributions",
                 reduce: str = "abs_sum") -> torch.Tensor:
    """Per-pixel saliency (B, H, W) in float64 from attributions (B, C, H, W) or (B, H, W).

    reduce="abs_sum" (default): |sum over channels| (docs/methods.md §11); "sum": the signed sum.
    """
    if not isinstance(attributions, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, channels, height, width) or "
                        f"(batch, height, width), got {type(attributions).__name__}")
    if attributions.is_complex() or attributions.dtype == torch.bool:
        raise TypeError(f"{name} must be a real tensor, got dtype {attributions.dtype}")
    a = attributions
    if a.dim() == 3:
        a = a.unsqueeze(1)
    if a.dim() != 4 or a.shape[0] != batch or tuple(a.shape[2:]) != tuple(hw):
        raise ValueError(f"{name} must have shape ({batch}, C, {hw[0]}, {hw[1]}) or ({batch}, {hw[0]}, {hw[1]}), "
                         f"got {tuple(attributions.shape)}")
    check_finite(a, name)
    s = a.detach().to(torch.float64).sum(1)
    return s.abs() if reduce == "abs_sum" else s


def ranking(saliency: torch.Tensor) -> torch.Tensor:
    """(B, H*W) pixel indices, most salient first; ties keep row-major order (stable sort)."""
    return torch.sort(saliency.flatten(1), dim=1, descending=True, stable=True).indices


def rank_of_pixel(saliency: torch.Tensor) -> torch.Tensor:
    """(B, H*W) position of each pixel in the ranking (0 = most salient)."""
    order = ranking(saliency)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks


def check_batch_size(batch_size: Any) -> int:
    return check_positive_int(batch_size, "batch_size")


def model_reference(model: Any, inputs: torch.Tensor) -> None:
    check_model_device(first_tensor(model), inputs)


def check_call(model: Any, inputs: Any, target: Any) -> Tuple[torch.Tensor, Any]:
    """The model, the images and the target of a model-based metric, in the order types,
    shapes, devices, values: (images, target (B,) int64 or None), before any forward."""
    check_model(model)
    x = check_images(inputs, finite=False)
    model_reference(model, x)
    check_finite(x, "inputs")
    return x, parse_target(target, x.shape[0], x.device)


def forward_probs(model: Callable, total: int, make: Callable[[int, int], torch.Tensor], batch_size: int) -> torch.Tensor:
    """Softmax probabilities (total, classes) in float64 of the rows make(start, n) builds,
    forward only through the engine's model runner (chunks of `batch_size` rows, halved
    on out-of-memory; the model is never called from here directly)."""
    runner = ModelRunner(model, probe_batch_size=batch_size)

    def check(out, s, n):
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != n:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"model must return logits of shape (batch, classes); got {shape} when given {n} images")
        return torch.softmax(out.detach().to(torch.float64), dim=1)

    probs = runner.outputs(total, 1, "cpu", lambda s, n: (make(s, n), ()), check)
    if not torch.isfinite(probs).all():
        raise ValueError("model returned NaN or Inf logits on a perturbed input")
    return probs


def resolve_target(model: Callable, images: torch.Tensor, target: Optional[torch.Tensor], batch_size: int
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(target (B,) int64, probabilities on the original images (B, classes)).

    target: parsed by `check_call` (before any forward); None is the class the model
    predicts on the original image.
    """
    probs = forward_probs(model, images.shape[0], lambda s, n: images[s:s + n], batch_size)
    t = target
    if t is None:
        t = probs.argmax(1)
    elif t.numel() and int(t.max()) >= probs.shape[1]:
        raise ValueError(f"target must lie in [0, {probs.shape[1]}) for a model with {probs.shape[1]} outputs; "
                         f"got {int(t.max())}")
    return t.to(probs.device), probs


def trapezoid_unit(curve: torch.Tensor) -> torch.Tensor:
    """Trapezoid-rule area under equally spaced samples of [0, 1] along the last dim."""
    n = curve.shape[-1] - 1
    return (curve.sum(-1) - 0.5 * (curve[..., 0] + curve[..., -1])) / n

