"""Chunk sizes by measurement: the runner's memory of the fastest rows per model call.

The element budget (runner.chunk_rows) is a first guess measured on CNNs; other models
want other sizes (a 2-layer transformer encoder on the CPU ran 1.12x slower in the
budget's chunks than at its best). So the runner times the chunks it makes anyway —
real work whose results are folded as usual, nothing is run twice — and climbs a ladder
of sizes around the budget's (¼x … 8x) by duels: the size in hand (first the budget's)
against its neighbour, up first, then down if up did not pay. A duel alternates samples
of the two sizes, each sample a run of chunks covering about as many rows as the larger
size (so both see a shared machine's load alike), and the challenger wins when the
median of the paired per-row time ratios beats the size in hand by MARGIN. The first
chunk of each new shape is not timed (oneDNN builds kernels per batch shape). Once
decided, the choice sticks. See docs/design.md ("The runner in more detail").

Memory is per (autocast, input shape, dtype, device, forward-only) in a table that lives
as long as the model (a weak key), so the functional API, which builds an Explainer per
call, learns across calls as well. This module only decides; engine/runner.py times the
chunks and applies the choice.
"""
from __future__ import annotations

import statistics
import threading
import time
import weakref
from typing import Dict, Hashable, List, Optional, Tuple

LADDER = (0.25, 0.5, 1, 2, 4, 8)  # multiples of the budget's chunk that may be tried
PAIRS = 5  # paired samples per duel (a loaded 2-core machine swings by tens of percent)
MARGIN = 0.05  # a challenger must be this much faster per row to take over (noise must not move a choice)
# Sizes above the budget's stay within these input elements per chunk (8x the CPU budget,
# 2x the CUDA one: device memory is the scarcer there; an out-of-memory error while
# trying a size above the budget's drops that size quietly, see Entry.too_big).
UP_ELEMENTS = {"cpu": 2 ** 20, "cuda": 2 ** 27}
MAX_ENTRIES = 64  # per model: many input shapes (text of varying length) must not grow it without end

clock = time.perf_counter  # replaced by a fake clock in tests/test_chunk_tuning.py


