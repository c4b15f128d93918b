"""Loading a local Hugging Face model folder with its tokenizer (needs pathattr[text]).

The only place in pathattr.text that imports transformers (lazily, on call)."""
from __future__ import annotations

import os
from typing import Any, Optional, Tuple

import torch

from .tasks import TASKS, task_of_class_name

_AUTO = {"sequence_classification": "AutoModelForSequenceClassification", "masked_lm": "AutoModelForMaskedLM",
         "causal_lm": "AutoModelForCausalLM"}


def require_transformers():
    """The transformers module, or an ImportError that says how to install it."""
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - the test env has it; tests fake its absence
        raise ImportError("pathattr.text needs the Hugging Face transformers package for this: "
                          "pip install pathattr[text]") from e
    return transformers


def load_pretrained(path: str, task: str = "auto", dtype: Optional[Any] = None) -> Tuple[Any, Any]:
    """(model, tokenizer) from a local folder (no download), model in eval mode.

    task: "auto" (from config.architectures), "sequence_classification", "masked_lm"
    or "causal_lm". dtype: None (as saved) or a torch dtype. ImportError naming
    `pip install pathattr[text]` when transformers is missing.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a folder path (str), got {type(path).__name__}")
    if not os.path.isdir(path):
        raise ValueError(f"path must be a local folder holding a Hugging Face model (config.json); got {str(path)!r}")
    if task != "auto" and task not in TASKS:
        raise ValueError(f"task must be 'auto' or one of {', '.join(map(repr, TASKS))}; got {task!r}")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be None or a floating-point torch dtype, got {dtype!r}")
    tr = require_transformers()
    model = load_model_folder(path, task)
    if dtype is not None:
        model = model.to(dtype)
    tokenizer = tr.AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model.eval(), tokenizer


def folder_task(path: str, task: str = "auto") -> str:
    """The task of the model saved in `path`: as given, or from config.architectures."""
    if task != "auto":
        return task
    tr = require_transformers()
    cfg = tr.AutoConfig.from_pretrained(path, local_files_only=True)
    names = list(getattr(cfg, "architectures", None) or [])
    found = [t for t in (task_of_class_name(n) for n in names) if t is not None]
    if not found:
        raise ValueError(f"task: cannot tell the task of the model in {str(path)!r} (architectures {names}); "
                         f"pass task= one of {', '.join(map(repr, TASKS))}")
    return found[0]


def load_model_folder(path: str, task: str = "auto"):
    """The model saved in `path`, through the Auto class of its task (no download)."""
    tr = require_transformers()
    return getattr(tr, _AUTO[folder_task(path, task)]).from_pretrained(path, local_files_only=True)
