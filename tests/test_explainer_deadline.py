"""The embeddable Explainer's limits: max_batch and per-call deadlines that fail fast
(DeadlineExceeded) instead of queueing forever on the Explainer's lock."""
import threading
import time

import pytest
import torch

import pathattr as pa
from pathattr.engine.deadline import CallTimer, resolve_deadline

from conftest import assert_close
from testmodels import MLP


class _Slow(torch.nn.Module):
    """An MLP whose every forward pass sleeps: calls take a known minimum time."""

    def __init__(self, pause):
        super().__init__()
        self.net, self.pause = MLP(d_in=6, classes=3).double(), pause

    def forward(self, x):
        time.sleep(self.pause)
        return self.net(x)


def test_max_batch_is_enforced(seed):
    ex = pa.Explainer(MLP(d_in=6, classes=3).double(), "ig", n_steps=4, max_batch=3)
    x = torch.randn(4, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="max_batch"):
        ex.attribute(x, target=0)
    assert_close(ex.attribute(x[:3], target=0), pa.Explainer(ex.model, "ig", n_steps=4).attribute(x[:3], target=0),
                 rtol=0, atol=0)
    with pytest.raises(ValueError, match="max_batch"):
        ex.warmup((6,), batch_size=4)
    for bad, err in ((0, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(err, match="max_batch"):
            pa.Explainer(ex.model, "ig", max_batch=bad)


def test_waiting_on_a_busy_explainer_stops_at_the_deadline(seed):
    ex = pa.Explainer(MLP(d_in=6, classes=3).double(), "idg", n_steps=8)
    x = torch.randn(2, 6, dtype=torch.float64)
    ex._lock.acquire()  # another caller holds the Explainer for longer than our timeout
    try:
        start = time.monotonic()
        with pytest.raises(pa.DeadlineExceeded, match="deadline"):
            ex.attribute(x, target=1, timeout=0.05)
        took = time.monotonic() - start
        assert 0.04 <= took < 1.0
        with pytest.raises(pa.DeadlineExceeded):  # an absolute deadline already past: no wait at all
            ex.attribute(x, target=1, deadline=time.monotonic() - 1)
    finally:
        ex._lock.release()
    # free again: the same call with a generous deadline runs and equals the plain call
    assert_close(ex.attribute(x, target=1, timeout=30), ex.attribute(x, target=1), rtol=0, atol=0)


def test_a_call_that_cannot_finish_in_time_is_refused_without_running(seed):
    model = _Slow(0.05)
    ex = pa.Explainer(model, "ig", n_steps=4, internal_batch_size=64)
    x = torch.randn(2, 6, dtype=torch.float64)
    ex.attribute(x, target=0)  # cold: not counted
    ex.attribute(x, target=0)  # learns that a batch of 2 takes >= 2 passes * 50 ms
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    start = time.monotonic()
    with pytest.raises(pa.DeadlineExceeded, match="never taken less"):
        ex.attribute(x, target=0, timeout=0.03)
    assert not calls and time.monotonic() - start < 0.09  # failed fast (a run takes >= 100 ms), computed nothing
    ex.attribute(x[:1], target=0, timeout=0.03)  # batch size 1 was never timed: it may try (and runs late)


def test_deadlines_under_concurrent_callers(seed):
    """Eight threads share one slow Explainer; whoever cannot get it in 150 ms fails fast,
    everyone else gets exactly the serial answer."""
    ex = pa.Explainer(_Slow(0.05), "ig", n_steps=4, internal_batch_size=64)  # >= 50 ms a call
    xs = [torch.randn(1, 6, dtype=torch.float64) for _ in range(8)]
    want = [pa.Explainer(ex.model, "ig", n_steps=4, internal_batch_size=64).attribute(x, target=2) for x in xs]
    got, errors = [None] * 8, []

    def work(i):
        try:
            got[i] = ex.attribute(xs[i], target=2, timeout=0.15)
        except pa.DeadlineExceeded as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start < 2.0  # nobody queued forever
    assert errors, "eight calls of >= 50 ms cannot all start within 150 ms"
    done = [i for i in range(8) if got[i] is not None]
    assert len(done) + len(errors) == 8 and done
    for i in done:
        assert torch.equal(got[i], want[i])


def test_deadline_arguments_are_checked():
    with pytest.raises(TypeError, match="timeout"):
        resolve_deadline(timeout="1")
    with pytest.raises(ValueError, match="timeout"):
        resolve_deadline(timeout=-1)
    with pytest.raises(TypeError, match="deadline"):
        resolve_deadline(deadline=float("nan"))
    now = time.monotonic()
    assert resolve_deadline(deadline=now + 5, timeout=1) < now + 2  # the earlier one wins
    assert resolve_deadline() is None
    t = CallTimer()
    t.record(4, 5.0)  # the cold first call of a size is left out
    assert t.lower_bound(4) == 0.0
    t.record(4, 0.2)
    t.record(4, 0.1)
    t.record(4, 0.3)
    assert t.lower_bound(4) == 0.1 and t.lower_bound(3) == 0.0