class Entry:
    """What is known about one key: the sizes that may be tried, the duel under way
    (`held` against `challenger`), and the choice once made (`best`)."""

    __slots__ = ("base", "sizes", "held", "challenger", "direction", "turn", "acc", "pending", "pairs", "best",
                 "warmed", "whole")

    def __init__(self, base: int, row_elements: int, device_type: str):
        up = max(base, UP_ELEMENTS.get(device_type, UP_ELEMENTS["cpu"]) // max(1, row_elements))
        self.base = base
        self.sizes: List[int] = sorted({max(1, int(base * m)) for m in LADDER if base * m <= up} | {base})
        self.best: Optional[int] = None
        self.warmed: set = set()  # chunk shapes (rows) already run once
        self.whole: set = set()  # sizes at which a whole pass was one chunk: larger ones change nothing
        self.held, self.direction = base, 1
        self.challenger: Optional[int] = None
        self._next_duel()

    def size(self) -> int:
        """Rows for the next chunk: the size whose sample is being taken, or the choice."""
        if self.best is not None:
            return self.best
        return self.challenger if self.turn else self.held

    def settle(self) -> None:
        """Stop measuring: keep the size in hand."""
        if self.best is None:
            self.best = self.held

    def _neighbour(self, size: int, direction: int) -> Optional[int]:
        if size not in self.sizes:
            return None
        i = self.sizes.index(size) + direction
        return self.sizes[i] if 0 <= i < len(self.sizes) else None

    def _next_duel(self) -> None:
        """The next challenger: onward in the current direction, or down from the budget's
        size when going up did not pay; none left: the size in hand is the choice."""
        self.turn, self.acc, self.pending, self.pairs = 0, [0.0, 0], 0.0, []
        nxt = None if (self.direction > 0 and self.held in self.whole) else self._neighbour(self.held, self.direction)
        if nxt is None and self.direction > 0 and self.held == self.base:
            self.direction = -1
            nxt = self._neighbour(self.held, -1)
        self.challenger = nxt
        if nxt is None:
            self.best = self.held

    def record(self, size: int, n: int, total: int, first: bool, seconds: Optional[float]) -> None:
        """One chunk of n rows (of a pass of `total`; `first`: it began the pass), asked for
        at `size`, took `seconds` (None: not timed), step and fold."""
        if self.best is not None:
            return
        if n not in self.warmed:
            self.warmed.add(n)
            return
        whole = first and n == total
        if seconds is None or size != self.size() or (n * 2 < size and not whole):
            return  # untimed, or a tail: under half the size asked for says little about the size
        if whole:
            self.whole.add(size)
        self.acc[0] += seconds
        self.acc[1] += n
        if self.acc[1] < min(max(self.held, self.challenger), total) and not whole:
            return  # a sample covers about as many rows as the larger size (or a whole pass)
        per_row = self.acc[0] / self.acc[1]
        self.acc = [0.0, 0]
        if not self.turn:
            self.pending, self.turn = per_row, 1
            return
        self.pairs.append(per_row / self.pending)
        self.turn = 0
        if len(self.pairs) >= PAIRS:
            if statistics.median(self.pairs) < 1 - MARGIN:
                self.held = self.challenger
            elif self.direction > 0 and self.held == self.base and self._neighbour(self.base, -1) is not None:
                self.direction = -1  # up did not pay: try down from the budget's size
                self.challenger = None
                self._next_duel()
                return
            else:
                self.best = self.held
                return
            self._next_duel()

    def too_big(self, n: int) -> bool:
        """Out of memory on a chunk of n rows. Above the budget's size that is the
        tuner's doing: drop the sizes from n up, quietly (True: the rows are retried at
        the next size). At or below it the runner's usual back-off takes over (False)
        and the tuner keeps the size in hand (the runner's cap applies on top)."""
        if self.best is None and n > self.base:
            self.sizes = [s for s in self.sizes if s < n]
            if self.held >= n:
                self.held = self.base
            self._next_duel()
            return True
        self.settle()
        return False


class Table:
    """The entries of one model: full key -> Entry, and for each partial key (what the
    runner knows before a call: autocast, features, device type, forward-only) the full
    key last seen with it (adding input shape, dtype and device, seen on the first call)."""

    def __init__(self):
        self.entries: Dict[Hashable, Entry] = {}
        self.latest: Dict[Hashable, Hashable] = {}

    def latest_entry(self, partial: Hashable) -> Optional[Entry]:
        """The entry of the inputs last seen under `partial` (None: none yet)."""
        full = self.latest.get(partial)
        return self.entries.get(full) if full is not None else None

    def chosen(self, partial: Hashable) -> Optional[int]:
        """The chosen rows per chunk for the inputs last seen under `partial`, or None
        (on every pass's sizing: the fewest lookups)."""
        full = self.latest.get(partial)
        if full is None:
            return None
        entry = self.entries.get(full)
        return None if entry is None else entry.best

    def entry(self, partial: Hashable, meta: Hashable, base: int, row_elements: int, device_type: str) -> Entry:
        """The entry of (partial, meta), made on first use; it becomes the latest for `partial`."""
        full = (partial, meta)
        e = self.entries.get(full)
        if e is None:
            if len(self.entries) >= MAX_ENTRIES:  # forget the oldest (dicts keep insertion order)
                self.entries.pop(next(iter(self.entries)))
                self.latest = {p: f for p, f in self.latest.items() if f in self.entries}
            e = self.entries[full] = Entry(base, row_elements, device_type)
        self.latest[partial] = full
        return e


_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def table_for(model) -> Tuple[Table, bool]:
    """The model's table (shared by every runner of that model), and whether it outlives
    the runner (False for a model that takes no weak reference: a table of its own)."""
    with _LOCK:
        try:
            t = _TABLES.get(model)
            if t is None:
                t = _TABLES[model] = Table()
            return t, True
        except TypeError:  # not weak-referenceable (or not hashable)
            return Table(), False


def choices(model) -> List[dict]:
    """What has been learnt for `model` (benchmarks report it): one dict per key with
    its shape, dtype, pass kind, the budget's size and the choice (None: still measuring)."""
    with _LOCK:
        try:
            t = _TABLES.get(model)
        except TypeError:
            t = None
    if t is None:
        return []
    return [{"shape": list(meta[0]) if meta else None, "dtype": str(meta[1]) if meta else None,
             "forward_only": partial[3], "budget": e.base, "chosen": e.best}
            for (partial, meta), e in list(t.entries.items())]
