"""pathattr: path attribution for PyTorch models, fast.

    import pathattr as pa
    attr = pa.integrated_decision_gradients(model, x, target=y)
    attr, delta = pa.integrated_gradients(model, x, target=y, return_convergence_delta=True)
    ex = pa.Explainer(model, method="idg", n_steps=32); res = ex.attribute(x, return_details=True)
"""
from .api import (adversarial_gradient_integration, bshap, expected_gradients, guided_integrated_gradients,
                  integrated_decision_gradients, integrated_gradients, left_integrated_gradients,
                  local_path_integration)
from .certainty.model import CertaintyModel, integrated_certainty_gradients
from .explainer import Explainer
from .engine.deadline import DeadlineExceeded
from .layers.layer import layer_integrated_decision_gradients, layer_integrated_gradients, token_scores
from .layers.neurons import neuron_conductance, neuron_region_attribution, prune_and_measure
from .baselines import DistributionBaseline, ReferenceBank, build_reference_bank, distribution_baseline
from .result import AttributionResult
from .engine.schedule import quadrature

__version__ = "0.1.0"
__all__ = [
    "Explainer", "AttributionResult", "quadrature",
    "integrated_gradients", "integrated_decision_gradients",
    "left_integrated_gradients", "guided_integrated_gradients", "adversarial_gradient_integration",
    "expected_gradients", "local_path_integration", "bshap", "distribution_baseline", "DistributionBaseline",
    "ReferenceBank", "build_reference_bank",
    "CertaintyModel", "integrated_certainty_gradients",
    "layer_integrated_gradients", "layer_integrated_decision_gradients", "token_scores",
    "neuron_region_attribution", "neuron_conductance", "prune_and_measure",
    "DeadlineExceeded",
]
