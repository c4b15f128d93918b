"""Attribution methods: each module validates its settings and runs on the engine.

A method module provides NAME, settings(**kwargs) -> dict and
run(engine, batch, settings, want_delta, want_details) -> AttributionResult
(and, where it reads `baselines` itself, prepare(engine, settings, inputs, baselines,
target, additional_forward_args) -> PathBatch).
"""
from . import agi, bshap, expected_gradients, guided_ig, icg, idg, ig, left_ig, lpi

REGISTRY = {m.NAME: m for m in (ig, idg, left_ig, guided_ig, agi, expected_gradients, lpi, icg, bshap)}
ALIASES = {
    "integrated_gradients": "ig",
    "integrated_decision_gradients": "idg",
    "left_integrated_gradients": "left_ig",
    "split_ig": "left_ig",
    "guided_integrated_gradients": "guided_ig",
    "adversarial_gradient_integration": "agi",
    "eg": "expected_gradients",
    "local_path_integration": "lpi",
    "integrated_certainty_gradients": "icg",
}
import inspect


def get(name: str):
    key = ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in REGISTRY:
        raise ValueError(f"method must be one of {', '.join(map(repr, sorted(REGISTRY)))}; got {name!r}")
    return REGISTRY[key]


def settings_of(method, given: dict, where: str) -> dict:
    """method.settings(**given); a setting it does not have is named with `where` (e.g.
    "Explainer(method='ig')") and the settings it does have. The signature is read only
    when the call fails (it costs microseconds; an Explainer per call is common)."""
    try:
        return method.settings(**given)
    except TypeError:
        known = inspect.signature(method.settings).parameters
        unknown = [k for k in given if k not in known]
        if not unknown:
            raise
    raise TypeError(f"{where} has no setting {unknown[0]!r}; its settings are {', '.join(known)} "
                    f"(engine settings: output, internal_batch_size, probe_batch_size, autocast, backend, "
                    f"accumulate_dtype, cuda_graphs, max_batch)")
