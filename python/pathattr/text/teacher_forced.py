"""The continuation tokens' values at a chunk of path points, and one gradient per asked
token, by the cheapest exact forward (docs/methods.md §15, "Segments").

Two cuts, both exact for a causal model:
- after the last asked token: the values at earlier positions do not depend on later
  tokens, so a chunk that only tokens < t ask for runs positions < P - 1 + t;
- in causal segments (text/segments.py) where at least SEGMENTS_FROM_COLUMNS tokens share
  the forward: each backward then skips what its token's value does not depend on, but a
  segmented forward costs a model call per segment, which a chunk asked by one or two
  tokens (rtol's later rounds) does not win back.
Everything runs through ModelRunner (engine/runner.py).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from ..engine.runner import ModelRunner
from ..layers.hooks import LayerReplaced
from .segments import SegmentedValues, agrees, cache_keyword, columns
from .tasks import fast_forward_kwargs, logits_of, token_values

# Tokens sharing a forward from which segments pay. Measured with rtol=0.01 (whose first round
# asks all T=16 tokens, later chunks 1-3), tiny GPT-2 / Llama, hidden 64 and 128, P=32, one
# thread, CPU time per call on this project's shared machine, for thresholds 1 / 2 / 4 / 8 /
# never: GPT-2 h64 505 / 451 / 409 / 406 / 528 ms, Llama h64 931 / 798 / 652 / 629 / 681,
# GPT-2 h128 2839 / 2681 / 2319 / 2359 / 2690, Llama h128 3632 / 3177 / 2697 / 2649 / 2922
# (with min_steps=17, more later rounds: 8 best or within 3 % of never).
SEGMENTS_FROM_COLUMNS = 8


class Values(nn.Module):
    """model(s[:-1]) -> (rows, T): the value of each continuation token at its position."""

    def __init__(self, model: nn.Module, continuation: torch.Tensor, output: str):
        super().__init__()
        self.model = model
        self.register_buffer("cont", continuation, persistent=False)
        self.output = output
        self.kw = fast_forward_kwargs(model, keep=continuation.numel())

    def forward(self, input_ids):
        T = self.cont.numel()
        # positions P-1 .. N-2 predict the continuation: the last T of the N-1 inputs
        logits = logits_of(self.model(input_ids=input_ids, **self.kw))[:, -T:]  # (rows, T, V)
        return token_values(logits, self.cont, self.output)


class TeacherForced:
    """Values and gradients of the T continuation tokens of prompt (P tokens) + continuation."""

    def __init__(self, model: nn.Module, layer: nn.Module, prompt_length: int, continuation: torch.Tensor,
                 output: str, internal_batch_size: Optional[int]):
        self.model, self.layer, self.P, self.cont, self.output = model, layer, prompt_length, continuation, output
        self.ibs = internal_batch_size
        self.T = continuation.numel()
        self._one: Dict[int, ModelRunner] = {}
        self._seg: Dict[int, ModelRunner] = {}
        self.cache_name = cache_keyword(model) if self.T >= 2 else None
        self.segmented = False  # set by check_segments

    @property
    def runner(self) -> ModelRunner:
        """The single forward of all T tokens (the path's ends, the chunk sizes)."""
        return self.one(self.T)

    def one(self, t: int) -> ModelRunner:
        if t not in self._one:
            self._one[t] = ModelRunner(LayerReplaced(Values(self.model, self.cont[:t], self.output), self.layer),
                                       None, self.ibs)
        return self._one[t]

    def seg(self, t: int) -> ModelRunner:
        if t not in self._seg:
            self._seg[t] = ModelRunner(SegmentedValues(self.model, self.layer, self.P, self.cont[:t], self.output,
                                                       self.cache_name), None, self.ibs)
        return self._seg[t]

    def check_segments(self, ends: torch.Tensor, ends_in: torch.Tensor, f_ends: torch.Tensor) -> int:
        """Use segments where the model takes a key/value cache and its segmented values at the
        path's ends equal the single forward's `f_ends` up to rounding. Returns the model calls
        of a whole forward (1: segments are not used)."""
        if self.cache_name is None:
            return 1
        try:
            with torch.no_grad():
                f_seg = columns(self.seg(self.T).call(ends, (ends_in,)))
        except torch.OutOfMemoryError:
            raise
        except Exception:  # noqa: BLE001  (a model whose cache path fails in any way keeps the single forward)
            return 1
        self.segmented = agrees(f_seg, f_ends)
        return len(self.seg(self.T).model.ends) if self.segmented else 1

    def run(self, pts: torch.Tensor, x_in: torch.Tensor,
            cols: Optional[Sequence[int]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """pts (n, N-1, E) requiring grad, x_in (n, N-1) -> (values (n, t) of tokens 0 .. t-1, t
        one past the last asked; gradients (C, n, N-1, E) of the asked tokens `cols` (all T
        when None), in that order)."""
        cols = list(range(self.T)) if cols is None else [int(k) for k in cols]
        t = max(cols) + 1
        cut = self.P - 1 + t  # positions the asked tokens see
        # segments pay when enough tokens share the forward (SEGMENTS_FROM_COLUMNS)
        runner = self.seg(t) if self.segmented and len(cols) >= SEGMENTS_FROM_COLUMNS else self.one(t)
        out = runner.call(pts[:, :cut], (x_in[:, :cut],))
        f = columns(out)
        if not isinstance(f, torch.Tensor) or tuple(f.shape) != (pts.shape[0], t):
            raise ValueError(f"internal: values of shape {tuple(getattr(f, 'shape', ()))}, "
                             f"expected ({pts.shape[0]}, {t})")
        return f.detach(), runner.backward_columns(out, pts, cols)
