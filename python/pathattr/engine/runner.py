"""The model runner: the only code in pathattr that calls the user's model.

Every pass of every method, metric, layer and neuron attribution goes through a
`ModelRunner`, so each gets the same chunk sizing (an element budget per chunk, as
measured below, then the fastest size measured on the model's own chunks:
engine/chunk_tuning.py), the same out-of-memory back-off (halve the chunk, remember the cap,
retry the same rows), the same autocast and the same profiling ranges. It offers

    call(points, args)       one model call, under autocast (grad mode is the caller's)
    backward(f, wrt)         one input-gradient backward of f.sum()
    chunks(total, ...)       one chunk loop, forward only (no_grad) or forward+backward:
                             step(start, n) makes one chunk's model calls, fold(start, n,
                             result) consumes it outside the retry (so a chunk is folded once)
    outputs(total, ...)      forward only, chunked, the raw outputs concatenated

Training code (certainty.train_certainty_model, data/train_*.py) calls its model
itself: it is not attribution and has its own loop.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import torch

from . import chunk_tuning as _tuning
from . import profiling as _profiling
from .profiling import stage

# Default chunk: as many path points as fit a budget of input elements, within
# [MIN_ROWS, max rows]. Measured on this project's 2-core CPU (benchmarks/cpu.py,
# forward+backward of 1,600 points, ms): the digits CNN (64 features) takes 34 ms in
# chunks of 1024, 39 in one chunk of 1600, 51 in chunks of 64; a residual CNN on
# 3x32x32 takes 1118-1169 ms in chunks of 32-48, 1613 at 16 and 2740 at 512.
# 2**17 elements capped at 1024 points gives 1024 and 42. Forward-only passes keep no
# graph, so they get twice the chunk. On an H100 (benchmarks/gpu.py, ResNet-50 224x224,
# 1,600 points fwd+bwd) chunks of 64/128/256/400 took 614/582/563/554 ms in fp32 and
# 452/399/381/374 ms in bf16: bigger is better up to a few hundred images, so the CUDA
# budget of 2**26 elements gives 445 points at 224x224.
_BUDGET = {"cpu": 2 ** 17, "cuda": 2 ** 26}
_MAX_ROWS = {"cpu": 1024, "cuda": 4096}
MIN_ROWS = 16


def outside_inference_mode(fn: Callable) -> Callable:
    """Run `fn` with inference mode off: attributions are gradients, and under
    torch.inference_mode() autograd records nothing, so every gradient would read as zero."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        if torch.is_inference_mode_enabled():
            with torch.inference_mode(False):
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return run


