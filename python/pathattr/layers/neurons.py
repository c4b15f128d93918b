"""Internal neuron attributions for a region of an IG map (docs/methods.md §10, Lundstrom et al. 2022).

With F = g(h(z)) and h the activations of `layer`, the IG mass of a region S of
the input splits over the neurons k of h:

    A_k(S) = sum_steps w * dg/dh_k(h(p)) * [J_h(p) v_S]_k,   v_S = 1_S * (x - x')

Per path point: one forward-mode JVP of h along v_S (the part of the model up to
the layer) and one backward from F to h (the part after it), for all neurons at
once. Rows are (example, step) pairs in the model runner's chunks (its OOM back-off and
autocast apply); the engine's validation, schedule, targets and points are reused,
only the per-chunk work and the fold differ (a product in activation space, not a
gradient in input space).

Two ways to get J_h v (`jvp=`):
  "forward_ad": torch.autograd.forward_ad dual tensors through the layers before
      `layer` (cheapest: one dual forward); needs forward-AD formulas for those ops.
  "double_backward": J v = d/du [(J^T u) . v] at u = 0: two extra backward passes
      through the layers before `layer`; works wherever double backward does.
  "auto" (default): forward_ad, falling back to double_backward if the model's ops
      have no forward-AD formula (that error only: out-of-memory and other errors propagate).
`Sum_k A_k(S) = Sum_{i in S} IG_i` holds when the layer is a cut of the graph (every
path from the input to F goes through it); with skip connections around the layer,
A measures only the part that flows through it.
"""
from __future__ import annotations

from typing import Any, Optional

import math

import torch
import torch.autograd.forward_ad as fwAD

from ..engine import schedule as schedules
from ..engine.checks import broadcasts_to, check_bool, check_choice, check_finite, check_positive_int
from ..methods import ig
from ..engine.core import PathEngine
from ..engine.runner import ModelRunner, outside_inference_mode
from ..result import AttributionResult
from .hooks import check_layer, intercept
from ..engine.targets import check_target_range, logits_of, select_output

JVP_MODES = ("auto", "forward_ad", "double_backward")


def _check_region(region_mask: Any, x: torch.Tensor) -> torch.Tensor:
    """A 0/1 (or bool) tensor broadcastable to inputs (B, *shape): (*shape), (B, *shape), (H, W), ..."""
    if not isinstance(region_mask, torch.Tensor):
        raise TypeError(f"region_mask must be a torch.Tensor of 0/1 (or bool) values, got {type(region_mask).__name__}")
    if region_mask.is_complex():
        raise TypeError(f"region_mask must hold 0/1 (or bool) values, got dtype {region_mask.dtype}")
    if not broadcasts_to(region_mask.shape, x.shape):
        raise ValueError(f"region_mask of shape {tuple(region_mask.shape)} does not broadcast to inputs of shape "
                         f"{tuple(x.shape)}; expected {tuple(x.shape[1:])}, {tuple(x.shape)} or a shape broadcastable to them")
    if region_mask.device != x.device:
        raise ValueError(f"region_mask is on {region_mask.device} but inputs are on {x.device}")
    m = region_mask.to(x.dtype)
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("region_mask must hold only 0 and 1 (or booleans): it is the indicator 1_S of the region")
    return m.expand_as(x)


def _chunk_forward_ad(runner, layer, points, tangents, args, to_input):
    """(h, J_h v, dF/dh-ready leaf, model output) for one chunk via dual tensors."""
    kept = {}

    def swap(h):
        primal, tangent = fwAD.unpack_dual(h)
        kept["jv"] = tangent
        kept["h"] = primal.detach().requires_grad_(True)
        return kept["h"]

    with fwAD.dual_level():
        dual = fwAD.make_dual(points, tangents)
        with torch.enable_grad(), intercept(layer, swap, to_input) as calls:
            out = runner.call(dual, args)
        if isinstance(out, torch.Tensor):  # a tuple/dict output: its tangents go with the level
            out = fwAD.unpack_dual(out).primal
    if calls[0] == 0:
        raise ValueError("layer was not called in model's forward pass")
    jv = kept["jv"]
    return kept["h"], (torch.zeros_like(kept["h"]) if jv is None else jv.detach()), out


