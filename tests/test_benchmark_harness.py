"""The CPU benchmark's acceptance ratios (benchmarks/harness.py, benchmarks/cpu.py).

The headline ratio is paired: the median over rounds of two providers' quotient, so
a drift of the machine between rounds cancels; these tests hold it to that meaning.
"""
import random
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import cpu  # noqa: E402
from benchmarks.harness import Row, paired_ratio  # noqa: E402


def test_paired_ratio_cancels_a_drift_between_rounds():
    rng = random.Random(0)
    speed = [1.0 + 0.4 * rng.random() for _ in range(9)]  # the machine's pace per round
    den = [2.0 * s for s in speed]
    num = [2.2 * s for s in speed]  # always 1.1x the denominator in its own round
    assert paired_ratio(num, den) == pytest.approx(1.1, rel=1e-12)
    # A slow round of the numerator alone (the machine stalled during its sample) moves
    # one quotient; the median ignores it.
    num[3] *= 1.5
    assert paired_ratio(num, den) == pytest.approx(1.1, rel=1e-12)


def test_paired_ratio_is_the_median_of_quotients():
    assert paired_ratio([1.0, 4.0, 9.0], [1.0, 2.0, 3.0]) == pytest.approx(2.0)
    assert paired_ratio([3.0, 1.0], [1.0, 1.0]) == pytest.approx(2.0)  # even count: mean of the middle two


@pytest.mark.parametrize("num,den", [([], []), ([1.0], [1.0, 2.0])])
def test_paired_ratio_rejects_unpaired_samples(num, den):
    with pytest.raises(ValueError, match="paired_ratio"):
        paired_ratio(num, den)


def test_ratios_report_both_estimators_per_case():
    def row(provider, samples):
        return Row("c/b1", provider, 1, 50, "cpu", samples)

    rows = [row("bare_fwd_bwd", [1.0, 2.0, 1.0]), row("pathattr_ig", [1.1, 2.2, 1.1]),
            row("captum_ig", [2.0, 2.0, 4.0])]
    r = cpu.ratios(rows)["c/b1"]
    assert r["IG/bare"]["paired"] == pytest.approx(1.1)
    assert r["IG/bare"]["of_medians"] == pytest.approx(1.1)
    assert r["IG/captum"]["paired"] == pytest.approx(0.55)
    assert r["IG/captum"]["of_medians"] == pytest.approx(1.1 / 2.0)
    assert "IDG/bare" not in r  # providers missing from a run give no ratio, not an error
    assert len(cpu.summarize(rows)) == 2


def test_cheap_cases_get_more_rounds():
    assert cpu.rounds(5, 0.002) == 25
    assert cpu.rounds(5, 0.05) == 11
    assert cpu.rounds(5, 1.4) == 5
    assert cpu.rounds(30, 0.002) == 30



def test_a_slow_first_call_does_not_set_the_calls_per_sample():
    """One-time costs of a provider's first call (imports, caches) must not shrink its
    calls per sample to 1: every sample would then be one cold call."""
    from benchmarks.harness import time_interleaved, time_provider

    calls = {"n": 0}

    def first_slow():
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.2)

    time_interleaved({"p": first_slow}, repeat=2, warmup=2, min_sample_s=0.01)
    # 1 untimed + 2 warm-up + 2 samples of many calls each (a ~0 s call fills 10 ms with thousands)
    assert calls["n"] > 100
    calls["n"] = 0
    time_provider(first_slow, repeat=2, warmup=2, min_sample_s=0.01)
    assert calls["n"] > 100
