"""The machinery of the bad-argument property tests (test_bad_arguments*.py).

A `Sig` describes one public signature: `make()` returns (function, valid keyword
arguments, a counter of model calls), built fresh for every example, and `bad` maps
each argument to a hypothesis strategy of values that must be refused. The test draws
one bad value for one argument, keeps the others valid and asserts: a ValueError or
TypeError, its message names the argument, and the model ran `calls.get(arg, 0)`
times at most (zero: every check before the first model call).

A strategy must never draw a value the signature legitimately accepts (a number
baseline, a target the model could have), nor one that only the model can reject
(inputs of a shape its layers refuse, a target at or above its class count).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Tuple

import numpy as np
import torch
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from torch import nn

# Hypothesis settings of every bad-argument test: few examples per argument (there are
# several hundred arguments), no deadline (the first call of a kind imports and warms up).
# PATHATTR_BADARGS_QUICK=1: fewer examples and no shrinking (a survey of old code, where
# an accepted bad value may run the model for a long time).
_QUICK = os.environ.get("PATHATTR_BADARGS_QUICK") == "1"
# PATHATTR_BADARGS_EXAMPLES=n: n examples per argument (a longer search than CI's).
SETTINGS = settings(max_examples=int(os.environ.get("PATHATTR_BADARGS_EXAMPLES", 6 if _QUICK else 15)), deadline=None,
                    database=None,
                    phases=[Phase.explicit, Phase.generate] if _QUICK else list(Phase),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------ counting models
class Counting(nn.Module):
    """A small MLP that counts its forward calls: (B, *shape) flattened to d_in -> (B, classes).
    Seeded, so two instances have the same parameters (an LPI bank fits both)."""

    def __init__(self, d_in=6, classes=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.calls = 0
        self.lin1 = nn.Linear(d_in, 8)
        self.act = nn.Tanh()
        self.lin2 = nn.Linear(8, classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x, *args):
        self.calls += 1
        return self.lin2(self.act(self.lin1(x.flatten(1).to(self.lin1.weight.dtype))))


class CountingTokens(nn.Module):
    """Token ids (B, T) in [0, 10) -> (B, classes) through an embedding, counting calls."""

    def __init__(self, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.calls = 0
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, classes)

    def forward(self, ids, *args):
        self.calls += 1
        return self.head(self.embed(ids).mean(1))


# ------------------------------------------------------------------ strategies
NONFINITE = st.sampled_from([math.nan, math.inf, -math.inf])
# Values that no argument of this API accepts (strings are left out where a string could
# be a legitimate key, e.g. `output`).
OBJECTS = st.one_of(st.builds(object), st.binary(min_size=1, max_size=3),
                    st.complex_numbers(allow_nan=False, max_magnitude=10).filter(lambda z: z.imag != 0),
                    st.dictionaries(st.text(max_size=2), st.integers(), min_size=1, max_size=2))
JUNK = st.one_of(OBJECTS, st.text(max_size=6))
TENSOR_JUNK = st.sampled_from([torch.tensor(1.5), torch.tensor([1, 2]), torch.tensor(True)])


def counts(minimum: int = 1, maximum: int = None, none_ok: bool = False, huge: bool = True):
    """Values that are not an integer in [minimum, maximum] (None refused unless none_ok).
    huge=False leaves out integers above the range (where only the model can tell)."""
    bad = [st.integers(min_value=-2 ** 70, max_value=minimum - 1), st.booleans(),
           st.floats(allow_nan=True, allow_infinity=True), JUNK, TENSOR_JUNK]
    if maximum is not None and huge:
        bad.append(st.integers(min_value=maximum + 1, max_value=2 ** 80))
    if not none_ok:
        bad.append(st.none())
    return st.one_of(bad)


def choices(valid, none_ok: bool = False):
    """Anything but one of the strings `valid`."""
    bad = [st.text(max_size=12).filter(lambda s: s not in valid), st.integers(), st.booleans(), st.floats(), OBJECTS]
    if not none_ok:
        bad.append(st.none())
    return st.one_of(bad)


def flags():
    """Anything but True or False."""
    return st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats(), OBJECTS)


def reals_outside(lo: float, hi: float, lo_closed: bool = True, hi_closed: bool = True, none_ok: bool = False):
    """Anything but a real number in the interval (lo, hi) with the given closed ends."""
    bad = [NONFINITE, st.booleans(), JUNK, TENSOR_JUNK]
    if lo > -math.inf:
        bad.append(st.floats(max_value=lo, exclude_max=lo_closed, allow_nan=False, allow_infinity=False))
    if hi < math.inf:
        bad.append(st.floats(min_value=hi, exclude_min=hi_closed, allow_nan=False, allow_infinity=False))
    if not none_ok:
        bad.append(st.none())
    return st.one_of(bad)


def dtypes(valid=()):
    """Anything but one of the dtypes `valid` (None refused unless given in `valid`)."""
    others = [d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int8,
                          torch.bool, torch.complex64) if d not in valid]
    bad = [st.sampled_from(others), JUNK, st.integers()]
    if None not in valid:
        bad.append(st.none())
    return st.one_of(bad)


def nonfinite_tensor(shape, dtype=torch.float32):
    """A tensor of `shape` with one NaN or Inf somewhere."""
    numel = math.prod(shape)

    def build(args):
        i, v = args
        t = torch.rand(shape, dtype=dtype)
        t.view(-1)[i] = v
        return t
    return st.tuples(st.integers(0, numel - 1), NONFINITE).map(build)


def wrong_dtype_tensor(shape, dtypes=(torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64)):
    return st.sampled_from(dtypes).map(lambda dt: torch.zeros(shape, dtype=dt))


def meta(shape, dtype=torch.float32):
    """A tensor on another device than the model's (the meta device stands for any other)."""
    return st.just(torch.zeros(shape, dtype=dtype, device="meta"))


