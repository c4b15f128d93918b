"""Captum-style functions: one call, one Explainer, no state kept between calls."""
from __future__ import annotations

from typing import Any, Optional

import torch

from .explainer import Explainer
from .engine.checks import check_positive_int


def integrated_gradients(model, inputs: torch.Tensor, baselines: Any = None, target: Any = None,
                         additional_forward_args: Any = None, n_steps: int = 50, method: str = "gausslegendre",
                         internal_batch_size: Optional[int] = None, return_convergence_delta: bool = False,
                         return_details: bool = False, output="logit", autocast: Optional[torch.dtype] = None,
                         backend: str = "auto", accumulate_dtype: Optional[torch.dtype] = None,
                         rtol: Optional[float] = None, min_steps: Optional[int] = None,
                         max_steps: Optional[int] = None):
    """Integrated Gradients: (x - x') * sum_k w_k dF/dx(x' + alpha_k (x - x')).

    Same arguments and results as Captum's IntegratedGradients.attribute, plus:
    method "riemann_trapezoid" is the true trapezoid rule (Captum's weights sum to
    1 - 1/n); output=; return_details.
    inputs: a tensor (B, *shape), or a tuple of them for a model of several inputs
        (model(x1, x2, ..., *additional_forward_args)); baselines then a tuple with one
        entry per input (None, a number or a tensor), and the attributions a tuple.
    output: "logit" (default), "softmax" or "log_softmax" of the model's logits (a tensor
        output itself; the "logits" entry of a dict or Hugging Face ModelOutput; element 0
        of a tuple), "KEY:FUNC" for another entry ("start_logits:softmax"; an integer KEY
        indexes a tuple), or f(model_output, target) -> (B,) called with the output as the
        model returned it and the targets (target=None: the argmax of the logits, resolved
        first). Details: `Explainer`.
    rtol: None (fixed n_steps), or the relative L2 error each input's map must reach: every
        input is refined in rounds until its estimated error is <= rtol (docs/methods.md
        §14), between min_steps (default 17) and max_steps (default 1025) gradient
        evaluations; n_steps and the rule are then unused. return_details=True gives
        extras["n_evaluations"], ["error_estimate"] and ["converged"] per input.
    Cost: n_steps forward+backward passes per input (+1 forward of x and x' when
    target is None or a delta is asked for). See `Explainer.attribute` for arguments.
    """
    ex = Explainer(model, "ig", n_steps=n_steps, rule=method, output=output, internal_batch_size=internal_batch_size,
                   autocast=autocast, backend=backend, accumulate_dtype=accumulate_dtype, rtol=rtol,
                   min_steps=min_steps, max_steps=max_steps)
    ex._warn_scope = "integrated_gradients"  # one large-error warning per process, not per call
    return ex.attribute(inputs, baselines, target, additional_forward_args, return_convergence_delta, return_details)


