"""Every method of the quality study at one gradient budget per input (issue #4).

BUDGET = 50 gradient evaluations (forward+backward of one point) per input for every
method; forward-only probes are extra and listed in `budget_note`. How each method
spends the 50:

  IG               50 Gauss-Legendre nodes (the library default rule)
  Left-IG          50 Gauss-Legendre nodes on [0, alpha*] (+13 forward-only probes)
  Guided IG        T = 50 steps (one gradient each; the authors' default is 200)
  AGI              2 gradients per walk step (toward l, and of the explained class):
                   topk * max_iter = 25 (digits: 5 classes x 5 steps; 2 classes: 1 x 25;
                   walks stop early at the adversarial class, so <= 50)
  EG               J = 50 references from the training data, one alpha each
  LPI              m = 25 references per neighbourhood x 2 alphas (bank: k-means of the
                   training data's logits into C neighbourhoods)
  IDG uniform      50 right-Riemann points (the paper's Eq. 4)
  IDG adaptive     M = 50 placed by our schedule (+13 forward-only probes)
  ICG              50 midpoint steps over the certainty (certainty model only)
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

import pathattr as pa
from pathattr.baselines.lpi_bank import build_reference_bank

BUDGET = 50
METHODS = ("IG", "Left-IG", "Guided IG", "AGI", "EG", "LPI", "IDG uniform", "IDG adaptive")


def _agi_shape(classes: int) -> Tuple[int, int]:
    """(topk, max_iter) with 2 * topk * max_iter <= BUDGET."""
    topk = min(classes - 1, 5)
    return topk, (BUDGET // 2) // topk


def budget_note(classes: int) -> Dict[str, str]:
    topk, it = _agi_shape(classes)
    return {
        "IG": f"{BUDGET} gradients (Gauss-Legendre)",
        "Left-IG": f"{BUDGET} gradients + {BUDGET // 4 + 1} probe forwards",
        "Guided IG": f"{BUDGET} gradients (T = {BUDGET})",
        "AGI": f"<= {2 * topk * it} gradients (topk {topk} x {it} steps x 2)",
        "EG": f"{BUDGET} gradients (J = {BUDGET} references, 1 alpha)",
        "LPI": f"{BUDGET} gradients (m = {BUDGET // 2} references x 2 alphas)",
        "IDG uniform": f"{BUDGET} gradients (right Riemann)",
        "IDG adaptive": f"{BUDGET} gradients + {BUDGET // 4 + 1} probe forwards",
        "ICG": f"{BUDGET} gradients (midpoint over c)",
    }


def make_runners(scn, seed: int = 0, lpi_neighbourhoods: Optional[int] = None) -> Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """{method: f(x, target) -> attributions} for a Scenario, each at the study's budget.

    The LPI bank is built once here from scn.references (C = number of classes, at most 10).
    """
    model, base = scn.model, scn.baseline
    topk, max_iter = _agi_shape(scn.classes)
    lo, hi = (0.0, 1.0) if scn.image else (None, None)
    C = lpi_neighbourhoods or min(scn.classes, 10)
    bank = build_reference_bank(model, scn.references, C, BUDGET // 2, seed=seed)
    return {
        "IG": lambda x, t: pa.integrated_gradients(model, x, base, t, n_steps=BUDGET),
        "Left-IG": lambda x, t: pa.left_integrated_gradients(model, x, base, t, n_steps=BUDGET),
        "Guided IG": lambda x, t: pa.guided_integrated_gradients(model, x, base, t, n_steps=BUDGET),
        "AGI": lambda x, t: pa.adversarial_gradient_integration(model, x, t, topk=topk, max_iter=max_iter,
                                                                seed=seed, lo=lo, hi=hi),
        "EG": lambda x, t: pa.expected_gradients(model, x, scn.references, t, n_references=BUDGET, seed=seed),
        "LPI": lambda x, t: pa.local_path_integration(model, x, bank, t, n_alphas=2, seed=seed),
        "IDG uniform": lambda x, t: pa.integrated_decision_gradients(model, x, base, t, n_steps=BUDGET,
                                                                     schedule="uniform"),
        "IDG adaptive": lambda x, t: pa.integrated_decision_gradients(model, x, base, t, n_steps=BUDGET),
    }


def icg_runner():
    """ICG on the certainty-aware Burnt Snacks CNN: values held at x, c from 0 to 1."""
    from pathattr.data.scenario_models import load_burnt_snacks_certainty_model

    net = load_burnt_snacks_certainty_model()
    return lambda x, t: pa.integrated_certainty_gradients(net, x, t, n_steps=BUDGET, certainty_channels=1)
