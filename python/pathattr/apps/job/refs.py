"""What a job's method starts its paths from: a constant, a reference set file, or an LPI bank file.

    --references FILE  (R, *item_shape) samples in the model's input space (.npy, .npz with
                       its first array or FILE.npz:key, .pt tensor): Expected Gradients'
                       reference set, or a distribution baseline for ig / idg
                       (`pathattr.distribution_baseline(refs, n_baselines=K)`, K = --n-baselines).
    --bank FILE        a `pathattr.ReferenceBank` (`pathattr lpi-bank`) for lpi.

A run's identity records each file by its resolved path and the SHA-256 of its bytes
(`file_record`), never the tensor's str: a changed file is a changed setting.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .config import JobError

EG = "expected_gradients"
LPI = "lpi"
# Methods that take --references as a distribution baseline (methods/distribution.py).
DISTRIBUTION = ("ig", "idg")


def baseline_kind(method: str, cfg) -> str:
    """'constant' (--baseline), 'references' (EG's set), 'distribution' (ig/idg with
    --references) or 'bank' (LPI); JobError when an option is missing or does not apply."""
    if method == EG:
        if cfg.references is None:
            raise JobError("method 'expected_gradients' needs a reference set: give --references FILE "
                           "(.npy/.npz/.pt, shape (R, *item_shape), in the model's input space)")
        kind = "references"
    elif method == LPI:
        if cfg.bank is None:
            raise JobError("method 'lpi' needs a reference bank: give --bank FILE (build one with `pathattr lpi-bank`)")
        kind = "bank"
    elif cfg.references is not None:
        if method not in DISTRIBUTION:
            raise JobError(f"--references applies to expected_gradients, and to {' and '.join(DISTRIBUTION)} as a "
                           f"distribution baseline; method {method!r} does not use it")
        kind = "distribution"
    else:
        kind = "constant"
    if cfg.bank is not None and method != LPI:
        raise JobError(f"--bank applies to method 'lpi' only; method {method!r} does not use it")
    if cfg.references is not None and method == LPI:
        raise JobError("--references does not apply to method 'lpi': its references come from --bank")
    if cfg.n_baselines is not None and kind != "distribution":
        raise JobError(f"--n-baselines applies to {' / '.join(DISTRIBUTION)} with --references only")
    if kind != "constant" and float(cfg.baseline) != 0.0:
        raise JobError(f"--baseline is a constant baseline; method {method!r} with --references/--bank starts "
                       f"its paths from the references instead (leave --baseline out)")
    for key, option in (("references", "--references FILE"), ("baselines", "--references FILE"),
                        ("bank", "--bank FILE"), ("n_baselines", "--n-baselines K")):
        if key in cfg.method_settings:
            raise JobError(f"give {key} with {option}, not --set {key}=...")
    return kind


def file_record(path: Path, key: Optional[str] = None) -> Dict[str, Any]:
    """{"path": resolved path, "sha256": of the file's bytes[, "key": npz array]} for the identity."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    rec = {"path": str(path.resolve()), "sha256": h.hexdigest()}
    if key is not None:
        rec["key"] = key
    return rec


def split_spec(spec: str) -> Tuple[Path, Optional[str]]:
    """FILE or FILE.npz:key -> (path, key). A path that exists as given is never split."""
    path = Path(spec)
    if not path.is_file() and ":" in spec:
        head, key = spec.rsplit(":", 1)
        if head.endswith(".npz") and key:
            return Path(head), key
    if not path.is_file():
        raise JobError(f"references file not found: {spec}")
    return path, None


def load_references(spec: str, item_shape: Tuple[int, ...], dtype: torch.dtype) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """Read --references: a tensor (R, *item_shape) in `dtype` on the CPU, and its file record."""
    path, key = split_spec(spec)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            if key is not None:
                raise JobError(f"references {spec}: FILE:key applies to .npz files only")
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if not keys:
                    raise JobError(f"references {path} holds no arrays")
                if key is not None and key not in keys:
                    raise JobError(f"references {path} has no array {key!r} (it has {keys})")
                arr = z[key if key is not None else keys[0]]
        elif suffix in (".pt", ".pth"):
            if key is not None:
                raise JobError(f"references {spec}: FILE:key applies to .npz files only")
            arr = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(arr, torch.Tensor):
                raise JobError(f"references {path} must hold one tensor, got {type(arr).__name__}")
        else:
            raise JobError(f"references {path} must be .npy, .npz or .pt")
    except JobError:
        raise
    except Exception as exc:  # numpy/torch raise many kinds for unreadable files
        raise JobError(f"references {path} is not readable: {exc}") from exc
    refs = arr if isinstance(arr, torch.Tensor) else torch.from_numpy(np.array(arr))
    if refs.is_complex() or refs.dtype == torch.bool or refs.dim() < 1:
        raise JobError(f"references {path} must be a real array (R, *item_shape), got {refs.dtype} "
                       f"{tuple(refs.shape)}")
    if tuple(refs.shape[1:]) != tuple(item_shape) or refs.shape[0] < 1:
        raise JobError(f"references {path} have shape {tuple(refs.shape)}; expected (R, {', '.join(map(str, item_shape))})"
                       f" with R >= 1, the data's item shape")
    refs = refs.detach().to("cpu", dtype).contiguous()
    if not torch.isfinite(refs).all():
        raise JobError(f"references {path} contain NaN or Inf")
    return refs, file_record(path, key)


def load_bank(spec: str, model: torch.nn.Module, item_shape: Tuple[int, ...]):
    """Read --bank and check it was built for `model` (as loaded, before any --dtype cast)
    and for items of `item_shape`. Returns (bank, file record)."""
    from ...baselines.lpi_bank import ReferenceBank

    path = Path(spec)
    if not path.is_file():
        raise JobError(f"bank file not found: {spec}")
    try:
        bank = ReferenceBank.load(path)
    except Exception as exc:  # not a bank, or not a torch file at all
        raise JobError(f"bank {path} is not a pathattr LPI reference bank: {exc}") from exc
    try:
        bank.check_model(model, "bank")
    except ValueError as exc:
        raise JobError(f"bank {path}: {exc}") from exc
    if tuple(bank.references.shape[2:]) != tuple(item_shape):
        raise JobError(f"bank {path} holds references of shape {tuple(bank.references.shape[2:])}, but the data's "
                       f"items have shape {tuple(item_shape)}")
    return bank, file_record(path)


def retag_bank(bank, model: torch.nn.Module):
    """The bank for `model`, the same weights cast by --dtype (LPI checks the fingerprint,
    which includes the dtype, at every call; the weights were checked by `load_bank`)."""
    from ...baselines.lpi_bank import model_fingerprint

    return dataclasses.replace(bank, fingerprint=model_fingerprint(model), _verified=None)
