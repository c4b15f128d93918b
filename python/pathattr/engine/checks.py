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


def check_inputs(inputs: Any, name: str = "inputs", finite: bool = True) -> torch.Tensor:
    """A floating tensor with a batch dimension, finite everywhere (finite=False: the
    caller checks the values later, after the cheaper device checks)."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, ...), got {type(inputs).__name__}")
    if inputs.dim() < 1:
        raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
    if not inputs.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (attributions are gradients), got dtype {inputs.dtype}; "
            f"convert it with .float() in the model's input space"
        )
    if finite:
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
    if t.device.type == "meta":  # no values to check (and a device the model cannot share)
        raise ValueError(f"{name} is on the meta device: it holds no values")
    if not all_finite(t):
        bad = (~torch.isfinite(t)).reshape(t.shape[0], -1).any(1).nonzero().flatten()[:5].tolist() if t.dim() else []
        raise ValueError(f"{name} contains NaN or Inf (first affected batch rows: {bad})")


def prepare_baselines(baselines: Any, inputs: torch.Tensor, name: str = "baselines") -> torch.Tensor:
    """Normalise a baseline to shape (1, *shape) (shared) or (B, *shape) (per input).

    None means zeros in the model's input space (after any normalisation the model
    applies to its inputs itself, i.e. exactly the tensor the model receives). Checked
    in the order type, shape, device, values. For integer inputs (token ids, layer
    attribution) the baseline must hold whole numbers: 0.5 is no token.
    """
    shape = tuple(inputs.shape[1:])
    if baselines is None:
        return torch.zeros((1,) + shape, dtype=inputs.dtype, device=inputs.device)
    if isinstance(baselines, bool) or (isinstance(baselines, numbers.Number) and not isinstance(baselines, numbers.Real)):
        raise TypeError(f"{name} must be None, a real number or a tensor, got {type(baselines).__name__}")
    if isinstance(baselines, numbers.Real):
        v = float(baselines)
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {baselines!r}")
        _check_whole(v == int(v), inputs, name, baselines)
        return torch.full((1,) + shape, v if inputs.is_floating_point() else int(v), dtype=inputs.dtype,
                          device=inputs.device)
    if not isinstance(baselines, torch.Tensor):
        raise TypeError(f"{name} must be None, a real number or a tensor, got {type(baselines).__name__}")
    if not (baselines.is_floating_point() or baselines.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise TypeError(f"{name} must be a real tensor, got dtype {baselines.dtype}")
    b = baselines
    if b.dim() == len(shape) and tuple(b.shape) == shape and b.dim() != inputs.dim():
        b = b.unsqueeze(0)  # one baseline without a batch dimension
    if not broadcasts_to(b.shape, inputs.shape):
        raise ValueError(
            f"{name} of shape {tuple(baselines.shape)} does not broadcast to inputs of shape {tuple(inputs.shape)}; "
            f"expected {shape}, (1, *{shape}), ({inputs.shape[0]}, *{shape}) or a shape broadcastable to them"
        )
    if baselines.device != inputs.device:
        raise ValueError(f"{name} is on {baselines.device} but inputs are on {inputs.device}")
    per_input = b.dim() == inputs.dim() and b.shape[0] == inputs.shape[0] and inputs.shape[0] != 1
    target_shape = tuple(inputs.shape) if per_input else (1,) + shape
    b = b.expand(target_shape)
    if b.is_floating_point():
        check_finite(b, name)  # before any cast: NaN as an integer is a number
        if not inputs.is_floating_point():
            _check_whole(b.numel() == 0 or bool((b == b.round()).all()), inputs, name, "a tensor with fractions")
    return b.to(dtype=inputs.dtype).contiguous()


def _check_whole(whole: bool, inputs: torch.Tensor, name: str, value: Any) -> None:
    if not whole and not inputs.is_floating_point():
        raise ValueError(f"{name} must hold whole numbers for inputs of dtype {inputs.dtype} (e.g. token ids: the "
                         f"baseline is a token too); got {value!r}")


# Upper bound on samples per input (n_steps, n_probe, references, permutations, ...): far
# past where any quadrature has converged, and a request beyond it is a typo that would
# otherwise end in a failed allocation (or hours of Gauss-Legendre nodes: O(n^2), 1 s at 10^4).
MAX_STEPS = 100_000
INT64_MAX = 2 ** 63 - 1
SEED_MAX = 2 ** 64 - 1  # torch.Generator.manual_seed takes 64 bits


def check_positive_int(value: Any, name: str, minimum: int = 1, allow_none: bool = False,
                       maximum: Optional[int] = None) -> Optional[int]:
    """An integer (not a bool) in [minimum, maximum]; None passes with allow_none."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        what = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
        raise TypeError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return int(value)


