"""Argument checks shared by every public entry point.

Each check raises a ValueError or TypeError that names the argument and says what
was expected, before any model evaluation is spent on a call that cannot succeed.
"""
from __future__ import annotations

import math
import numbers
import weakref
from typing import Any, Optional, Tuple

import torch


def check_inputs(inputs: Any, name: str = "inputs") -> torch.Tensor:
    """A floating tensor with a batch dimension, finite everywhere."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, ...), got {type(inputs).__name__}")
    if inputs.dim() < 1:
        raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
    if not inputs.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (attributions are gradients), got dtype {inputs.dtype}; "
            f"convert it with .float() in the model's input space"
        )
    check_finite(inputs, name)
    return inputs


def all_finite(t: torch.Tensor) -> bool:
    """True when every element is finite. A sum propagates NaN and Inf, so one cheap
    reduction decides the common case; only a non-finite sum (which finite values can
    also give, by overflow) pays for the element-wise check."""
    if t.numel() == 0:
        return True
    if t.requires_grad:
        t = t.detach()
    low = t.dtype in (torch.float16, torch.bfloat16)  # sum those in fp32: their range overflows fast
    if math.isfinite(float(t.sum(dtype=torch.float32) if low else t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def check_finite(t: torch.Tensor, name: str) -> None:
    if not all_finite(t):
        bad = (~torch.isfinite(t)).reshape(t.shape[0], -1).any(1).nonzero().flatten()[:5].tolist() if t.dim() else []
        raise ValueError(f"{name} contains NaN or Inf (first affected batch rows: {bad})")


def prepare_baselines(baselines: Any, inputs: torch.Tensor, name: str = "baselines") -> torch.Tensor:
    """Normalise a baseline to shape (1, *shape) (shared) or (B, *shape) (per input).

    None means zeros in the model's input space (after any normalisation the model
    applies to its inputs itself, i.e. exactly the tensor the model receives).
    """
    shape = tuple(inputs.shape[1:])
    if baselines is None:
        return torch.zeros((1,) + shape, dtype=inputs.dtype, device=inputs.device)
    if isinstance(baselines, bool) or (isinstance(baselines, numbers.Number) and not isinstance(baselines, numbers.Real)):
        raise TypeError(f"{name} must be None, a real number or a tensor, got {type(baselines).__name__}")
    if isinstance(baselines, numbers.Real):
        b = torch.full((1,) + shape, float(baselines), dtype=inputs.dtype, device=inputs.device)
        check_finite(b, name)
        return b
    if not isinstance(baselines, torch.Tensor):
        raise TypeError(f"{name} must be None, a real number or a tensor, got {type(baselines).__name__}")
    if baselines.device != inputs.device:
        raise ValueError(f"{name} is on {baselines.device} but inputs are on {inputs.device}")
    if not (baselines.is_floating_point() or baselines.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise TypeError(f"{name} must be a real tensor, got dtype {baselines.dtype}")
    b = baselines
    if b.dim() == len(shape) and tuple(b.shape) == shape and b.dim() != inputs.dim():
        b = b.unsqueeze(0)  # one baseline without a batch dimension
    try:
        full = torch.broadcast_shapes(tuple(b.shape), tuple(inputs.shape))
    except RuntimeError:
        full = None
    if full != tuple(inputs.shape):
        raise ValueError(
            f"{name} of shape {tuple(baselines.shape)} does not broadcast to inputs of shape {tuple(inputs.shape)}; "
            f"expected {shape}, (1, *{shape}), ({inputs.shape[0]}, *{shape}) or a shape broadcastable to them"
        )
    per_input = b.dim() == inputs.dim() and b.shape[0] == inputs.shape[0] and inputs.shape[0] != 1
    target_shape = tuple(inputs.shape) if per_input else (1,) + shape
    b = b.expand(target_shape)
    b = b.to(dtype=inputs.dtype).contiguous()
    check_finite(b, name)
    return b


def check_positive_int(value: Any, name: str, minimum: int = 1, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_choice(value: Any, name: str, choices: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def first_tensor(model: Any) -> Optional[torch.Tensor]:
    """The model's first parameter or buffer (None if it has none or is not a Module).

    A Parameter object survives `model.to(...)` (only its data moves), so holding it
    lets a device check cost O(1) per call instead of walking the module tree.
    """
    found = _first_tensor_at(model)
    return None if found is None else found[-1]


def _first_tensor_at(model: Any):
    """(module path from the root, "_parameters" or "_buffers", key, tensor) of the first
    tensor, in the order of model.parameters() then model.buffers() (modules pre-order),
    read from the modules' dicts directly: the generators cost tens of microseconds."""
    if not isinstance(model, torch.nn.Module):
        return None
    for attr in ("_parameters", "_buffers"):
        stack = [((), model)]
        while stack:
            path, m = stack.pop()
            for key, t in getattr(m, attr, {}).items():
                if t is not None:
                    return path, attr, key, t
            stack.extend(reversed([(path + (name,), c) for name, c in m._modules.items() if c is not None]))
    return None


def _still_there(model: torch.nn.Module, found) -> bool:
    """The remembered tensor is still at its place in the model (a few dict lookups)."""
    path, attr, key, t = found
    try:  # plain dicts, or TorchScript's ordered dicts (no .get)
        m = model
        for name in path:
            m = m._modules[name]
        return getattr(m, attr)[key] is t
    except (KeyError, AttributeError, TypeError, RuntimeError):
        return False


_FIRST = weakref.WeakKeyDictionary()  # model -> where its first tensor is, so an Explainer per call stays cheap


def model_device_ref(model: Any) -> Optional[torch.Tensor]:
    """`first_tensor(model)`, remembered per model together with where it was found, and
    looked up again whenever it is no longer there (a parameter or submodule replaced)."""
    if not isinstance(model, torch.nn.Module):
        return None
    try:
        found = _FIRST.get(model)
    except TypeError:  # a model that cannot be a weak dictionary key (unhashable)
        return first_tensor(model)
    if found is None or not _still_there(model, found):
        found = _first_tensor_at(model)
        if found is None:
            return None
        try:
            _FIRST[model] = found
        except TypeError:
            pass
    return found[-1]


def check_model_device(ref: Optional[torch.Tensor], inputs: torch.Tensor, model: Any = None) -> None:
    """Model and inputs on one device. With `model`, `ref` is re-read from it (cheap when
    remembered: `model_device_ref`), so a long-lived engine sees parameters replaced later."""
    if model is not None:
        ref = model_device_ref(model)
    if ref is None or ref.device == inputs.device:
        return
    dev = ref.device
    if dev.type != inputs.device.type or (
        dev.type == "cuda" and dev.index is not None and inputs.device.index is not None and dev.index != inputs.device.index
    ):
        raise ValueError(f"model is on {dev} but inputs are on {inputs.device}; move one of them with .to(...)")


def normalize_forward_args(additional_forward_args: Any) -> Tuple[Any, ...]:
    if additional_forward_args is None:
        return ()
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    if isinstance(additional_forward_args, list):
        return tuple(additional_forward_args)
    return (additional_forward_args,)


def broadcasts_to(shape, target_shape) -> bool:
    """True when a tensor of `shape` broadcasts to exactly `target_shape`."""
    try:
        return torch.broadcast_shapes(tuple(shape), tuple(target_shape)) == tuple(target_shape)
    except RuntimeError:
        return False
