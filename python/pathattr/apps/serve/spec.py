"""What a served model declares: its name, input signature and classes, and how
`pathattr serve --model ...` turns a command-line string into one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch

from ..loading import BUNDLED, load_model, precision, resolve_device

DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}


@dataclass
class ModelSpec:
    """A served model and its signature.

    Args:
        name: the name in the routes (`/v1/models/{name}:explain`).
        model: a torch.nn.Module (eval mode) mapping (B, *input_shape) to (B, classes).
        input_shape: the shape of ONE instance, e.g. (1, 8, 8); requests must match it exactly.
        dtype: the dtype the model runs in; request floats are cast to it.
        num_classes: the number of outputs (None: read from one forward pass at warm-up).
        autocast: None, or torch.bfloat16 / torch.float16 to run the model under autocast.
    """

    name: str
    model: Any
    input_shape: Tuple[int, ...]
    dtype: torch.dtype = torch.float32
    num_classes: Optional[int] = None
    autocast: Optional[torch.dtype] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or "/" in self.name or ":" in self.name:
            raise ValueError(f"name must be a non-empty string without '/' or ':', got {self.name!r}")
        if not callable(self.model):
            raise TypeError(f"model must be a torch.nn.Module or callable, got {type(self.model).__name__}")
        shape = tuple(self.input_shape) if isinstance(self.input_shape, (tuple, list)) else None
        if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
            raise ValueError(f"input_shape must be a non-empty sequence of positive ints, got {self.input_shape!r}")
        self.input_shape = shape
        if self.dtype not in DTYPES.values():
            raise TypeError(f"dtype must be torch.float16, float32 or float64, got {self.dtype!r}")
        if self.autocast not in (None, torch.bfloat16, torch.float16):
            raise TypeError(f"autocast must be None, torch.bfloat16 or torch.float16, got {self.autocast!r}")
        if self.num_classes is not None and (not isinstance(self.num_classes, int) or self.num_classes < 1):
            raise ValueError(f"num_classes must be a positive int or None, got {self.num_classes!r}")

    @property
    def device(self) -> torch.device:
        if isinstance(self.model, torch.nn.Module):
            for t in self.model.parameters():
                return t.device
        return torch.device("cpu")


def parse_shape(text: str) -> Tuple[int, ...]:
    """'1,8,8' or '1x8x8' -> (1, 8, 8)."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"input shape must be positive ints separated by ',' or 'x', got {text!r}") from None
    if not shape or min(shape) < 1:
        raise ValueError(f"input shape must be positive ints separated by ',' or 'x', got {text!r}")
    return shape


def load_spec(model: Optional[str] = "digits", input_shape: Optional[str] = None, name: Optional[str] = None,
              device: str = "auto", checkpoint: Optional[str] = None, dtype: str = "fp32") -> ModelSpec:
    """The ModelSpec for `pathattr serve --model MODEL [--checkpoint F] [--dtype D] [--device D]`.

    MODEL is read as by `pathattr attribute` (apps/loading.py): "digits" or None (the
    bundled DigitsCNN, input (1, 8, 8), 10 classes), module:factory (imported from the
    working folder) with an optional state-dict `checkpoint`, a torch.export program
    (.pt2) or a TorchScript file. Anything but digits needs `input_shape`. `dtype`:
    fp32 (default), fp64, or bf16/fp16 autocast (the spec's `autocast`).
    """
    bundled = model is None or model == BUNDLED
    if input_shape is None and not bundled:
        raise ValueError("--input-shape is required for a model other than the bundled 'digits'")
    shape = parse_shape(input_shape or "1,8,8")
    dev = resolve_device(device)
    net, _, default_name = load_model(model, checkpoint)
    net, in_dtype, autocast = precision(net, dtype)
    return ModelSpec(name or default_name, net.to(dev), shape, dtype=in_dtype, num_classes=10 if bundled else None,
                     autocast=autocast)
