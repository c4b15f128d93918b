"""The job loop: DataLoader -> Explainer -> one store chunk at a time, on every rank.

Each chunk is computed from its own items only, in the same batches whatever rank
or session computes it, so a resumed or sharded run writes the same numbers as one
uninterrupted process (on the same device and precision).
"""
from __future__ import annotations

import inspect
import os
import platform
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ... import __version__, methods
from ...explainer import Explainer
from ..loading import load_model, precision, resolve_device
from . import dist as dist_mod
from . import refs as refs_mod
from .config import JobConfig, JobError
from .inputs import model_fingerprint, open_dataset
from .progress import Progress
from .store import PREVIEW, RunStore

# With --rtol, per item beside its attributions (docs/methods.md §14): gradient evaluations,
# the estimated relative L2 error of its map, whether it reached rtol.
TOLERANCE_ARRAYS = (("n_evaluations", np.int64), ("error_estimate", np.float32), ("converged", np.uint8))


class _Job:
    """One rank's view of a run: its data, model, explainer and store."""

    def __init__(self, cfg: JobConfig, d: dist_mod.Dist, device: torch.device):
        self.cfg, self.dist, self.device = cfg, d, device
        self.method = methods.get(cfg.method)  # ValueError naming the method
        # What the paths start from: --baseline, --references or --bank (job/refs.py).
        self.kind = refs_mod.baseline_kind(self.method.NAME, cfg)
        prep = cfg.preprocess_settings()
        self.dataset = open_dataset(cfg.data, prep, cfg.strict)
        n_all = len(self.dataset)
        if n_all == 0:
            raise JobError(f"data {cfg.data or 'bundled digits'} holds no items")
        self.n = min(n_all, cfg.limit) if cfg.limit else n_all
        x0 = self.dataset[0][0]
        self.shape = tuple(x0.shape)
        model, model_desc, _ = load_model(cfg.model, cfg.checkpoint)
        fingerprint = model_fingerprint(model)
        files: Dict[str, Any] = {}  # file records for the identity
        bank = None
        if self.kind == "bank":  # checked against the weights as loaded, before any cast
            bank, files["bank"] = refs_mod.load_bank(cfg.bank, model, self.shape)
        model, self.in_dtype, autocast = precision(model, cfg.dtype)
        if bank is not None and cfg.dtype == "fp64":
            bank = refs_mod.retag_bank(bank, model)
        self.model = model.to(device)
        kw = dict(cfg.method_settings)
        if cfg.steps is not None:
            kw["n_steps"] = cfg.steps
        if bank is not None:
            kw["bank"] = bank
        # Passed as `baselines` to every call: the constant, EG's reference set (on the
        # device, in the inputs' dtype), a distribution baseline, or None (LPI's bank).
        self.baselines: Any = float(cfg.baseline) if self.kind == "constant" else None
        if self.kind in ("references", "distribution"):
            refs, files["references"] = refs_mod.load_references(cfg.references, self.shape, self.in_dtype)
            self.baselines = refs.to(device)
            if self.kind == "distribution":
                from ...baselines.sets import distribution_baseline

                self.baselines = distribution_baseline(self.baselines, n_baselines=cfg.n_baselines)
        try:
            self.explainer = Explainer(self.model, method=cfg.method, output=cfg.output,
                                       internal_batch_size=cfg.internal_batch_size,
                                       autocast=autocast, **kw)
        except TypeError as exc:  # an unknown keyword for this method's settings()
            known = ", ".join(inspect.signature(self.method.settings).parameters)
            raise JobError(f"method {cfg.method!r} does not take these settings ({exc}); its settings are: "
                           f"{known} (give them with --set KEY=VALUE; --steps sets n_steps)") from exc
        st = self.explainer.settings
        self.tolerance = {k: st[k] for k in ("rtol", "min_steps", "max_steps")} if st.get("rtol") is not None else None
        data_desc = self.dataset.describe()
        self.skipped = data_desc.pop("skipped", [])
        self.identity = {
            "method": self.explainer.method,
            "method_settings": _jsonable({k: v for k, v in self.explainer.settings.items() if k not in ("bank", "references")}),
            "model": model_desc, "model_fingerprint": fingerprint,
            "data": dict(data_desc, items=self.n, item_shape=list(self.shape)), "preprocess": prep,
            "batch_size": cfg.batch_size, "chunk_size": cfg.chunk_size,
            "internal_batch_size": cfg.internal_batch_size, "dtype": cfg.dtype, "store_dtype": cfg.store_dtype,
            "target": cfg.target, "baseline": float(cfg.baseline) if self.kind == "constant" else None,
            "output": cfg.output,
        }
        # Only runs that use them record these keys: a constant-baseline run's identity is
        # unchanged, so its stores written before --references existed still resume.
        self.identity.update(files)
        if self.kind == "distribution":
            self.identity["n_baselines"] = cfg.n_baselines
        self.store = RunStore(Path(cfg.out))
        self.n_chunks = -(-self.n // cfg.chunk_size)
        self._first: Optional[Dict[str, np.ndarray]] = None  # chunk 0's first batch, when computed at creation
        self._first_seconds = 0.0  # ... and the time it took, counted in chunk 0's time
        self.progress: Optional[Progress] = None  # made before the first model call (the bar shows from the start)

    # ------------------------------------------------------------------ one batch

    def compute(self, x: torch.Tensor, y: torch.Tensor, start: int) -> Dict[str, np.ndarray]:
        """Attribute one batch; return every per-item array for its rows."""
        cfg = self.cfg
        x = x.to(self.device, dtype=self.in_dtype, non_blocking=True)
        if cfg.target == "pred":
            target = None
        elif cfg.target == "label":
            if (y < 0).any():
                bad = int(start + (y < 0).nonzero()[0, 0])
                raise JobError(f"target 'label': item {bad} has no label (the data carry none)")
            target = y.to(self.device)
        else:
            target = int(cfg.target)
        # Details carry the convergence delta where the method has one (a completeness
        # property); AGI has none and stores no delta array (asking for one is an error).
        res = self.explainer.attribute(x, baselines=self.baselines, target=target, return_details=True)
        f_x, f_b = res.end_value, res.start_value
        eng = self.explainer.engine
        if self.kind == "constant" and (f_x is None or f_b is None):  # one forward pass for both ends
            f_x, f_b = eng.endpoints(eng.prepare(x, float(cfg.baseline), res.target))
        if f_x is None:
            f_x = eng.endpoints(eng.prepare(x, None, res.target), baselines=False)[0]
        if f_b is None:  # the reference expectation (EG: mean F(r_j); LPI: sum rho_j F(r_j)) when given
            f_b = torch.full_like(f_x, float("nan"))
        out = {
            "attributions": res.attributions.detach().to("cpu", torch.float32).numpy().astype(cfg.store_dtype),
            "index": np.arange(start, start + x.shape[0], dtype=np.int64),
            "label": y.cpu().numpy().astype(np.int64),
            "target": res.target.cpu().numpy().astype(np.int64),
            "logit": _f32(f_x), "baseline_value": _f32(f_b),
        }
        if res.delta is not None:
            out["delta"] = _f32(res.delta)
        if res.probe_curve is not None:
            out["probe_curve"] = _f32(res.probe_curve)
        if self.tolerance:
            for name, dtype in TOLERANCE_ARRAYS:
                out[name] = res.extras[name].detach().cpu().numpy().astype(dtype)
        return out

    # ------------------------------------------------------------------ store set-up

    def prepare_store(self) -> None:
        """Rank 0 checks (refuses) or creates the store; every rank then opens it."""
        err = None
        if self.dist.rank == 0:
            try:
                reuse = self.store.check_reusable(self.identity)
                self.store.remove_partial_files()  # what a killed writer left; no rank writes yet
                if not reuse:
                    self._create()
            except JobError as exc:
                err = str(exc)
        err = self.dist.broadcast(err)
        if err is not None:
            raise JobError(err)
        self.store.open()

    def _create(self) -> None:
        first = self.batches([0])[0]  # chunk 0 is rank 0's, and its first batch is computed here
        self.open_progress(done=0)  # a fresh store: nothing done, and the bar shows during that batch
        k = max(min(PREVIEW, self.n), len(first))
        items = [self.dataset[i] for i in range(k)]
        x = torch.stack([it[0] for it in items])  # as the DataLoader's default collate stacks them
        y = torch.tensor([it[1] for it in items], dtype=torch.long)
        # The first batch tells which diagnostics this method reports, so that every
        # array exists before any rank writes; its result is kept for the loop, which
        # would compute exactly this batch (same items, same batch) first.
        t0 = time.perf_counter()
        try:
            self._first = self.compute(x[:len(first)], y[:len(first)], 0)
        except RuntimeError as exc:  # the model's own error, e.g. a shape that does not fit
            raise JobError(f"the model failed on the first batch of the data (inputs of shape "
                           f"{tuple(x.shape[1:])}): {str(exc).strip().splitlines()[0]}{self._hint()}") from exc
        self._first_seconds = time.perf_counter() - t0
        schema = {name: (v.shape[1:], str(v.dtype)) for name, v in self._first.items()}
        x = x[:min(PREVIEW, self.n)]
        info = {"config": _jsonable(self.cfg.as_dict()), "identity": self.identity, "skipped": self.skipped,
                "pathattr_version": __version__, "torch_version": torch.__version__,
                "python": platform.python_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.store.create(self.identity, self.n, schema, self.cfg.chunk_size, x.numpy(), info)

    def _hint(self) -> str:
        """What a method needs of the model that a plain classifier lacks, said after its error."""
        if self.explainer.method != "icg" or hasattr(self.model, "certainty_channels"):
            return ""
        c = self.shape[0] if self.shape else 1
        cc = self.explainer.settings.get("certainty_channels") or 1
        return (f". --method icg needs a certainty-aware model: ICG runs it on the values and their certainty "
                f"concatenated along dim 1 ({c} value + {cc} certainty channels = {c + cc}) and integrates over "
                f"the certainty (docs/methods.md §8). Give --model a pathattr.CertaintyModel (module:factory) "
                f"or a network trained on that joint input (--set certainty_channels=N for N per position)")

    # ------------------------------------------------------------------ the loop

    def batches(self, chunks: List[int]) -> List[List[int]]:
        cs, bs = self.cfg.chunk_size, self.cfg.batch_size
        out = []
        for k in chunks:
            start, stop = k * cs, min(self.n, (k + 1) * cs)
            out += [list(range(b, min(stop, b + bs))) for b in range(start, stop, bs)]
        return out

    def open_progress(self, done: int) -> Progress:
        """This rank's bar over its items, `done` of them already in the store (made once)."""
        if self.progress is None:
            d = self.dist
            n_mine = sum(self._size(k) for k in dist_mod.shard(self.n_chunks, d.rank, d.world_size))
            self.progress = Progress(d.rank, d.world_size, n_mine, done, self.cfg.quiet, self.cfg.log_json)
        return self.progress

    def run(self, session: str) -> Dict[str, Any]:
        cfg, d = self.cfg, self.dist
        mine = dist_mod.shard(self.n_chunks, d.rank, d.world_size)
        done = self.store.finished()
        pending = [k for k in mine if k not in done]
        n_mine = sum(self._size(k) for k in mine)
        n_pending = sum(self._size(k) for k in pending)
        prog = self.open_progress(n_mine - n_pending)
        prog.log("start", items=n_mine, pending=n_pending, chunks=len(pending), device=str(self.device),
                 world_size=d.world_size, pid=os.getpid(), session=session)
        batches = self.batches(pending)
        kept = self._first if pending and pending[0] == 0 else None
        if kept is not None:
            batches = batches[1:]
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=batches,
                                             num_workers=cfg.workers, pin_memory=self.device.type == "cuda")
        it = iter(loader)
        t_run = time.perf_counter()
        # One writer thread: chunk k is written (data, then its marker) while chunk k + 1
        # is computed. At most one write is in flight, so at most two chunks are in memory.
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pathattr-store")
        in_flight = None

        def committed(job):
            fut, k, sec, extra = job
            fut.result()  # re-raises a failed write here, in the main thread
            prog.advance(self._size(k), **extra)
            prog.log("chunk", chunk=k, items=self._size(k), seconds=round(sec, 4),
                     items_per_s=round(self._size(k) / sec, 2), **extra)

        try:
            for k in pending:
                t0 = time.perf_counter()
                start, parts = k * cfg.chunk_size, ([kept] if k == 0 and kept is not None else [])
                first_sec = self._first_seconds if parts else 0.0  # the kept batch's time belongs to chunk 0
                while sum(len(p["index"]) for p in parts) < self._size(k):
                    x, y = next(it)
                    parts.append(self.compute(x, y, start + sum(len(p["index"]) for p in parts)))
                data = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
                sec = time.perf_counter() - t0 + first_sec
                info = {"rank": d.rank, "session": session, "seconds": sec, "items": self._size(k),
                        "device": str(self.device), "t_end": time.time()}
                fut = writer.submit(self.store.write_chunk, k, start, data, info)
                if in_flight is not None:
                    committed(in_flight)
                in_flight = (fut, k, sec, self.chunk_summary(data))
            if in_flight is not None:
                committed(in_flight)
        finally:
            writer.shutdown(wait=True)  # a chunk being written is finished (or fails) before we return
            prog.close()
        seconds = time.perf_counter() - t_run
        return {"rank": d.rank, "items": n_pending, "seconds": seconds, "progress": prog}

    def chunk_summary(self, data: Dict[str, np.ndarray]) -> Dict[str, Any]:
        """What a finished chunk adds to the progress bar and its log line: with --rtol,
        its items' mean evaluations and how many reached rtol."""
        if not self.tolerance:
            return {}
        return {"mean_evaluations": round(float(data["n_evaluations"].mean()), 2),
                "converged": int(data["converged"].sum())}

    def summary(self, manifest: Dict[str, Any]) -> str:
        """What the summary line adds: with --rtol, how the items converged."""
        t = manifest.get("tolerance")
        if not t:
            return ""
        return (f" | rtol {t['rtol']:g}: {t['converged']}/{t['items']} converged, {t['mean_evaluations']:.1f} "
                f"evaluations per item (max {t['max_evaluations']}), largest estimated error {t['max_error_estimate']:.2g}")

    def _size(self, k: int) -> int:
        return min(self.n, (k + 1) * self.cfg.chunk_size) - k * self.cfg.chunk_size

    # ------------------------------------------------------------------ the end

    def finalise(self, session: str, wall: float) -> Dict[str, Any]:
        """Rank 0, after every rank is done: check every chunk, write the manifest."""
        done = self.store.finished()
        missing = [k for k in range(self.n_chunks) if k not in done]
        if missing:
            raise JobError(f"chunks {missing[:10]} are not finished after every rank stopped; rerun to complete them")
        sessions: Dict[str, Dict[str, Any]] = {}
        for k, m in sorted(done.items()):
            s = sessions.setdefault(m.get("session", "?"), {"items": 0, "compute_seconds": 0.0, "ranks": set(),
                                                            "t_first": float("inf"), "t_last": 0.0})
            s["items"] += m["items"]
            s["compute_seconds"] += m["seconds"]
            s["ranks"].add(m["rank"])
            s["t_first"] = min(s["t_first"], m["t_end"] - m["seconds"])
            s["t_last"] = max(s["t_last"], m["t_end"])
        for sid, s in sessions.items():
            s["ranks"] = len(s.pop("ranks"))
            s["wall_seconds"] = wall if sid == session else s.pop("t_last") - s.pop("t_first")
            s.pop("t_first", None), s.pop("t_last", None)
            s["items_per_s"] = s["items"] / s["wall_seconds"] if s["wall_seconds"] > 0 else None
        new = sessions.get(session, {}).get("items", 0)
        manifest = {
            "complete": True, "items": self.n, "chunks": self.n_chunks, "chunk_size": self.cfg.chunk_size,
            "finished_chunks": sorted(done), "skipped": self.skipped, "world_size": self.dist.world_size,
            "device": str(self.device), "last_session": session, "sessions": sessions,
            "throughput": {"items": new, "wall_seconds": wall, "items_per_s": new / wall if wall > 0 and new else None},
        }
        if self.tolerance:  # over every item of the store, whichever session computed it
            a = self.store.arrays
            n_ev, est, conv = a["n_evaluations"][...], a["error_estimate"][...], a["converged"][...].astype(bool)
            manifest["tolerance"] = dict(
                self.tolerance, items=int(n_ev.size), converged=int(conv.sum()), evaluations=int(n_ev.sum()),
                mean_evaluations=float(n_ev.mean()), max_evaluations=int(n_ev.max()),
                max_error_estimate=float(est.max()))
        self.store.write_manifest(manifest)
        return manifest


def run_job(cfg: JobConfig) -> Dict[str, Any]:
    """Run (or resume) `pathattr attribute` with `cfg`; returns the manifest on rank 0
    (on other ranks: {"rank": r}). Raises JobError / ValueError / TypeError for bad input."""
    cfg.check()
    wants_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    d = dist_mod.setup(wants_cuda)
    job = None
    try:
        device = resolve_device(cfg.device, d.local_rank)
        if cfg.is_text():  # a .jsonl / .csv / .tsv of texts: the ragged text run (job/text.py)
            from .text import TextJob

            job = TextJob(cfg, d, device)
        else:
            job = _Job(cfg, d, device)
        # The clock starts before the store is made: creating it computes the first batch,
        # which counts in this run's time and items/s like every other batch.
        t0 = time.perf_counter()
        job.prepare_store()
        session = d.broadcast(uuid.uuid4().hex[:12])
        mine = job.run(session)
        d.barrier()
        wall = time.perf_counter() - t0
        if d.rank != 0:
            return {"rank": d.rank}
        manifest = job.finalise(session, wall)
        tp = manifest["throughput"]
        rate = f"{tp['items_per_s']:.1f} items/s" if tp["items_per_s"] else "nothing left to compute"
        resumed = job.n - tp["items"]
        line = (f"pathattr attribute: {job.n} items -> {job.store.store_path} | this run: {tp['items']} computed "
                f"({resumed} already done) in {wall:.2f} s, {rate}, {d.world_size} rank(s) on {device}")
        if job.skipped:
            line += f" | {len(job.skipped)} unreadable images skipped (listed in manifest.json)"
        line += job.summary(manifest)
        mine["progress"].summary(line)
        mine["progress"].log("done", **{k: manifest[k] for k in ("items", "chunks", "throughput", "skipped", "tolerance")
                                        if k in manifest})
        return manifest
    finally:
        if job is not None and job.progress is not None:
            job.progress.close()  # a run that failed while creating its store leaves no bar open
        d.close()


def _f32(t: Optional[torch.Tensor]) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


def _jsonable(obj: Any) -> Any:
    """Settings as JSON values (dtypes and other objects by their str)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)
