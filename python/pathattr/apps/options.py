"""The command-line flags `pathattr attribute` and `pathattr serve` share, defined once.

Both name the model, the method and how the model runs with the same flags, so a
command line moves from a batch job to a service unchanged. Spellings of an earlier
release stay accepted (hidden from --help) for one release: --n-steps, --setting.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..methods import REGISTRY
from .loading import DTYPES

OUTPUTS = ("logit", "softmax", "log_softmax")


def parse_setting(text: str):
    """KEY=VALUE -> (key, value): the value read as JSON when it parses (numbers, true/false,
    null, lists), Python's True/False/None too, else kept as a string; '-' in KEY becomes '_'."""
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    key = key.replace("-", "_")
    if value in ("True", "False", "None"):
        return key, {"True": True, "False": False, "None": None}[value]
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


class _Renamed(argparse.Action):
    """An old spelling of a flag: stores (or appends) like the new one and says so on stderr."""

    def __init__(self, option_strings, dest, new, append=False, **kw):
        super().__init__(option_strings, dest, **kw)
        self.new, self.append = new, append

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stderr.write(f"{parser.prog}: note: {option_string} is now spelled {self.new}; the old spelling "
                         f"goes in the next release\n")
        if self.append:
            values = list(getattr(namespace, self.dest) or []) + [values]
        setattr(namespace, self.dest, values)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model and --checkpoint (apps/loading.py reads them)."""
    p.add_argument("--model", default=None,
                   help="digits (the bundled DigitsCNN, default), module:factory (an nn.Module or a function "
                        "returning one, imported from the working folder), a torch.export program (.pt2) or a "
                        "TorchScript file")
    p.add_argument("--checkpoint", default=None, help="a state dict loaded into a module:factory model")


def add_method_options(p: argparse.ArgumentParser) -> None:
    """--model, --checkpoint, the method and its settings, and how the model runs."""
    add_model_options(p)
    p.add_argument("--method", default="idg", help=f"attribution method (default idg; one of {', '.join(sorted(REGISTRY))})")
    p.add_argument("--steps", type=int, default=None,
                   help="n_steps of the method: gradient samples per input (default: the method's)")
    p.add_argument("--rtol", type=float, default=None,
                   help="refine each input until its map is within this relative L2 error (ig, idg, left_ig; "
                        "docs/methods.md §14); bound the cost with --set max_steps=N")
    p.add_argument("--set", dest="settings", type=parse_setting, action="append", default=[],
                   metavar="KEY=VALUE", help="another method setting, e.g. --set schedule=uniform (repeatable)")
    # The serve spellings of the previous release, hidden; they say their new name when used.
    p.add_argument("--n-steps", dest="steps", type=int, action=_Renamed, new="--steps", help=argparse.SUPPRESS)
    p.add_argument("--setting", dest="settings", type=parse_setting, action=_Renamed, new="--set", append=True,
                   help=argparse.SUPPRESS)
    p.add_argument("--internal-batch-size", type=int, default=None, help="path points per forward+backward pass "
                                                                          "(default: the engine's)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="model precision: fp32 (default), fp64, or bf16/fp16 autocast")
    p.add_argument("--output", choices=OUTPUTS, default="logit", help="what is explained (default logit)")
    p.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if CUDA is present, else cpu; default), "
                                                    "cpu, cuda:N")


def add_text_options(p: argparse.ArgumentParser) -> None:
    """How texts become tokens and batches (text data in `attribute`, a text model in `serve`)."""
    p.add_argument("--tokenizer", default=None, help="text: a Hugging Face tokenizer folder or module:factory "
                                                      "(default: the --model folder)")
    p.add_argument("--max-length", type=int, default=None, help="text: tokens kept per text (default: the "
                                                                 "tokenizer's / model's limit, else 512)")
    p.add_argument("--max-tokens", type=int, default=None, help="text: padded tokens per length bucket "
                                                                 "(default: no limit beyond the batch size)")
    p.add_argument("--token-baseline", choices=("pad", "unk", "mask", "zeros"), default="pad",
                   help="text: the baseline token at every position, or zeros (a zero embedding; default pad)")
    p.add_argument("--task", choices=("auto", "sequence_classification", "masked_lm", "causal_lm"), default="auto",
                   help="text: the explained prediction (default: from the model's class): a class, the first "
                        "[MASK] token's prediction, or a causal LM's next token after the text")


def method_settings(args) -> dict:
    """--set pairs and --steps as the Explainer's keyword arguments."""
    kw = dict(args.settings)
    if args.steps is not None:
        kw["n_steps"] = args.steps
    if getattr(args, "rtol", None) is not None:
        kw["rtol"] = args.rtol
    return kw