def _chunk_double_backward(runner, layer, points, tangents, args, to_input):
    """The same via the double-backward trick: J v = d/du [(J^T u) . v]."""
    kept = {}
    p = points.detach().requires_grad_(True)

    def swap(h):
        kept["graph"] = h
        kept["h"] = h.detach().requires_grad_(True)
        return kept["h"]

    with torch.enable_grad():
        with intercept(layer, swap, to_input) as calls:
            out = runner.call(p, args)
        if calls[0] == 0:
            raise ValueError("layer was not called in model's forward pass")
        h = kept["graph"]
        if not h.requires_grad:
            return kept["h"], torch.zeros_like(h), out
        u = torch.zeros_like(h, requires_grad=True)
        (vjp,) = torch.autograd.grad(h, p, grad_outputs=u, create_graph=True, allow_unused=True)
        if vjp is None or not vjp.requires_grad:  # h affine in p with no dependence, or no path to p
            return kept["h"], torch.zeros_like(h), out
        (jv,) = torch.autograd.grad(vjp, u, grad_outputs=tangents, allow_unused=True)
    return kept["h"], (torch.zeros_like(h) if jv is None else jv.detach()), out


def _layer_and_output(model, layer, x):
    """The layer's activations and the model's output for x, from one forward without grad."""
    seen = []

    def keep(h):
        seen.append(h.detach())
        return h

    with torch.no_grad(), intercept(layer, keep) as calls:
        out = ModelRunner(model).call(x)
    if calls[0] == 0:
        raise ValueError("layer was not called in model's forward pass: its activations do not exist")
    return seen[0], out


_CHUNK = {"forward_ad": _chunk_forward_ad, "double_backward": _chunk_double_backward}


def no_forward_ad_formula(err: BaseException) -> bool:
    """The error torch raises for an op without a forward-AD formula (and only that:
    never out-of-memory, never an error of the model or of `layer`)."""
    if isinstance(err, torch.OutOfMemoryError):
        return False
    text = str(err).lower()
    if isinstance(err, NotImplementedError):
        return True
    return isinstance(err, RuntimeError) and ("forward ad" in text or "forward-mode ad" in text
                                              or "forward mode ad" in text) and "layer" not in text


