"""The points stage: p = x' + alpha (x - x') for path rows, written into one reused buffer.

The path batch has B*S rows, example-major (row r is example r // S, sample r % S),
and is never materialised whole: each chunk's rows are interpolated into a buffer
that lives as long as the engine (fastpath.interpolate_rows; the torch backend
reuses x - x', computed once per batch).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import fastpath
from .batch import PathBatch


class PathPoints:
    """The reused interpolation buffer of one engine (not shared between threads:
    the Explainer serialises its calls)."""

    def __init__(self):
        self.buffer: Optional[torch.Tensor] = None

    def _buf(self, rows: int, D: int, like: torch.Tensor) -> torch.Tensor:
        buf = self.buffer
        if buf is None or buf.shape[0] < rows or buf.shape[1] != D or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.buffer = torch.empty((rows, D), dtype=like.dtype, device=like.device)
        return buf if buf.shape[0] == rows else buf[:rows]

    def rows(self, batch: PathBatch, alphas: torch.Tensor, start: int, n: int, which: str) -> torch.Tensor:
        """Path rows [start, start + n) as (n, *shape), alphas (B, S) on x's device."""
        x2, b2 = batch.rows2d()
        D = x2.shape[1]
        buf = self._buf(n, D, batch.x)
        diff2 = batch.diff().view(batch.size, D) if which == "torch" else None
        fastpath.interpolate_rows(x2, b2, alphas, start, n, buf, which, diff2, batch.zero_baseline)
        return buf.view((n,) + tuple(batch.x.shape[1:]))

    def all(self, batch: PathBatch, a: torch.Tensor) -> torch.Tensor:
        """All B*S path points at once, b + a (x - b) (multiply, then add: the kernel's
        roundings) in the fewest torch calls (the one-chunk CPU branch): (B*S, *shape).

        A fresh tensor, not the reused buffer: at one-chunk sizes the product into a
        slice of the buffer (out=) measured 20-30 us slower per pass than a new tensor
        on the digits CNN (13 probe rows of a 50-row buffer, this project's 2-core CPU)."""
        B, S = a.shape
        D = batch.features
        p3 = torch.mul(a.unsqueeze(2), batch.diff().view(B, 1, D))
        if not batch.zero_baseline:
            p3.add_(batch.baseline.reshape(-1, 1, D))
        return p3.view((B * S,) + tuple(batch.x.shape[1:]))


def backend(batch: PathBatch, choice: str) -> str:
    """The fast-path backend for this batch: torch on CPU under "auto", else fastpath's choice."""
    if choice == "auto" and not batch.x.is_cuda:
        return "torch"
    return fastpath.resolve_backend(choice, batch.x)
