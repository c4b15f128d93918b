"""The `attribute` and `report` subcommands, kept here so `pathattr/cli.py` only wires them in."""
from __future__ import annotations

import argparse
import sys

from ..options import add_method_options, add_model_options, add_text_options
from .config import STORE_DTYPES, JobConfig, JobError


def _target(s: str):
    if s in ("pred", "label"):
        return s
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'pred', 'label' or a class index, got {s!r}")


def add_attribute_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("attribute", help="attribute a whole dataset into a resumable Zarr store (torchrun-ready)",
                       description="Attribute every item of a dataset and write a resumable Zarr store. Rerun the "
                                   "same command to resume; run it under torchrun to shard it over ranks.")
    p.add_argument("--out", required=True, help="run folder (created; rerun into it to resume)")
    add_method_options(p)  # --model --checkpoint --method --steps --set --internal-batch-size --dtype --output --device
    p.add_argument("--data", default=None, help="image folder, .npy/.npz or module:factory Dataset "
                                                 "(default: bundled digits, held-out split); or texts: "
                                                 ".jsonl / .csv / .tsv (with --model a Hugging Face folder)")
    p.add_argument("--text-field", default=None, help="text data: the field holding the text (default text)")
    p.add_argument("--label-field", default=None, help="text data: the field holding the label (class index "
                                                        "or the model's label name; optional)")
    add_text_options(p)  # --tokenizer --max-length --max-tokens --token-baseline
    p.add_argument("--preprocess", default=None, help="JSON file: mode, resize, scale, mean, std (recorded in the run)")
    p.add_argument("--limit", type=int, default=None, help="only the first N items")
    p.add_argument("--batch-size", type=int, default=32, help="inputs per attribution call (default 32)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="items per store chunk: the unit of resume (default 64; text data 512)")
    p.add_argument("--store-dtype", choices=STORE_DTYPES, default="float32", help="attributions' dtype in the store")
    p.add_argument("--target", type=_target, default="pred",
                   help="pred (default), label, or a class index (a language model: pred or a token id)")
    p.add_argument("--baseline", type=float, default=0.0, help="constant baseline value (default 0)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--strict", action="store_true", help="stop at an unreadable image instead of skipping it")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    p.add_argument("--log-json", action="store_true", help="structured JSON log lines on stdout")
    p.add_argument("--references", default=None, metavar="FILE",
                   help="reference samples (R, *item_shape) in the model's input space (.npy, .npz, FILE.npz:key, "
                        ".pt): expected_gradients' reference set (required), or for ig/idg a distribution baseline")
    p.add_argument("--n-baselines", type=int, default=None, metavar="K",
                   help="ig/idg with --references: K references drawn per item (default: all R, exact mean)")
    p.add_argument("--bank", default=None, metavar="FILE", help="LPI reference bank (`pathattr lpi-bank`); lpi needs it")
    return p


def add_report_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="write an HTML report of a `pathattr attribute` run or a quality study")
    p.add_argument("run_dir", help="the run folder given to `pathattr attribute --out`, or a results folder "
                                   "of `python -m benchmarks.quality` (from a source checkout)")
    p.add_argument("--out", default=None, help="HTML file (default: RUN_DIR/report.html)")
    p.add_argument("--examples", type=int, default=8, help="example heatmaps to show (default 8, at most 16)")
    return p


def run_attribute(args, parser) -> int:
    settings = dict(args.settings)
    if args.rtol is not None:  # --rtol is a method setting (docs/methods.md §14), like --set rtol=R
        settings["rtol"] = args.rtol
    cfg = JobConfig(out=args.out, method=args.method, steps=args.steps, method_settings=settings,
                    model=args.model, checkpoint=args.checkpoint, data=args.data, preprocess=args.preprocess,
                    limit=args.limit, batch_size=args.batch_size, chunk_size=args.chunk_size,
                    internal_batch_size=args.internal_batch_size, dtype=args.dtype, store_dtype=args.store_dtype,
                    target=args.target, baseline=args.baseline, output=args.output, device=args.device,
                    workers=args.workers, strict=args.strict, quiet=args.quiet, log_json=args.log_json,
                    references=args.references, bank=args.bank, n_baselines=args.n_baselines,
                    text_field=args.text_field, label_field=args.label_field, tokenizer=args.tokenizer,
                    max_length=args.max_length, max_tokens=args.max_tokens, token_baseline=args.token_baseline,
                    task=args.task)
    from .runner import run_job

    try:
        run_job(cfg)
    except (JobError, ValueError, TypeError) as exc:
        print(f"pathattr attribute: error: {exc}", file=sys.stderr)
        return 2
    return 0


def run_report(args, parser) -> int:
    from ..quality_report import is_quality_results, write_quality_report
    from .report import write_report

    try:
        if is_quality_results(args.run_dir):  # a `python -m benchmarks.quality` results folder
            if args.out is not None:
                raise ValueError("--out: a quality report is always written as RESULTS_DIR/report.html")
            path = write_quality_report(args.run_dir)
        else:
            path = write_report(args.run_dir, args.out, n_examples=args.examples)
    except (JobError, ValueError, TypeError) as exc:
        print(f"pathattr report: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def add_bank_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("lpi-bank", help="build an LPI reference bank for `pathattr attribute --method lpi --bank`",
                       description="Cluster the model's logits on a data set into C neighbourhoods of m references "
                                   "each (Local Path Integration's bank) and save it.")
    p.add_argument("--out", required=True, help="bank file to write (.pt)")
    add_model_options(p)
    p.add_argument("--data", default=None, help="image folder, .npy/.npz or module:factory Dataset "
                                                 "(default: bundled digits, TRAINING split)")
    p.add_argument("--preprocess", default=None, help="JSON file: mode, resize, scale, mean, std")
    p.add_argument("--limit", type=int, default=None, help="only the first N items")
    p.add_argument("--neighbourhoods", type=int, default=7, metavar="C", help="k-means neighbourhoods (default 7)")
    p.add_argument("--references", type=int, default=20, metavar="M", help="references per neighbourhood (default 20)")
    p.add_argument("--seed", type=int, default=0, help="k-means random_state (default 0)")
    p.add_argument("--n-init", type=int, default=10, help="k-means restarts (default 10)")
    p.add_argument("--batch-size", type=int, default=256, help="items per forward pass (default 256)")
    p.add_argument("--strict", action="store_true", help="stop at an unreadable image instead of skipping it")
    return p


def run_bank(args, parser) -> int:
    from .bank import build_bank_file

    try:
        info = build_bank_file(args.out, model=args.model, checkpoint=args.checkpoint, data=args.data,
                               preprocess=args.preprocess, n_neighbourhoods=args.neighbourhoods,
                               n_references=args.references, seed=args.seed, n_init=args.n_init,
                               batch_size=args.batch_size, limit=args.limit, strict=args.strict)
    except (JobError, ValueError, TypeError) as exc:
        print(f"pathattr lpi-bank: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {info['out']}: {info['n_neighbourhoods']} neighbourhoods x {info['n_references']} references "
          f"from {info['n_samples']} samples (model {info['fingerprint'][:12]}...)")
    return 0
