"""Train the bundled certainty-aware CNN: ``python -m pathattr.data.train_certainty [--epochs N] [--seed S]``.

This is the script that made ``certainty_cnn.pt`` and ``certainty_cnn.json``. Seeded
and single-threaded on CPU (a rerun with the same torch version reproduces the
weights). Training data: 20,000 "three patches" images (seed S); damage: mixed
binary/continuous certainties, mixed adversarial/noise backgrounds, extents U(0, 1),
10 % undamaged and 20 % fully damaged (c = 0) examples per batch. The checks of seed
004 §A.3.1 are measured on 1,000 fresh images (seed S + 1) and on 1,000 U(0, 1) noise
images, and recorded in the JSON file.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import time
from pathlib import Path

import torch

from ..certainty.model import information_absence, neutrality, train_certainty_model
from .certainty_task import PRIOR, certainty_weights_path, make_patches_data, new_certainty_model


def train(epochs: int = 24, seed: int = 0, n_train: int = 20000, lr: float = 1e-3):
    torch.manual_seed(seed)
    x, y = make_patches_data(n_train, seed)
    model = new_certainty_model()
    t0 = time.perf_counter()
    losses = train_certainty_model(model, x, y, epochs=epochs, batch_size=64, lr=lr, undamaged_fraction=0.1,
                                   empty_fraction=0.2, seed=seed)
    seconds = time.perf_counter() - t0
    xt, yt = make_patches_data(1000, seed + 1)
    noise = torch.rand(1000, 1, 6, 6, generator=torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        acc = float((model.predict(xt).argmax(1) == yt).float().mean())
    neutral = neutrality(model, xt, torch.tensor(PRIOR, dtype=torch.float64))
    info = {
        "model": "CertaintyCNN (pathattr.data.certainty_task)",
        "input": "cat([values (B, 1, 6, 6) in [0, 1], certainty (B, 1, 6, 6)], 1)",
        "task": "three patches, prior (0.5, 0.3, 0.2)",
        "test_accuracy_undamaged": round(acc, 6),
        "information_absence_data": {k: round(v, 6) for k, v in information_absence(model, xt).items()},
        "information_absence_noise": {k: round(v, 6) for k, v in information_absence(model, noise).items()},
        "neutrality": {"mean_probabilities_at_c0": [round(float(v), 6) for v in neutral["mean_probabilities"]],
                       "prior": list(PRIOR), "total_variation": round(neutral["total_variation"], 6)},
        "epochs": epochs, "seed": seed, "n_train": n_train, "lr": lr, "final_loss": round(losses[-1], 6),
        "damage": "certainty mixed (binary / continuous Bernoulli), background mixed (adversarial / noise), "
                  "undamaged_fraction 0.1, empty_fraction 0.2",
        "torch_version": torch.__version__, "train_seconds": round(seconds, 1),
        "date": datetime.date.today().isoformat(),
    }
    return model, info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=certainty_weights_path())
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    model, info = train(a.epochs, a.seed)
    torch.save(model.state_dict(), a.out)
    info["weights_file"] = a.out.name
    info["weights_sha256"] = hashlib.sha256(a.out.read_bytes()).hexdigest()
    a.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
