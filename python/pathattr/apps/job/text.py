"""`pathattr attribute` on text: a JSONL / CSV file of texts through a Hugging Face
sequence classifier, masked LM or causal LM (--task) into a ragged Zarr store (docs/design.md, "Text runs").

The run is the image job's (runner._Job: the same chunks, commit markers, writer thread,
torchrun sharding, resume and refusal rules); what differs is one job chunk = one call of
`pathattr.text.attribute_tokens` on the chunk's texts, which groups them into length
buckets (pathattr.text.length_buckets: --batch-size texts, --max-tokens padded tokens) so
no text is padded beyond the longest of its bucket. A chunk depends on its own texts only,
so a resumed or sharded run stores the same numbers as one uninterrupted process.
With --rtol (docs/methods.md §14) each text is refined to that relative error and its
n_evaluations, error_estimate and converged are stored beside its scores, summed up per
chunk in the progress log and over the run in the manifest and the summary line.

Every text is tokenised before the first model call: an empty text, a missing field or a
label the model does not know stops the run there, naming the file's line; and the most
tokens of any chunk fixes the ragged arrays' span per chunk (store.py).
"""
from __future__ import annotations

import inspect
import platform
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ... import __version__, methods
from ...engine.checks import check_tolerance
from .. import text_inputs as ti
from . import dist as dist_mod
from .config import JobConfig, JobError
from .inputs import model_fingerprint
from .runner import TOLERANCE_ARRAYS, _Job, _jsonable
from .store import RunStore

TEXT_METHODS = ti.TEXT_METHODS
RAGGED = ("token_ids", "tokens", "token_scores", "token_norms")
TOLERANCE_KEYS = ("rtol", "min_steps", "max_steps")


class _Items(torch.utils.data.Dataset):
    """What the job's DataLoader hands to `compute`: (item index, label)."""

    def __init__(self, labels: List[int]):
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return i, self.labels[i]


def refuse_image_options(cfg: JobConfig) -> None:
    """The job's flags that have no meaning for texts, refused by name."""
    if cfg.method not in TEXT_METHODS:
        raise JobError(f"--method {cfg.method!r} is not available for text data; one of {', '.join(TEXT_METHODS)}")
    for flag, value, default in (("--preprocess", cfg.preprocess, None), ("--references", cfg.references, None),
                                 ("--bank", cfg.bank, None), ("--n-baselines", cfg.n_baselines, None),
                                 ("--baseline", cfg.baseline, 0.0)):
        if value != default:
            hint = " (give the token baseline with --token-baseline)" if flag == "--baseline" else ""
            raise JobError(f"{flag} applies to image data, not to text data{hint}")
    if cfg.dtype not in ("fp32", "fp64"):
        raise JobError(f"--dtype {cfg.dtype} is not available for text data; fp32 or fp64")


