"""CUDA graphs of the engine's fixed-shape passes (probe and gradient pass).

A request of a shape seen before replays a captured graph: new inputs are copied into
static buffers, one `replay()` launches every chunk's interpolation, forward,
backward and fold, and nothing is allocated or compiled. Design trade-off: the graph
is the engine's own eager loop run once under capture (no second implementation), so
everything inside it must avoid host synchronisation; the checks that need the host
(target range, finite values) run once on the outputs after the replay instead.

Captured per key (input shape and dtype, baseline shape, samples per input, importance
mode): one private copy of the engine (its interpolation buffer belongs to the graph),
static input tensors, and the graph's memory pool. Keys are kept in LRU order, at most
`max_graphs` of them. A model that cannot be captured (host syncs, CPU tensors,
data-dependent shapes) falls back to the eager loop with one warning, for good.
"""
from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from .core import PathBatch, PathEngine, PathIntegral
from .fold import check_integral_finite, check_ragged_finite, check_values_finite

RAGGED_MIN_ROWS = 8  # the smallest padded chunk of a ragged round
RAGGED_GRAPHS = 8  # graphs kept for ragged chunk sizes beyond max_graphs


@dataclass
class _Entry:
    graph: "torch.cuda.CUDAGraph"
    batch: PathBatch  # static x, baseline, target
    statics: Tuple[Optional[torch.Tensor], ...]  # the pass's other static inputs (alphas, weights; rows)
    outputs: Tuple[Optional[torch.Tensor], ...]
    engine: PathEngine  # owns the interpolation buffer the graph writes into: must outlive the graph


