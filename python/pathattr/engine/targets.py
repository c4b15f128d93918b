"""Which scalar of the model's output is explained (docs/methods.md §0).

`target` picks a class per input; `output` says what is taken of that class: the
raw logit (default, as the IDG paper explains), its softmax or log-softmax
probability, or a user callable `f(model_output, target) -> (rows,)`.

Models as users have them: a model may return a tensor, a tuple/list, a dict or a
Hugging Face `ModelOutput`. A named output reads the model's logits from it (the
tensor itself; the "logits" entry of a dict-like output; element 0 of a tuple), or
the entry named before a colon ("start_logits:softmax"). An output callable gets the
model's output as it was returned; the engine meanwhile carries a non-tensor output
as one packed (rows, K) tensor of its floating leaves (`OutputCallable`), so slicing
rows, joining chunks and expanding a shared baseline work as they do on tensors.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

import torch

from .rawoutput import Layout

OUTPUTS = ("logit", "softmax", "log_softmax")
OUTPUT_HELP = ("output must be one of 'logit', 'softmax', 'log_softmax', 'KEY:FUNC' (FUNC one of those three, "
               "applied to the entry KEY of a dict-like model output or element KEY (an integer) of a tuple, e.g. "
               "'start_logits:softmax'), or a callable f(model_output, target) -> (batch,)")


class KeyedOutput(str):
    """A named output of one entry of the model's output: "KEY:FUNC" (e.g. "start_logits:softmax").

    A str, so the engine treats it as any named output (class-column selection, target
    range check, CUDA graphs); `key` says where the (rows, classes) tensor is, `fn` what
    is taken of it."""

    key: str
    fn: str


class OutputCallable:
    """The user's output callable, called with the model's output as the model returned it.

    A tensor output passes through untouched. Any other output (tuple, dict, ModelOutput)
    is packed into one (rows, K) tensor by `pack` (its floating tensors with a batch
    dimension, side by side; everything else kept as returned) and rebuilt by `unpack`
    just before the callable runs: the engine only ever slices and joins tensors."""

    __slots__ = ("fn", "layout")

    def __init__(self, fn: Callable):
        self.fn = fn
        self.layout: Optional[Layout] = None  # the last non-tensor output's structure (None: a tensor)

    def __call__(self, out: torch.Tensor, target: Optional[torch.Tensor]) -> torch.Tensor:
        return self.fn(out if self.layout is None else self.layout.unpack(out), target)

    def pack(self, out: Any, rows: int) -> torch.Tensor:
        self.layout, packed = Layout.of(out, rows)
        return packed

    def raw(self, out: torch.Tensor) -> Any:
        """The model's output as returned, from what `check_model_output` gave."""
        return out if self.layout is None else self.layout.unpack(out)

    def __repr__(self) -> str:
        return f"OutputCallable({self.fn!r})"


OutputSpec = Union[str, OutputCallable]


def check_output(output: Any) -> OutputSpec:
    """A named output (str; "KEY:FUNC" as a KeyedOutput) or the callable wrapped in an OutputCallable."""
    if isinstance(output, OutputCallable):
        return OutputCallable(output.fn)  # a fresh layout per engine
    if callable(output):
        return OutputCallable(output)
    if isinstance(output, str):
        if output in OUTPUTS:
            return output
        key, sep, fn = output.rpartition(":")
        if sep and key and fn in OUTPUTS:
            spec = KeyedOutput(output)
            spec.key, spec.fn = key, fn
            return spec
    raise ValueError(f"{OUTPUT_HELP}; got {output!r}")


def _keys(out: Any) -> str:
    return ", ".join(repr(k) for k in list(out.keys())[:20])


def logits_of(out: Any) -> Any:
    """The model's logits in a raw output: a tensor itself; the "logits" entry of a dict
    or ModelOutput; element 0 of a tuple or list. None where there is none."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        return out.get("logits") if "logits" in out else None
    if isinstance(out, (tuple, list)):
        return out[0] if len(out) else None
    return getattr(out, "logits", None)


def _named_tensor(out: Any, output: str) -> Any:
    """The tensor a named output reads from a non-tensor model output (raises, naming `output`)."""
    what = type(out).__name__
    if type(output) is str:
        found = logits_of(out)
        if found is None:
            keys = f" (its keys: {_keys(out)})" if isinstance(out, Mapping) else ""
            raise ValueError(
                f"output={output!r} takes the model's logits, but the model returned a {what} without them{keys}: "
                f"a named output reads a tensor, the 'logits' entry of a dict or ModelOutput, or element 0 of a tuple; "
                f"pass output='KEY:{output}' to read another entry, or an output callable")
        return found
    key = output.key
    if isinstance(out, Mapping):
        if key not in out:
            raise ValueError(f"output={str(output)!r} reads the entry {key!r}, but the model's {what} has no such key "
                             f"(its keys: {_keys(out)})")
        return out[key]
    if isinstance(out, (tuple, list)):
        if not (key.isdigit() and int(key) < len(out)):
            raise ValueError(f"output={str(output)!r}: the model returned a {what} of {len(out)} elements; "
                             f"KEY must be an index in [0, {len(out)})")
        return out[int(key)]
    if isinstance(out, torch.Tensor):
        raise ValueError(f"output={str(output)!r} reads the entry {key!r} of the model's output, but the model "
                         f"returned a tensor; use output={output.fn!r}")
    if not hasattr(out, key):
        raise ValueError(f"output={str(output)!r} reads the attribute {key!r}, but the model's {what} has none")
    return getattr(out, key)


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
    """What the engine works on: a named output's (rows, classes) tensor, or for an output
    callable the model's tensor (any shape) or its packed non-tensor output (rows, K)."""
    if isinstance(out, torch.Tensor):
        if callable(output):
            output.layout = None
            return out
        if type(output) is not str:
            _named_tensor(out, output)  # raises: a key of a tensor
    elif callable(output):
        return output.pack(out, rows)
    else:
        out = _named_tensor(out, output)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"output={str(output)!r} reads a {type(out).__name__} from the model's output; it must be "
                            f"a tensor of shape (batch, classes) (or pass an output callable)")
    if out.dim() != 2 or out.shape[0] != rows:
        raise ValueError(
            f"the model's output has shape {tuple(out.shape)} for a batch of {rows}; expected (batch, classes). "
            f"Pass output=callable f(model_output, target) -> (batch,) to explain another kind of output"
        )
    return out


def resolve_target(out: torch.Tensor, output: OutputSpec) -> torch.Tensor:
    """target=None: the argmax of the model's logits at the inputs (`out`: check_model_output's
    result for those rows). An output callable gets these targets, never None, so a model
    output without (batch, classes) logits is an error that names `target`."""
    if not callable(output):
        return out.argmax(1)
    raw = output.raw(out)
    logits = logits_of(raw)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        got = (f"logits of shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor)
               else f"a {type(raw).__name__} without logits")
        raise ValueError(
            f"target=None means the argmax of the model's logits (a (batch, classes) tensor: the output itself, its "
            f"'logits' entry or element 0 of a tuple), but the model returned {got}; pass target= (one int per "
            f"input; any ints if your output callable ignores them)")
    return logits.detach().argmax(1)


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
    fn = output if type(output) is str else output.fn
    if fn == "softmax":
        out = torch.softmax(out, dim=1)
    elif fn == "log_softmax":
        out = torch.log_softmax(out, dim=1)
    if isinstance(target, int):
        return out.select(1, target)
    return out.gather(1, target if target.dim() == 2 else target.view(-1, 1)).view(-1)
