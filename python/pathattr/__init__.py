"""pathattr: path attribution for PyTorch models, fast.

    import pathattr as pa
    attr = pa.integrated_decision_gradients(model, x, target=y)
    attr, delta = pa.integrated_gradients(model, x, target=y, return_convergence_delta=True)
    ex = pa.Explainer(model, method="idg", n_steps=32); res = ex.attribute(x, return_details=True)
"""
from .api import integrated_decision_gradients, integrated_gradients
from .api import adversarial_gradient_integration, guided_integrated_gradients, left_integrated_gradients
from .explainer import Explainer
from .result import AttributionResult
from .schedules import quadrature

from . import lpi  # noqa: E402  (methods-refs)
from .api import bshap, expected_gradients, local_path_integration  # noqa: E402
from .refsets import DistributionBaseline, distribution_baseline  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Explainer", "AttributionResult", "integrated_gradients", "integrated_decision_gradients", "quadrature"]
__all__ += ["left_integrated_gradients", "guided_integrated_gradients", "adversarial_gradient_integration"]
__all__ += ["expected_gradients", "local_path_integration", "bshap", "distribution_baseline", "DistributionBaseline",
            "lpi"]
