"""Every call of the user's model goes through engine/runner.py (ModelRunner), so OOM
back-off, autocast and profiling ranges apply to every pass (docs/design.md).

Two checks: at run time, a model whose forward fails unless ModelRunner.call is on the
stack, run through every public method, layer and neuron function, metric, the LPI
bank, the certainty checks, Explainer.warmup and the service batcher; and a scan of
the source for model/net calls outside engine/ (code no test runs is covered too).
"""
import ast
import contextlib
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import pathattr as pa
from pathattr import metrics
from pathattr.certainty import information_absence, neutrality
from pathattr.certainty.model import suppression_check

RUNNER = os.path.join("pathattr", "engine", "runner.py")


def _in_runner() -> bool:
    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_filename.endswith(RUNNER) and f.f_code.co_name == "call":
            return True
        f = f.f_back
    return False


@contextlib.contextmanager
def calls_only_through_the_runner(model: nn.Module):
    """A forward pre-hook on `model` that fails a call made outside ModelRunner.call;
    yields the list of calls seen (a test asserts it is not empty)."""
    calls = []

    def guard(module, args, kwargs):
        if not _in_runner():
            raise AssertionError("the model was called outside engine/runner.py")
        calls.append(1)

    h = model.register_forward_pre_hook(guard, with_kwargs=True)
    try:
        yield calls
    finally:
        h.remove()


