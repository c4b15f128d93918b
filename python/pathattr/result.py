"""The object an attribution call returns when `return_details=True`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch


@dataclass
class AttributionResult:
    """Attributions plus what was computed on the way, all per input (first dim B).

    attributions: (B, *shape), the dtype of the inputs.
    target: (B,) the explained class of each input (argmax of model(x) when not given).
    delta: (B,) convergence delta, sum_k w_k IF(alpha_k) - (F(x) - F(x')): the error of
        integrating dF/dalpha with the samples used. For IG it equals
        sum_i IG_i - (F(x) - F(x')) (Captum's delta). None when not computed.
    alphas, weights: (B, S) the samples of the gradient pass and their quadrature weights.
    path_values: (B, S) F at each sample, from the same forward passes.
    importance: (B, S) the importance factors IF(alpha_k) (IDG), else None.
    probe_alphas, probe_curve: (N + 1,), (B, N + 1) the forward-only probe (adaptive schedules).
    counts: (B, N) samples per probe interval (adaptive schedules).
    start_value, end_value: (B,) F(x') and F(x), when computed.
    method, settings: the method's name and every setting that shaped the result.
    extras: method-specific details, e.g. Left-IG's alpha_star and used_whole_path.
    reference_index: (B, J) which reference each of an input's J paths started from
        (Expected Gradients, distribution baselines; LPI: the data-set index of each
        reference of the input's neighbourhood, from bank.indices). For these methods
        alphas, weights and path_values are (B, J, k) (distribution baselines: (B, J, S)).
    reference_weights: (B, J) the weight of each reference path (1/J, or LPI's densities).
    """

    attributions: torch.Tensor
    target: Optional[torch.Tensor] = None
    delta: Optional[torch.Tensor] = None
    alphas: Optional[torch.Tensor] = None
    weights: Optional[torch.Tensor] = None
    path_values: Optional[torch.Tensor] = None
    importance: Optional[torch.Tensor] = None
    probe_alphas: Optional[torch.Tensor] = None
    probe_curve: Optional[torch.Tensor] = None
    counts: Optional[torch.Tensor] = None
    start_value: Optional[torch.Tensor] = None
    end_value: Optional[torch.Tensor] = None
    method: str = ""
    settings: Dict[str, Any] = field(default_factory=dict)
    extras: Dict[str, Any] = field(default_factory=dict)
    reference_index: Optional[torch.Tensor] = None
    reference_weights: Optional[torch.Tensor] = None

