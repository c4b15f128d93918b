"""Texts and text models as the command line names them, for `pathattr attribute` and
`pathattr serve` alike.

    read_texts(path, text_field, label_field)   a JSONL or CSV/TSV file -> TextData
    load_text_model(model, tokenizer, ...)      a local Hugging Face folder or module:factory
                                                + its tokenizer -> TextModel
    encode(tm, texts, lines, max_length)        token ids per text, checked (no empty text)

Every problem raises JobError (from read_texts / encode) or LoadError (a ValueError, from
load_text_model) with a sentence naming the flag and, for data, the file and line.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import torch

from .job.config import JobError
from .loading import LoadError, call_factory, load_checkpoint

# The methods `pathattr.text.attribute_tokens` runs without a reference set.
TEXT_METHODS = ("ig", "idg", "left_ig")
# Texts longer than this many tokens are cut when neither --max-length nor the
# tokenizer / model says less (tokenizers without a limit report ~1e30).
DEFAULT_MAX_LENGTH = 512


def is_hf_folder(spec: Optional[str]) -> bool:
    """A local Hugging Face model folder (one with config.json)."""
    return isinstance(spec, str) and Path(spec).is_dir() and (Path(spec) / "config.json").is_file()


@dataclass
class TextData:
    """The texts of a data file, with their labels (None: no --label-field) and, for
    messages, the line each came from."""

    texts: List[str]
    labels: Optional[List[Any]]
    lines: List[int]
    source: str
    digest: str
    fields: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"source": self.source, "format": Path(self.source).suffix.lower().lstrip("."),
                "sha256": self.digest, **self.fields}


def read_texts(path: str, text_field: str = "text", label_field: Optional[str] = None) -> TextData:
    """Read a JSONL file (one JSON object per line; blank lines skipped) or a CSV / TSV file
    with a header row. `text_field` names the text's field, `label_field` (optional) the label's."""
    p = Path(path)
    if not p.is_file():
        raise JobError(f"--data {path}: file not found")
    try:
        raw = p.read_bytes()
        content = raw.decode("utf-8-sig")
    except OSError as exc:
        raise JobError(f"--data {path}: cannot read the file ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise JobError(f"--data {path}: not UTF-8 text ({exc})") from exc
    rows: List[Tuple[int, dict]] = []
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        for n, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise JobError(f"--data {path} line {n}: not valid JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise JobError(f"--data {path} line {n}: each line must be a JSON object, got {type(obj).__name__}")
            rows.append((n, obj))
    elif suffix in (".csv", ".tsv"):
        reader = csv.reader(content.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        try:
            header = next(reader, None)
            if header is None:
                raise JobError(f"--data {path}: the file is empty (a header row naming the fields is needed)")
            for rec in reader:
                if not any(c.strip() for c in rec):
                    continue
                if len(rec) != len(header):
                    raise JobError(f"--data {path} line {reader.line_num}: {len(rec)} fields where the header "
                                   f"has {len(header)}")
                rows.append((reader.line_num, dict(zip(header, rec))))
        except csv.Error as exc:
            raise JobError(f"--data {path} line {reader.line_num}: not valid CSV ({exc})") from None
    else:
        raise JobError(f"--data {path}: text data must be .jsonl, .csv or .tsv")
    if not rows:
        raise JobError(f"--data {path} holds no texts")
    texts, labels, lines = [], [] if label_field is not None else None, []
    for n, obj in rows:
        if text_field not in obj:
            raise JobError(f"--data {path} line {n}: no field {text_field!r} (--text-field); its fields are "
                           f"{sorted(obj)}")
        t = obj[text_field]
        if not isinstance(t, str):
            raise JobError(f"--data {path} line {n}: field {text_field!r} (--text-field) must be a string, "
                           f"got {type(t).__name__}")
        if not t.strip():
            raise JobError(f"--data {path} line {n}: field {text_field!r} (--text-field) is an empty text")
        if labels is not None:
            if label_field not in obj:
                raise JobError(f"--data {path} line {n}: no field {label_field!r} (--label-field); its fields "
                               f"are {sorted(obj)}")
            labels.append(obj[label_field])
        texts.append(t)
        lines.append(n)
    fields = {"text_field": text_field, "label_field": label_field}
    return TextData(texts, labels, lines, str(p.resolve()), hashlib.sha256(raw).hexdigest(), fields)


def label_ids(data: TextData, label2id: Optional[dict]) -> List[int]:
    """The labels as class indices: ints (or digit strings, as CSV gives them) as they are,
    names through the model's config.label2id; null / empty -> -1 (no label)."""
    if data.labels is None:
        return [-1] * len(data.texts)
    out = []
    for lab, n in zip(data.labels, data.lines):
        if lab is None or lab == "":
            out.append(-1)
        elif isinstance(lab, bool):
            raise JobError(f"--data {data.source} line {n}: label {lab!r} (--label-field) must be a class index or name")
        elif isinstance(lab, int) or (isinstance(lab, float) and lab.is_integer()):
            out.append(int(lab))
        elif isinstance(lab, str) and lab.strip().lstrip("-").isdigit():
            out.append(int(lab))
        elif isinstance(lab, str) and label2id and lab in label2id:
            out.append(int(label2id[lab]))
        else:
            known = sorted(label2id) if label2id else []
            raise JobError(f"--data {data.source} line {n}: label {lab!r} (--label-field) is neither a class index "
                           f"nor one of the model's labels {known}")
        if out[-1] < -1:
            raise JobError(f"--data {data.source} line {n}: label {lab!r} (--label-field) is negative")
    return out


