"""Every setting of a dataset job, checked up front, and the subset that shapes the numbers.

A run records `identity()` in its store; rerunning into the same store with a
different identity is refused, so a resumed store never mixes two configurations.
Settings that only change how fast or how loudly the job runs (workers, device,
progress, logging) are not part of the identity: a job may resume on another machine.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ..loading import DTYPES
from ..options import OUTPUTS

STORE_DTYPES = ("float32", "float16")
TARGETS = ("pred", "label")
# Preprocessing keys a config file may set (see inputs.Preprocess).
PREPROCESS_KEYS = ("mode", "resize", "scale", "mean", "std")
# Text data (job/text.py): the files read as texts, and the token baselines.
TEXT_SUFFIXES = (".jsonl", ".csv", ".tsv")
TOKEN_BASELINES = ("pad", "unk", "mask", "zeros")
TEXT_TASKS = ("auto", "sequence_classification", "masked_lm", "causal_lm")  # pathattr.text.tasks.TASKS + auto
CHUNK_SIZE, TEXT_CHUNK_SIZE = 64, 512  # the default chunk sizes (images, texts)


class JobError(Exception):
    """A problem with the job's inputs or output folder, said in a sentence for the user."""


@dataclass
class JobConfig:
    """Settings of `pathattr attribute` (the CLI flags have the same names).

    out: the run folder (the Zarr store is out/store.zarr).
    method: any name `pathattr.methods.get` knows ("idg", "ig", ...).
    steps: n_steps for the method (None: the method's default).
    method_settings: further settings of the method, e.g. {"schedule": "uniform"}.
    model: None (the bundled DigitsCNN), "module:factory" (a callable returning an
        nn.Module) or a TorchScript file.
    checkpoint: a state dict (or {"state_dict": ...}) loaded into a module:factory model.
    data: None (the bundled digits, held-out split), an image folder, a .npy/.npz file,
        or "module:factory" returning a torch.utils.data.Dataset.
    preprocess: a JSON file with image preprocessing ({"mode": "RGB", "resize": [h, w],
        "scale": 1/255, "mean": [...], "std": [...]}); its content is recorded.
    limit: attribute only the first `limit` items.
    batch_size: inputs per Explainer call (default 32).
    chunk_size: items per store chunk, the unit of resume and of sharding (None: 64, and
        for text data 512: a text chunk's texts are bucketed by length, and more texts
        make tighter buckets; see benchmarks/results/text-job-cpu-2026-12-07.md).
    internal_batch_size: path points per forward+backward pass (None: the engine's).
    dtype: the model's precision: fp32 (default), fp64, or bf16/fp16 autocast.
    store_dtype: float32 (default) or float16 attributions in the store.
    target: "pred" (argmax, default), "label" (the dataset's labels) or a class index.
    baseline: a number; the baseline is that constant in the model's input space.
    output: "logit" (default), "softmax" or "log_softmax".
    device: "auto" (cuda:LOCAL_RANK when CUDA is present, else cpu), or a torch device.
    workers: DataLoader worker processes (default 0).
    strict: stop at an unreadable image instead of skipping and listing it.
    quiet: no progress bar and no summary line; log_json: JSON lines on stdout.
    references: None, or a file of reference samples (R, *item_shape) in the model's input
        space (.npy, .npz (first array, or "FILE.npz:key"), .pt tensor): required by
        expected_gradients (its reference set); for ig / idg a distribution baseline.
    bank: None, or an LPI reference bank file (`pathattr lpi-bank`); required by lpi.
    n_baselines: with ig / idg and references: K references drawn per item (seed 0);
        None (default) averages over all R references (R paths per item).

    Text data (a .jsonl, .csv or .tsv `data` file; job/text.py):
    text_field: the texts' field (default "text"); label_field: the labels' (optional:
        class indices or the model's label names). tokenizer: a folder or module:factory
        (default: the model's folder). max_length: tokens kept per text (default: the
        tokenizer's / model's limit, else 512). max_tokens: padded tokens per length
        bucket (batch_size texts at most per bucket). token_baseline: pad, unk, mask or zeros.
        task: "auto" (from the model's class name), "sequence_classification", "masked_lm"
        (the first [MASK] token's prediction) or "causal_lm" (the next token after the text);
        for the language models target is "pred" (the predicted token) or a token id.
    """

    out: str
    method: str = "idg"
    steps: Optional[int] = None
    method_settings: Dict[str, Any] = field(default_factory=dict)
    model: Optional[str] = None
    checkpoint: Optional[str] = None
    data: Optional[str] = None
    preprocess: Optional[str] = None
    limit: Optional[int] = None
    batch_size: int = 32
    chunk_size: Optional[int] = None
    internal_batch_size: Optional[int] = None
    dtype: str = "fp32"
    store_dtype: str = "float32"
    target: Union[str, int] = "pred"
    baseline: float = 0.0
    output: str = "logit"
    device: str = "auto"
    workers: int = 0
    strict: bool = False
    quiet: bool = False
    log_json: bool = False
    references: Optional[str] = None
    bank: Optional[str] = None
    n_baselines: Optional[int] = None
    text_field: Optional[str] = None
    label_field: Optional[str] = None
    tokenizer: Optional[str] = None
    max_length: Optional[int] = None
    max_tokens: Optional[int] = None
    token_baseline: str = "pad"
    task: str = "auto"

    def is_text(self) -> bool:
        """A text run: `data` is a .jsonl, .csv or .tsv file."""
        return isinstance(self.data, str) and Path(self.data).suffix.lower() in TEXT_SUFFIXES

    def check(self) -> "JobConfig":
        """Validate every field; raise ValueError/TypeError naming it. Returns self."""
        if not isinstance(self.out, str) or not self.out:
            raise ValueError("out must name a run folder")
        if self.chunk_size is None:
            self.chunk_size = TEXT_CHUNK_SIZE if self.is_text() else CHUNK_SIZE
        for name in ("batch_size", "chunk_size"):
            _positive_int(getattr(self, name), name)
        for name in ("steps", "limit", "internal_batch_size", "n_baselines", "max_length", "max_tokens"):
            if getattr(self, name) is not None:
                _positive_int(getattr(self, name), name)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {self.workers!r}")
        _choice(self.dtype, "dtype", DTYPES)
        _choice(self.store_dtype, "store_dtype", STORE_DTYPES)
        _choice(self.output, "output", OUTPUTS)
        if isinstance(self.target, bool) or not (self.target in TARGETS or isinstance(self.target, int)):
            raise ValueError(f"target must be 'pred', 'label' or a class index, got {self.target!r}")
        if isinstance(self.target, int) and self.target < 0:
            raise ValueError(f"target must be >= 0, got {self.target}")
        if isinstance(self.baseline, bool) or not isinstance(self.baseline, numbers.Real):
            raise TypeError(f"baseline must be a number, got {type(self.baseline).__name__}")
        if not isinstance(self.method_settings, dict):
            raise TypeError("method_settings must be a dict")
        if self.checkpoint is not None and self.model is None:
            raise ValueError("checkpoint needs model (module:factory): the bundled model has its own weights")
        for name in ("references", "bank"):
            if getattr(self, name) is not None and (not isinstance(getattr(self, name), str) or not getattr(self, name)):
                raise TypeError(f"{name} must be a file path (str), got {getattr(self, name)!r}")
        _choice(self.token_baseline, "token_baseline", TOKEN_BASELINES)
        _choice(self.task, "task", TEXT_TASKS)
        if not self.is_text():
            if self.task != "auto":
                raise ValueError("task applies to text data (a .jsonl, .csv or .tsv file as data)")
            for name in ("text_field", "label_field", "tokenizer", "max_length", "max_tokens"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} applies to text data (a .jsonl, .csv or .tsv file as data); "
                                     f"data is {self.data or 'the bundled digits'}")
            if self.token_baseline != "pad":
                raise ValueError("token_baseline applies to text data (a .jsonl, .csv or .tsv file as data)")
        for name in ("text_field", "label_field"):
            if getattr(self, name) is not None and (not isinstance(getattr(self, name), str) or not getattr(self, name)):
                raise TypeError(f"{name} must be a field name (str), got {getattr(self, name)!r}")
        for name in ("checkpoint", "preprocess"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise JobError(f"{name} file not found: {path}")
        return self

    def preprocess_settings(self) -> Dict[str, Any]:
        """The preprocessing config file's content ({} without one), checked."""
        if self.preprocess is None:
            return {}
        try:
            cfg = json.loads(Path(self.preprocess).read_text())
        except (OSError, ValueError) as exc:
            raise JobError(f"preprocess file {self.preprocess} is not readable JSON: {exc}") from exc
        if not isinstance(cfg, dict):
            raise JobError(f"preprocess file {self.preprocess} must hold a JSON object")
        unknown = sorted(set(cfg) - set(PREPROCESS_KEYS))
        if unknown:
            raise JobError(f"preprocess file {self.preprocess}: unknown keys {unknown}; known: {list(PREPROCESS_KEYS)}")
        return cfg

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return v


def _choice(v, name: str, choices) -> str:
    if v not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {v!r}")
    return v
