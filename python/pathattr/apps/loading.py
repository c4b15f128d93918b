"""Models as the command line names them, for `pathattr attribute`, `lpi-bank` and `serve` alike.

    None / "digits"     the bundled DigitsCNN (input (1, 8, 8), 10 classes)
    FILE.pt2            a `torch.export` program (torch.export.save), run as its .module()
    FILE (other)        a TorchScript file (torch.jit.save); an exported program under
                        another suffix is recognised too
    module:factory      an nn.Module, or a callable returning one, imported from the working
                        folder as `python -m` would; `checkpoint` (a state dict) loaded into it

Every problem raises LoadError (a ValueError) with a sentence naming the flag and what failed.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Optional, Tuple

import torch

BUNDLED = "digits"
DTYPES = ("fp32", "fp64", "bf16", "fp16")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class LoadError(ValueError):
    """A model (or factory) named on the command line that cannot be loaded."""


class _Refused(Exception):
    """A file of the format tried, which cannot be used as it is."""


@contextlib.contextmanager
def working_folder_importable():
    """The working folder on sys.path for the duration (as `python -m` has it), then removed
    again: the console script must not leave a user's folder importable for good."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)


def resolve(spec: str, what: str) -> Any:
    """`module:attr` (attr may be dotted) -> the attribute. Call inside working_folder_importable()."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise LoadError(f"{what} must be written module:factory (e.g. mypkg.models:resnet50), got {spec!r}")
    mod_name, attr = spec.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise LoadError(f"{what} {spec!r}: cannot import module {mod_name!r} ({exc})") from exc
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LoadError(f"{what} {spec!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def call_factory(spec: str, what: str) -> Any:
    """`module:factory` -> what the factory returns (an nn.Module instance is taken as is).
    The working folder stays importable while the factory runs, for its own imports."""
    with working_folder_importable():
        obj = resolve(spec, what)
        if isinstance(obj, torch.nn.Module):
            return obj
        if not callable(obj):
            raise LoadError(f"{what} {spec!r}: {spec.split(':')[1]!r} is not callable")
        return obj()


def load_model(spec: Optional[str], checkpoint: Optional[str] = None) -> Tuple[torch.nn.Module, str, str]:
    """The model named by `--model` (None or "digits": the bundled DigitsCNN) in eval mode on
    the CPU, with `checkpoint` loaded. Returns (model, description, short name)."""
    if spec is None or spec == BUNDLED:
        if checkpoint is not None:
            raise LoadError("--checkpoint needs --model module:factory: the bundled model has its own weights")
        from ..data.digits import load_digits_model

        return load_digits_model().eval(), "bundled DigitsCNN", BUNDLED
    path = Path(spec)
    if path.is_file():
        if checkpoint is not None:
            raise LoadError(f"--checkpoint applies to a module:factory model; the model file {path} carries its weights")
        model, kind = _load_file(path)
        return model, f"{kind} {path.resolve()}", path.stem
    if ":" not in spec:
        raise LoadError(f"--model must be 'digits', module:factory, a torch.export .pt2 or a TorchScript file; "
                        f"{spec!r} is none of these (file not found)")
    model = call_factory(spec, "model")
    if not isinstance(model, torch.nn.Module):
        raise LoadError(f"model {spec!r} must give a torch.nn.Module, got {type(model).__name__}")
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, spec)
    return model.eval(), spec, spec.split(":")[1].split(".")[-1]


def _load_file(path: Path) -> Tuple[torch.nn.Module, str]:
    """A torch.export program (.pt2, or any file torch.export.load reads) or a TorchScript file."""
    errors = []
    loaders = [("torch.export", _load_exported), ("TorchScript", _load_torchscript)]
    if path.suffix != ".pt2":
        loaders.reverse()
    for kind, load in loaders:
        try:
            return load(path), kind
        except _Refused as exc:  # the right format, but unusable: say why, not "neither format"
            raise LoadError(str(exc)) from None
        except Exception as exc:  # each loader raises its own types for a file of the other format
            errors.append(f"{kind}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
    raise LoadError(f"model file {path} is neither a torch.export program (torch.export.save, .pt2) nor a "
                    f"TorchScript file ({'; '.join(errors)}); for a Python model give module:factory and --checkpoint")


def _load_exported(path: Path) -> torch.nn.Module:
    # Exported programs run as traced: train/eval is fixed at export time, and
    # .module().eval() raises NotImplementedError (torch 2.13), so none is called here.
    ep = torch.export.load(str(path))
    names = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        val = node.meta.get("val") if node.op == "placeholder" and node.name in names else None
        # The engine calls the model on many batch sizes (path points x inputs): a batch
        # dimension fixed at export would fail on the first call with a bare guard error.
        if isinstance(val, torch.Tensor) and val.dim() and isinstance(val.shape[0], int):
            raise _Refused(f"model file {path}: the exported program's input {node.name!r} has a fixed batch "
                           f"size {val.shape[0]}; export it with a dynamic batch dimension, e.g. "
                           f"torch.export.export(model, (x,), dynamic_shapes=({{0: torch.export.Dim('batch')}},))")
    return ep.module()


def _load_torchscript(path: Path) -> torch.nn.Module:
    return torch.jit.load(str(path), map_location="cpu").eval()


def load_checkpoint(model: torch.nn.Module, checkpoint: str, spec: str) -> None:
    """A state dict (bare, or under 'state_dict' / 'model' / 'model_state_dict') into `model`, strictly."""
    if not Path(checkpoint).is_file():
        raise LoadError(f"checkpoint file not found: {checkpoint}")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise LoadError(f"checkpoint {checkpoint} is not a readable torch state dict: {exc}") from exc
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise LoadError(f"checkpoint {checkpoint} must hold a state dict, got {type(state).__name__}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise LoadError(f"checkpoint {checkpoint} does not fit model {spec}: " + " ".join(first[:4])) from exc


def precision(model: torch.nn.Module, dtype: str) -> Tuple[torch.nn.Module, torch.dtype, Optional[torch.dtype]]:
    """`--dtype` applied: (model, dtype of its inputs, autocast dtype or None).
    fp64 runs the model in float64; fp32 in float32; bf16/fp16 keep float32 weights and
    inputs and run the model under autocast."""
    if dtype not in DTYPES:
        raise LoadError(f"dtype must be one of {', '.join(map(repr, DTYPES))}, got {dtype!r}")
    if dtype == "fp64":
        return model.double(), torch.float64, None
    return model.float(), torch.float32, _AUTOCAST.get(dtype)


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """`--device`: "auto" (cuda:LOCAL_RANK when CUDA is present, else cpu) or a torch device."""
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise LoadError(f"device must be 'auto' or a torch device like 'cpu' or 'cuda:0', got {spec!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LoadError(f"device {spec} asked for, but CUDA is not available")
    return dev
