"""A model's non-tensor output (tuple, list, dict, Hugging Face ModelOutput) as one tensor.

An output callable must get the model's output as the model returned it, but the
engine slices rows, joins chunks and expands a shared baseline's row: tensor
operations. `Layout.of` packs the output's floating tensors that have the batch
dimension side by side into one (rows, K) tensor (differentiably: the gradient reaches
the model), remembering the structure; `unpack` rebuilds an output of the same types
from any rows of that tensor. Other leaves (integer tensors, a 0-d loss, a cache
object, strings) are kept as the model returned them in the last call.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, List, Tuple

import torch


class Layout:
    """The structure of a non-tensor model output: its floating tensors with a batch
    dimension become column blocks of one (rows, K) tensor; every other leaf (ints,
    scalars, a 0-d loss, a cache object) is kept as returned."""

    __slots__ = ("tree", "blocks", "dtype")

    def __init__(self, tree, blocks, dtype):
        self.tree, self.blocks, self.dtype = tree, blocks, dtype

    @classmethod
    def of(cls, out: Any, rows: int) -> Tuple["Layout", torch.Tensor]:
        leaves: List[torch.Tensor] = []
        tree = _flatten(out, rows, leaves, 0)
        dtype = torch.float32
        for t in leaves:
            dtype = torch.promote_types(dtype, t.dtype)
        flat = [t.reshape(rows, -1) for t in leaves]
        flat = [t if t.dtype == dtype else t.to(dtype) for t in flat]
        if len(flat) == 1:
            packed = flat[0]
        elif flat:
            packed = torch.cat(flat, 1)
        else:
            packed = torch.zeros((rows, 0), dtype=dtype)
        blocks = [tuple(t.shape[1:]) for t in leaves]
        return cls(tree, blocks, dtype), packed

    def unpack(self, packed: torch.Tensor) -> Any:
        rows, parts, at = packed.shape[0], [], 0
        for shape in self.blocks:
            n = math.prod(shape)
            parts.append(packed[:, at:at + n].reshape((rows,) + shape))
            at += n
        return _rebuild(self.tree, parts)


_MAX_DEPTH = 32


def _flatten(obj: Any, rows: int, leaves: List[torch.Tensor], depth: int):
    if depth > _MAX_DEPTH:
        raise ValueError(f"the model's output is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and obj.dim() >= 1 and obj.shape[0] == rows:
            leaves.append(obj)
            return ("leaf", len(leaves) - 1)
        return ("const", obj)
    if isinstance(obj, Mapping):
        keys = list(obj.keys())
        return ("map", type(obj), keys, [_flatten(obj[k], rows, leaves, depth + 1) for k in keys])
    if isinstance(obj, (tuple, list)):
        return ("seq", type(obj), [_flatten(v, rows, leaves, depth + 1) for v in obj])
    return ("const", obj)


def _rebuild(node, parts: List[torch.Tensor]) -> Any:
    kind = node[0]
    if kind == "leaf":
        return parts[node[1]]
    if kind == "const":
        return node[1]
    if kind == "map":
        _, typ, keys, children = node
        vals = {k: _rebuild(c, parts) for k, c in zip(keys, children)}
        if dataclasses.is_dataclass(typ):  # a Hugging Face ModelOutput: a dataclass and an OrderedDict
            return typ(**vals)
        try:
            return typ(vals)
        except TypeError:
            return dict(vals)
    _, typ, children = node
    vals = [_rebuild(c, parts) for c in children]
    if typ in (tuple, list):
        return typ(vals)
    if hasattr(typ, "_fields"):  # a namedtuple
        return typ(*vals)
    try:
        return typ(vals)
    except TypeError:
        return tuple(vals)
