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
    bench = sub.add_parser("bench", help="run a study from the repository's benchmarks/ (needs a source checkout)")
    bench.add_argument("study", choices=["quality"], help="quality: every method on every metric, and IDG's sampling efficiency")
    bench.add_argument("--quick", action="store_true", help="a smoke run (seconds)")
    bench.add_argument("--out", default=None, help="output folder (default benchmarks/results/quality/)")
    bench.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "bench":
        return _bench(parser, args)
    if args.command == "demo":
        from .demo import run_demo

        if args.steps < 1:
            parser.error("--steps must be >= 1")
        if args.limit is not None and args.limit < 1:
            parser.error("--limit must be >= 1")
        run_demo(args.out, n_steps=args.steps, limit=args.limit, quiet=args.quiet)
    return 0


def _bench(parser, args) -> int:
    """`pathattr bench quality`: benchmarks/ is not installed, so find it next to the source tree."""
    from pathlib import Path

    try:
        from benchmarks import quality
    except ImportError:
        root = Path(__file__).resolve().parents[2]
        if not (root / "benchmarks" / "quality.py").is_file():
            parser.error("bench needs a source checkout of pathattr (benchmarks/quality.py was not found)")
        sys.path.insert(0, str(root))
        from benchmarks import quality
    argv = ["--quick"] if args.quick else []
    argv += ["--out", args.out] if args.out else []
    argv += ["--quiet"] if args.quiet else []
    return quality.main(argv)


if __name__ == "__main__":
    sys.exit(main())
