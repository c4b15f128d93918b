"""The run folder: a Zarr store, one commit marker per finished chunk, a manifest.

    RUN_DIR/store.zarr        Zarr v3 group; attrs["pathattr_job"] = the run's identity
        attributions (N, *shape) float32|float16, one Zarr chunk = one job chunk
        index, label, target (N,) int64; logit, baseline_value (N,) float32: F(x), F(x')
        delta (N,) float32: the convergence delta, when the method reports one
        probe_curve (N, P) float32 when the method probes the path (IDG adaptive)
        n_evaluations (N,) int64, error_estimate (N,) float32, converged (N,) uint8: with
            --rtol, each item's cost and estimated relative error (docs/methods.md §14)
        preview_inputs (K, *shape) float32: the first K inputs, for `pathattr report`
    A text run (job/text.py) instead of attributions and preview_inputs has
        n_tokens, token_offsets (N,) int64: text i's tokens are the flat rows
            [token_offsets[i], token_offsets[i] + n_tokens[i]) of
        token_ids (int64), tokens (str), token_scores, token_norms (store dtype): ragged,
            job chunk k's tokens from row k * C on (C = attrs["ragged"][name], the most
            tokens of any job chunk), the rest of its span zero (compressed away)
    RUN_DIR/chunks/chunk-NNNNNN.json   commit marker of a finished chunk
    RUN_DIR/manifest.json     every finished chunk and the throughput, written at the end
    RUN_DIR/run.json          the settings as given (identity and the rest)

A job chunk is `chunk_size` consecutive items, and every array is chunked the same
way along its first axis, so each chunk's data are whole Zarr chunk files that only
one rank ever writes (no locks). zarr's LocalStore writes every file to a temporary
name and renames it; the marker is written the same way after all of a chunk's
arrays, so a chunk counts as finished only once all of its data are in place. A kill
before the marker leaves a chunk that the next run recomputes and overwrites.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .config import JobError

STORE = "store.zarr"
CHUNKS = "chunks"
MANIFEST = "manifest.json"
RUN_FILE = "run.json"
ID_KEY = "pathattr_job"
FORMAT = 1
PREVIEW = 16


def _zarr():
    from ..extras import require

    require("job", "zarr")  # MissingExtra naming pathattr[job]
    import zarr

    if int(zarr.__version__.split(".")[0]) < 3:
        raise JobError(f"the dataset job needs zarr >= 3 (Python 3.11+), found zarr {zarr.__version__}: "
                       f"pip install 'pathattr[job]'")
    return zarr


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file, flush it to disk, then rename over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def identity_diff(old: Dict[str, Any], new: Dict[str, Any], prefix: str = "") -> List[str]:
    """Human-readable differences between two identities, e.g. ["method: 'idg' -> 'ig'"]."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += identity_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


