"""The DynamicBatcher without HTTP (merging, routing, deadlines, isolation of a failing
request, draining on close) and `pathattr.apps.serve` from the command line."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError

import httpx
import pytest
import torch

import pathattr as pa
from pathattr.apps.serve import BatcherClosed, DynamicBatcher, QueueFull
from pathattr.apps.serve.metrics import ServiceMetrics
from pathattr.apps.serve.runner import wait_until_ready

from conftest import assert_close
from testmodels import MLP


class _Recording:
    """An Explainer stand-in: attributions = inputs * (target + 1); records call sizes;
    fails any call containing a row whose first feature is exactly 13."""

    def __init__(self):
        self.model = torch.nn.Linear(4, 3).double()
        self.sizes = []

    def attribute(self, x, target=None, return_details=False):
        self.sizes.append(x.shape[0])
        if (x[:, 0] == 13).any():
            raise ValueError("row 13 is poison")
        t = self.model(x).argmax(1) if target is None else target
        res = pa.AttributionResult(attributions=x * (t.view(-1, 1) + 1), target=t)
        return res if return_details else res.attributions  # as Explainer.attribute


def test_requests_are_merged_and_routed_back(seed):
    ex = _Recording()
    b = DynamicBatcher(ex, max_batch=8, max_wait_ms=100, metrics=ServiceMetrics())
    xs = [torch.randn(n, 4, dtype=torch.float64) for n in (1, 3, 2, 2, 1)]
    tg = [[0], [1, None, 2], [None, None], [2, 2], [1]]
    futs = [b.submit(x, t) for x, t in zip(xs, tg)]  # queued before the worker starts
    b.start()
    res = [f.result(10) for f in futs]
    # 1+3+2+2 fill max_batch (one merged batch: its 3 rows without a target in one plain
    # call, its 5 with one in another); the last request goes alone
    assert ex.sizes == [3, 5, 1]
    for x, t, (attr, tout) in zip(xs, tg, res):
        top = ex.model(x).argmax(1)
        want_t = torch.tensor([top[i] if v is None else v for i, v in enumerate(t)])
        assert torch.equal(tout, want_t)
        assert_close(attr, x * (want_t.view(-1, 1) + 1), rtol=0, atol=0)
    b.close()


def test_a_failing_request_does_not_fail_its_batch(seed):
    ex = _Recording()
    b = DynamicBatcher(ex, max_batch=8, max_wait_ms=100)
    good = torch.randn(2, 4, dtype=torch.float64)
    bad = torch.randn(1, 4, dtype=torch.float64)
    bad[0, 0] = 13
    f1, f2, f3 = b.submit(good, [0, 1]), b.submit(bad, [0]), b.submit(good[:1], [2])
    b.start()
    assert_close(f1.result(10)[0], good * torch.tensor([[1.0], [2.0]], dtype=torch.float64), rtol=0, atol=0)
    with pytest.raises(ValueError, match="poison"):
        f2.result(10)
    assert f3.result(10)[1].tolist() == [2]
    assert ex.sizes == [4, 2, 1, 1]  # merged call failed; each request then ran alone
    b.close()


def test_deadlines_cancellation_queue_limit_and_close(seed):
    ex = _Recording()
    m = ServiceMetrics()
    b = DynamicBatcher(ex, max_batch=4, max_wait_ms=0, max_queue=4, metrics=m)
    x = torch.randn(1, 4, dtype=torch.float64)
    late = b.submit(x, [0], deadline=time.monotonic() - 0.001)
    gone = b.submit(x, [0])
    gone.cancel()
    b.submit(x, [0])
    b.submit(x, [0])
    with pytest.raises(QueueFull):
        b.submit(x, [0])
    with pytest.raises(ValueError, match="max_batch"):
        b.submit(torch.randn(5, 4, dtype=torch.float64), [0] * 5)
    b.start()
    with pytest.raises(pa.DeadlineExceeded):
        late.result(10)
    with pytest.raises(CancelledError):
        gone.result(10)
    last = b.submit(x, [1], deadline=time.monotonic() + 30)
    b.close()  # drains what is queued, then stops
    assert last.result(0)[1].tolist() == [1]
    with pytest.raises(BatcherClosed):
        b.submit(x, [0])
    assert m.deadline_exceeded._value.get() == 1 and m.queue_depth._value.get() == 0


def test_batcher_with_a_real_explainer_equals_direct_calls(seed):
    model = MLP(d_in=5, classes=4).double().eval()
    ex = pa.Explainer(model, "idg", n_steps=12)
    b = DynamicBatcher(ex, max_batch=16, max_wait_ms=50).start()
    xs = [torch.randn(n, 5, dtype=torch.float64) for n in (2, 1, 3)]
    futs = [b.submit(x, [None] * len(x)) for x in xs]
    for x, f in zip(xs, futs):
        attr, t = f.result(30)
        assert_close(attr, pa.Explainer(model, "idg", n_steps=12).attribute(x), rtol=1e-10, atol=1e-12)
        assert torch.equal(t, model(x).argmax(1))
    b.close()


def test_batcher_makes_the_plain_library_call_and_never_runs_the_model_itself(seed, monkeypatch):
    """Given targets go to the library as they are; rows without one are left to the
    library (target=None, its argmax reported back). The batcher calls no model."""
    model = MLP(d_in=5, classes=4).double().eval()
    ex = pa.Explainer(model, "ig", n_steps=8)
    seen = []
    real = ex.attribute
    monkeypatch.setattr(ex, "attribute", lambda x, target=None, **kw: (seen.append((target, kw)), real(x, target=target, **kw))[1])
    b = DynamicBatcher(ex, max_batch=4, max_wait_ms=1).start()
    x = torch.randn(1, 5, dtype=torch.float64)
    for t in ([2], [None]):
        attr, tout = b.submit(x, t).result(30)
        want_t = model(x).argmax(1) if t[0] is None else torch.tensor(t)
        assert torch.equal(tout, want_t)
        assert torch.equal(attr, pa.Explainer(model, "ig", n_steps=8).attribute(x, target=want_t,
                                                                              return_details=True).attributions)
    assert [None if t is None else t.tolist() for t, _ in seen] == [[2], None]
    assert seen[1][1] == {"return_details": True}
    b.close()

    def margin(out, target):  # needs no class: top logit minus the mean
        return out.max(1).values - out.mean(1)

    b = DynamicBatcher(pa.Explainer(model, "ig", n_steps=8, output=margin), max_batch=4, max_wait_ms=1).start()
    attr, tout = b.submit(x, [None]).result(30)
    assert torch.equal(attr, pa.Explainer(model, "ig", n_steps=8, output=margin).attribute(x))
    b.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serve_starts_answers_and_stops_on_sigterm():
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "pathattr", "serve", "--port", str(port), "--device", "cpu", "--steps", "16",
                             "--max-batch", "4", "--log-level", "info"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, proc, timeout_s=60)
        r = httpx.post(url + "/v1/models/digits:explain", json={"instances": [[[[0.5] * 8] * 8]]})
        assert r.status_code == 200 and len(r.json()["explanations"]) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    # uvicorn finishes, runs the app's shutdown (drains the batcher), then re-raises SIGTERM
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out, out
    assert "warm-up 1/1: idg on a batch of 1 1x8x8 on cpu" in out and "ready: model 'digits'" in out, out


def test_cli_serve_rejects_bad_arguments():
    from pathattr.apps.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--model", "no_such_file.pt"])
    with pytest.raises(SystemExit):
        main(["serve", "--set", "novalue"])
    with pytest.raises(SystemExit):
        main(["serve", "--setting", "novalue"])  # the old spelling, still read
    with pytest.raises(SystemExit):
        main(["serve", "--dtype", "int8"])


def test_service_arguments_are_checked():
    from pathattr.apps.serve import ExplanationService, ModelSpec

    spec = ModelSpec("m", MLP(d_in=5, classes=4).eval(), (5,))
    with pytest.raises(ValueError, match="torch_threads"):
        ExplanationService(spec, torch_threads=0)
    with pytest.raises(ValueError, match="timeout_ms"):
        ExplanationService(spec, timeout_ms=-1)
    with pytest.raises(ValueError, match="max_queue"):
        ExplanationService(spec, max_batch=8, max_queue=4)
    with pytest.raises(ValueError, match="name"):
        ModelSpec("a/b", spec.model, (5,))
    with pytest.raises(ValueError, match="input_shape"):
        ModelSpec("m", spec.model, (5, 0))
    with pytest.raises(TypeError, match="spec"):
        ExplanationService("digits")


def test_worker_warms_up_on_its_own_thread():
    """auto_warmup runs on the batcher's worker (the one thread that runs the model)."""
    from pathattr.apps.serve import ExplanationService, ModelSpec

    seen = []
    net = MLP(d_in=5, classes=4).eval()
    net.register_forward_hook(lambda *a: seen.append(threading.current_thread().name))
    svc = ExplanationService(ModelSpec("m", net, (5,)), "ig", max_batch=4, torch_threads=1,
                             explainer_kwargs={"n_steps": 4})
    svc.start()
    end = time.monotonic() + 30
    while not svc.ready and time.monotonic() < end:
        time.sleep(0.01)
    assert svc.ready and svc.spec.num_classes == 4
    svc.close()
    assert seen and set(seen) == {"pathattr-batcher"}


def test_load_spec_reads_torchscript_and_module_attr(tmp_path):
    from pathattr.apps.serve import load_spec

    net = MLP(d_in=5, classes=4).eval()
    path = tmp_path / "mlp.pt"
    torch.jit.script(net).save(str(path))
    spec = load_spec(str(path), input_shape="5")
    x = torch.randn(3, 5)
    assert spec.name == "mlp" and spec.input_shape == (5,) and spec.dtype == torch.float32
    assert_close(spec.model(x), net(x), rtol=1e-6, atol=1e-6)
    spec = load_spec("testmodels:MLP", input_shape="12", name="m2")
    assert spec.name == "m2" and isinstance(spec.model, MLP)
    digits = load_spec()
    assert digits.name == "digits" and digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    with pytest.raises(ValueError, match="input-shape"):
        load_spec(str(path))
    with pytest.raises(ValueError, match="input shape"):
        load_spec(str(path), input_shape="5,a")