def integrated_decision_gradients(model, inputs: torch.Tensor, baselines: Any = None, target: Any = None,
                                  additional_forward_args: Any = None, n_steps: int = 50, schedule: str = "adaptive",
                                  n_probe: Optional[int] = None, method: str = "riemann_right",
                                  importance: str = "exact", normalize: str = "none", growth: str = "abs",
                                  placement: Optional[str] = None, floor: Optional[int] = None,
                                  internal_batch_size: Optional[int] = None, probe_batch_size: Optional[int] = None,
                                  return_convergence_delta: bool = False, return_details: bool = False,
                                  output="logit", autocast: Optional[torch.dtype] = None, backend: str = "auto",
                                  accumulate_dtype: Optional[torch.dtype] = None, rtol: Optional[float] = None,
                                  min_steps: Optional[int] = None, max_steps: Optional[int] = None):
    """Integrated Decision Gradients: (x - x') * sum_k w_k IF(alpha_k) dF/dx(p(alpha_k)).

    IF(alpha) = dF(p(alpha))/dalpha, exactly g . (x - x') by default (no extra pass).
    n_steps: M gradient samples per input (default 50).
    schedule: "adaptive" (default; N = n_probe = max(2, M // 4) forward-only probe
        intervals, floor 1, midpoint), "paper" (N = M, left, floor 0: Algorithm 1,
        corrected) or "uniform" (the quadrature rule `method`, default right Riemann).
    importance: "exact" or "finite_difference" (backward differences of F between samples).
    normalize: "none" (default; no extra 1/M as in the authors' code) or "completeness"
        (rescale so the map sums to F(x) - F(x')).
    growth, placement, floor: adaptive-scheduler knobs (docs/methods.md §2.1).
    rtol: None (fixed n_steps), or the relative L2 error each input's map must reach: every
        input is refined in rounds until its estimated error is <= rtol (docs/methods.md
        §14), between min_steps (default 17) and max_steps (default 1025) gradient
        evaluations; n_steps and the schedule are then unused. return_details=True gives
        extras["n_evaluations"], ["error_estimate"] and ["converged"] per input.
    Cost: M forward+backward passes per input, plus N + 1 forward-only for adaptive.
    """
    ex = Explainer(model, "idg", n_steps=n_steps, schedule=schedule, n_probe=n_probe, rule=method,
                   importance=importance, normalize=normalize, growth=growth, placement=placement, floor=floor,
                   output=output, internal_batch_size=internal_batch_size, probe_batch_size=probe_batch_size,
                   autocast=autocast, backend=backend, accumulate_dtype=accumulate_dtype, rtol=rtol,
                   min_steps=min_steps, max_steps=max_steps)
    ex._warn_scope = "integrated_decision_gradients"  # one large-error warning per process, not per call
    return ex.attribute(inputs, baselines, target, additional_forward_args, return_convergence_delta, return_details)


def left_integrated_gradients(model, inputs: torch.Tensor, baselines: Any = None, target: Any = None,
                              additional_forward_args: Any = None, n_steps: int = 50, method: str = "gausslegendre",
                              r: float = 0.9, threshold: str = "baseline", n_probe: Optional[int] = None,
                              internal_batch_size: Optional[int] = None, probe_batch_size: Optional[int] = None,
                              return_convergence_delta: bool = False, return_details: bool = False, output="logit",
                              autocast: Optional[torch.dtype] = None, backend: str = "auto",
                              accumulate_dtype: Optional[torch.dtype] = None, rtol: Optional[float] = None,
                              min_steps: Optional[int] = None, max_steps: Optional[int] = None):
    """Left-IG / Split IG (Miglani et al. 2020): IG over [0, alpha*] of the straight path.

    alpha*: where F first reaches tau = F(x') + r (F(x) - F(x')) (threshold="baseline",
    default) or tau = r * max F along the path (threshold="max"), found on a forward-only
    probe curve at N + 1 = n_probe + 1 evenly spaced points (default n_probe =
    max(2, n_steps // 4)), linearly interpolated between probe points. The rule `method`
    (default Gauss-Legendre) is mapped onto [0, alpha*]. F(x) <= F(x') (or no upward
    crossing of tau) uses the whole path; details.extras["used_whole_path"] says so,
    extras["alpha_star"] gives alpha*.
    delta: sum of attributions - (F(p(alpha*)) - F(x')) (completeness on the truncated path).
    Cost: n_probe + 1 forward-only + n_steps forward+backward per input (+1 forward at
    p(alpha*) for a delta or details).
    rtol: None (fixed n_steps), or the relative L2 error each input's map must reach: every
        input is refined in rounds until its estimated error is <= rtol (docs/methods.md
        §14), between min_steps (default 17) and max_steps (default 1025) gradient
        evaluations; on [0, alpha*]; n_steps and the rule then unused. return_details=True gives
        extras["n_evaluations"], ["error_estimate"] and ["converged"] per input.
    """
    ex = Explainer(model, "left_ig", n_steps=n_steps, rule=method, r=r, threshold=threshold, n_probe=n_probe,
                   output=output, internal_batch_size=internal_batch_size, probe_batch_size=probe_batch_size,
                   autocast=autocast, backend=backend, accumulate_dtype=accumulate_dtype, rtol=rtol,
                   min_steps=min_steps, max_steps=max_steps)
    ex._warn_scope = "left_integrated_gradients"  # one large-error warning per process, not per call
    return ex.attribute(inputs, baselines, target, additional_forward_args, return_convergence_delta, return_details)


