"""Which scalar of the model's output is explained (SPEC §0).

`target` picks a class per input; `output` says what is taken of that class: the
raw logit (default, as the IDG paper explains), its softmax or log-softmax
probability, or a user callable `f(model_output, target) -> (rows,)`.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Optional, Union

import torch

OUTPUTS = ("logit", "softmax", "log_softmax")
OutputSpec = Union[str, Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]]


def check_output(output: Any) -> OutputSpec:
    if callable(output):
        return output
    if isinstance(output, str) and output in OUTPUTS:
        return output
    raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))} or a callable f(model_output, target) -> (batch,); got {output!r}")


def parse_target(target: Any, batch: int, device: torch.device, return_range: bool = False):
    """Turn `target` into a (B,) int64 tensor, or None for "argmax of model(x)".

    The range [0, C) is checked later by `check_target_range`, once C is known; with
    `return_range` the result is (target, (min, max) or None), so that check needs no
    second reduction and a caller can see when every input has the same class.
    """
    if target is None:
        return (None, None) if return_range else None
    if isinstance(target, bool):
        raise TypeError("target must be an int, a sequence of ints or an integer tensor, got a bool")
    lo = hi = None
    if isinstance(target, numbers.Integral):
        lo = hi = _class_in_range(int(target))
        t = torch.full((batch,), lo, dtype=torch.long)
    elif isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target must hold integers, got a tensor of dtype {target.dtype}")
        if target.device.type == "meta":
            raise ValueError("target is on the meta device: it holds no values")
        if target.dim() == 0:
            t = torch.full((batch,), int(target.item()), dtype=torch.long)
        elif target.dim() == 1:
            t = target if target.dtype == torch.long and not target.is_cuda else target.to("cpu", torch.long)
        else:
            raise ValueError(f"target must be an int or a 1-d sequence of {batch} ints, got a tensor of shape {tuple(target.shape)}")
    elif isinstance(target, (list, tuple)):
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in target):
            raise TypeError("target must be an int or a sequence of ints (one per input); got a sequence with non-integers")
        vals = [int(v) for v in target]
        if vals:
            lo, hi = _class_in_range(min(vals)), _class_in_range(max(vals))
        t = torch.tensor(vals, dtype=torch.long)
    else:
        raise TypeError(f"target must be None, an int, a sequence of ints or an integer tensor; got {type(target).__name__}")
    if t.numel() != batch:
        raise ValueError(f"target has {t.numel()} entries but the batch has {batch} inputs")
    if not t.numel():
        lo = hi = None
    elif lo is None:
        if t.numel() <= 64:  # a few Python ints beat two tensor reductions
            vals = t.tolist()
            lo, hi = min(vals), max(vals)
        else:
            lo, hi = (int(v) for v in torch.aminmax(t))
        _class_in_range(lo)
    if t.device != device:
        t = t.to(device)
    return (t, None if lo is None else (lo, hi)) if return_range else t


def _class_in_range(value: int) -> int:
    """A class index: not negative (no wrap-around) and within int64 (the index dtype)."""
    if value < 0:
        raise ValueError(f"target must lie in [0, num_classes); got {value} (negative targets are not wrapped around: "
                         f"-1 is usually an 'ignore' label)")
    if value > 2 ** 63 - 1:
        raise ValueError(f"target must lie in [0, num_classes); got {value}, beyond any class index (int64)")
    return value


def check_target_range(target: Optional[torch.Tensor], model_output: torch.Tensor, output: OutputSpec,
                       known_max: Optional[int] = None) -> None:
    """Every target below the model's number of outputs C (`known_max`: max(target), if known)."""
    if target is None or callable(output) or target.numel() == 0:
        return
    check_class_index(int(target.max()) if known_max is None else known_max, model_output.shape[1])


def check_class_index(hi: int, classes: int) -> None:
    """The largest target `hi` below the model's number of outputs."""
    if hi >= classes:
        raise ValueError(f"target must lie in [0, {classes}) for a model with {classes} outputs; got {hi}")


def check_model_output(out: Any, rows: int, output: OutputSpec) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the model returned {type(out).__name__}; it must return a tensor of shape (batch, classes), "
            f"or pass output=callable to reduce its output to one scalar per input"
        )
    if callable(output):
        return out
    if out.dim() != 2 or out.shape[0] != rows:
        raise ValueError(
            f"the model's output has shape {tuple(out.shape)} for a batch of {rows}; expected (batch, classes). "
            f"Pass output=callable f(model_output, target) -> (batch,) to explain another kind of output"
        )
    return out


def select_output(out: torch.Tensor, target: Union[None, int, torch.Tensor], output: OutputSpec) -> torch.Tensor:
    """The explained scalar per row: shape (rows,). Low-precision outputs are upcast first.

    target: (rows,) or (rows, 1) classes, or one int for every row (a named output only;
    a column view, cheaper than a gather forward and backward)."""
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    if callable(output):
        val = output(out, target if target is None or target.dim() == 1 else target.view(-1))
        if not isinstance(val, torch.Tensor) or val.dim() != 1 or val.shape[0] != out.shape[0]:
            shape = tuple(val.shape) if isinstance(val, torch.Tensor) else type(val).__name__
            raise ValueError(f"output callable must return a tensor of shape ({out.shape[0]},), got {shape}")
        return val
    if output == "softmax":
        out = torch.softmax(out, dim=1)
    elif output == "log_softmax":
        out = torch.log_softmax(out, dim=1)
    if isinstance(target, int):
        return out.select(1, target)
    return out.gather(1, target if target.dim() == 2 else target.view(-1, 1)).view(-1)
