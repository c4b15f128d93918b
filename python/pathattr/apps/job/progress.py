"""What a job says while it runs: a tqdm bar per rank (items/s, ETA), JSON log lines
on request (one object per line on stdout, for log collectors), one summary line."""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional


class Progress:
    """quiet: no bar and no summary; log_json: JSON lines (`event`, `rank`, ...) on stdout."""

    def __init__(self, rank: int, world_size: int, total: int, done: int, quiet: bool, log_json: bool):
        self.rank, self.quiet, self.log_json = rank, quiet, log_json
        self.t0 = time.perf_counter()
        self.bar: Optional[Any] = None
        if not quiet:
            from tqdm import tqdm

            desc = f"rank {rank}/{world_size}" if world_size > 1 else "attribute"
            self.bar = tqdm(total=total, initial=done, desc=desc, unit="item", position=rank, dynamic_ncols=True,
                            leave=True, file=sys.stderr, smoothing=0.1)

    def log(self, event: str, **fields) -> None:
        if self.log_json:
            rec = {"event": event, "rank": self.rank, "time": round(time.time(), 3)}
            rec.update(fields)
            # One write per line: ranks share stdout, and print() writes the text and the
            # newline separately (unbuffered under torchrun), so lines could interleave.
            sys.stdout.write(json.dumps(rec, sort_keys=True) + "\n")
            sys.stdout.flush()

    def advance(self, n: int, **postfix) -> None:
        """n more items done; `postfix` (e.g. a chunk's mean evaluations) shown after the bar."""
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)
