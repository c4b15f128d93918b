"""pathattr: path attribution for PyTorch models, fast.

    import pathattr as pa
    attr = pa.integrated_decision_gradients(model, x, target=y)
    attr, delta = pa.integrated_gradients(model, x, target=y, return_convergence_delta=True)
    ex = pa.Explainer(model, method="idg", n_steps=32); res = ex.attribute(x, return_details=True)
"""
from .api import integrated_decision_gradients, integrated_gradients
from .explainer import Explainer
from .result import AttributionResult
from .schedules import quadrature

__version__ = "0.1.0"
__all__ = ["Explainer", "AttributionResult", "integrated_gradients", "integrated_decision_gradients", "quadrature"]

# ICG, internal neuron and layer attributions (issue #3, items 6, 8, 9)
from .certainty import CertaintyModel, integrated_certainty_gradients  # noqa: E402
from .layer_attribution import layer_integrated_decision_gradients, layer_integrated_gradients, token_scores  # noqa: E402
from .neurons import neuron_conductance, neuron_region_attribution, prune_and_measure  # noqa: E402

__all__ += ["CertaintyModel", "integrated_certainty_gradients", "layer_integrated_gradients",
            "layer_integrated_decision_gradients", "token_scores", "neuron_region_attribution", "neuron_conductance",
            "prune_and_measure"]