def guided_integrated_gradients(model, inputs: torch.Tensor, baselines: Any = None, target: Any = None,
                                additional_forward_args: Any = None, n_steps: int = 200, fraction: float = 0.25,
                                max_dist: float = 0.02, internal_batch_size: Optional[int] = None,
                                return_convergence_delta: bool = False, return_details: bool = False, output="logit",
                                autocast: Optional[torch.dtype] = None, backend: str = "auto",
                                accumulate_dtype: Optional[torch.dtype] = None):
    """Guided IG (Kapishnikov et al. 2021): an adaptive path that moves the features with
    the smallest |gradient| first, at most max_dist (in alpha) off the straight line.

    n_steps: T steps (default 200), one gradient per step per input; fraction: share of
    features moved per selection round (default 0.25, lower quantile of |g|); max_dist:
    default 0.02 (0 = IG's straight line, 1 = unbounded). The path and the sum are
    float64; the model sees points in the inputs' dtype (use float64 inputs and model
    for float64 throughout). Equals PAIR saliency's GuidedIG.GetMask.
    delta: sum of attributions - (F(x) - F(x')).
    Cost: n_steps forward+backward per input (+1 forward of x and x' for a delta,
    details or target=None).
    """
    ex = Explainer(model, "guided_ig", n_steps=n_steps, fraction=fraction, max_dist=max_dist, output=output,
                   internal_batch_size=internal_batch_size, autocast=autocast, backend=backend,
                   accumulate_dtype=accumulate_dtype)
    return ex.attribute(inputs, baselines, target, additional_forward_args, return_convergence_delta, return_details)


def adversarial_gradient_integration(model, inputs: torch.Tensor, target: Any = None,
                                     additional_forward_args: Any = None, epsilon: float = 0.05, max_iter: int = 20,
                                     topk: Optional[int] = None, seed: int = 0, lo: Optional[float] = None,
                                     hi: Optional[float] = None, restart: bool = False,
                                     internal_batch_size: Optional[int] = None, return_details: bool = False,
                                     autocast: Optional[torch.dtype] = None, backend: str = "auto",
                                     accumulate_dtype: Optional[torch.dtype] = None):
    """Adversarial Gradient Integration (Pan et al. 2021): sum over `topk` adversarial
    classes l of -d softmax_c/dx (x_i) * (x_{i+1} - x_i) along signed-gradient walks
    x_{i+1} = clamp(x_i + epsilon sign(d softmax_l/dx (x_i)), lo, hi) toward l.

    target: the explained class c (default: argmax of model(inputs)). No baseline.
    topk classes (<= C - 1; default None: min(20, C - 1), the paper's 20 where the model
    has that many other classes; the count used is in the details' settings) are spread
    evenly over the other classes, deterministic given `seed`. lo, hi: clamp bounds (default None: no clamp; the authors clamp to
    [0, 1] image space). Walks stop once argmax = l, or after max_iter steps.
    restart=True: the authors' code (every step from x_0). Softmax probabilities
    always (the paper's definition); no completeness, so no convergence delta.
    Cost: at most 2 * topk * max_iter forward+backward per input, +1 forward.
    """
    ex = Explainer(model, "agi", epsilon=epsilon, max_iter=max_iter, topk=topk, seed=seed, lo=lo, hi=hi,
                   restart=restart, internal_batch_size=internal_batch_size, autocast=autocast, backend=backend,
                   accumulate_dtype=accumulate_dtype)
    return ex.attribute(inputs, None, target, additional_forward_args, False, return_details)
