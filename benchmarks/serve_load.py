"""Load test of `pathattr.apps.serve` on loopback with a real load generator (wrk).

Starts `pathattr.apps.serve` (bundled digits model, IDG) in a subprocess, then runs wrk
for `--seconds` at each client count (default 1, 8, 32; one request = one instance,
bodies cycled over held-out digits by a Lua script). Per level it records throughput,
latency percentiles, errors (socket errors, timeouts, non-2xx), the batch sizes the
server's /metrics saw, and the load average (the machine may be shared). Writes
benchmarks/results/serve-cpu-<date>.json and checks: zero errors everywhere, and with
batching on (the first --max-wait-ms) throughput at the most clients >= 2x throughput
at one client. The stricter ratio against the best one-client server (max_wait_ms=0,
no wait for company) is recorded too. Use --threads 1 on a small shared machine: with
torch's default OpenMP threads and busy cores, batch calls slowed down ~10x (spinning
OpenMP barriers; OMP_WAIT_POLICY=PASSIVE avoids it as well).

    python -m benchmarks.serve_load --threads 1 [--seconds 15] [--clients 1 8 32] [--max-batch 32]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from pathattr.apps.serve.runner import wait_until_ready
from prometheus_client.parser import text_string_to_metric_families

from .harness import environment

RESULTS = Path(__file__).resolve().parent / "results"

LUA = r"""
-- POST bodies cycled per connection; done() prints one JSON line for the harness.
local bodies = {}
local n = 0
for line in io.lines("%(bodies)s") do n = n + 1; bodies[n] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = (i %% n) + 1
  return wrk.format(nil, "%(path)s", nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, "mean_us": %%f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch_histogram(url: str):
    """(count, sum, {le: cumulative count}, compute seconds) of pathattr_batch_size."""
    count, total, buckets, compute = 0.0, 0.0, {}, 0.0
    for fam in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for s in fam.samples:
            if s.name == "pathattr_batch_size_count":
                count = s.value
            elif s.name == "pathattr_batch_size_sum":
                total = s.value
            elif s.name == "pathattr_batch_size_bucket":
                buckets[s.labels["le"]] = s.value
            elif s.name == "pathattr_batch_compute_seconds_sum":
                compute = s.value
    return count, total, buckets, compute


def _delta(before, after):
    c, s = after[0] - before[0], after[1] - before[1]
    cum = {le: after[2][le] - before[2].get(le, 0.0) for le in after[2]}
    # per-bucket counts: calls whose batch size fell in (previous le, le]
    out, prev = {}, 0.0
    for le in sorted(cum, key=lambda v: float(v)):
        out[le] = int(cum[le] - prev)
        prev = cum[le]
    return {"calls": int(c), "instances": int(s), "mean": (s / c) if c else 0.0,
            "compute_ms_per_call": 1e3 * (after[3] - before[3]) / c if c else 0.0,
            "calls_by_size_le": {k: v for k, v in out.items() if v}}


def _run_levels(wrk, script, path, clients, seconds, method, max_batch, max_wait_ms, threads=None):
    """Start a server, run wrk at each client count; returns [model status, row, row, ...]."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "pathattr", "serve", "--port", str(port), "--device", "cpu", "--method", method,
           "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--log-level", "warning"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        try:
            wait_until_ready(url, server, timeout_s=120, poll_s=0.2)
        except RuntimeError as exc:
            sys.exit(str(exc))
        out = [httpx.get(url + "/v1/models/digits").json()]
        for c in clients:
            threads = min(c, 2)
            before, load0 = _batch_histogram(url), os.getloadavg()
            run = subprocess.run([wrk, f"-t{threads}", f"-c{c}", f"-d{seconds}s", "--timeout", "10s",
                                  "-s", str(script), url], capture_output=True, text=True, check=True)
            after, load1 = _batch_histogram(url), os.getloadavg()
            line = next(ln for ln in run.stdout.splitlines() if ln.startswith("WRKJSON "))
            w = json.loads(line[len("WRKJSON "):])
            errors = {k: w[k] for k in ("connect", "read", "write", "status", "timeout")}
            row = {"case": f"serve/digits/{method}", "provider": "wrk", "clients": c, "wrk_threads": threads,
                   "max_wait_ms": max_wait_ms, "seconds": w["duration_us"] / 1e6, "requests": w["requests"],
                   "throughput_rps": w["requests"] / (w["duration_us"] / 1e6),
                   "p50_ms": w["p50_us"] / 1e3, "p90_ms": w["p90_us"] / 1e3, "p99_ms": w["p99_us"] / 1e3,
                   "max_ms": w["max_us"] / 1e3, "mean_ms": w["mean_us"] / 1e3,
                   "errors": errors, "error_total": sum(errors.values()),
                   "batch_sizes": _delta(before, after),
                   "loadavg_1m_before": round(load0[0], 2), "loadavg_1m_after": round(load1[0], 2)}
            out.append(row)
            print(f"clients={c:3d} wait={max_wait_ms:g}ms  {row['throughput_rps']:8.1f} req/s  p50 "
                  f"{row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  errors {row['error_total']}  mean batch "
                  f"{row['batch_sizes']['mean']:.2f} ({row['batch_sizes']['compute_ms_per_call']:.1f} ms/call)  load {row['loadavg_1m_before']}->{row['loadavg_1m_after']}",
                  flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, nargs="+", default=[5.0, 0.0],
                   help="one server per value, every client count against each (default: 5 and 0)")
    p.add_argument("--method", default="idg")
    p.add_argument("--threads", type=int, default=None, help="the server's --threads (default: torch's default)")
    p.add_argument("--out", default=None, help="result file (default benchmarks/results/serve-cpu-<date>.json)")
    args = p.parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    import torch
    from pathattr.data.digits import load_digits_data

    x, _ = load_digits_data("test")
    tmp = Path(tempfile.mkdtemp(prefix="serve_load_"))
    bodies = tmp / "bodies.jsonl"
    bodies.write_text("".join(json.dumps({"instances": [x[i].tolist()]}) + "\n" for i in range(64)))
    path = "/v1/models/digits:explain"
    script = tmp / "post.lua"
    script.write_text(LUA % {"bodies": bodies, "path": path})

    rows, settings = [], None
    for wait in args.max_wait_ms:
        got = _run_levels(wrk, script, path, args.clients, args.seconds, args.method, args.max_batch, wait, args.threads)
        settings = got.pop(0)
        rows += got
    shutil.rmtree(tmp, ignore_errors=True)

    lo, hi = min(args.clients), max(args.clients)
    checks = {"zero_errors": all(r["error_total"] == 0 for r in rows)}
    for wait in args.max_wait_ms:  # the same server at few and many clients
        by = {r["clients"]: r["throughput_rps"] for r in rows if r["max_wait_ms"] == wait}
        checks[f"max_wait_{wait:g}ms_throughput_{hi}_over_{lo}"] = round(by[hi] / by[lo], 2)
    # the acceptance check: batching on (the first max_wait_ms), many clients over one
    on = args.max_wait_ms[0]
    ratio = checks[f"max_wait_{on:g}ms_throughput_{hi}_over_{lo}"]
    checks["batching_on_speedup_at_least_2x"] = on > 0 and ratio >= 2.0
    # stricter, reported only: the best many-client throughput over the best one-client
    # throughput (one client alone is faster without the wait for company that never comes)
    best = {c: max(r["throughput_rps"] for r in rows if r["clients"] == c) for c in (lo, hi)}
    checks[f"best_{hi}_over_best_{lo}"] = round(best[hi] / best[lo], 2)
    env = environment()
    env.update(cpu_count=os.cpu_count(), load_generator=subprocess.run([wrk, "-v"], capture_output=True,
                                                                        text=True).stdout.splitlines()[0].strip(),
               torch_threads=torch.get_num_threads())
    doc = {"environment": env,
           "settings": {"seconds_per_level": args.seconds, "clients": args.clients, "max_batch": args.max_batch,
                        "max_wait_ms": args.max_wait_ms, "method": args.method, "threads": args.threads, "model": settings,
                        "instances_per_request": 1, "route": path},
           "rows": rows, "checks": checks}
    out = Path(args.out) if args.out else RESULTS / f"serve-cpu-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(checks), "->", out)
    return 0 if checks["zero_errors"] and checks["batching_on_speedup_at_least_2x"] else 1


if __name__ == "__main__":
    sys.exit(main())
