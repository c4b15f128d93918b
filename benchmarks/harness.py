"""One benchmark harness: cases declare providers; every provider is timed the same way.

A provider is a zero-argument callable doing one complete unit of work (e.g.
attribute a batch). Timing: `warmup` untimed calls, then `repeat` timed calls;
rows keep every sample plus median and percentiles, keyed by case, provider,
size, device and versions, so runs on different days and machines compare.
"""
from __future__ import annotations

import datetime
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch


def environment() -> Dict[str, str]:
    import pathattr

    env = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pathattr": pathattr.__version__,
        "machine": platform.machine(),
        "cpu_threads": str(torch.get_num_threads()),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})",
    }
    try:
        import captum

        env["captum"] = captum.__version__
    except ImportError:  # the peer is optional
        env["captum"] = "not installed"
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = "not installed"
    return env


@dataclass
class Row:
    case: str
    provider: str
    batch: int
    steps: int
    device: str
    samples_s: List[float]
    median_s: float = 0.0
    p10_s: float = 0.0
    p90_s: float = 0.0
    extra: Dict[str, object] = field(default_factory=dict)

    def __post_init__(self):
        s = sorted(self.samples_s)
        self.median_s = statistics.median(s)
        self.p10_s = s[max(0, int(0.1 * (len(s) - 1)))]
        self.p90_s = s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_provider(fn: Callable[[], object], repeat: int = 5, warmup: int = 3, device: str = "cpu",
                  min_sample_s: float = 0.05) -> List[float]:
    """`repeat` samples of the time of one call. A call shorter than `min_sample_s` is
    repeated inside each sample (the count is fixed after warm-up) so that timer
    resolution and scheduler noise do not decide millisecond-scale results."""
    fn()  # untimed: a first call's one-time costs must not set the count (see time_interleaved)
    t0 = time.perf_counter()
    for _ in range(warmup):  # several: oneDNN builds kernels per new batch shape
        fn()
    _sync(device)
    per_call = (time.perf_counter() - t0) / max(1, warmup)
    inner = max(1, int(min_sample_s / max(per_call, 1e-9))) if warmup else 1
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        samples.append((time.perf_counter() - t0) / inner)
    return samples


def time_interleaved(providers: Dict[str, Callable[[], object]], repeat: int = 5, warmup: int = 3,
                     device: str = "cpu", min_sample_s: float = 0.05) -> Dict[str, List[float]]:
    """Like `time_provider` for several providers, sampled round-robin: sample i of every
    provider is taken in the same stretch of time, so drifts of a shared or throttled
    machine hit all of them alike and their ratios stay meaningful.

    Each provider's first call is left out of the warm-up that sets its count of calls
    per sample: a first call can pay one-time costs (measured: pathattr's first IG call
    in a process, 65 ms against 1.8 ms after), and a count of 1 where ~30 was meant
    made every sample a single cold call (digits CNN, batch 1: 1.17x the floor instead
    of 1.05x for the same code)."""
    inner = {}
    for name, fn in providers.items():
        fn()
        t0 = time.perf_counter()
        for _ in range(warmup):
            fn()
        _sync(device)
        per_call = (time.perf_counter() - t0) / max(1, warmup)
        inner[name] = max(1, int(min_sample_s / max(per_call, 1e-9)))
    samples: Dict[str, List[float]] = {name: [] for name in providers}
    for _ in range(repeat):
        for name, fn in providers.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            _sync(device)
            samples[name].append((time.perf_counter() - t0) / inner[name])
    return samples


def paired_ratio(num: List[float], den: List[float]) -> float:
    """The median over rounds of num[i] / den[i], for samples taken round-robin
    (`time_interleaved`): sample i of both comes from the same stretch of time, so a
    drift of the machine between rounds cancels in each quotient. The ratio of the two
    medians does not cancel it: on a VM whose speed wanders by 10-20 % over a run, it
    moves by about as much (both are reported; see benchmarks/cpu.py)."""
    if len(num) != len(den) or not num:
        raise ValueError(f"paired_ratio needs two equally long, non-empty sample lists; got {len(num)} and {len(den)}")
    return statistics.median(a / b for a, b in zip(num, den))


def best_chunk(make: Callable[[int], Callable[[], object]], chunks: List[int], repeat: int, device: str):
    """Time `make(chunk)` for every chunk size; return (best chunk, its samples, all medians)."""
    medians, best = {}, None
    for c in chunks:
        s = time_provider(make(c), repeat=repeat, device=device)
        medians[c] = statistics.median(s)
        if best is None or medians[c] < statistics.median(best[1]):
            best = (c, s)
    return best[0], best[1], medians


def write_results(rows: List[Row], path: Path, env: Dict[str, str], settings: Dict[str, object],
                  summary: Optional[Dict[str, object]] = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"environment": env, "settings": settings, "rows": [asdict(r) for r in rows]}
    if summary is not None:
        payload["summary"] = summary
    path.write_text(json.dumps(payload, indent=1))
    return path


def table(rows: List[Row], baseline: Optional[Dict[str, str]] = None) -> str:
    """A plain-text table; `baseline` maps a case to the provider the ratio column divides by."""
    lines = [f"{'case':<28}{'provider':<26}{'median ms':>11}{'p10':>9}{'p90':>9}{'ratio':>8}  notes"]
    by_case: Dict[str, Dict[str, Row]] = {}
    for r in rows:
        by_case.setdefault(r.case, {})[r.provider] = r
    for case, provs in by_case.items():
        base = provs.get((baseline or {}).get(case, ""), None)
        for name, r in provs.items():
            ratio = f"{r.median_s / base.median_s:.3f}" if base else ""
            note = ", ".join(f"{k}={v}" for k, v in r.extra.items() if k != "chunk_medians")
            lines.append(f"{case:<28}{name:<26}{1e3 * r.median_s:>11.2f}{1e3 * r.p10_s:>9.2f}{1e3 * r.p90_s:>9.2f}{ratio:>8}  {note}")
    return "\n".join(lines)
