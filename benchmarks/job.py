"""The dataset job's overhead: `pathattr attribute` against calling the API in a loop.

    python -m benchmarks.job [--repeat 5] [--steps 50] [--device cpu|cuda] [--threads N] [--out benchmarks/results/job-DATE.json]

On the bundled default (DigitsCNN, the 360 held-out digits, IDG, batches of 32):
  api_loop_details  Explainer.attribute(batch, return_details=True, delta) per batch:
                    exactly the numbers the job stores, no I/O (the baseline)
  api_loop_plain    pa.integrated_decision_gradients(model, batch) per batch: a user's loop
  job               run_job into a fresh folder: opening data and model, fingerprinting,
                    creating the store, the DataLoader, writing every chunk + markers,
                    the manifest (in process: interpreter start-up not counted)
Sampled round-robin (benchmarks.harness.time_interleaved).
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import tempfile
from pathlib import Path

import torch

import pathattr as pa
from pathattr.data.digits import load_digits_data, load_digits_model
from pathattr.apps.job import JobConfig, run_job

from .harness import Row, environment, table, time_interleaved, write_results

BATCH = 32


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--out", default=f"benchmarks/results/job-{datetime.date.today().isoformat()}.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_digits_model(args.device)
    x, _ = load_digits_data("test")
    x = x.to(args.device)
    n = x.shape[0]
    batches = [x[s:s + BATCH] for s in range(0, n, BATCH)]
    ex = pa.Explainer(model, method="idg", n_steps=args.steps)
    tmp = Path(tempfile.mkdtemp(prefix="pathattr-bench-job-"))
    runs = itertools.count()

    def api_details():
        for b in batches:
            ex.attribute(b, baselines=0.0, return_convergence_delta=True, return_details=True)

    def api_plain():
        for b in batches:
            pa.integrated_decision_gradients(model, b, n_steps=args.steps)

    def job():
        run_job(JobConfig(out=str(tmp / f"run{next(runs)}"), method="idg", steps=args.steps, batch_size=BATCH,
                          chunk_size=64, device=args.device, quiet=True))

    providers = {"api_loop_details": api_details, "api_loop_plain": api_plain, "job": job}
    samples = time_interleaved(providers, repeat=args.repeat, warmup=1, device=args.device, min_sample_s=0.0)
    rows = [Row("digits_idg_360", name, BATCH, args.steps, args.device, s, extra={"items_per_s": round(n / sorted(s)[len(s) // 2], 1)})
            for name, s in samples.items()]
    print(table(rows, baseline={"digits_idg_360": "api_loop_details"}))
    path = write_results(rows, Path(args.out), environment(), {"items": n, "batch": BATCH, "steps": args.steps,
                                                                "threads": torch.get_num_threads()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