def float_inputs(shape):
    """Anything but a finite floating tensor with a batch dimension on the model's device."""
    return st.one_of(JUNK, st.none(), st.lists(st.floats(), max_size=3), st.just(np.zeros(shape, np.float32)),
                     st.just(torch.tensor(1.0)), wrong_dtype_tensor(shape), nonfinite_tensor(shape), meta(shape))


def broadcast_misfits(shape):
    """Shapes that do not broadcast to `shape` (B, D)."""
    B, D = shape
    return st.sampled_from([(B + 1, D), (B, D + 1), (D + 1,), (D, B + 5), (B, D, 2), (B + 2, 1, D)])


def baselines(shape, numbers_ok: bool = True):
    """Anything but None, a finite real number or a finite real tensor broadcastable to inputs."""
    bad = [OBJECTS, st.text(max_size=4), st.booleans(), NONFINITE, st.lists(st.floats(), min_size=1, max_size=3),
           broadcast_misfits(shape).map(torch.zeros), wrong_dtype_tensor(shape, (torch.bool, torch.complex64)),
           nonfinite_tensor(shape), meta(shape)]
    if not numbers_ok:
        bad.append(st.floats(allow_nan=False, allow_infinity=False))
    return st.one_of(bad)


def targets(batch: int, classes: int):
    """Anything that cannot be a target for `batch` inputs, decidable without the model:
    wrong types, negative classes, integers beyond int64, wrong lengths."""
    return st.one_of(
        st.booleans(), st.floats(), st.text(min_size=1, max_size=3), OBJECTS,
        st.integers(max_value=-1, min_value=-2 ** 70), st.integers(min_value=2 ** 63, max_value=2 ** 80),
        st.lists(st.integers(0, classes - 1), max_size=batch + 3).filter(lambda v: len(v) != batch),
        st.lists(st.floats(), min_size=batch, max_size=batch),
        st.lists(st.integers(-5, -1), min_size=batch, max_size=batch),
        st.sampled_from([torch.zeros(batch), torch.zeros(batch, dtype=torch.bool),
                         torch.zeros(batch, dtype=torch.complex64), torch.zeros(batch, 2, dtype=torch.long),
                         torch.zeros(batch + 1, dtype=torch.long), torch.full((batch,), -1)]),
    )


def models():
    """Anything that is not a model."""
    return st.one_of(JUNK, st.none(), st.integers(), st.just(torch.zeros(2, 6)))


# ------------------------------------------------------------------ the table entries
@dataclass
class Sig:
    """One public signature. bad: label -> strategy; the argument is the label up to a
    colon ("scores:shape" draws bad values for `scores`). says: label -> the word the
    message must contain (default: the argument's name). calls: label -> model calls
    allowed before the error (default 0)."""

    name: str
    make: Callable[[], Tuple[Callable, Dict[str, Any], Callable[[], int]]]
    bad: Dict[str, Any]
    says: Dict[str, str] = field(default_factory=dict)
    calls: Dict[str, int] = field(default_factory=dict)
    runs_model: bool = True  # the valid call runs the model (False: a constructor, a model-free function)

    def __repr__(self) -> str:
        return f"Sig({self.name!r})"


def cases(signatures):
    """(signature, label) pairs with readable ids, for pytest.mark.parametrize."""
    pairs = [(s, label) for s in signatures for label in s.bad]
    return pairs, [f"{s.name}-{label}" for s, label in pairs]


def check_refused(sig: Sig, label: str, value: Any) -> None:
    """Call sig with `value` for the argument of `label`; assert the error and the model calls."""
    import pytest

    arg = label.split(":")[0]
    shown = (f"tensor(shape={tuple(value.shape)}, dtype={value.dtype}, device={value.device})"
             if isinstance(value, torch.Tensor) else repr(value)[:200])
    fn, kwargs, calls = sig.make()
    kwargs[arg] = value
    with pytest.raises((ValueError, TypeError)) as info:
        fn(**kwargs)
    word = sig.says.get(label, arg)
    msg = str(info.value)
    assert re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", msg), \
        f"{sig.name}({arg}={shown}): the message does not name {word!r}: {type(info.value).__name__}: {msg}"
    allowed = sig.calls.get(label, 0)
    assert calls() <= allowed, (f"{sig.name}({arg}={shown}) ran the model {calls()} time(s) before refusing it "
                                f"(allowed {allowed}): {msg}")


def signature_tests(signatures):
    """The two tests of a table of signatures: every bad value is refused before the model
    runs, and the valid call the table keeps does run (else every refusal would be vacuous).
    A test module binds them: `test_refused, test_valid = signature_tests(SIGNATURES)`."""
    import pytest
    from hypothesis import given

    case_list, ids = cases(signatures)

    @pytest.mark.parametrize("sig, label", case_list, ids=ids)
    @SETTINGS
    @given(data=st.data())
    def test_bad_argument_is_refused_before_the_model_runs(sig, label, data):
        check_refused(sig, label, data.draw(sig.bad[label], label=label))

    @pytest.mark.parametrize("sig", signatures, ids=[s.name for s in signatures])
    def test_the_valid_call_runs(sig):
        fn, kwargs, calls = sig.make()
        fn(**kwargs)
        assert (calls() > 0) == sig.runs_model

    return test_bad_argument_is_refused_before_the_model_runs, test_the_valid_call_runs