def expected_gradients(model, inputs: torch.Tensor, baselines: Any, target: Any = None,
                       additional_forward_args: Any = None, n_references: int = 20, n_alphas: int = 1,
                       seed: int = 0, internal_batch_size: Optional[int] = None,
                       return_convergence_delta: bool = False, return_details: bool = False, output="logit",
                       autocast: Optional[torch.dtype] = None, backend: str = "auto",
                       accumulate_dtype: Optional[torch.dtype] = None):
    """Expected Gradients (Erion et al.): (1/J) sum_j (x - r_j) * mean_a dF/dx(r_j + alpha_ja (x - r_j)).

    baselines: the reference set, a tensor (R, *input_shape) or a torch Dataset (items
        are inputs or tuples starting with one; only the drawn items are read).
    n_references: J references per input, drawn with replacement (default 20).
    n_alphas: k alphas ~ U(0, 1) per reference, each paired with its reference (default 1).
    seed: the torch.Generator seed for references and alphas (deterministic).
    Delta: sum EG - (F(x) - mean_j F(r_j)) over the references drawn.
    Cost: J*k forward+backward passes per input (+1 + J forward-only for a delta).
    """
    ex = Explainer(model, "expected_gradients", n_references=n_references, n_alphas=n_alphas, seed=seed,
                   output=output, internal_batch_size=internal_batch_size, autocast=autocast, backend=backend,
                   accumulate_dtype=accumulate_dtype)
    return ex.attribute(inputs, baselines, target, additional_forward_args, return_convergence_delta, return_details)


def bshap(model, inputs: torch.Tensor, baselines: Any = None, target: Any = None,
          additional_forward_args: Any = None, feature_mask: Optional[torch.Tensor] = None,
          n_permutations: int = 25, max_exact_features: int = 16, seed: int = 0,
          internal_batch_size: Optional[int] = None, return_convergence_delta: bool = False,
          return_details: bool = False, output="logit", autocast: Optional[torch.dtype] = None):
    """BShap: Shapley values of the features, absent features taking the baseline's values (docs/methods.md §9).

    feature_mask: None (every element is a feature) or integer group ids of one input's
        shape, (1, ...) or (B, ...), like Captum's; every element gets its group's value.
    max_exact_features: with d <= this (default 16) all 2^d subsets are evaluated (exact);
        beyond it, n_permutations (default 25) random orders per input, seeded by `seed`.
    internal_batch_size: model points per forward-only chunk (None: measured default).
    Delta: sum over groups of phi - (F(x) - F(x')), zero up to rounding (efficiency).
    Cost: 2^d forward passes per input (exact), n_permutations * (d - 1) + 2 (sampled); no backward.
    """
    check_positive_int(internal_batch_size, "internal_batch_size", allow_none=True)  # the Explainer's probe_batch_size
    ex = Explainer(model, "bshap", feature_mask=feature_mask, n_permutations=n_permutations,
                   max_exact_features=max_exact_features, seed=seed, output=output,
                   probe_batch_size=internal_batch_size, autocast=autocast)
    return ex.attribute(inputs, baselines, target, additional_forward_args, return_convergence_delta, return_details)


def local_path_integration(model, inputs: torch.Tensor, bank, target: Any = None,
                           additional_forward_args: Any = None, n_alphas: int = 1, alpha_range=(0.01, 0.99),
                           seed: int = 0, internal_batch_size: Optional[int] = None,
                           return_convergence_delta: bool = False, return_details: bool = False, output="logit",
                           autocast: Optional[torch.dtype] = None, backend: str = "auto",
                           accumulate_dtype: Optional[torch.dtype] = None):
    """Local Path Integration (Yang et al. 2023): sum_j rho_j (x - r_j) * mean_a dF/dx(r_j + alpha_ja (x - r_j)).

    bank: a pathattr.ReferenceBank built for this model
        (`pathattr.build_reference_bank(model, dataset, n_neighbourhoods, n_references)`
        or `ReferenceBank.load(path)`); a bank built for another model is refused.
        Each input uses the m references and densities of the neighbourhood nearest its logits.
    n_alphas: alphas per reference (default 1, as the paper), ~ U(alpha_range), seeded by `seed`.
    Delta: sum LPI - (F(x) - sum_j rho_j F(r_j)).
    Cost: 1 forward + m*k forward+backward per input (+ m forward-only for a delta).
    """
    ex = Explainer(model, "lpi", bank=bank, n_alphas=n_alphas, alpha_range=alpha_range, seed=seed, output=output,
                   internal_batch_size=internal_batch_size, autocast=autocast, backend=backend,
                   accumulate_dtype=accumulate_dtype)
    return ex.attribute(inputs, None, target, additional_forward_args, return_convergence_delta, return_details)