def chunk_rows(internal_batch_size: Optional[int], probe_batch_size: Optional[int], oom_rows: int, features: int,
               device_type: str, forward_only: bool = False, total: Optional[int] = None,
               tuned: Optional[int] = None) -> int:
    """Rows per model call: the caller's setting, else the measured size `tuned`
    (engine/chunk_tuning.py), else the element budget.

    With the default budget (or a measured size) and `total` rows to cover, the same
    number of model calls is made with equal chunks instead of full ones and a small
    tail (50 rows under a cap of 42: 25 + 25, not 42 + 8; measured on the residual CNN,
    3x32x32, batch 1: 38 ms against 48 ms).
    """
    if forward_only and probe_batch_size:
        rows = probe_batch_size
    elif internal_batch_size is not None:
        rows = 2 * internal_batch_size if forward_only else internal_batch_size
    else:
        if tuned:
            rows = tuned
        else:
            kind = device_type if device_type in _BUDGET else "cpu"
            rows = int(min(_MAX_ROWS[kind], max(MIN_ROWS, _BUDGET[kind] // max(1, features))))
            rows = 2 * rows if forward_only else rows
        if total is not None and total > 0:
            calls = -(-total // rows)
            rows = -(-total // calls)
    return min(rows, oom_rows) if oom_rows else rows


class ModelRunner:
    """Owns the user's model and everything about calling it.

    Args:
        model: the user's callable (rows, *shape) (+ extra args) -> outputs.
        autocast: None or torch.bfloat16 / torch.float16: each call runs under torch.autocast.
        internal_batch_size: rows per forward+backward chunk (None: the element budget,
            then the fastest size measured on this model's chunks).
        probe_batch_size: rows per forward-only chunk (None: twice the gradient chunk,
            measured the same way unless internal_batch_size is given).
    """

    # backward_columns: one backward vmapped over the columns (True) or one per column (False,
    # the default: faster on CPU, see backward_columns); an instance turns it off when vmap fails.
    batched_columns = False

    def __init__(self, model: Callable, autocast: Optional[torch.dtype] = None,
                 internal_batch_size: Optional[int] = None, probe_batch_size: Optional[int] = None):
        self.model = model
        self.autocast = autocast
        self.internal_batch_size = internal_batch_size
        self.probe_batch_size = probe_batch_size
        self.oom_rows = 0  # a chunk cap learnt from an out-of-memory error (0: none)
        self.ranges = _profiling.enabled()  # named stage ranges for profilers (PATHATTR_PROFILE=1)
        self.capturing = False  # inside a CUDA-graph capture: no retry (the capture fails, eager takes over)
        self._table_of = None  # the model whose chunk-tuning table `_table` is (engine/chunk_tuning.py)
        self._table = None

    # ------------------------------------------------------------ one call
    def context(self, device: torch.device):
        if self.autocast is None:
            return contextlib.nullcontext()
        # No weight-cast cache: each chunk is its own autocast region anyway, and a cache
        # would hold tensors that a captured CUDA graph must not depend on.
        return torch.autocast(device_type=device.type, dtype=self.autocast, cache_enabled=False)

    def call(self, points: Any, args: Sequence[Any] = ()) -> Any:
        """model(points, *args): one call, under the runner's autocast; the raw output."""
        if self.autocast is None and not self.ranges:  # the common case in the fewest frames
            return self.model(points, *args)
        with stage("forward", self.ranges), self.context(points.device):
            return self.model(points, *args)

    def backward(self, f: torch.Tensor, wrt: torch.Tensor):
        """d(sum f)/d wrt; None when f does not depend on wrt (callers read that as zeros).

        Never with grad_outputs: autograd validates a grad_outputs tensor with torch.fx's
        symbolic shapes, whose first import (sympy) cost ~300 ms on the first call of a
        process; per-row weights are applied in the fold instead."""
        if not f.requires_grad:
            return None
        if not self.ranges:
            return torch.autograd.grad(f.sum(), wrt, allow_unused=True)[0]
        with stage("backward", True):
            return torch.autograd.grad(f.sum(), wrt, allow_unused=True)[0]

    def backward_columns(self, f: Union[torch.Tensor, Sequence[torch.Tensor]], wrt: torch.Tensor,
                         columns: Optional[Sequence[int]] = None) -> torch.Tensor:
        """d f[:, k] / d wrt for every column k of f (rows, T): (T, *wrt.shape), zeros where a
        column does not depend on wrt. columns: only these k, in this order ((len, *wrt.shape));
        generation attribution's rtol rounds ask a chunk for the targets that need its points.
        f may also be column blocks (rows, m_j), side by side the (rows, T) values: column k's
        backward then starts from its own block, so autograd runs only the graph that block
        depends on (text/segments.py), not every block's through a concatenation.

        Default: one backward pass per column over the same graph. With batched_columns, one
        backward per block batched over its columns (autograd's is_grads_batched: vmap over
        one-hot cotangents), falling back to the loop (for this runner) where an op has no
        batching rule. Measured on this project's CPU, one thread, CPU time (text/generation.py,
        hidden 128, P=32, T=16, 50 points): loop 0.76 s / batched 1.65 s on a tiny GPT-2,
        0.61 / 0.97 s on a tiny Llama; so the loop is the default (on a GPU the batched form
        may win: unmeasured)."""
        blocks = list(f) if isinstance(f, (list, tuple)) else [f]
        place = [(i, j) for i, b in enumerate(blocks) for j in range(b.shape[1])]  # column k -> (its block, index there)
        cols = list(range(len(place))) if columns is None else [int(k) for k in columns]
        T = len(cols)
        out = torch.zeros((T,) + tuple(wrt.shape), dtype=wrt.dtype, device=wrt.device)
        live = [i for i, k in enumerate(cols) if blocks[place[k][0]].requires_grad]
        if not live:
            return out
        with stage("backward", self.ranges) if self.ranges else contextlib.nullcontext():
            if self.batched_columns:
                try:
                    for b in sorted({place[cols[i]][0] for i in live}):
                        mine = [i for i in live if place[cols[i]][0] == b]
                        blk = blocks[b]
                        eye = torch.eye(blk.shape[1], dtype=blk.dtype, device=blk.device)
                        cot = eye[[place[cols[i]][1] for i in mine]].view(len(mine), 1, -1).expand(-1, blk.shape[0], -1)
                        g = torch.autograd.grad(blk, wrt, cot, is_grads_batched=True, retain_graph=True,
                                                allow_unused=True)[0]
                        if g is not None:
                            out[mine] = g
                    return out
                except torch.OutOfMemoryError:
                    raise
                except RuntimeError:  # no batching rule for some op: the loop below gives the same numbers
                    self.batched_columns = False
            for n, i in enumerate(live):
                b, j = place[cols[i]]
                g = torch.autograd.grad(blocks[b][:, j].sum(), wrt, allow_unused=True, retain_graph=n < len(live) - 1)[0]
                if g is not None:
                    out[i] = g
            return out

    # ---------------------------------------------------------- chunking
    def rows(self, features: int, device_type: str, forward_only: bool = False, total: Optional[int] = None) -> int:
        """Rows per model call for inputs of `features` elements (see chunk_rows): the
        measured size once the tuner has chosen one for these inputs."""
        tuned = None
        if self.internal_batch_size is None and not (forward_only and self.probe_batch_size):  # sizes_are_ours, inline
            table = self._table if self._table_of is self.model and self._table is not None else self.tuning_table()
            tuned = table.chosen((self.autocast, features, device_type, forward_only))
        return chunk_rows(self.internal_batch_size, self.probe_batch_size, self.oom_rows, features, device_type,
                          forward_only, total, tuned)

    def sizes_are_ours(self, forward_only: bool) -> bool:
        """Whether the chunk size of this kind of pass is pathattr's to choose: a size the
        caller gave (internal_batch_size, or probe_batch_size for forward-only passes) always wins."""
        return self.internal_batch_size is None and not (forward_only and self.probe_batch_size)

    def tuning_table(self) -> "_tuning.Table":
        """The chunk-tuning table of the current model (shared by every runner of it)."""
        if self._table_of is not self.model or self._table is None:
            self._table, _ = _tuning.table_for(self.model)
            self._table_of = self.model
        return self._table

    def back_off(self, step: int) -> int:
        """After an out-of-memory error: halve the chunk, remember the cap for later
        calls of this runner, and retry the same rows (never a crash unless one row fails)."""
        if self.capturing:
            raise torch.OutOfMemoryError(f"out of memory with {step} rows per chunk during CUDA-graph capture")
        if step <= 1:
            raise torch.OutOfMemoryError("out of memory with a chunk of one row (one path point): the model does not fit "
                                         "the device even for one input")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        new = max(1, step // 2)
        self.oom_rows = new if not self.oom_rows else min(self.oom_rows, new)
        warnings.warn(f"pathattr: out of memory with {step} rows per chunk; retrying with {new} "
                      f"(set internal_batch_size to choose)", RuntimeWarning, stacklevel=3)
        return new

    def chunks(self, total: int, features: int, device_type: str, step: Callable[[int, int], Any],
               fold: Optional[Callable[[int, int, Any], None]] = None, forward_only: bool = False,
               name: Optional[str] = None) -> None:
        """Cover rows [0, total) in chunks: result = step(start, n) makes the chunk's model
        calls (through `call`/`backward`), then fold(start, n, result) consumes it.

        forward_only: under no_grad with the forward-only chunk; else under enable_grad.
        An out-of-memory error inside `step` halves the chunk and retries the same rows,
        so `step` must not write anything a retry would see twice (`fold` runs once per chunk).
        name: a profiling range around each step (e.g. "probe").
        """
        rows = self.rows(features, device_type, forward_only, total)
        # Several chunks of a size that is ours to choose: measure them (engine/chunk_tuning.py).
        tuner = _Tuner(self, features, device_type, forward_only) \
            if rows < total and not self.capturing and self.sizes_are_ours(forward_only) else None
        s = 0
        with torch.no_grad() if forward_only else torch.enable_grad():
            while s < total:
                if tuner is not None:
                    rows = tuner.rows(s, total)
                n = min(rows, total - s)
                try:
                    with tuner if tuner is not None else _UNTIMED:
                        if name is None:
                            result = step(s, n)
                        else:
                            with stage(name, self.ranges):
                                result = step(s, n)
                except torch.OutOfMemoryError:
                    result = None
                    if tuner is not None and tuner.too_big(n):
                        continue  # a size the tuner was trying: dropped quietly, the same rows retried
                    tuner = None  # the usual back-off from here on
                    rows = self.back_off(rows)
                    continue
                if fold is not None:
                    with stage("fold", self.ranges):
                        fold(s, n, result)
                if tuner is not None:
                    tuner.done(s, n, total)
                s += n

    def outputs(self, total: int, features: int, device_type: str, make: Callable[[int, int], Any],
                check: Optional[Callable[[Any, int, int], Any]] = None) -> Any:
        """The raw outputs on rows [0, total), forward only, chunked and concatenated.

        make(start, n) -> (points, args) builds one chunk's model inputs; check(out, start, n)
        validates (and may convert) each chunk's output before it is kept."""
        outs = []

        def step(s, n):
            points, args = make(s, n)
            out = self.call(points, args)
            return out if check is None else check(out, s, n)

        self.chunks(total, features, device_type, step, lambda s, n, out: outs.append(out), forward_only=True)
        if not outs:
            return None
        return outs[0] if len(outs) == 1 else torch.cat(outs, 0)



_UNTIMED = contextlib.nullcontext()


class _Tuner:
    """One chunk loop's part in chunk tuning (engine/chunk_tuning.py). Chunks are sized by
    the entry of the inputs last seen with these features (the budget for new ones) and
    timed, step and fold, while that entry is still measuring; the first chunk also
    learns the inputs' shape, dtype and device, which complete the key.

    The key is learnt by watching the runner's own `call` during the first chunk (an
    instance attribute shadows the method for that chunk only), so the engine's calls
    pay nothing for it and no caller has to say what it feeds the model."""

    __slots__ = ("runner", "partial", "features", "device_type", "forward_only", "entry", "known", "meta", "asked",
                 "t0")

    def __init__(self, runner: ModelRunner, features: int, device_type: str, forward_only: bool):
        self.runner = runner
        self.partial = (runner.autocast, features, device_type, forward_only)
        self.features, self.device_type, self.forward_only = features, device_type, forward_only
        self.entry = runner.tuning_table().latest_entry(self.partial)  # a guess until the first chunk has run
        self.known = False
        self.meta = None
        self.asked = 0
        self.t0 = None

    def rows(self, s: int, total: int) -> int:
        """Rows for the chunk at s: equal chunks over the rows left, at the size being
        measured (so it is measured as it would run once chosen), or at the choice."""
        e, oom = self.entry, self.runner.oom_rows
        size = None
        if e is not None:
            if oom and e.best is None and e.size() > oom:  # capped by an out-of-memory error: measuring above it is moot
                e.settle()
            size = self.asked = e.size()
        return chunk_rows(None, None, oom, self.features, self.device_type, self.forward_only, total - s, size)

    def __enter__(self):
        if not self.known:
            base_call = ModelRunner.call.__get__(self.runner)

            def watching(points, args=()):
                self.meta = (tuple(points.shape[1:]), points.dtype, str(points.device))
                return base_call(points, args)

            self.runner.call = watching  # removed again in __exit__
        self.t0 = None
        if self.entry is not None and self.entry.best is None:
            self._sync()
            self.t0 = _tuning.clock()

    def __exit__(self, *exc):
        if not self.known:
            self.runner.__dict__.pop("call", None)
        return False

    def _sync(self):
        if self.device_type == "cuda":
            torch.cuda.synchronize()  # time the device's work, not the host's queueing of it

    def done(self, s: int, n: int, total: int) -> None:
        """After the chunk at s of n rows and its fold: learn the key, record the time."""
        seconds = None
        if self.t0 is not None:
            self._sync()
            seconds = _tuning.clock() - self.t0
        if not self.known:
            self.known = True
            guess, meta = self.entry, self.meta
            elements = self.features
            if meta is not None:
                elements = 1
                for d in meta[0]:
                    elements *= d
            base = chunk_rows(None, None, 0, self.features, self.device_type, self.forward_only)
            self.entry = self.runner.tuning_table().entry(self.partial, meta, base, elements, self.device_type)
            if self.entry is not guess:
                seconds = None  # sized by another key's plan: says nothing about this one
        if self.entry.best is None:
            self.entry.record(self.asked, n, total, s == 0, seconds)

    def too_big(self, n: int) -> bool:
        """Out of memory on n rows: True when the tuner drops that size and the rows are retried."""
        return self.entry is not None and self.entry.too_big(n)
