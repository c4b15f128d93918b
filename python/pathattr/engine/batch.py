"""The batch stage: one validated call (inputs, baselines, targets, extra forward args).

`prepare` checks the user's arguments (checks.py, targets.py) before any model call and
returns a `PathBatch`. A batch may be internal (a method's pairs of inputs and
references, ICG's joint tensors): `origin` then says which of the user's inputs each
row belongs to, so errors name the user's inputs, never internal rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import torch

from .. import fastpath
from .checks import check_finite, check_inputs, check_model_device, normalize_forward_args, prepare_baselines
from .targets import parse_target


@dataclass
class PathBatch:
    """One validated call: inputs, baselines, targets and extra forward args."""

    x: torch.Tensor  # (B, *shape)
    baseline: torch.Tensor  # (1, *shape) shared or (B, *shape) per input
    target: Optional[torch.Tensor]  # (B,) int64, or None until resolved by argmax
    args: Tuple[Any, ...]
    acc_dtype: torch.dtype
    zero_baseline: bool = False  # x' is all zeros (the default baseline): lets cheap paths skip ops
    target_range: Optional[Tuple[torch.Tensor, int, int]] = field(default=None, repr=False)  # (target, min, max) from parsing
    origin: Optional[torch.Tensor] = field(default=None, repr=False)  # (B,) the user's input index of each row (None: row b is input b)
    user_size: Optional[int] = field(default=None, repr=False)  # the user's batch size when rows are internal
    _checked_target: Optional[torch.Tensor] = field(default=None, repr=False)  # the target already range-checked
    _features: int = field(default=-1, repr=False)
    _diff: Optional[torch.Tensor] = field(default=None, repr=False)
    _row_target: Optional[Tuple[int, torch.Tensor]] = field(default=None, repr=False)
    _rows2d: Optional[Tuple[torch.Tensor, torch.Tensor]] = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return self.x.shape[0]

    @property
    def inputs(self) -> int:
        """The number of the user's inputs behind this batch (its size unless rows are internal)."""
        return self.size if self.user_size is None else self.user_size

    def user_inputs(self, rows: List[int]) -> List[int]:
        """The user's input indices behind batch rows `rows` (sorted, without repeats)."""
        if self.origin is None:
            return sorted(set(rows))
        return sorted(set(self.origin[torch.as_tensor(rows, dtype=torch.long, device=self.origin.device)].tolist()))

    @property
    def features(self) -> int:
        """D, the number of elements of one input (cached: the chunk logic asks often)."""
        if self._features < 0:
            self._features = math.prod(self.x.shape[1:])
        return self._features

    @property
    def shared_baseline(self) -> bool:
        return self.baseline.shape[0] == 1 and self.size != 1

    def batched_args(self) -> bool:
        return any(isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == self.size for a in self.args)

    def args_for(self, examples: torch.Tensor) -> Tuple[Any, ...]:
        """Extra forward args for rows belonging to `examples`: tensors with a batch
        dimension of B are gathered row by row; everything else is passed as is."""
        if not self.args:
            return ()
        return tuple(
            a.index_select(0, examples.to(a.device)) if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == self.size else a
            for a in self.args
        )

    def diff(self) -> torch.Tensor:
        """x - x' in the accumulator dtype, shape (B, *shape); computed once per batch."""
        if self._diff is None:
            if self.zero_baseline and self.x.dtype == self.acc_dtype:
                self._diff = self.x.contiguous()  # x - 0 is x, bit for bit
            else:
                self._diff = (self.x.to(self.acc_dtype) - self.baseline.to(self.acc_dtype)).expand_as(self.x).contiguous()
        return self._diff

    def rows2d(self):
        """x and x' as (B, D) and (1 or B, D) views with a unit last stride (cached)."""
        if self._rows2d is None:
            D = self.features if self.size else 0
            self._rows2d = (fastpath.as_rows(self.x, self.size, D), fastpath.as_rows(self.baseline, self.baseline.shape[0], D))
        return self._rows2d

    def points_at(self, examples: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """Path points x'_e + a (x_e - x'_e) for rows (example e, alpha a) of any inputs (the
        ragged rows of rtol mode), computed in the accumulator dtype, returned in x's:
        (n, *shape). alphas: (n,) in the accumulator dtype, on x's device."""
        _, b2 = self.rows2d()
        D = self.features
        base = b2.expand(examples.shape[0], D) if b2.shape[0] == 1 else b2[examples]
        p = torch.addcmul(base.to(self.acc_dtype), alphas[:, None], self.diff().view(self.size, D)[examples])
        return p.to(self.x.dtype).view((examples.shape[0],) + tuple(self.x.shape[1:]))

    def row_examples(self, start: int, n: int, S: int) -> torch.Tensor:
        """The example index of path rows [start, start + n) (rows are example-major)."""
        return torch.arange(start, start + n, device=self.x.device) // S

    def row_targets(self, start: int, n: int, S: int) -> Optional[torch.Tensor]:
        """The targets of path rows [start, start + n) as an (n, 1) column, ready for
        gather (select_output also takes (n,); an output callable gets (n,))."""
        if self.target is None:
            return None
        if self._row_target is None or self._row_target[0] != S:
            # expand + reshape, not repeat_interleave: no host sync, so CUDA graphs can capture it
            self._row_target = (S, self.target.view(-1, 1, 1).expand(-1, S, 1).reshape(-1, 1))
        rows = self._row_target[1]
        return rows if start == 0 and n == rows.shape[0] else rows[start:start + n]

    def derived(self, x: torch.Tensor, baseline: torch.Tensor, target: Optional[torch.Tensor], args: Tuple[Any, ...],
                origin: Optional[torch.Tensor]) -> "PathBatch":
        """An internal batch built from this one; `origin` maps its rows to this batch's
        rows (None: row for row), composed with this batch's own origin."""
        if origin is not None and self.origin is not None:
            origin = self.origin[origin.to(self.origin.device)]
        elif origin is None:
            origin = self.origin
        return PathBatch(x, baseline, target, args, self.acc_dtype, origin=origin,
                         user_size=self.inputs if origin is not None else self.user_size)


def prepare(model: Any, inputs: Any, baselines: Any, target: Any, additional_forward_args: Any,
            accumulate_dtype: Optional[torch.dtype], zeros: Callable[[torch.Tensor], torch.Tensor]) -> PathBatch:
    """Validate one call's arguments (nothing runs the model) into a PathBatch.

    zeros(x) gives the default baseline (the engine keeps one per input shape)."""
    x = check_inputs(inputs, finite=False)  # types, shapes and devices first, then values
    if x.requires_grad:  # attributions are not differentiable; the path ops write into buffers (out=)
        x = x.detach()
    check_model_device(None, x, model)  # the model's remembered first tensor (model_device_ref)
    base = zeros(x) if baselines is None else prepare_baselines(baselines, x)
    check_finite(x, "inputs")
    if base.requires_grad:
        base = base.detach()
    tgt, bounds = parse_target(target, x.shape[0], x.device, return_range=True)
    args = normalize_forward_args(additional_forward_args)
    acc = accumulate_dtype or (torch.float64 if x.dtype == torch.float64 else torch.float32)
    return PathBatch(x, base, tgt, args, acc, zero_baseline=baselines is None,
                     target_range=None if bounds is None else (tgt,) + bounds)
