"""Tuples of inputs (models of several tensors, as Captum takes them) as one packed input.

`inputs=(x1, x2, ...)` becomes one (B, D1 + D2 + ...) tensor in the parts' common
floating dtype; the user's model is wrapped (`PackedModel`) so that each path row is
split back into views of each input's shape, cast to that input's dtype, before the
model is called as model(x1_rows, x2_rows, ..., *additional_forward_args). Baselines
(one per part) and reference sets are packed the same way. The engine and the methods
run unchanged on the packed tensor: the straight path of the packed row is the tuple
of the parts' straight paths, so attributions, deltas and details are exactly those
of the tuple; the attributions are split back into a tuple at the end.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Sequence, Tuple

import torch
from torch import nn

from .checks import check_inputs, prepare_baselines

# Methods whose settings hold nothing of one input's shape (a feature mask, a bank of
# references), so the packed input is all they see.
METHODS = ("ig", "idg", "left_ig", "guided_ig", "expected_gradients")


def is_tuple(inputs: Any) -> bool:
    return isinstance(inputs, (tuple, list))


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each input lives in a packed row: its shape (without the batch dim), dtype and width."""

    shapes: Tuple[Tuple[int, ...], ...]
    dtypes: Tuple[torch.dtype, ...]
    dtype: torch.dtype  # the packed dtype: the parts' common floating dtype

    @property
    def sizes(self) -> Tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    def split(self, packed: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Rows (R, D) of packed inputs as views (R, *shape_i), each in its input's dtype."""
        rows = packed.shape[0]
        parts = packed.reshape(rows, -1).split(self.sizes, dim=1)
        return tuple(p.reshape((rows,) + s).to(dt) for p, s, dt in zip(parts, self.shapes, self.dtypes))

    def join(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Tensors (R, *shape_i) with a common R as one (R, D) tensor in the packed dtype."""
        rows = parts[0].shape[0]
        return torch.cat([p.reshape(rows, -1).to(self.dtype) for p in parts], 1)


def pack_inputs(inputs: Sequence[Any]) -> Tuple[torch.Tensor, Layout]:
    """The tuple `inputs` as one (B, D) tensor and its layout. Every part: a finite floating
    tensor with the batch dimension of inputs[0], on one device (errors name `inputs[i]`)."""
    if len(inputs) == 0:
        raise ValueError("inputs is an empty tuple; pass a tensor (batch, ...) or a tuple of them")
    parts = [check_inputs(x, f"inputs[{i}]") for i, x in enumerate(inputs)]
    B, dev = parts[0].shape[0], parts[0].device
    for i, x in enumerate(parts[1:], 1):
        if x.shape[0] != B:
            raise ValueError(f"inputs[{i}] has {x.shape[0]} rows but inputs[0] has {B}: every input of the tuple "
                             f"needs the same batch size")
        if x.device != dev:
            raise ValueError(f"inputs[{i}] is on {x.device} but inputs[0] is on {dev}")
    dtype = parts[0].dtype
    for x in parts[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    layout = Layout(tuple(tuple(x.shape[1:]) for x in parts), tuple(x.dtype for x in parts), dtype)
    x = layout.join([p.detach() for p in parts])
    return x, layout


def pack_baselines(baselines: Any, inputs: Sequence[torch.Tensor], layout: Layout) -> Any:
    """Baselines for tuple inputs: None (zeros), one number for every part, or a tuple with
    one entry per part, each None, a number or a tensor (shaped as `baselines` for one
    input: (shape), (1, *shape), (B, *shape) or broadcastable). Returns None, the number,
    or a packed (1 or B, D) tensor."""
    if baselines is None or (isinstance(baselines, numbers.Real) and not isinstance(baselines, bool)):
        return baselines
    if not is_tuple(baselines):
        raise TypeError(f"baselines must be None, a number or a tuple of {len(inputs)} baselines (one per input, "
                        f"each None, a number or a tensor) for tuple inputs; got {type(baselines).__name__}")
    if len(baselines) != len(inputs):
        raise ValueError(f"baselines has {len(baselines)} entries but inputs has {len(inputs)}: one baseline per input")
    parts = [prepare_baselines(b, x, f"baselines[{i}]") for i, (b, x) in enumerate(zip(baselines, inputs))]
    rows = max(p.shape[0] for p in parts)
    return layout.join([p.expand((rows,) + tuple(p.shape[1:])) for p in parts])


def pack_references(references: Any, inputs: Sequence[torch.Tensor], layout: Layout, name: str = "baselines"):
    """A reference set for tuple inputs: a tuple of tensors (R, *shape_i), one per input,
    with one R. Returns the packed (R, D) reference set."""
    if not is_tuple(references) or not all(isinstance(r, torch.Tensor) for r in references):
        raise TypeError(f"{name} must be a tuple of {len(inputs)} reference tensors (R, *input_shape), one per input, "
                        f"for tuple inputs; got {type(references).__name__}")
    if len(references) != len(inputs):
        raise ValueError(f"{name} has {len(references)} entries but inputs has {len(inputs)}: one reference set per input")
    R = references[0].shape[0] if references[0].dim() else 0
    for i, (r, x) in enumerate(zip(references, inputs)):
        if r.dim() < 1 or tuple(r.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(f"{name}[{i}] must have shape (R, *{tuple(x.shape[1:])}) to match inputs[{i}]; "
                             f"got {tuple(r.shape)}")
        if r.shape[0] != R:
            raise ValueError(f"{name}[{i}] holds {r.shape[0]} references but {name}[0] holds {R}: one R for every input")
        if not r.is_floating_point():
            raise TypeError(f"{name}[{i}] must be a floating-point reference set, got dtype {r.dtype}")
        if r.device != x.device:
            raise ValueError(f"{name}[{i}] is on {r.device} but inputs are on {x.device}")
    return layout.join(list(references))


class PackedModel(nn.Module):
    """The user's model of several inputs as a model of packed rows: forward(p, *args) =
    model(*layout.split(p), *args). A Module, holding the user's model as a submodule
    when it is one, so device checks see its parameters."""

    def __init__(self, model: Callable, layout: Layout):
        super().__init__()
        self.model = model
        self.layout = layout

    def forward(self, packed: torch.Tensor, *args: Any):
        return self.model(*self.layout.split(packed), *args)


def attribute(run: Callable, engine, method: str, inputs: Sequence[Any], baselines: Any, target: Any,
              additional_forward_args: Any, want_delta: bool, want_details: bool, references: Any = None):
    """`run(inputs, baselines, target, args, want_delta, want_details)` (the Explainer's
    single-tensor path) on the packed tuple, with the engine's model wrapped for the call;
    the result's attributions split back into a tuple. `references`: the Explainer's own
    reference set (expected_gradients' setting), used when `baselines` is None."""
    from ..baselines.sets import DistributionBaseline  # baselines/ imports engine/: import at call time

    if method not in METHODS:
        raise ValueError(f"inputs: a tuple of inputs works with the methods {', '.join(map(repr, METHODS))}; "
                         f"got method {method!r} (pass one tensor)")
    x, layout = pack_inputs(inputs)
    parts = tuple(inputs)
    if isinstance(baselines, DistributionBaseline):
        base = dataclasses.replace(baselines, references=pack_references(baselines.references, parts, layout))
    elif method == "expected_gradients" and (baselines is not None or references is not None):
        base = pack_references(references if baselines is None else baselines, parts, layout)
    else:
        base = pack_baselines(baselines, parts, layout)
    model, graphs = engine.model, engine.graphs
    engine.model, engine.graphs = PackedModel(model, layout), None  # graphs are keyed by shape, not by layout
    try:
        res = run(x, base, target, additional_forward_args, want_delta, want_details)
    finally:
        engine.model, engine.graphs = model, graphs
    res.attributions = tuple(a.contiguous() for a in layout.split(res.attributions))
    return res
