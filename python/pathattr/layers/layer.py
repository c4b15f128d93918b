"""IG and IDG with respect to a layer's activations (Captum's LayerIntegratedGradients).

The path runs in activation space: h(alpha) = h(x') + alpha (h(x) - h(x')), where
h is the output (or, with attribute_to_layer_input=True, the input) of `layer`.
A forward hook puts h(alpha) in place of the layer's activations while the rest of
the model runs on x itself. No new loop: the model-of-h (`LayerReplaced`) goes to
the ordinary engine with x as a per-row extra forward argument, and the IG and IDG
methods run unchanged on it; results have the layer's activation shape.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple

import torch

from .. import methods
from ..baselines.sets import DistributionBaseline
from ..methods import distribution
from ..engine.checks import (check_bool, check_finite, check_model_device, normalize_forward_args,
                             prepare_baselines)
from ..engine.targets import parse_target
from ..engine.core import PathEngine
from ..engine.packing import is_tuple
from ..engine.runner import ModelRunner, outside_inference_mode
from .hooks import LayerReplaced, activations, check_layer


def _check_layer_call(method, model, layer, inputs, baselines, target, attribute_to_layer_input, want_delta,
                      want_details, engine_settings, method_settings):
    """Every argument of a layer attribution, before the model runs (types, shapes, devices,
    then values). Returns (method module, settings, engine, inputs tuple, baselines tuple)."""
    check_layer(model, layer)
    check_bool(attribute_to_layer_input, "attribute_to_layer_input")
    check_bool(want_delta, "return_convergence_delta")
    check_bool(want_details, "return_details")
    m = methods.get(method)
    cfg = m.settings(**method_settings)
    # the engine first: it checks `output` and the other engine settings
    engine = PathEngine(LayerReplaced(model, layer, attribute_to_layer_input), **(engine_settings or {}))
    xs, bases = _layer_inputs(inputs, baselines, model)
    parse_target(target, xs[0].shape[0], xs[0].device)
    return m, cfg, engine, xs, bases


def _check_layer_inputs(inputs: Any, baselines: Any, model, name: str = "inputs", base_name: str = "baselines"):
    """inputs: any real tensor with a batch dim (token ids allowed); baselines: None (zeros),
    a number or a tensor broadcastable to inputs (whole numbers for integer inputs).
    Returns (x, x') with x' of x's shape."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, ...), got {type(inputs).__name__}")
    if inputs.dim() < 1:
        raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
    if inputs.is_complex() or inputs.dtype == torch.bool:
        raise TypeError(f"{name} must be a real tensor, got dtype {inputs.dtype}")
    check_model_device(None, inputs, model)
    base = torch.zeros_like(inputs) if baselines is None else prepare_baselines(baselines, inputs, base_name).expand_as(inputs)
    if inputs.is_floating_point():
        check_finite(inputs, name)
    return inputs, base.contiguous()


def _layer_inputs(inputs: Any, baselines: Any, model) -> Tuple[Tuple[torch.Tensor, ...], Tuple[torch.Tensor, ...]]:
    """The model's inputs and baselines as tuples: one input, or a tuple of them for a model
    called as model(x1, x2, ..., *additional_forward_args) (as Captum's); baselines then
    None, one number, or one per input."""
    if not is_tuple(inputs):
        x, base = _check_layer_inputs(inputs, baselines, model)
        return (x,), (base,)
    if not inputs:
        raise ValueError("inputs is an empty tuple; pass a tensor (batch, ...) or a tuple of them")
    if baselines is None or (isinstance(baselines, numbers.Real) and not isinstance(baselines, bool)):
        baselines = (baselines,) * len(inputs)
    elif not is_tuple(baselines):
        raise TypeError(f"baselines must be None, a number or a tuple of {len(inputs)} baselines (one per input) for "
                        f"tuple inputs; got {type(baselines).__name__}")
    elif len(baselines) != len(inputs):
        raise ValueError(f"baselines has {len(baselines)} entries but inputs has {len(inputs)}: one baseline per input")
    pairs = [_check_layer_inputs(x, b, model, f"inputs[{i}]", f"baselines[{i}]") for i, (x, b) in enumerate(zip(inputs, baselines))]
    first = pairs[0][0]
    for i, (x, _) in enumerate(pairs[1:], 1):
        if x.shape[0] != first.shape[0]:
            raise ValueError(f"inputs[{i}] has {x.shape[0]} rows but inputs[0] has {first.shape[0]}: every input of "
                             f"the tuple needs the same batch size")
        if x.device != first.device:
            raise ValueError(f"inputs[{i}] is on {x.device} but inputs[0] is on {first.device}")
    return tuple(x for x, _ in pairs), tuple(b for _, b in pairs)


@outside_inference_mode  # attributions are gradients (see engine/runner.py)
def attribute_layer(method: str, model, layer, inputs, baselines=None, target=None, additional_forward_args=None,
                    attribute_to_layer_input: bool = False, return_convergence_delta: bool = False,
                    return_details: bool = False, engine_settings: Optional[dict] = None, **method_settings):
    """Run straight-path method `method` ("ig" or "idg") in `layer`'s activation space.

    Cost: two forward passes for h(x) and h(x'), then the method's own cost with the
    full model evaluated at every path point.
    """
    m, cfg, engine, xs, bases = _check_layer_call(method, model, layer, inputs, baselines, target,
                                                  attribute_to_layer_input, return_convergence_delta, return_details,
                                                  engine_settings, method_settings)
    args = normalize_forward_args(additional_forward_args)
    # model(x1, x2, ..., *args): the inputs after the first travel as leading extra args
    # h(x) and h(x') through a runner with the engine's chunks; no autocast: the path's ends
    # stay in the activations' own precision (the model still runs under autocast on the path)
    runner = ModelRunner(model, None, engine.internal_batch_size, engine.probe_batch_size)
    h_x = activations(model, layer, xs[0], xs[1:] + args, attribute_to_layer_input, runner)
    h_b = activations(model, layer, bases[0], bases[1:] + args, attribute_to_layer_input, runner)
    if not h_x.is_floating_point():
        raise TypeError(f"layer's activations have dtype {h_x.dtype}; attribution needs floating-point activations")
    res = run_on_activations(m, cfg, engine, h_x, h_b, target, xs + args, return_convergence_delta, return_details)
    if return_details:
        return res
    if return_convergence_delta:
        return res.attributions, res.delta
    return res.attributions


def run_on_activations(m, cfg, engine: PathEngine, h_x: torch.Tensor, h_b: Any, target, engine_args: Tuple[Any, ...],
                       want_delta: bool, want_details: bool):
    """The method's run in activation space, from h(x) and its start: h(x') (a tensor of
    h(x)'s shape), a distribution_baseline over activations (IG/IDG, docs/methods.md §7),
    or for Expected Gradients the reference set of activations (R, *layer_shape).
    engine_args: the model's inputs and extra args (per-row, so pairs repeat them)."""
    if m.NAME == "expected_gradients":
        batch = m.prepare(engine, cfg, h_x, h_b, target, engine_args)
    elif isinstance(h_b, DistributionBaseline):
        return distribution.attribute(m, engine, cfg, h_x, h_b, target, engine_args, want_delta, want_details)
    else:
        batch = engine.prepare(h_x, h_b, target, engine_args)
    return m.run(engine, batch, cfg, want_delta=want_delta, want_details=want_details)


def token_scores(attributions: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Per-token scores from an embedding layer's attributions (B, T, E): the sum over
    the embedding dimension `dim`, giving (B, T)."""
    if not isinstance(attributions, torch.Tensor):
        raise TypeError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    if attributions.dim() < 2:
        raise ValueError(f"attributions must have at least 2 dims (batch, ..., embedding); got shape {tuple(attributions.shape)}")
    n = attributions.dim()
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an int (the embedding dimension), got {dim!r}")
    if not -n < dim < n or dim % n == 0:
        raise ValueError(f"dim must be one of the non-batch dimensions of attributions ({n} dims: 1..{n - 1} or "
                         f"-{n - 1}..-1), got {dim}")
    return attributions.sum(dim)


def layer_integrated_gradients(model, layer, inputs, baselines=None, target=None, additional_forward_args=None,
                               n_steps: int = 50, method: str = "gausslegendre", attribute_to_layer_input: bool = False,
                               internal_batch_size: Optional[int] = None, return_convergence_delta: bool = False,
                               return_details: bool = False, output="logit", autocast: Optional[torch.dtype] = None,
                               backend: str = "auto", accumulate_dtype: Optional[torch.dtype] = None,
                               rtol: Optional[float] = None, min_steps: Optional[int] = None,
                               max_steps: Optional[int] = None):
    """IG of F with respect to `layer`'s output (or input), as Captum's LayerIntegratedGradients.

    Args:
        model: any callable: a torch.nn.Module (e.g. a Hugging Face model, passed as it is),
            or a function that calls `layer`. Its output may be a tensor, tuple, dict or
            ModelOutput (see `output` in `integrated_gradients`).
        layer: a torch.nn.Module, inside model when model is a Module, called once per
            forward, with one tensor output (or input, for attribute_to_layer_input=True).
        inputs: (B, *shape) the model's input; any real dtype (token ids are fine); or a
            tuple of them for a model called as model(x1, x2, ..., *additional_forward_args).
        baselines: None (zeros of inputs' shape and dtype, e.g. token id 0), a number, or a
            tensor broadcastable to inputs (a tuple of them, one per input, for tuple inputs).
            The path starts at h(baselines).
        target, additional_forward_args, output, internal_batch_size, autocast, backend,
        accumulate_dtype: as in `integrated_gradients`.
        n_steps, method: the quadrature rule (default Gauss-Legendre, 50 steps).
        rtol, min_steps, max_steps: refine each input's path in activation space until its
            map is within rtol (relative L2; docs/methods.md §14), as in `integrated_gradients`.
    Returns:
        attributions (B, *layer_shape): (h(x) - h(x')) * sum_k w_k dF/dh(h(alpha_k)); for an
        embedding layer `token_scores(attr)` sums them per token. With
        return_convergence_delta also delta (B,) = sum(attr) - (F at h(x) - F at h(x')),
        where both ends run the model on x with the layer's activations replaced (equal to
        Captum's model(x) - model(x') when the layer is a cut of the graph).
    Cost: 2 forwards (h(x), h(x')) + n_steps forward+backward passes per input.
    """
    return attribute_layer("ig", model, layer, inputs, baselines, target, additional_forward_args,
                           attribute_to_layer_input, return_convergence_delta, return_details,
                           dict(output=output, internal_batch_size=internal_batch_size, autocast=autocast,
                                backend=backend, accumulate_dtype=accumulate_dtype),
                           n_steps=n_steps, rule=method, rtol=rtol, min_steps=min_steps, max_steps=max_steps)


def layer_integrated_decision_gradients(model, layer, inputs, baselines=None, target=None, additional_forward_args=None,
                                        n_steps: int = 50, schedule: str = "adaptive", n_probe: Optional[int] = None,
                                        method: str = "riemann_right", importance: str = "exact",
                                        normalize: str = "none", attribute_to_layer_input: bool = False,
                                        internal_batch_size: Optional[int] = None,
                                        probe_batch_size: Optional[int] = None,
                                        return_convergence_delta: bool = False, return_details: bool = False,
                                        output="logit", autocast: Optional[torch.dtype] = None, backend: str = "auto",
                                        accumulate_dtype: Optional[torch.dtype] = None, rtol: Optional[float] = None,
                                        min_steps: Optional[int] = None, max_steps: Optional[int] = None):
    """IDG of F with respect to `layer`'s output (or input): the IDG path (docs/methods.md §2) in
    activation space, with the importance factor dF/dalpha = g . (h(x) - h(x')).

    Arguments as `layer_integrated_gradients` plus IDG's schedule settings (see
    `integrated_decision_gradients`: adaptive schedule with N = max(2, M // 4) probe
    intervals by default; or rtol, min_steps, max_steps: docs/methods.md §14). Cost: 2 forwards
    + M forward+backward passes per input, plus N + 1 forward-only passes for the adaptive schedule.
    """
    return attribute_layer("idg", model, layer, inputs, baselines, target, additional_forward_args,
                           attribute_to_layer_input, return_convergence_delta, return_details,
                           dict(output=output, internal_batch_size=internal_batch_size,
                                probe_batch_size=probe_batch_size, autocast=autocast, backend=backend,
                                accumulate_dtype=accumulate_dtype),
                           n_steps=n_steps, schedule=schedule, n_probe=n_probe, rule=method, importance=importance,
                           normalize=normalize, rtol=rtol, min_steps=min_steps, max_steps=max_steps)
