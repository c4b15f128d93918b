"""`pathattr lpi-bank`: build LPI's reference bank for a job's model from a data set, once.

The model and data are named as in `pathattr attribute` (apps/loading.py, job/inputs.py); the default
is the bundled DigitsCNN and the bundled digits TRAINING split (the job's default data
is the held-out split, so the bank never contains the items it explains).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .config import JobConfig, JobError
from ..loading import load_model
from .inputs import open_dataset


def build_bank_file(out: str, model: Optional[str] = None, checkpoint: Optional[str] = None,
                    data: Optional[str] = None, preprocess: Optional[str] = None, n_neighbourhoods: int = 7,
                    n_references: int = 20, seed: int = 0, n_init: int = 10, batch_size: int = 256,
                    limit: Optional[int] = None, strict: bool = False) -> Dict[str, Any]:
    """Build `pathattr.build_reference_bank(model, data, C, m, seed, batch_size, n_init)`
    and save it to `out` (a .pt file, `ReferenceBank.load`-able). `limit`: only the first N
    items of the data. Returns the bank's settings plus out and fingerprint.
    Raises JobError for files that are missing or unreadable, ValueError/TypeError for bad values."""
    from ...baselines.lpi_bank import build_reference_bank

    if not isinstance(out, str) or not out:
        raise ValueError("out must name the bank file to write")
    # Reuse the job's checks for the model/data/preprocess options.
    cfg = JobConfig(out=out, model=model, checkpoint=checkpoint, data=data, preprocess=preprocess, limit=limit,
                    strict=strict).check()
    net = load_model(cfg.model, cfg.checkpoint)[0]
    if data is None:
        if cfg.preprocess is not None:
            raise JobError("preprocess applies to --data; the bundled digits are already in the model's input space")
        from ...data.digits import load_digits_data

        dataset: Any = load_digits_data("train")[0]
    else:
        dataset = open_dataset(data, cfg.preprocess_settings(), strict)
    n = len(dataset)
    if limit is not None and limit < n:
        dataset = dataset[:limit] if isinstance(dataset, torch.Tensor) else torch.utils.data.Subset(dataset, range(limit))
    bank = build_reference_bank(net, dataset, n_neighbourhoods, n_references, seed=seed, batch_size=batch_size,
                                n_init=n_init)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    bank.save(path)
    return dict(bank.settings, out=str(path), fingerprint=bank.fingerprint)
