"""`pathattr attribute`: attribute a whole dataset into a resumable Zarr store.

    config    JobConfig: every setting of a run, and which of them shape the numbers
    inputs    datasets (bundled digits, image folders, .npy/.npz, module:factory); models: apps/loading.py
    store     the Zarr store: arrays, per-chunk commit markers, the manifest, refusal rules
    dist      torchrun / torch.distributed set-up and deterministic chunk sharding
    progress  per-rank tqdm bars, JSON log lines, the summary line
    runner    the loop: DataLoader -> Explainer -> one store chunk at a time
    refs      --references / --bank / --n-baselines: files the paths start from, in the identity by SHA-256
    bank      `pathattr lpi-bank`: build LPI's reference bank for a job's model
    report    `pathattr report RUN_DIR`: an HTML page
"""
from .config import JobConfig, JobError
from .runner import run_job

__all__ = ["JobConfig", "JobError", "run_job"]