@dataclass
class TextModel:
    model: torch.nn.Module
    tokenizer: Any
    description: str
    tokenizer_description: str
    name: str

    @property
    def label2id(self) -> Optional[dict]:
        return getattr(getattr(self.model, "config", None), "label2id", None)

    @property
    def id2label(self) -> Optional[dict]:
        return getattr(getattr(self.model, "config", None), "id2label", None)


def _tokenizer_from(spec: str):
    from ..text.loading import require_transformers

    if is_hf_folder(spec) or (Path(spec).is_dir() and any(Path(spec).glob("tokenizer*"))):
        tr = require_transformers()
        try:
            return tr.AutoTokenizer.from_pretrained(spec, local_files_only=True), str(Path(spec).resolve())
        except Exception as exc:  # transformers raises many types for a folder without a tokenizer
            raise LoadError(f"--tokenizer {spec}: no tokenizer could be loaded from this folder "
                            f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from exc
    if ":" in spec and not Path(spec).exists():
        return call_factory(spec, "tokenizer"), spec
    raise LoadError(f"--tokenizer must be a folder holding a Hugging Face tokenizer or module:factory; "
                    f"{spec!r} is neither")


def load_text_model(model: Optional[str], tokenizer: Optional[str] = None,
                    checkpoint: Optional[str] = None, task: str = "auto") -> TextModel:
    """`--model FOLDER` (a local Hugging Face folder: the Auto class of its task, from --task
    or from config.architectures, and AutoTokenizer from the same folder unless --tokenizer
    says otherwise) or `--model module:factory` with `--tokenizer` (a folder or
    module:factory). Eval mode, CPU."""
    from .extras import require

    require("text", "transformers")  # MissingExtra naming pathattr[text], before anything is loaded
    if model is None:
        raise LoadError("--model must name a Hugging Face model folder or module:factory for text data")
    if is_hf_folder(model):
        from ..text.loading import require_transformers

        if checkpoint is not None:
            raise LoadError(f"--checkpoint applies to a module:factory model; the folder {model} carries its weights")
        tr = require_transformers()
        bars = tr.utils.logging.is_progress_bar_enabled()
        tr.utils.logging.disable_progress_bar()  # a tiny folder's "Loading weights" bar is noise in a job's log
        from ..text.loading import folder_task, load_model_folder

        try:
            found = folder_task(model, task)
        except ValueError as exc:
            raise LoadError(f"--task: {exc}") from None
        except Exception as exc:  # an unreadable config.json
            raise LoadError(f"--model {model}: its config.json cannot be read "
                            f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from exc
        try:
            net = load_model_folder(model, found)
        except Exception as exc:
            raise LoadError(f"--model {model}: not a {found.replace('_', ' ')} model folder "
                            f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from exc
        finally:
            if bars:
                tr.utils.logging.enable_progress_bar()
        desc, name = f"huggingface {Path(model).resolve()}", Path(model).resolve().name
        tok, tok_desc = _tokenizer_from(tokenizer if tokenizer is not None else model)
    elif ":" in model and not Path(model).exists():
        if tokenizer is None:
            raise LoadError(f"--model {model}: a module:factory text model needs --tokenizer (a folder or module:factory)")
        net = call_factory(model, "model")
        if not isinstance(net, torch.nn.Module):
            raise LoadError(f"model {model!r} must give a torch.nn.Module, got {type(net).__name__}")
        if checkpoint is not None:
            load_checkpoint(net, checkpoint, model)
        desc, name = model, model.split(":")[1].split(".")[-1]
        tok, tok_desc = _tokenizer_from(tokenizer)
    else:
        raise LoadError(f"--model for text data must be a Hugging Face model folder (with config.json) or "
                        f"module:factory; {model!r} is neither")
    if not hasattr(net, "get_input_embeddings"):
        raise LoadError(f"--model {model}: the model has no get_input_embeddings(); text attribution needs a "
                        f"Hugging Face-style model")
    if not callable(tok) or not hasattr(tok, "convert_ids_to_tokens"):
        raise LoadError(f"--tokenizer: {type(tok).__name__} is not a Hugging Face tokenizer")
    return TextModel(net.eval(), tok, desc, tok_desc, name)


def app_task(model, task: str) -> str:
    """The job's and the service's task: as given; for "auto" the model's class name says it,
    and a class whose name does not (a module:factory wrapper) is a sequence classifier, as
    these apps always took it."""
    from ..text.tasks import resolve_task, task_of_class_name

    if task == "auto" and task_of_class_name(type(model).__name__) is None:
        return "sequence_classification"
    return resolve_task(model, task)


def check_settings(method: str, settings: dict) -> None:
    """--set / --steps / --internal-batch-size keys that neither attribute_tokens nor the
    method's settings know: refused by name before anything is loaded."""
    import inspect

    from .. import methods
    from ..text import attribute_tokens

    if method not in TEXT_METHODS:
        raise LoadError(f"--method {method!r} is not available for text; one of {', '.join(TEXT_METHODS)}")
    fixed = {"model", "inputs", "tokenizer", "target", "task", "method", "baseline", "output", "batch_size",
             "max_tokens", "return_convergence_delta", "return_details", "method_kwargs", "position", "references",
             "return_embeddings"}
    known = (set(inspect.signature(attribute_tokens).parameters) - fixed) | \
        set(inspect.signature(methods.get(method).settings).parameters)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise LoadError(f"--set {unknown[0]}: not a setting of {method} on text; known: {', '.join(sorted(known))}")


def tokenizer_fingerprint(tok) -> str:
    """sha256 over the tokenizer's class and vocabulary (what turns text into ids)."""
    h = hashlib.sha256(type(tok).__qualname__.encode())
    h.update(json.dumps(sorted(tok.get_vocab().items()), ensure_ascii=False).encode())
    return h.hexdigest()


def max_length(tm: TextModel, given: Optional[int]) -> int:
    """--max-length, else the smallest of the tokenizer's and the model's limits, else 512."""
    positions = getattr(getattr(tm.model, "config", None), "max_position_embeddings", None)
    if given is not None:
        if isinstance(positions, int) and given > positions:
            raise LoadError(f"--max-length {given} exceeds the model's {positions} positions "
                            f"(config.max_position_embeddings)")
        return given
    limits = [getattr(tm.tokenizer, "model_max_length", None), positions]
    limits = [int(v) for v in limits if isinstance(v, (int, float)) and math.isfinite(v) and 0 < v < 1e6]
    return min(limits) if limits else DEFAULT_MAX_LENGTH


def encode(tm: TextModel, texts: Sequence[str], max_len: int, where=None) -> Tuple[List[List[int]], List[bool]]:
    """Token ids of each text (with the tokenizer's special tokens), cut to `max_len`;
    and which were cut. `where(i)` names text i in messages (default: "text i")."""
    where = where or (lambda i: f"text {i}")
    full = tm.tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    ids, cut = [], []
    for i, row in enumerate(full):
        row = list(row)
        if not row:
            raise JobError(f"{where(i)}: the tokenizer gives no tokens for this text")
        if len(row) > max_len:
            row = list(tm.tokenizer(texts[i], add_special_tokens=True, truncation=True, max_length=max_len)["input_ids"])
        ids.append(row)
        cut.append(len(row) < len(full[i]))
    return ids, cut
