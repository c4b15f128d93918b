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
from typing import Any, Optional

import torch

from .. import methods
from ..engine.checks import (check_bool, check_finite, check_model_device, normalize_forward_args,
                             prepare_baselines)
from ..engine.targets import parse_target
from ..engine.core import PathEngine
from .hooks import LayerReplaced, activations, check_layer


def _check_layer_call(method, model, layer, inputs, baselines, target, attribute_to_layer_input, want_delta,
                      want_details, engine_settings, method_settings):
    """Every argument of a layer attribution, before the model runs (types, shapes, devices,
    then values). inputs: any real tensor with a batch dim (token ids allowed); baselines:
    None (zeros), a number or a tensor broadcastable to inputs (whole numbers for integer
    inputs). Returns (method module, settings, engine, x, x' of x's shape)."""
    check_layer(model, layer)
    check_bool(attribute_to_layer_input, "attribute_to_layer_input")
    check_bool(want_delta, "return_convergence_delta")
    check_bool(want_details, "return_details")
    m = methods.get(method)
    cfg = m.settings(**method_settings)
    engine = PathEngine(LayerReplaced(model, layer, attribute_to_layer_input), **(engine_settings or {}))
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor of shape (batch, ...), got {type(inputs).__name__}")
    if inputs.dim() < 1:
        raise ValueError("inputs must have a batch dimension, got a 0-d tensor")
    if inputs.is_complex() or inputs.dtype == torch.bool:
        raise TypeError(f"inputs must be a real tensor, got dtype {inputs.dtype}")
    check_model_device(None, inputs, model)
    base = torch.zeros_like(inputs) if baselines is None else prepare_baselines(baselines, inputs).expand_as(inputs)
    if inputs.is_floating_point():
        check_finite(inputs, "inputs")
    parse_target(target, inputs.shape[0], inputs.device)
    return m, cfg, engine, inputs, base.contiguous()


def attribute_layer(method: str, model, layer, inputs, baselines=None, target=None, additional_forward_args=None,
                    attribute_to_layer_input: bool = False, return_convergence_delta: bool = False,
                    return_details: bool = False, engine_settings: Optional[dict] = None, **method_settings):
    """Run straight-path method `method` ("ig" or "idg") in `layer`'s activation space.

    Cost: two forward passes for h(x) and h(x'), then the method's own cost with the
    full model evaluated at every path point.
    """
    m, cfg, engine, x, base = _check_layer_call(method, model, layer, inputs, baselines, target,
                                                attribute_to_layer_input, return_convergence_delta, return_details,
                                                engine_settings, method_settings)
    args = normalize_forward_args(additional_forward_args)
    h_x = activations(model, layer, x, args, attribute_to_layer_input)
    h_b = activations(model, layer, base, args, attribute_to_layer_input)
    if not h_x.is_floating_point():
        raise TypeError(f"layer's activations have dtype {h_x.dtype}; attribution needs floating-point activations")
    batch = engine.prepare(h_x, h_b, target, (x,) + args)
    res = m.run(engine, batch, cfg, want_delta=return_convergence_delta, want_details=return_details)
    if return_details:
        return res
    if return_convergence_delta:
        return res.attributions, res.delta
    return res.attributions


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
                               backend: str = "auto", accumulate_dtype: Optional[torch.dtype] = None):
    """IG of F with respect to `layer`'s output (or input), as Captum's LayerIntegratedGradients.

    Args:
        model: a torch.nn.Module; layer: one of its submodules, called once per forward,
            with one tensor output (or input, for attribute_to_layer_input=True).
        inputs: (B, *shape) the model's input; any real dtype (token ids are fine).
        baselines: None (zeros of inputs' shape and dtype, e.g. token id 0), a number, or a
            tensor broadcastable to inputs. The path starts at h(baselines).
        target, additional_forward_args, output, internal_batch_size, autocast, backend,
        accumulate_dtype: as in `integrated_gradients`.
        n_steps, method: the quadrature rule (default Gauss-Legendre, 50 steps).
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
                           n_steps=n_steps, rule=method)


def layer_integrated_decision_gradients(model, layer, inputs, baselines=None, target=None, additional_forward_args=None,
                                        n_steps: int = 50, schedule: str = "adaptive", n_probe: Optional[int] = None,
                                        method: str = "riemann_right", importance: str = "exact",
                                        normalize: str = "none", attribute_to_layer_input: bool = False,
                                        internal_batch_size: Optional[int] = None,
                                        probe_batch_size: Optional[int] = None,
                                        return_convergence_delta: bool = False, return_details: bool = False,
                                        output="logit", autocast: Optional[torch.dtype] = None, backend: str = "auto",
                                        accumulate_dtype: Optional[torch.dtype] = None):
    """IDG of F with respect to `layer`'s output (or input): the IDG path (SPEC §2) in
    activation space, with the importance factor dF/dalpha = g . (h(x) - h(x')).

    Arguments as `layer_integrated_gradients` plus IDG's schedule settings (see
    `integrated_decision_gradients`: adaptive schedule with N = max(2, M // 4) probe
    intervals by default). Cost: 2 forwards + M forward+backward passes per input, plus
    N + 1 forward-only passes for the adaptive schedule.
    """
    return attribute_layer("idg", model, layer, inputs, baselines, target, additional_forward_args,
                           attribute_to_layer_input, return_convergence_delta, return_details,
                           dict(output=output, internal_batch_size=internal_batch_size,
                                probe_batch_size=probe_batch_size, autocast=autocast, backend=backend,
                                accumulate_dtype=accumulate_dtype),
                           n_steps=n_steps, schedule=schedule, n_probe=n_probe, rule=method, importance=importance,
                           normalize=normalize)
