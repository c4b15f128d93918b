"""Forward hooks that read or replace one layer's activations.

Layer attribution and neuron attribution both need a model's activations at one
module: read them (h(x), h(x')), or run the model with them replaced by other
values (points on a path in activation space). The model may be any callable (a
Module, or a function that calls modules); the layer must be a submodule of a Module
model, and must run once per forward, with one tensor as its input (for
`attribute_to_layer_input=True`) or its output; anything else is an error that
names `layer`, not a silent wrong answer.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import nn

from ..engine.runner import ModelRunner


def check_layer(model: Any, layer: Any, name: str = "layer") -> nn.Module:
    """`model` any callable; `layer` a torch.nn.Module, inside `model` (compared by identity)
    when model is a Module. For a plain function, `activations` checks that the layer runs."""
    if not callable(model):
        raise TypeError(f"model must be a callable (a torch.nn.Module or a function), got {type(model).__name__}")
    if not isinstance(layer, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module (a module the model calls), got {type(layer).__name__}")
    if isinstance(model, nn.Module) and not any(m is layer for m in model.modules()):
        raise ValueError(f"{name} ({type(layer).__name__}) is not a submodule of model: pass a module from model.modules()")
    return layer


def _one_tensor(value: Any, to_input: bool) -> torch.Tensor:
    where = "input" if to_input else "output"
    if isinstance(value, tuple):
        if len(value) != 1:
            raise TypeError(f"layer takes {len(value)} positional inputs; only a layer with one tensor {where} is supported")
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"layer's {where} is a {type(value).__name__}; only a layer with one tensor {where} is supported")
    return value


@contextlib.contextmanager
def intercept(layer: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], to_input: bool = False,
              model: Optional[nn.Module] = None):
    """Within the block, `layer`'s output (or its single input) h is replaced by fn(h).

    fn may return h itself (to read it). A second call of the layer in one forward is
    an error: the path would then be ambiguous. The count is per forward pass of
    `model` (a block around a whole attribution makes many): given, a forward pre-hook
    on it starts each pass at zero; without it the block must hold one forward.
    """
    calls: List[int] = [0]

    def swap(h: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if calls[0] > 1:
            raise ValueError("layer is called more than once per forward pass (a shared module); "
                             "pick a layer that runs once")
        new = fn(h)
        if new.shape != h.shape:
            raise ValueError(f"internal: replacement of shape {tuple(new.shape)} for layer activations {tuple(h.shape)}")
        return new

    if to_input:
        def pre_hook(module, args):
            h = _one_tensor(args, True)
            return (swap(h),)
        handle = layer.register_forward_pre_hook(pre_hook)
    else:
        def hook(module, args, out):
            return swap(_one_tensor(out, False))
        handle = layer.register_forward_hook(hook)
    reset = None
    if isinstance(model, nn.Module):
        def restart(module, args):
            calls[0] = 0
        reset = model.register_forward_pre_hook(restart)
    try:
        yield calls
    finally:
        handle.remove()
        if reset is not None:
            reset.remove()


class _Captured(Exception):
    """Raised by activations' hook once it holds the layer's activations."""


class _UntilLayer(nn.Module):
    """model(*inputs) stopped where activations' hook raises _Captured: what comes after the
    layer is never needed for its activations (for an embedding layer: the whole model)."""

    def __init__(self, model: Callable):
        super().__init__()
        self.model = model

    def forward(self, *inputs: Any):
        try:
            self.model(*inputs)
        except _Captured:
            pass


def activations(model: Callable, layer: nn.Module, inputs: torch.Tensor, args: Tuple[Any, ...] = (),
                to_input: bool = False, runner: Optional[ModelRunner] = None) -> torch.Tensor:
    """The layer's output (or input) for `inputs`, detached, forward only through the
    model runner (`runner`'s settings, or a plain one), in its chunks, each forward stopped
    once the layer has run."""
    given = runner
    settings = (given.autocast, given.internal_batch_size, given.probe_batch_size) if given is not None else ()
    runner = ModelRunner(_UntilLayer(model), *settings)
    runner.oom_rows = given.oom_rows if given is not None else 0  # a chunk cap it learnt holds here too
    B = inputs.shape[0]
    seen: List[torch.Tensor] = []

    def keep(h):
        seen.append(h.detach())
        raise _Captured

    def make(s, n):
        calls[0] = 0  # counted per forward (the model may be a plain function: no pre-hook)
        if not B:
            return inputs, args
        rows = tuple(a[s:s + n] if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == B else a for a in args)
        return inputs[s:s + n], rows

    def check(out, s, n):
        if calls[0] == 0:
            raise ValueError("layer was not called in model's forward pass: its activations do not exist")
        return seen.pop()

    with intercept(layer, keep, to_input) as calls:
        # an empty batch: one forward of it still gives the layer's shape
        return runner.outputs(B if B else 1, inputs[0].numel() if B else 1, inputs.device.type, make, check)


class LayerReplaced(nn.Module):
    """`model` run on `inputs` with `layer`'s activations set to `h`: forward(h, inputs, *args).
    Returns the model's output as returned (tensor, tuple, dict, ModelOutput: engine/targets.py).

    The engine sees this as a model of h: it interpolates h between h(x') and h(x)
    and passes each path row's own `inputs` (an extra forward arg with a batch
    dimension) so the parts of the model before and beside the layer still see x.
    """

    def __init__(self, model: Callable, layer: nn.Module, to_input: bool = False):
        super().__init__()
        self.model = model
        self.layer = layer
        self.to_input = to_input

    def forward(self, h: torch.Tensor, inputs: torch.Tensor, *args: Any):
        with intercept(self.layer, lambda _: h, self.to_input) as calls:
            out = self.model(inputs, *args)
        if calls[0] == 0:
            raise ValueError("layer was not called in model's forward pass")
        return out