@outside_inference_mode  # attributions are gradients (see engine/runner.py)
def neuron_region_attribution(model, layer, inputs, region_mask, baselines=None, target=None,
                              additional_forward_args=None, n_steps: int = 50, method: str = "gausslegendre",
                              attribute_to_layer_input: bool = False, internal_batch_size: Optional[int] = None,
                              output="logit", jvp: str = "auto", return_mode: bool = False,
                              rtol: Optional[float] = None, min_steps: Optional[int] = None,
                              max_steps: Optional[int] = None, return_details: bool = False):
    """A_k(S) for every neuron k of `layer`: its share of the IG mass inside region S.

    Args:
        model: a torch.nn.Module mapping (B, *shape) to (B, C); use it in eval mode.
        layer: a submodule of model, called once per forward, with one tensor output
            (or input, with attribute_to_layer_input=True). Its activations are the neurons.
        inputs: (B, *shape) floating tensor.
        region_mask: 0/1 or bool tensor broadcastable to inputs ((*shape), (B, *shape),
            (H, W) for images, ...): the indicator 1_S of the region.
        baselines, target, additional_forward_args, output: as in `integrated_gradients`.
        n_steps, method: the quadrature rule (default Gauss-Legendre, 50 steps).
        internal_batch_size: path points per chunk (None: the engine's default).
        jvp: "auto" (default), "forward_ad" or "double_backward" (see the module docstring).
        return_mode: also return the JVP mode that ran ("forward_ad" or "double_backward").
        rtol, min_steps, max_steps: refine each input's path until its neuron map is within
            rtol (relative L2 over the neurons; docs/methods.md §14) instead of n_steps
            fixed steps; min_steps / max_steps bound the evaluations per input.
        return_details: return an AttributionResult (attributions = the neuron map) whose
            extras carry n_evaluations, n_forward, and in rtol mode error_estimate,
            converged and rounds, per input.
    Returns:
        (B, *layer_shape) in the inputs' dtype (accumulated in fp32, fp64 for fp64 inputs);
        an empty batch gives an empty tensor of shape (0,) (no forward to learn the layer's shape).
        With return_mode, (that, mode).
    Cost per input: n_steps (or in rtol mode n_evaluations) x (one JVP through the layers
        before `layer` + one forward and backward through the layers after it), + 1 forward
        when target is None.
    """
    check_layer(model, layer)
    check_choice(jvp, "jvp", JVP_MODES)
    check_bool(attribute_to_layer_input, "attribute_to_layer_input")
    check_bool(return_mode, "return_mode")
    check_bool(return_details, "return_details")
    cfg = ig.settings(n_steps, method, rtol, min_steps, max_steps)  # the quadrature rule's checks, as IG's
    n = cfg["n_steps"]
    engine = PathEngine(model, output=output, internal_batch_size=internal_batch_size)
    batch = engine.prepare(inputs, baselines, target, additional_forward_args)
    mask = _check_region(region_mask, batch.x)
    n_forward = 0
    if batch.target is None:
        engine.endpoints(batch, baselines=False)  # resolves target = argmax model(x)
        n_forward = 1
    B = batch.size
    v = (mask.to(batch.acc_dtype) * batch.diff()).to(batch.x.dtype)  # v_S per input
    state = {"mode": "forward_ad" if jvp == "auto" else jvp, "result": None}
    runner = engine.runner

    def neuron_rows(points, examples, first):
        """(h's shape, J_h v_S, dF/dh, F) at path points of the given inputs."""
        tangents = v.index_select(0, examples)
        args = batch.args_for(examples) if batch.args else ()
        try:
            h, jv, out = _CHUNK[state["mode"]](runner, layer, points, tangents, args, attribute_to_layer_input)
        except (NotImplementedError, RuntimeError) as err:
            if jvp != "auto" or state["mode"] != "forward_ad" or not no_forward_ad_formula(err):
                raise
            state["mode"] = "double_backward"  # an op without a forward-AD formula: the robust path
            h, jv, out = _CHUNK["double_backward"](runner, layer, points, tangents, args, attribute_to_layer_input)
        out = engine.check_output(out, points.shape[0], batch)
        if first:
            check_target_range(batch.target, out, engine.output)
        f = select_output(out, None if batch.target is None else batch.target[examples], engine.output)
        return h.shape, jv, runner.backward(f, h), f.detach()

    if cfg.get("rtol") is not None and B:
        result = _to_tolerance(engine, batch, cfg, neuron_rows)
        result.extras["n_forward"] = torch.full((B,), n_forward, dtype=torch.long)
        result.settings.update(jvp=state["mode"], layer_input=attribute_to_layer_input)
        if not return_details:
            result = result.attributions
        return (result, state["mode"]) if return_mode else result
    sched = schedules.uniform(method, n, B)
    S = sched.steps
    alphas = engine._alphas_on_device(batch, sched.alphas)
    w = sched.weights.to(device=batch.x.device, dtype=batch.acc_dtype).reshape(-1)
    which = engine._backend(batch)

    def step(s, rows):
        # the engine's points (a copy: the dual tensor must not alias the reused buffer)
        points = engine.points.rows(batch, alphas, s, rows, which).clone()
        examples = batch.row_examples(s, rows, S)
        return neuron_rows(points, examples, s == 0)[:3] + (examples,)

    def fold(s, rows, r):
        shape, jv, g, examples = r
        if state["result"] is None:
            state["result"] = torch.zeros((B,) + tuple(shape[1:]), dtype=batch.acc_dtype, device=batch.x.device)
        if g is None:
            return
        contrib = (g.to(batch.acc_dtype) * jv.to(batch.acc_dtype)).reshape(rows, -1)
        contrib = contrib * w[s:s + rows].unsqueeze(1)
        state["result"].view(B, -1).index_add_(0, examples, contrib)

    runner.chunks(B * S, batch.features, batch.x.device.type, step, fold)
    result, mode = state["result"], state["mode"]
    if result is None:  # empty batch: one forward for the layer's shape
        result = torch.zeros(0, dtype=batch.acc_dtype, device=batch.x.device)
    if not bool(torch.isfinite(result).all()):
        raise FloatingPointError("neuron attributions are not finite: the model produced NaN/Inf along the path")
    result = result.to(batch.x.dtype)
    if return_details:
        result = AttributionResult(result, target=batch.target, method="neuron_region_attribution",
                                   settings=dict(cfg, jvp=mode, layer_input=attribute_to_layer_input),
                                   extras={"n_evaluations": torch.full((B,), S, dtype=torch.long),
                                           "n_forward": torch.full((B,), n_forward, dtype=torch.long)})
    return (result, mode) if return_mode else result


