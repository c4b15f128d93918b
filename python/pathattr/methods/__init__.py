"""Attribution methods: each module validates its settings and runs on the engine.

A method module provides NAME, settings(**kwargs) -> dict and
run(engine, batch, settings, want_delta, want_details) -> AttributionResult.
"""
from . import idg, ig
from . import agi, guided_ig, left_ig

REGISTRY = {ig.NAME: ig, idg.NAME: idg}
ALIASES = {"integrated_gradients": "ig", "integrated_decision_gradients": "idg"}
REGISTRY.update({left_ig.NAME: left_ig, guided_ig.NAME: guided_ig, agi.NAME: agi})
ALIASES.update({"left_integrated_gradients": "left_ig", "split_ig": "left_ig", "guided_integrated_gradients": "guided_ig",
                "adversarial_gradient_integration": "agi"})

from . import bshap, expected_gradients, lpi  # noqa: E402  (methods-refs: EG, LPI, BShap)
REGISTRY[expected_gradients.NAME] = expected_gradients
REGISTRY[bshap.NAME] = bshap
REGISTRY[lpi.NAME] = lpi
ALIASES["local_path_integration"] = lpi.NAME
ALIASES["eg"] = expected_gradients.NAME


def get(name: str):
    key = ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in REGISTRY:
        raise ValueError(f"method must be one of {', '.join(map(repr, sorted(REGISTRY)))}; got {name!r}")
    return REGISTRY[key]
