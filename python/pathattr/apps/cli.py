"""The `pathattr` command line: demo, attribute, report, lpi-bank, serve.

Only the standard library is imported up front; each subcommand imports what it needs,
so a missing optional extra (`pathattr[job]`, `pathattr[serve]`) is named when the
subcommand that needs it runs, not on `pathattr --help`.
"""
from __future__ import annotations

import argparse
import sys

from .extras import MissingExtra, require

# What each subcommand imports beyond pathattr's core (extra, modules): checked before it
# starts, so a missing piece is named with its extra rather than failing half-way.
_NEEDS = {"attribute": ("job", "zarr", "tqdm"), "report": ("job", "zarr", "matplotlib", "PIL"),
          "demo": ("job", "matplotlib"), "serve": ("serve", "fastapi", "uvicorn", "prometheus_client")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pathattr", description="Path attribution (IG, IDG, ...) for PyTorch models.")
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
    args = parser.parse_args(argv)
    try:
        if args.command in _NEEDS:
            require(*_NEEDS[args.command])
        if args.command == "serve":
            return run_serve(parser, args)
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
    except MissingExtra as err:
        print(f"pathattr {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def add_serve_parser(sub) -> None:
    """`pathattr.apps.serve`: attributions over HTTP (see pathattr.apps.serve)."""
    from .options import add_method_options, add_text_options

    p = sub.add_parser("serve", help="serve attributions over HTTP (KServe v1 / TorchServe-style explain routes)",
                       description="Serve one model's attributions. A Hugging Face model folder as --model (or "
                                   "module:factory with --tokenizer) serves texts: per-token scores.")
    add_method_options(p)  # --model --checkpoint --method --steps --set --internal-batch-size --dtype --output --device
    add_text_options(p)  # --tokenizer --max-length --max-tokens --token-baseline (text models)
    p.add_argument("--input-shape", default=None, help="one instance's shape, e.g. 3,224,224 (not needed for digits)")
    p.add_argument("--name", default=None, help="the model's name in the routes (default: digits / file stem / attr)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-batch", type=int, default=32, help="most instances per call and per request (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to join (default 5)")
    p.add_argument("--max-queue", type=int, default=1024, help="most instances queued before 503 (default 1024)")
    p.add_argument("--timeout-ms", type=float, default=30000.0, help="default per-request deadline (default 30000)")
    p.add_argument("--max-body-bytes", type=int, default=8 << 20, help="largest request body (default 8 MiB)")
    p.add_argument("--cuda-graphs", action="store_true", help="capture CUDA graphs at warm-up (CUDA only)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads of the worker (default: torch's)")
    p.add_argument("--log-level", default="info")


def run_serve(parser, args) -> int:
    import logging

    from .options import method_settings

    # The service's own lines (warm-up progress and failures) beside uvicorn's.
    level = getattr(logging, args.log_level.upper(), None)  # uvicorn's "trace" is finer than DEBUG
    logging.basicConfig(level=level if isinstance(level, int) else logging.DEBUG,
                        format="%(levelname)s:     %(name)s: %(message)s")
    from .serve import ExplanationService, build_app, load_spec, run

    settings = method_settings(args)
    if args.internal_batch_size is not None:
        settings["internal_batch_size"] = args.internal_batch_size
    from .text_inputs import is_hf_folder

    if is_hf_folder(args.model) or args.tokenizer is not None:  # a text model (serve/text.py)
        return _run_text_serve(parser, args, settings)
    for flag in ("max_length", "max_tokens"):
        if getattr(args, flag) is not None:
            parser.error(f"--{flag.replace('_', '-')} applies to a text model (a Hugging Face folder as --model)")
    if args.token_baseline != "pad":
        parser.error("--token-baseline applies to a text model (a Hugging Face folder as --model)")
    if args.task != "auto":
        parser.error("--task applies to a text model (a Hugging Face folder as --model)")
    if args.cuda_graphs:
        settings["cuda_graphs"] = True
    try:
        spec = load_spec(args.model, args.input_shape, args.name, args.device, checkpoint=args.checkpoint,
                         dtype=args.dtype)
        service = ExplanationService(spec, args.method, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                                     max_queue=args.max_queue, timeout_ms=args.timeout_ms,
                                     max_body_bytes=args.max_body_bytes, torch_threads=args.threads,
                                     explainer_kwargs=dict(settings, output=args.output))
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    run(build_app(service), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _run_text_serve(parser, args, settings) -> int:
    from .serve import TextExplanationService, build_app, load_text_spec, run

    if args.input_shape is not None or args.cuda_graphs:
        parser.error("--input-shape and --cuda-graphs apply to tensor models, not to a text model")
    try:
        spec = load_text_spec(args.model, args.tokenizer, args.name, args.device, checkpoint=args.checkpoint,
                              dtype=args.dtype, max_length=args.max_length, task=args.task)
        service = TextExplanationService(spec, args.method, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                                         max_queue=args.max_queue, timeout_ms=args.timeout_ms,
                                         max_body_bytes=args.max_body_bytes, torch_threads=args.threads,
                                         max_tokens=args.max_tokens, token_baseline=args.token_baseline,
                                         output=args.output, attribute_kwargs=settings)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    run(build_app(service), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
