"""Attribution methods: each module validates its settings and runs on the engine.

A method module provides NAME, settings(**kwargs) -> dict and
run(engine, batch, settings, want_delta, want_details) -> AttributionResult.
"""
from . import idg, ig
from . import icg

REGISTRY = {ig.NAME: ig, idg.NAME: idg}
ALIASES = {"integrated_gradients": "ig", "integrated_decision_gradients": "idg"}
REGISTRY[icg.NAME] = icg
ALIASES["integrated_certainty_gradients"] = "icg"


def get(name: str):
    key = ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in REGISTRY:
        raise ValueError(f"method must be one of {', '.join(map(repr, sorted(REGISTRY)))}; got {name!r}")
    return REGISTRY[key]