def _to_tolerance(engine, batch, cfg, neuron_rows) -> AttributionResult:
    """rtol mode (docs/methods.md §14): the error-controlled rounds of engine/tolerance.py
    with the neuron integrand dF/dh_k * [J_h v_S]_k as the rows. Its sum over neurons is not
    dF/dalpha (only the region's share, and only through the layer), so the completeness
    residual does not steer refinement."""
    from ..engine import tolerance

    dev, acc, D = batch.x.device, batch.acc_dtype, batch.features
    runner = engine.runner

    def evaluate(examples, alphas):
        ex = examples.to(dev)
        a = alphas.to(device=dev, dtype=acc)
        R = ex.shape[0]
        got = {}

        def step(s, n):
            e = ex[s:s + n]
            return neuron_rows(batch.points_at(e, a[s:s + n]), e, s == 0)

        def keep(s, n, r):
            hshape, jv, g, f = r
            if "rows" not in got:
                N = math.prod(hshape[1:])
                got.update(rows=torch.empty((R, N), dtype=acc, device=dev), values=torch.empty(R, dtype=acc, device=dev))
            contrib = got["rows"][s:s + n]
            if g is None:
                contrib.zero_()
            else:
                torch.mul(g.reshape(n, -1).to(acc), jv.reshape(n, -1).to(acc), out=contrib)
            got["values"][s:s + n] = f.to(acc)
            got["shape"] = tuple(hshape[1:])

        runner.chunks(R, D, dev.type, step, keep)
        if not bool(torch.isfinite(got["rows"]).all()) or not bool(torch.isfinite(got["values"]).all()):
            raise FloatingPointError("neuron attributions are not finite: the model produced NaN/Inf along the path")
        batch_shape["layer"] = got["shape"]
        return got["values"], got["rows"].sum(1), got["rows"]

    batch_shape = {}
    ti = tolerance.integrate(engine, batch, scaled=False, rtol=cfg["rtol"], min_steps=cfg["min_steps"],
                             max_steps=cfg["max_steps"], deadline=cfg.get("deadline"), evaluate=evaluate,
                             completeness=False)
    attr = ti.attr.view((batch.size,) + batch_shape["layer"]).to(batch.x.dtype)
    stats = {"n_evaluations": ti.n_evaluations, "error_estimate": ti.error_estimate, "converged": ti.converged,
             "rounds": ti.rounds, "f_start": ti.f_start, "f_end": ti.f_end}
    return AttributionResult(attr, target=batch.target, alphas=ti.alphas, weights=ti.weights, path_values=ti.values,
                             start_value=ti.f_start, end_value=ti.f_end, method="neuron_region_attribution",
                             settings={k: v for k, v in cfg.items() if k != "deadline"}, extras=stats)


def neuron_conductance(model, layer, inputs, baselines=None, target=None, additional_forward_args=None,
                       n_steps: int = 50, method: str = "gausslegendre", attribute_to_layer_input: bool = False,
                       internal_batch_size: Optional[int] = None, output="logit", jvp: str = "auto",
                       rtol: Optional[float] = None, min_steps: Optional[int] = None,
                       max_steps: Optional[int] = None, return_details: bool = False):
    """Conductance of every neuron of `layer` (Dhamdhere et al.): A_k(S) with S = all inputs.

    Summed over neurons it equals sum_i IG_i when the layer is a cut of the graph.
    Same arguments (rtol mode included) and cost as `neuron_region_attribution`; returns
    (B, *layer_shape), or an AttributionResult with return_details.
    """
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor of shape (batch, ...), got {type(inputs).__name__}")
    everything = torch.ones((), dtype=torch.bool, device=inputs.device)
    return neuron_region_attribution(model, layer, inputs, everything, baselines, target, additional_forward_args,
                                     n_steps, method, attribute_to_layer_input, internal_batch_size, output, jvp,
                                     rtol=rtol, min_steps=min_steps, max_steps=max_steps,
                                     return_details=return_details)


