"""Reference layer IG / IDG and internal neuron attributions, one input at a time.

For tests only. Shares no code with the engine, the fast path or pathattr's hook
helpers: its own forward hook replaces the layer's activations, its own loops walk
the quadrature points, and neuron attributions use the full Jacobian of the layer
(torch.autograd.functional.jacobian), not a JVP.
"""
from __future__ import annotations

import torch

from .idg import idg_one
from .ig import integrated_gradients_one
from .scheduler import quadrature


def _replaced(model, layer, x_one, args, to_input):
    """h -> model(x_one) with the layer's output (or input) set to h (batched over h's rows)."""
    def fn(h, *_):
        def hook(module, inp, out):
            return h

        def pre_hook(module, inp):
            return (h,)

        handle = layer.register_forward_pre_hook(pre_hook) if to_input else layer.register_forward_hook(hook)
        try:
            return model(x_one.expand((h.shape[0],) + tuple(x_one.shape[1:])), *args)
        finally:
            handle.remove()
    return fn


def _activation(model, layer, x_one, args, to_input):
    seen = []
    handle = (layer.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach())) if to_input
              else layer.register_forward_hook(lambda m, inp, out: seen.append(out.detach())))
    try:
        with torch.no_grad():
            model(x_one, *args)
    finally:
        handle.remove()
    return seen[0][0]


def _args(args, i, batch):
    return tuple(a[i:i + 1] if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch else a for a in args)


def layer_attribution(kind, model, layer, inputs, baselines, targets, to_input=False, args=(), **kwargs):
    """Layer IG (kind "ig") or IDG ("idg") per input: the ordinary reference method applied
    to the function h -> F(model on x with the layer's activations set to h)."""
    rows = []
    for i in range(inputs.shape[0]):
        a = _args(args, i, inputs.shape[0])
        x_one, b_one = inputs[i:i + 1], baselines[i:i + 1]
        h_x, h_b = _activation(model, layer, x_one, a, to_input), _activation(model, layer, b_one, a, to_input)
        fn = _replaced(model, layer, x_one, a, to_input)
        if kind == "ig":
            rows.append(integrated_gradients_one(fn, h_x, h_b, int(targets[i]), **kwargs))
        else:
            rows.append(idg_one(fn, h_x, h_b, int(targets[i]), **kwargs)[0])
    return torch.stack(rows)


def neuron_region_attribution(model, layer, inputs, baselines, targets, region_mask, n_steps=50, method="gausslegendre",
                              alphas=None, weights=None):
    """A_k(S) = sum_k w dF/dh_k(h(p)) [J_h(p) v_S]_k per input, with the explicit Jacobian.
    alphas, weights: (B, S) a rule per input (NaN-padded alphas, as rtol mode's details)
    instead of the shared n_steps rule."""
    if alphas is None:
        shared = quadrature(method, n_steps)
    mask = region_mask.to(inputs.dtype).expand_as(inputs)
    out = []
    for i in range(inputs.shape[0]):
        x, b = inputs[i], baselines[i]
        v = mask[i] * (x - b)
        total = None
        rule = shared if alphas is None else [(a, w) for a, w in zip(alphas[i].tolist(), weights[i].tolist())
                                              if a == a]  # NaN padding dropped
        for a, w in (zip(*rule) if alphas is None else rule):
            p = (b + float(a) * (x - b)).detach()
            h_of_p = lambda z: _activation_graph(model, layer, z)  # noqa: E731
            J = torch.autograd.functional.jacobian(h_of_p, p)  # (*h_shape, *x_shape)
            h = h_of_p(p).detach().requires_grad_(True)
            f = _replaced(model, layer, p[None], (), False)(h[None])[0, int(targets[i])]
            (g,) = torch.autograd.grad(f, h)
            jv = (J.reshape(h.numel(), -1) @ v.reshape(-1)).reshape(h.shape)
            term = float(w) * g * jv
            total = term if total is None else total + term
        out.append(total)
    return torch.stack(out)


def _activation_graph(model, layer, z):
    """The layer's output at one point z, keeping the graph (for the Jacobian)."""
    seen = []

    class _Stop(Exception):
        pass

    def hook(m, inp, o):
        seen.append(o)
        raise _Stop

    handle = layer.register_forward_hook(hook)
    try:
        model(z[None])
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen[0][0]


def icg_one(model, values, target, certainty_channels=1, n_steps=100, method="riemann_middle"):
    """ICG of one input as the ICG paper writes it: sum_k w_k dF(x, c = alpha_k)/dc, x held fixed."""
    alphas, weights = quadrature(method, n_steps)
    c_shape = (certainty_channels,) + tuple(values.shape[1:])
    total = torch.zeros(c_shape, dtype=values.dtype)
    for a, w in zip(alphas, weights):
        c = torch.full(c_shape, float(a), dtype=values.dtype, requires_grad=True)
        f = model(torch.cat([values, c], 0)[None])[0, target]
        (g,) = torch.autograd.grad(f, c)
        total = total + float(w) * g
    return total