class Guarded(nn.Module):
    """The user's model: raises unless called from ModelRunner.call; counts its calls."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x, *args):
        if not _in_runner():
            raise AssertionError("the user's model was called outside engine/runner.py")
        self.calls += 1
        return self.inner(x, *args)


def _cnn(in_ch=3, classes=5):
    return nn.Sequential(nn.Conv2d(in_ch, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, classes)).double().eval()


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Guarded(_cnn())


def _x(b=2):
    return torch.rand(b, 3, 6, 6, dtype=torch.float64)


def _cases(model):
    x = _x()
    refs = torch.rand(8, 3, 6, 6, dtype=torch.float64)
    attr = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    yield "ig", lambda: pa.integrated_gradients(model, x, n_steps=8, return_convergence_delta=True)
    yield "ig chunks", lambda: pa.integrated_gradients(model, x, target=1, n_steps=8, internal_batch_size=3)
    yield "idg", lambda: pa.integrated_decision_gradients(model, x, n_steps=8, return_details=True)
    yield "idg fd", lambda: pa.integrated_decision_gradients(model, x, target=1, n_steps=8,
                                                            importance="finite_difference")
    yield "left_ig", lambda: pa.left_integrated_gradients(model, x, n_steps=8, return_details=True)
    yield "guided_ig", lambda: pa.guided_integrated_gradients(model, x, n_steps=8, return_convergence_delta=True)
    yield "agi", lambda: pa.adversarial_gradient_integration(model, x, topk=2, max_iter=2)
    yield "eg", lambda: pa.expected_gradients(model, x, refs, n_references=3, return_convergence_delta=True)
    yield "bshap", lambda: pa.bshap(model, x, feature_mask=torch.arange(3).view(1, 3, 1, 1).expand(1, 3, 6, 6),
                                    return_convergence_delta=True)
    yield "bshap sampled", lambda: pa.bshap(model, x, max_exact_features=2, n_permutations=2,
                                            feature_mask=torch.arange(3).view(1, 3, 1, 1).expand(1, 3, 6, 6))
    yield "distribution", lambda: pa.integrated_gradients(model, x, pa.distribution_baseline(refs, 2), n_steps=4)

    def lpi():
        bank = pa.build_reference_bank(model, refs, n_neighbourhoods=2, n_references=2)
        return pa.local_path_integration(model, x, bank, return_convergence_delta=True)

    yield "lpi", lpi
    yield "explainer warmup", lambda: pa.Explainer(model, "idg", n_steps=4).warmup((3, 6, 6), batch_size=2)
    layer = model.inner[1]
    yield "layer ig", lambda: pa.layer_integrated_gradients(model, layer, x, n_steps=4)
    yield "layer idg", lambda: pa.layer_integrated_decision_gradients(model, layer, x, target=0, n_steps=4)
    yield "neuron", lambda: pa.neuron_conductance(model, layer, x, n_steps=4)
    yield "neuron double backward", lambda: pa.neuron_conductance(model, layer, x, target=1, n_steps=4,
                                                                  jvp="double_backward")
    yield "prune", lambda: pa.prune_and_measure(model, layer, x, torch.ones(6, 6), n_prune=2, n_steps=4)
    yield "insertion_deletion", lambda: metrics.insertion_deletion(model, x, attr, pixels_per_step=9, batch_size=7)
    yield "diffid", lambda: metrics.diffid(model, x, attr, fractions=(0.25, 0.5), batch_size=7)
    imgs = (torch.rand(2, 3, 6, 6) * 255).to(torch.uint8)
    yield "pic", lambda: metrics.pic(model, imgs, attr.float(), thresholds=(0.1, 0.5), min_pred_value=0.0,
                                     preprocess=lambda u: u.double() / 255, num_data_points=20, batch_size=5)


def test_every_public_entry_calls_the_model_only_through_the_runner(model):
    for name, run in _cases(model):
        before = model.calls
        run()
        assert model.calls > before, f"{name}: the model was never called (the check would mean nothing)"


def test_certainty_model_and_icg_call_the_net_only_through_the_runner():
    torch.manual_seed(0)
    net = Guarded(_cnn(in_ch=4, classes=3))
    cm = pa.CertaintyModel(net, value_channels=3)
    values = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    pa.integrated_certainty_gradients(cm, values, n_steps=4, return_convergence_delta=True)
    information_absence(cm, values)
    neutrality(cm, values, torch.tensor([0, 1, 2]))
    suppression_check(cm, values, torch.ones(1, 6, 6), n_steps=4)
    assert net.calls > 0


def test_the_service_batcher_never_calls_the_model_itself(model):
    from pathattr.apps.serve import DynamicBatcher

    b = DynamicBatcher(pa.Explainer(model, "ig", n_steps=4), max_batch=4, max_wait_ms=1).start()
    try:
        for t in ([None, None], [1, None], [0, 2]):
            attr, tout = b.submit(_x(), t).result(60)
            assert attr.shape == (2, 3, 6, 6) and tout.shape == (2,)
    finally:
        b.close()


# Calls of a model outside engine/ that are not the user's model being explained:
# the model's own methods, the training loop, the engine's wrapper models, and (for the
# apps helper to route through the runner) two app sites.
ALLOWED = {
    ("certainty/model.py", "forward"), ("certainty/model.py", "predict"),  # CertaintyModel's own methods
    ("certainty/model.py", "train_certainty_model"),  # training, not attribution
    ("layers/hooks.py", "forward"),  # LayerReplaced: a model of h that the engine's runner calls
    # pathattr.text's models of the explained number (the runner calls them: tests/test_text_tokens.py)
    ("text/tasks.py", "forward"), ("text/teacher_forced.py", "forward"), ("text/segments.py", "forward"),
}


def _model_calls(path: Path):
    """(function name, line) of every call of `model(...)`, `net(...)`, `<x>.model(...)`
    or `<x>.net(...)` in a file."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Call):
                f = child.func
                if (isinstance(f, ast.Name) and f.id in ("model", "net")) or \
                        (isinstance(f, ast.Attribute) and f.attr in ("model", "net")):
                    found.append((name, child.lineno))
            visit(child, name)

    visit(tree, "<module>")
    return found


def test_no_module_outside_the_engine_calls_a_model():
    root = Path(pa.__file__).parent
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in ("engine", "reference", "data"):
            continue
        for func, line in _model_calls(path):
            if (rel, func) not in ALLOWED:
                bad.append(f"{rel}:{line} in {func}()")
    assert not bad, "model calls outside engine/runner.py: " + ", ".join(bad)


def test_the_scan_finds_a_direct_call(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f(model, x):\n    with torch.no_grad():\n        return model(x)\n\n"
                 "class A:\n    def g(self, x):\n        return self.engine.model(x)\n")
    assert _model_calls(p) == [("f", 3), ("g", 7)]