class GraphCache:
    """Captures and replays an engine's probe and gradient passes for CUDA inputs.

    Args:
        engine: the eager engine to copy (model, output, chunking, autocast, backend).
        max_graphs: how many shapes to keep captured (least recently used dropped).
        warmup_iters: eager runs on a side stream before capture (cuDNN algorithm
            choice and autograd's lazy state happen there, not in the graph).
    """

    def __init__(self, engine: PathEngine, max_graphs: int = 4, warmup_iters: int = 2):
        self._engine = copy.copy(engine)  # its own runner state and buffers (PathEngine.__copy__)
        self._engine.graphs = None
        self.max_graphs = max_graphs
        self.warmup_iters = warmup_iters
        self._entries: "OrderedDict[tuple, _Entry]" = OrderedDict()
        self._failed: Dict[tuple, str] = {}
        self.captures = 0  # how many graphs were captured (tests and benchmarks read it)
        self.replays = 0

    # ----------------------------------------------------------------- policy
    def supports(self, batch: PathBatch, importance: str = "none") -> bool:
        """Fixed-shape, sync-free cases only: CUDA inputs, resolved targets, no extra
        forward args, a named output, and no finite-difference importance (it branches
        on the data)."""
        e = self._engine
        return (batch.x.is_cuda and batch.target is not None and not batch.args and not callable(e.output)
                and importance in ("none", "exact") and batch.size > 0)

    def _key(self, kind: str, batch: PathBatch, alphas: torch.Tensor, importance: str) -> tuple:
        return (kind, tuple(batch.x.shape), batch.x.dtype, tuple(batch.baseline.shape), batch.baseline.dtype,
                tuple(alphas.shape), importance, batch.acc_dtype, batch.x.device.index)

    # ------------------------------------------------------------------ passes
    def path_values(self, batch: PathBatch, alphas: torch.Tensor) -> torch.Tensor:
        key = self._key("probe", batch, alphas, "none")
        entry = self._get(key, batch, self._rule(batch, alphas, None), lambda eng, b, a, w: (eng.path_values(b, a),))
        if entry is None:
            return self._engine.path_values(batch, alphas)
        self._load(entry, batch, alphas, None)
        entry.graph.replay()
        self.replays += 1
        values = entry.outputs[0].clone()
        check_values_finite(values, "F along the path", batch)
        return values

    def integrate(self, batch: PathBatch, alphas: torch.Tensor, weights: torch.Tensor, importance: str) -> PathIntegral:
        key = self._key("integrate", batch, alphas, importance)

        def run(eng, b, a, w):
            r = eng.integrate(b, a, w, importance=importance)
            return r.acc, r.values, r.importance

        entry = self._get(key, batch, self._rule(batch, alphas, weights), run)
        if entry is None:
            return self._engine.integrate(batch, alphas, weights, importance=importance)
        self._load(entry, batch, alphas, weights)
        entry.graph.replay()
        self.replays += 1
        acc, values, scales = (None if t is None else t.clone() for t in entry.outputs)
        check_integral_finite(acc, batch)
        return PathIntegral(acc, values, scales)

    def forward(self, batch: PathBatch, points: torch.Tensor) -> torch.Tensor:
        """The model's raw outputs on `points` (no grad), e.g. the endpoints F(x), F(x')."""
        key = ("forward", tuple(points.shape), points.dtype, points.device.index)
        static = PathBatch(points, points[:1], None, (), batch.acc_dtype)

        def run(eng, b, a, w):
            return (eng.forward_rows(b, b.x),)

        entry = self._get(key, static, (None, None), run)
        if entry is None:
            return self._engine.forward_rows(static, points)
        entry.batch.x.copy_(points)
        entry.graph.replay()
        self.replays += 1
        return entry.outputs[0].clone()

    def ragged(self, batch: PathBatch, examples: torch.Tensor, alphas: torch.Tensor,
               scaled: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """PathEngine.ragged's rows (rtol rounds, docs/methods.md §14) in chunks of fixed
        sizes, each replaying a captured graph: full chunks of the runner's size C, the
        last padded up to C / 2^k (so a round of any length replays at most log2(C) + 1
        distinct graphs per input shape, and pads at most twice its last rows). Padding
        rows repeat row 0 and are dropped."""
        eng = self._engine
        R = int(examples.shape[0])
        dev = batch.x.device
        acc = batch.acc_dtype
        C = max(1, eng.runner.rows(batch.features, dev.type, False, R))
        ex = examples.to(dev)
        a = alphas.to(device=dev, dtype=acc)
        values = torch.empty(R, dtype=acc, device=dev)
        importance = torch.empty(R, dtype=acc, device=dev)
        rows = torch.empty((R, batch.features), dtype=acc, device=dev)
        for s, n, size in ragged_chunks(R, C):
            e_c, a_c = ex[s:s + n], a[s:s + n]
            if size > n:  # pad with copies of the chunk's first row
                e_c = torch.cat([e_c, e_c[:1].expand(size - n)])
                a_c = torch.cat([a_c, a_c[:1].expand(size - n)])
            key = ("ragged", tuple(batch.x.shape), batch.x.dtype, tuple(batch.baseline.shape), batch.baseline.dtype,
                   size, scaled, acc, dev.index)
            entry = self._get(key, batch, (e_c.clone(), a_c.clone()),
                              lambda g, b, e, al: g.ragged(b, e, al, scaled))
            if entry is None:  # this size failed to capture: eager for these rows
                v, q, r = eng.ragged(batch, e_c, a_c, scaled)
            else:
                self._load(entry, batch, e_c, a_c)
                entry.graph.replay()
                self.replays += 1
                v, q, r = entry.outputs
            values[s:s + n], importance[s:s + n], rows[s:s + n] = v[:n], q[:n], r[:n]
        check_ragged_finite(values, rows, ex, batch)
        return values, importance, rows

    # ----------------------------------------------------------------- capture
    def _rule(self, batch: PathBatch, alphas, weights) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """The static copies of a pass's alphas and weights, in the dtypes the pass reads."""
        dev = batch.x.device
        a_dtype = torch.float64 if batch.x.dtype == torch.float64 else torch.float32
        return (None if alphas is None else alphas.to(device=dev, dtype=a_dtype).clone().contiguous(),
                None if weights is None else weights.to(device=dev, dtype=batch.acc_dtype).clone().contiguous())

    def _get(self, key, batch, statics, run: Callable) -> Optional[_Entry]:
        if key in self._failed:
            return None
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        try:
            entry = self._capture(batch, statics, run)
        except Exception as exc:  # any capture failure: eager from now on, said once
            self._failed[key] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"pathattr: CUDA-graph capture failed ({self._failed[key]}); this shape runs eagerly",
                          RuntimeWarning, stacklevel=4)
            torch.cuda.synchronize()
            return None
        self._entries[key] = entry
        # ragged rounds keep up to log2(C) + 1 chunk sizes per shape beside the fixed passes
        limit = self.max_graphs + (RAGGED_GRAPHS if key[0] == "ragged" else 0)
        while len(self._entries) > limit:
            self._entries.popitem(last=False)
        return entry

    def _capture(self, batch: PathBatch, statics, run: Callable) -> _Entry:
        eng = copy.copy(self._engine)  # private buffers and runner state for this graph
        dev = batch.x.device
        static = PathBatch(batch.x.clone(), batch.baseline.clone(),
                           None if batch.target is None else batch.target.clone(), (), batch.acc_dtype)
        statics = tuple(statics)
        # One eager run with the checks on (target range, finite values), then warm-up
        # runs on a side stream as CUDA graphs require, then the capture.
        run(eng, static, *statics)
        side = torch.cuda.Stream(device=dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        eng.runner.capturing = True
        # Warm-up with host synchronisation made an error: a model that syncs (.item(),
        # data-dependent shapes) fails here, before the capture, whose failure would leave
        # CUDA and the RNG in capture state.
        mode = torch.cuda.get_sync_debug_mode()
        try:
            with torch.cuda.stream(side), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Synchronization debug mode is a prototype")
                torch.cuda.set_sync_debug_mode("error")
                try:
                    for _ in range(self.warmup_iters):
                        _reset(static)
                        run(eng, static, *statics)
                finally:
                    torch.cuda.set_sync_debug_mode(mode)
            torch.cuda.current_stream(dev).wait_stream(side)
            torch.cuda.synchronize(dev)
            graph = torch.cuda.CUDAGraph()
            _reset(static)
            with torch.cuda.graph(graph):
                outputs = run(eng, static, *statics)
        finally:
            eng.runner.capturing = False
        self.captures += 1
        return _Entry(graph, static, statics, tuple(outputs), eng)

    @staticmethod
    def _load(entry: _Entry, batch: PathBatch, *values: Optional[torch.Tensor]) -> None:
        """Copy a call's inputs into the graph's static tensors (values: in statics' order)."""
        st = entry.batch
        st.x.copy_(batch.x)
        st.baseline.copy_(batch.baseline)
        if st.target is not None:
            st.target.copy_(batch.target)
        for dst, src in zip(entry.statics, values):
            if src is not None:
                dst.copy_(src)


def ragged_chunks(total: int, chunk: int) -> List[Tuple[int, int, int]]:
    """(start, rows, padded size) covering `total` rows: full chunks of `chunk` rows, the
    last one padded to the smallest chunk / 2^k (>= RAGGED_MIN_ROWS) that holds it."""
    out, s = [], 0
    while s < total:
        n = min(chunk, total - s)
        size = chunk
        while size // 2 >= n and size // 2 >= RAGGED_MIN_ROWS:
            size //= 2
        out.append((s, n, size))
        s += n
    return out


def _reset(batch: PathBatch) -> None:
    """Drop values cached on the static batch, so the captured graph recomputes them
    from the static inputs on every replay (x - x', per-row targets)."""
    batch._diff = None
    batch._row_target = None