def check_steps(value: Any, name: str = "n_steps", allow_none: bool = False) -> Optional[int]:
    """A number of samples per input: an integer in [1, MAX_STEPS]."""
    return check_positive_int(value, name, allow_none=allow_none, maximum=MAX_STEPS)


def check_seed(value: Any, name: str = "seed", maximum: int = SEED_MAX) -> int:
    """A random seed: an integer in [0, maximum] (64 bits: what torch.Generator takes)."""
    return check_positive_int(value, name, minimum=0, maximum=maximum)


def check_bool(value: Any, name: str) -> bool:
    """True or False (numpy's bool too); 0, 1, None and strings are refused."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def check_real(value: Any, name: str, low: float = -math.inf, high: float = math.inf, low_open: bool = False,
               high_open: bool = False, allow_none: bool = False) -> Optional[float]:
    """A finite real number (not a bool) in the interval given by low/high and its open ends."""
    if value is None and allow_none:
        return None
    lo_b, hi_b = "(" if low_open else "[", ")" if high_open else "]"
    what = "a finite number" if low == -math.inf and high == math.inf else f"a number in {lo_b}{low:g}, {high:g}{hi_b}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return v


def check_device(value: Any, name: str = "device") -> torch.device:
    """A torch.device, a device string ("cpu", "cuda:0") or a CUDA index, parsed."""
    if isinstance(value, bool) or not isinstance(value, (str, torch.device, numbers.Integral)):
        raise TypeError(f"{name} must be a torch.device, a device string such as 'cpu' or 'cuda:0', or a CUDA "
                        f"index, got {value!r}")
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{name} must name a device such as 'cpu' or 'cuda:0', got {value!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name} is {dev} but CUDA is not available on this machine")
    return dev


def check_shape(value: Any, name: str) -> Tuple[int, ...]:
    """A shape: an int or a sequence of ints >= 0 (a torch.Size, a tuple, a list)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (str, bytes, torch.Tensor)) or not isinstance(value, (tuple, list, torch.Size)):
        raise TypeError(f"{name} must be a shape, a tuple of ints such as (3, 32, 32), got {value!r}")
    return tuple(check_positive_int(d, f"{name}[{i}]", minimum=0) for i, d in enumerate(value))


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
    if not same_device(ref.device, inputs.device):
        raise ValueError(f"model is on {ref.device} but inputs are on {inputs.device}; move one of them with .to(...)")


def same_device(a: torch.device, b: torch.device) -> bool:
    """One device ("cuda" without an index matches any CUDA device)."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def check_device_of(model: Any, device: torch.device, name: str = "device") -> None:
    """`device` (where a caller will put the model's inputs) is the model's device."""
    ref = model_device_ref(model)
    if ref is not None and not same_device(ref.device, device):
        raise ValueError(f"{name} is {device} but the model is on {ref.device}")


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


RTOL_MIN_STEPS = 17  # rtol mode's first round: four intervals of five nested samples (4 * 4 + 1)
RTOL_MAX_STEPS = 1025  # its default cap per input (one integrand row is kept per sample)


def check_tolerance(rtol: Any, min_steps: Any, max_steps: Any) -> dict:
    """rtol mode's settings (docs/methods.md §14): rtol a relative L2 error in (0, 1);
    min_steps / max_steps gradient evaluations per input (RTOL_MIN_STEPS, RTOL_MAX_STEPS), only
    with rtol. Returns {} when rtol is None (fixed n_steps)."""
    if rtol is None:
        for value, name in ((min_steps, "min_steps"), (max_steps, "max_steps")):
            if value is not None:
                raise ValueError(f"{name} bounds the samples of rtol mode: give rtol= too (got {name}={value!r}, rtol=None)")
        return {}
    tol = check_real(rtol, "rtol", 0.0, 1.0, low_open=True, high_open=True)
    lo = check_positive_int(min_steps if min_steps is not None else RTOL_MIN_STEPS, "min_steps", minimum=5, maximum=MAX_STEPS)
    hi = check_positive_int(max_steps if max_steps is not None else max(RTOL_MAX_STEPS, lo), "max_steps", minimum=5,
                            maximum=MAX_STEPS)
    if hi < lo:
        raise ValueError(f"max_steps ({hi}) must be >= min_steps ({lo})")
    return {"rtol": float(tol), "min_steps": lo, "max_steps": hi}
