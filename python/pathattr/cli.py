"""The `pathattr` command line."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pathattr", description="Path attribution (IG, IDG) for PyTorch models.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="attribute the bundled digits model's held-out set with IG and IDG")
    demo.add_argument("--out", default="demo_out", help="folder for the pictures and results (default: demo_out)")
    demo.add_argument("--steps", type=int, default=50, help="gradient samples per input (default: 50)")
    demo.add_argument("--limit", type=int, default=None, help="attribute only the first N held-out images")
    demo.add_argument("--quiet", action="store_true")
    from .job import cli as job_cli

    job_cli.add_attribute_parser(sub)
    job_cli.add_report_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        if args.steps < 1:
            parser.error("--steps must be >= 1")
        if args.limit is not None and args.limit < 1:
            parser.error("--limit must be >= 1")
        run_demo(args.out, n_steps=args.steps, limit=args.limit, quiet=args.quiet)
    if args.command == "attribute":
        return job_cli.run_attribute(args, parser)
    if args.command == "report":
        return job_cli.run_report(args, parser)
    return 0


if __name__ == "__main__":
    sys.exit(main())
