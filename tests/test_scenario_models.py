"""The bundled scenario models: they load, reach their recorded accuracy, and behave as trained."""
import json

import numpy as np
import pytest
import torch

from pathattr.data import scenario_models as sm
from pathattr.data.models import BurntSnacksCNN, LocalMinimumMLP, count_parameters
from pathattr.data.scenarios import make_burnt_snacks, make_local_minimum

# Floors: Burnt Snacks per the issue (>= 90 %); Local Minimum "clearly above chance".
FLOORS = {"burnt_snacks": 0.95, "burnt_snacks_certainty": 0.90, "local_minimum": 0.95}
LOADERS = {"burnt_snacks": sm.load_burnt_snacks_model,
           "burnt_snacks_certainty": sm.load_burnt_snacks_certainty_model,
           "local_minimum": sm.load_local_minimum_model}


def _inputs(name, data):
    if name == "local_minimum":
        return data.inputs
    return sm.with_certainty(data.images, 1.0) if name == "burnt_snacks_certainty" else data.images


@torch.no_grad()
def _accuracy(model, x, y):
    return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("name", sorted(sm.MODELS))
def test_shipped_weights_reach_recorded_accuracy(name):
    model = LOADERS[name]()
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    info = sm.model_info(name)
    assert info["param_count"] == count_parameters(model) and info["name"] == name
    assert sm.weights_path(name).stat().st_size < 512 * 1024
    held = sm.local_minimum_heldout() if name == "local_minimum" else sm.burnt_snacks_heldout()
    assert len(held) == info["n_heldout"]
    acc = _accuracy(model, _inputs(name, held), held.labels)
    assert abs(acc - info["heldout_accuracy"]) <= 1.5e-3  # same examples, same weights
    assert acc >= FLOORS[name]
    # Freshly generated data from a seed nobody trained or scored on.
    fresh = (make_local_minimum(1000, seed=777) if name == "local_minimum" else make_burnt_snacks(500, seed=777))
    assert _accuracy(model, _inputs(name, fresh), fresh.labels) >= FLOORS[name] - 0.03


@torch.no_grad()
def test_certainty_model_ignores_zero_certainty():
    # Seed 004 A.3.1: with c = 0 the prediction must not depend on x (information
    # absence) and should sit near the class prior (neutrality; the prior here is 1/2).
    model = sm.load_burnt_snacks_certainty_model()
    info = sm.model_info("burnt_snacks_certainty")
    data = make_burnt_snacks(300, seed=778)
    p_img = torch.softmax(model(sm.with_certainty(data.images, 0.0)), 1)[:, 1]
    p_noise = torch.softmax(model(sm.with_certainty(torch.rand(300, 1, 32, 32), 0.0)), 1)[:, 1]
    p_full = torch.softmax(model(sm.with_certainty(data.images, 1.0)), 1)[:, 1]
    assert p_img.std() < 0.1 and abs(p_img.mean() - p_noise.mean()) < 0.1
    assert abs(p_img.mean().item() - 0.5) < 0.1
    # Little information gets through at c = 0 (measured 57 % vs 99 % at c = 1).
    assert ((p_img > 0.5).long() == data.labels).float().mean() < 0.65
    assert abs(p_img.mean().item() - info["c0_prob_class1_mean"]) < 0.05
    # With full certainty it is confident, and far more spread out than at c = 0.
    assert p_full.std() > 3 * p_img.std()


@torch.no_grad()
def test_local_minimum_model_learned_the_dip():
    # Vary one component, others fixed: the model's class-1 margin follows f, including
    # the positive local minimum at 0.7 (the ICG paper Fig. 5), not a monotone ramp.
    model = sm.load_local_minimum_model()
    t = torch.tensor([0.3, 0.6, 0.7, 0.9])
    x = torch.full((4, 6), 0.45)
    x[:, 0] = t
    logits = model(x)
    margin = (logits[:, 1] - logits[:, 0]).numpy()
    assert margin[1] > margin[2] < margin[3]  # the dip
    assert margin[2] > margin[0]  # the local minimum still counts for class 1 more than 0.3 does


def test_loaders_and_helpers():
    x = torch.rand(2, 1, 32, 32)
    assert sm.with_certainty(x).shape == (2, 2, 32, 32)
    assert torch.equal(sm.with_certainty(x, 0.25)[:, 1], torch.full((2, 32, 32), 0.25))
    c = torch.rand(2, 1, 32, 32)
    assert torch.equal(sm.with_certainty(x, c)[:, 1:], c)
    with pytest.raises(ValueError, match="certainty"):
        sm.with_certainty(x, 1.5)
    with pytest.raises(ValueError, match="certainty"):
        sm.with_certainty(x, torch.rand(3, 1, 32, 32))
    with pytest.raises(ValueError, match="x"):
        sm.with_certainty(torch.rand(2, 32, 32))
    with pytest.raises(ValueError, match="name"):
        sm.weights_path("digits")
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        BurntSnacksCNN(certainty=True)(x)
    with pytest.raises(TypeError, match="certainty"):
        BurntSnacksCNN(certainty=1)
    assert BurntSnacksCNN()(torch.rand(3, 1, 20, 24)).shape == (3, 2)
    with pytest.raises(ValueError, match="x"):
        LocalMinimumMLP()(torch.rand(2, 5))


def test_missing_weights_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sm, "weights_path", lambda name: tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="train_scenarios"):
        sm.load_local_minimum_model()


def test_training_script_smoke(tmp_path):
    # The script end to end on a tiny budget: files written, the record complete, and
    # a rerun gives identical weights (deterministic).
    from pathattr.data import train_scenarios

    torch.set_num_threads(1)
    model, info = train_scenarios.train("burnt_snacks_certainty", verbose=False, n_train=64, epochs=1,
                                        n_heldout=32)
    assert info["n_train"] == 64 and "c0_prob_class1_mean" in info and "damage" in info
    assert 0.0 <= info["heldout_accuracy"] <= 1.0
    again, _ = train_scenarios.train("burnt_snacks_certainty", verbose=False, n_train=64, epochs=1,
                                     n_heldout=32)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="unknown"):
        train_scenarios.train("local_minimum", lr_typo=1.0)
    # main() writes the .pt and a .json describing it.
    monkey_settings = dict(train_scenarios.SETTINGS["local_minimum"], n_train=256, epochs=1)
    old = train_scenarios.SETTINGS["local_minimum"]
    train_scenarios.SETTINGS["local_minimum"] = monkey_settings
    try:
        assert train_scenarios.main(["--which", "local_minimum", "--out-dir", str(tmp_path)]) == 0
    finally:
        train_scenarios.SETTINGS["local_minimum"] = old
    rec = json.loads((tmp_path / "local_minimum_mlp.json").read_text())
    assert rec["n_train"] == 256 and rec["weights_file"] == "local_minimum_mlp.pt"
    state = torch.load(tmp_path / "local_minimum_mlp.pt", weights_only=True)
    LocalMinimumMLP().load_state_dict(state)
    assert np.isfinite(rec["heldout_accuracy"])