class TextJob(_Job):
    """One rank's view of a text run (see the module docstring)."""

    def __init__(self, cfg: JobConfig, d: dist_mod.Dist, device: torch.device):
        from ...text import attribute_tokens

        self._attribute = attribute_tokens
        self.cfg, self.dist, self.device = cfg, d, device
        refuse_image_options(cfg)
        steps = cfg.steps if cfg.steps is not None else inspect.signature(attribute_tokens).parameters["n_steps"].default
        self.settings = dict(cfg.method_settings, n_steps=steps)
        try:
            ti.check_settings(cfg.method, self.settings)
            # --rtol (docs/methods.md §14): checked here, before anything is loaded, and its
            # step bounds resolved into the settings, so the store's identity records them.
            self.settings.update(check_tolerance(*(self.settings.get(k) for k in TOLERANCE_KEYS)))
        except (ValueError, TypeError) as exc:
            raise JobError(_flag_names(str(exc))) from None
        self.tolerance = {k: self.settings[k] for k in TOLERANCE_KEYS} if "rtol" in self.settings else None
        self.method = methods.get(cfg.method)
        self.kind = "text"
        data = ti.read_texts(cfg.data, cfg.text_field or "text", cfg.label_field)
        self.n = min(len(data.texts), cfg.limit) if cfg.limit else len(data.texts)
        tm = ti.load_text_model(cfg.model, cfg.tokenizer, cfg.checkpoint, cfg.task)
        self.tm = tm
        labels = ti.label_ids(data, tm.label2id)[:self.n]
        self.max_length = ti.max_length(tm, cfg.max_length)
        where = lambda i: f"--data {cfg.data} line {data.lines[i]}"  # noqa: E731
        self.ids, self.cut = ti.encode(tm, data.texts[:self.n], self.max_length, where)
        try:
            self.task = ti.app_task(tm.model, cfg.task)
        except ValueError as exc:
            raise JobError(_flag_names(str(exc))) from None
        if self.task != "sequence_classification":
            self._check_language_model(tm, where)
        n_labels = getattr(getattr(tm.model, "config", None), "num_labels", None)
        if isinstance(n_labels, int) and self.task == "sequence_classification":
            if isinstance(cfg.target, int) and cfg.target >= n_labels:
                raise JobError(f"--target {cfg.target} is not a class of this model ({n_labels} classes)")
            for i, lab in enumerate(labels):
                if lab >= n_labels:
                    raise JobError(f"{where(i)}: label {lab} (--label-field) is not a class of this model "
                                   f"({n_labels} classes)")
        if cfg.target == "label" and -1 in labels:
            i = labels.index(-1)
            raise JobError(f"--target label: {where(i)} has no label" + ("" if cfg.label_field else
                                                                          " (give --label-field)"))
        fingerprint = model_fingerprint(tm.model)
        model = tm.model.double() if cfg.dtype == "fp64" else tm.model.float()
        self.model = model.to(device)
        self.dataset = _Items(labels)
        self.skipped: List[str] = []
        self.n_chunks = -(-self.n // cfg.chunk_size)
        lengths = [len(r) for r in self.ids]
        self.capacity = max(sum(lengths[k * cfg.chunk_size:(k + 1) * cfg.chunk_size]) for k in range(self.n_chunks))
        self.identity = {
            "kind": "text", "method": cfg.method, "method_settings": _jsonable(self.settings),
            "model": tm.description, "model_fingerprint": fingerprint,
            "tokenizer": tm.tokenizer_description, "tokenizer_fingerprint": ti.tokenizer_fingerprint(tm.tokenizer),
            "data": dict(data.describe(), items=self.n), "max_length": self.max_length,
            "batch_size": cfg.batch_size, "max_tokens": cfg.max_tokens, "chunk_size": cfg.chunk_size,
            "internal_batch_size": cfg.internal_batch_size, "dtype": cfg.dtype, "store_dtype": cfg.store_dtype,
            "target": cfg.target, "token_baseline": cfg.token_baseline, "output": cfg.output, "task": self.task,
        }
        self.store = RunStore(Path(cfg.out))
        self._first: Optional[Dict[str, np.ndarray]] = None
        self._first_seconds = 0.0
        self.progress = None

    def _check_language_model(self, tm, where) -> None:
        """A masked or causal LM (--task): the target is the predicted token or a token id,
        and a masked LM's texts each hold a mask token (its prediction is what is explained)."""
        cfg = self.cfg
        if cfg.target == "label":
            raise JobError(f"--target label is for sequence classification; a {self.task.replace('_', ' ')} "
                           f"explains its predicted token (--target pred) or a token id")
        emb = tm.model.get_input_embeddings() if callable(getattr(tm.model, "get_input_embeddings", None)) else None
        vocab = getattr(emb, "num_embeddings", None)
        if isinstance(cfg.target, int) and isinstance(vocab, int) and cfg.target >= vocab:
            raise JobError(f"--target {cfg.target} is not a token id of this model (vocabulary of {vocab})")
        if self.task == "masked_lm":
            mask_id = getattr(tm.tokenizer, "mask_token_id", None)
            if mask_id is None:
                raise JobError("--task masked_lm: the tokenizer has no mask token to find in the texts")
            for i, ids in enumerate(self.ids):
                if mask_id not in ids:
                    raise JobError(f"{where(i)}: no {tm.tokenizer.mask_token} token in the text (--task masked_lm "
                                   f"explains the prediction at the first one)")

    def batches(self, chunks: List[int]) -> List[List[int]]:
        """One DataLoader batch per job chunk: its texts are bucketed by length in `compute`."""
        cs = self.cfg.chunk_size
        return [list(range(k * cs, min(self.n, (k + 1) * cs))) for k in chunks]

    def compute(self, x: torch.Tensor, y: torch.Tensor, start: int) -> Dict[str, np.ndarray]:
        """Attribute one job chunk's texts; every per-item array and the chunk's ragged rows."""
        cfg = self.cfg
        idx = [int(i) for i in x]
        if cfg.target == "pred":
            target = None
        elif cfg.target == "label":
            target = y.to(self.device)
        else:
            target = int(cfg.target)
        res = self._attribute(
            self.model, [torch.tensor(self.ids[i], dtype=torch.long) for i in idx], tokenizer=self.tm.tokenizer,
            target=target, task=self.task, method=cfg.method, baseline=cfg.token_baseline,
            output=cfg.output, internal_batch_size=cfg.internal_batch_size, batch_size=cfg.batch_size,
            max_tokens=cfg.max_tokens, return_convergence_delta=True, return_details=True, **self.settings)
        rows = [res.text(j) for j in range(len(res))]
        n_tok = np.array([len(r["ids"]) for r in rows], dtype=np.int64)
        k = start // cfg.chunk_size
        offsets = k * self.capacity + np.concatenate([[0], np.cumsum(n_tok)[:-1]]).astype(np.int64)
        sd = cfg.store_dtype
        out = {
            "index": np.arange(start, start + len(idx), dtype=np.int64),
            "label": y.cpu().numpy().astype(np.int64),
            "target": res.target.cpu().numpy().astype(np.int64),
            "n_tokens": n_tok, "token_offsets": offsets,
            "truncated": np.array([self.cut[i] for i in idx], dtype=np.uint8),
            "token_ids": np.concatenate([_np(r["ids"]).astype(np.int64) for r in rows]),
            "tokens": np.array([t for r in rows for t in _tokens(r, self.tm.tokenizer)], dtype=object),
            "token_scores": np.concatenate([_np(r["scores"]).astype(np.float32) for r in rows]).astype(sd),
            "token_norms": np.concatenate([_np(r["norms"]).astype(np.float32) for r in rows]).astype(sd),
        }
        for name, values in _end_values(res).items():  # F(x) and F(x') of each text, when reported
            out[name] = values
        if res.delta is not None:
            out["delta"] = res.delta.detach().to("cpu", torch.float32).numpy()
        if res.position is not None:  # a language model: the explained position of each text
            out["position"] = _np(res.position).astype(np.int64)
        if self.tolerance:
            for name, dtype in TOLERANCE_ARRAYS:
                out[name] = _np(getattr(res, name)).astype(dtype)
        return out


    def _create(self) -> None:
        first = self.batches([0])[0]
        self.open_progress(done=0)
        x = torch.tensor(first)
        y = torch.tensor([self.dataset.labels[i] for i in first], dtype=torch.long)
        t0 = time.perf_counter()
        try:
            self._first = self.compute(x, y, 0)
        except RuntimeError as exc:  # the model's own error
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise JobError(f"the model failed on the first chunk of texts: {first_line}") from exc
        self._first_seconds = time.perf_counter() - t0
        schema = {name: (v.shape[1:], str(v.dtype)) for name, v in self._first.items() if name not in RAGGED}
        ragged = {name: (self.capacity, "str" if name == "tokens" else str(self._first[name].dtype))
                  for name in RAGGED}
        id2label = self.tm.id2label
        info = {"config": _jsonable(self.cfg.as_dict()), "identity": self.identity, "skipped": [],
                "labels": {str(k): v for k, v in id2label.items()} if id2label else None,
                "pathattr_version": __version__, "torch_version": torch.__version__,
                "python": platform.python_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.store.create(self.identity, self.n, schema, self.cfg.chunk_size, None, info, ragged=ragged)


def read_text_item(arrays: Dict[str, Any], i: int) -> Dict[str, Any]:
    """Text i of a text run's arrays (name -> Zarr array, as `zarr.open_group(...).arrays()`
    gives them): its tokens, ids, scores and norms (1-D, its own length) and its target."""
    a, b = int(arrays["token_offsets"][i]), int(arrays["n_tokens"][i])
    item = {"tokens": [str(t) for t in arrays["tokens"][a:a + b]], "ids": arrays["token_ids"][a:a + b],
            "scores": arrays["token_scores"][a:a + b], "norms": arrays["token_norms"][a:a + b],
            "target": int(arrays["target"][i]), "label": int(arrays["label"][i])}
    if "position" in arrays:  # a language model run: the explained position
        item["position"] = int(arrays["position"][i])
    for name, dtype in TOLERANCE_ARRAYS:  # a --rtol run's per-text details
        if name in arrays:
            item[name] = bool(arrays[name][i]) if name == "converged" else dtype(arrays[name][i]).item()
    return item


def _flag_names(message: str) -> str:
    """A tolerance setting's error as the command line spells it: --rtol, --set min_steps=N."""
    if message.startswith("rtol"):
        return "--rtol" + message[len("rtol"):]
    if message.startswith(("min_steps", "max_steps")):
        return "--set " + message.replace("give rtol= too", "give --rtol too")
    return message


def _end_values(res) -> Dict[str, np.ndarray]:
    """{"logit": F(x), "baseline_value": F(x')} per text (the explained output at both ends
    of the path) from the engine's result of each length bucket; {} where not reported."""
    out = {}
    if not res.details or not res.buckets:
        return out
    for name, attr in (("logit", "end_value"), ("baseline_value", "start_value")):
        parts = [getattr(d, attr, None) for d in res.details]
        if any(p is None for p in parts):
            continue
        v = np.full(len(res), np.nan, dtype=np.float32)
        for rows, p in zip(res.buckets, parts):
            v[np.asarray(rows, dtype=np.int64)] = _np(p).astype(np.float32).reshape(-1)
        out[name] = v
    return out


def _np(t) -> np.ndarray:
    return t.detach().to("cpu").numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _tokens(row: Dict[str, Any], tokenizer) -> List[str]:
    toks = row.get("tokens")
    if toks is None:
        toks = tokenizer.convert_ids_to_tokens([int(i) for i in _np(row["ids"])])
    return [str(t) for t in toks]