@outside_inference_mode  # attributions are gradients (see engine/runner.py)
def prune_and_measure(model, layer, inputs, region_mask, n_prune: int, baselines=None, target=None,
                      n_steps: int = 50, method: str = "gausslegendre", output="logit", scores=None,
                      rank: str = "abs"):
    """The paper's check: rank neurons by A_k(S), zero the top `n_prune`, measure IG again.

    The ranking is over A_k(S) summed over the batch (one set of neurons for all
    inputs): rank="abs" (default) sums |A_k(S)| (a neuron that carries much of the
    region's IG mass, either sign), rank="value" sums A_k(S) (the most positive).
    `scores` (layer_shape or (B, *layer_shape)) overrides A, e.g. for a control
    ranking. The targets stay those of the unpruned model.

    Returns a dict of measured numbers:
        inside_before, inside_after, outside_before, outside_after: (B,) sums of IG over
            S and over its complement, before and after pruning;
        drop_inside, drop_outside: floats, the fraction of the IG mass removed,
            1 - after / before averaged over inputs with weights |before| (1: all of
            it gone, 0: unchanged); a region-specific ranking gives drop_inside > drop_outside;
        pruned: (n_prune,) flat indices of the pruned neurons.
    """
    from ..api import integrated_gradients  # the public IG: this check measures with the real thing

    # Every argument before the first forward: IG's settings and the call itself.
    check_layer(model, layer)
    n_prune = check_positive_int(n_prune, "n_prune")
    check_choice(rank, "rank", ("abs", "value"))
    ig.settings(n_steps, method)
    batch = PathEngine(model, output=output).prepare(inputs, baselines, target)
    mask = _check_region(region_mask, batch.x)
    if scores is not None:
        if not isinstance(scores, torch.Tensor):
            raise TypeError(f"scores must be a torch.Tensor (layer_shape or (B, *layer_shape)), got {type(scores).__name__}")
        if scores.is_complex() or scores.dtype == torch.bool:
            raise TypeError(f"scores must be a real tensor, got dtype {scores.dtype}")
        check_finite(scores.reshape(1, -1), "scores")
    # One forward: the layer's shape (for n_prune and scores) and, for target=None, the target.
    h, out = _layer_and_output(model, layer, batch.x)
    if target is None:  # the unpruned model's argmax (named outputs' logits rule)
        target = logits_of(out).argmax(1) if isinstance(logits_of(out), torch.Tensor) else None
        if target is None:
            raise ValueError("target: give the targets; the model's output has no (batch, classes) logits to take "
                             "the argmax of")
    neurons, B = h[0].numel() if h.shape[0] else math.prod(h.shape[1:]), inputs.shape[0]
    if n_prune > neurons:
        raise ValueError(f"n_prune must be <= the layer's {neurons} neurons, got {n_prune}")
    if scores is not None and not (scores.numel() == neurons or (scores.dim() > 1 and scores.shape[0] == B
                                                                 and scores[0].numel() == neurons)):
        raise ValueError(f"scores must have the layer's shape {tuple(h.shape[1:])} or ({B}, *{tuple(h.shape[1:])}) "
                         f"(one score per neuron); got {tuple(scores.shape)}")
    if scores is None:
        scores = neuron_region_attribution(model, layer, inputs, region_mask, baselines, target, n_steps=n_steps,
                                           method=method, output=output)
    per_input = scores.numel() != neurons
    flat = scores.abs() if rank == "abs" else scores
    ranking = flat.reshape(B, -1).sum(0) if per_input else flat.reshape(-1)
    pruned = torch.topk(ranking, n_prune).indices

    def zero_top(h):
        h = h.clone()
        h.view(h.shape[0], -1)[:, pruned.to(h.device)] = 0
        return h

    def regions(attr):
        a = attr.reshape(attr.shape[0], -1).double()
        m = mask.reshape(mask.shape[0], -1).double()
        return (a * m).sum(1), (a * (1 - m)).sum(1)

    kw = dict(baselines=baselines, target=target, n_steps=n_steps, method=method, output=output)
    in_b, out_b = regions(integrated_gradients(model, inputs, **kw))
    with intercept(layer, zero_top, model=model):  # counted per forward: IG makes several
        in_a, out_a = regions(integrated_gradients(model, inputs, **kw))

    def drop(before, after):
        # 1 - after/before per input, averaged with weights |before| (stable where before ~ 0)
        total = float(before.abs().sum())
        return float((torch.sign(before) * (before - after)).sum()) / total if total > 0 else 0.0

    return {"inside_before": in_b, "inside_after": in_a, "outside_before": out_b, "outside_after": out_a,
            "drop_inside": drop(in_b, in_a), "drop_outside": drop(out_b, out_a), "pruned": pruned}
