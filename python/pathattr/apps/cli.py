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
    job_cli.add_bank_parser(sub)
    add_serve_parser(sub)
    bench = sub.add_parser("bench", help="run a study from the repository's benchmarks/ (needs a source checkout)")
    bench.add_argument("study", choices=["quality"], help="quality: every method on every metric, and IDG's sampling efficiency")
    bench.add_argument("--quick", action="store_true", help="a smoke run (seconds)")
    bench.add_argument("--out", default=None, help="output folder (default benchmarks/results/quality/)")
    bench.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_serve(parser, args)
    if args.command == "bench":
        return _bench(parser, args)
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
    if args.command == "lpi-bank":
        return job_cli.run_bank(args, parser)
    return 0


def add_serve_parser(sub) -> None:
    """`pathattr.apps.serve`: attributions over HTTP (see pathattr.apps.serve)."""
    p = sub.add_parser("serve", help="serve attributions over HTTP (KServe v1 / TorchServe-style explain routes)")
    p.add_argument("--model", default="digits",
                   help="'digits' (bundled, default), a TorchScript file, or 'package.module:attr'")
    p.add_argument("--input-shape", default=None, help="one instance's shape, e.g. 3,224,224 (not needed for digits)")
    p.add_argument("--name", default=None, help="the model's name in the routes (default: digits / file stem / attr)")
    p.add_argument("--method", default="idg", help="attribution method (default: idg)")
    p.add_argument("--n-steps", type=int, default=None, help="gradient samples per input (method default if unset)")
    p.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                   help="another method setting, e.g. --setting schedule=uniform (repeatable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--device", default="cpu", help="torch device for the model (default: cpu)")
    p.add_argument("--max-batch", type=int, default=32, help="most instances per call and per request (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to join (default 5)")
    p.add_argument("--max-queue", type=int, default=1024, help="most instances queued before 503 (default 1024)")
    p.add_argument("--timeout-ms", type=float, default=30000.0, help="default per-request deadline (default 30000)")
    p.add_argument("--max-body-bytes", type=int, default=8 << 20, help="largest request body (default 8 MiB)")
    p.add_argument("--cuda-graphs", action="store_true", help="capture CUDA graphs at warm-up (CUDA only)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads of the worker (default: torch's)")
    p.add_argument("--log-level", default="info")


def _setting_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def run_serve(parser, args) -> int:
    try:
        from .serve import ExplanationService, build_app, load_spec, run
    except ImportError as err:
        parser.error(f"pathattr serve needs fastapi, uvicorn and prometheus-client ({err})")
    settings = {}
    for item in args.setting:
        key, eq, value = item.partition("=")
        if not eq or not key:
            parser.error(f"--setting must be KEY=VALUE, got {item!r}")
        settings[key.replace("-", "_")] = _setting_value(value)
    if args.n_steps is not None:
        settings["n_steps"] = args.n_steps
    if args.cuda_graphs:
        settings["cuda_graphs"] = True
    try:
        spec = load_spec(args.model, args.input_shape, args.name, args.device)
        service = ExplanationService(spec, args.method, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                                     max_queue=args.max_queue, timeout_ms=args.timeout_ms,
                                     max_body_bytes=args.max_body_bytes, torch_threads=args.threads,
                                     explainer_kwargs=settings)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    run(build_app(service), host=args.host, port=args.port, log_level=args.log_level)
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