class RunStore:
    """One run folder. Create it with `create` (one process), open it with `open`."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.store_path = self.run_dir / STORE
        self.chunk_dir = self.run_dir / CHUNKS
        self._arrays: Dict[str, Any] = {}
        self._ragged: Dict[str, int] = {}  # flat per-token array -> rows reserved per job chunk

    # ------------------------------------------------------------------ checks

    def check_reusable(self, identity: Dict[str, Any]) -> bool:
        """True when the folder holds a run with this identity (resume), False when it is
        new or empty (create). Raises JobError for another run's folder or a foreign one."""
        d = self.run_dir
        if d.exists() and not d.is_dir():
            raise JobError(f"out {d} is a file, not a folder")
        if not d.exists() or not any(d.iterdir()):
            return False
        old = self.read_identity()
        if old is None:
            ours = {n for n in os.listdir(d) if not (n.startswith(".") and n.endswith(".tmp"))}
            if self.store_path.exists() and not self.chunk_dir.exists() and ours <= {STORE, RUN_FILE}:
                return False  # a creation that was killed before it finished: start it again
            raise JobError(f"out {d} exists and is not a pathattr run folder; refusing to write into it "
                           f"(choose an empty or new folder)")
        diff = identity_diff(old, identity)
        if diff:
            raise JobError(f"out {d} holds a run with different settings; refusing to mix them. Differences "
                           f"(stored -> now): " + "; ".join(diff) + ". Use another --out, or delete the folder to start over.")
        return True

    def read_identity(self) -> Optional[Dict[str, Any]]:
        meta = self.store_path / "zarr.json"
        if not meta.is_file():
            return None
        try:
            return json.loads(meta.read_text()).get("attributes", {}).get(ID_KEY)
        except ValueError:
            return None

    # ------------------------------------------------------------------ create / open

    def create(self, identity: Dict[str, Any], n: int, schema: Dict[str, Any], chunk_size: int,
               preview, run_info: Dict[str, Any], ragged: Optional[Dict[str, Any]] = None) -> None:
        """Create every array (overwriting a half-created store), then the identity last:
        a store without identity is unfinished and is created again by the next run.

        schema: name -> (trailing shape, dtype) of each per-item array, e.g.
        {"attributions": ((1, 8, 8), "float32"), "delta": ((), "float32")}.
        preview: the first inputs (None: no preview array).
        ragged: name -> (rows per job chunk C, dtype) of flat arrays whose job chunk k owns
        rows [k * C, (k + 1) * C): one Zarr chunk each, so one writer per file as above.
        """
        zarr = _zarr()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(str(self.store_path), mode="w")
        for name, (tail, dtype) in schema.items():
            tail = tuple(int(s) for s in tail)
            root.create_array(name, shape=(n,) + tail, chunks=(chunk_size,) + tail, dtype=dtype, fill_value=0)
        n_chunks = -(-n // chunk_size)
        for name, (cap, dtype) in (ragged or {}).items():
            fill = "" if dtype == "str" else 0
            root.create_array(name, shape=(n_chunks * int(cap),), chunks=(int(cap),), dtype=dtype, fill_value=fill)
        if preview is not None:
            pv = np.ascontiguousarray(preview, dtype=np.float32)
            root.create_array("preview_inputs", shape=pv.shape, chunks=pv.shape, dtype="float32", fill_value=0)
            root["preview_inputs"][...] = pv
        write_json_atomic(self.run_dir / RUN_FILE, run_info)
        extra = {"ragged": {name: int(cap) for name, (cap, _) in ragged.items()}} if ragged else {}
        root.attrs.update({ID_KEY: identity, "format": FORMAT, **extra})
        self.chunk_dir.mkdir(exist_ok=True)

    def open(self) -> "RunStore":
        root = _zarr().open_group(str(self.store_path), mode="r+")
        self._arrays = {name: arr for name, arr in root.arrays()}
        self._ragged = dict(root.attrs.get("ragged", {}))
        self.chunk_dir.mkdir(exist_ok=True)
        return self

    def remove_partial_files(self) -> int:
        """Delete temporary files a killed writer left behind (zarr's *.partial, ours .*.tmp)."""
        n = 0
        for p in list(self.run_dir.rglob("*.partial")) + list(self.run_dir.rglob(".*.tmp")):
            p.unlink(missing_ok=True)
            n += 1
        return n

    @property
    def arrays(self) -> Dict[str, Any]:
        return self._arrays

    # ------------------------------------------------------------------ chunks

    def marker(self, k: int) -> Path:
        return self.chunk_dir / f"chunk-{k:06d}.json"

    def finished(self) -> Dict[int, Dict[str, Any]]:
        """Finished chunks (from their markers): chunk id -> marker content."""
        out = {}
        if not self.chunk_dir.is_dir():
            return out
        for p in sorted(self.chunk_dir.glob("chunk-*.json")):
            try:
                out[int(p.stem.split("-")[1])] = json.loads(p.read_text())
            except (ValueError, IndexError):
                continue  # not one of ours: ignored, the chunk is recomputed
        return out

    def write_chunk(self, k: int, start: int, data: Dict[str, np.ndarray], info: Dict[str, Any]) -> None:
        """Write chunk k's rows [start, start + len) of every array (ragged ones from
        k * C on), then its marker."""
        stop = start + len(data["index"])
        for name, values in data.items():
            if name in self._ragged:
                if len(values) > self._ragged[name]:
                    raise JobError(f"chunk {k} has {len(values)} rows of {name}; the store reserves {self._ragged[name]}")
                at = k * self._ragged[name]
                self._arrays[name][at:at + len(values)] = values
            else:
                self._arrays[name][start:stop] = values
        write_json_atomic(self.marker(k), dict(info, chunk=k, start=start, stop=stop))

    def write_manifest(self, manifest: Dict[str, Any]) -> None:
        write_json_atomic(self.run_dir / MANIFEST, manifest)
