"""Train the bundled DigitsCNN: ``python -m pathattr.data.train_digits [--out PATH] [--epochs N] [--seed S]``.

This is the script that made ``digits_cnn.pt`` and ``digits_cnn.json``. It is seeded
and runs single-threaded with deterministic algorithms on CPU, so a rerun with the same
torch version reproduces the weights; it takes well under a minute on a laptop CPU.
Training uses the "train" split only (with random +-1 pixel shifts as augmentation);
the accuracy on the held-out "test" split is printed and recorded in the JSON file.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .digits import SPLIT_SEED, TEST_SIZE, digits_weights_path, load_digits_data, split_indices
from .models import DigitsCNN, count_parameters


def _random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Shift each image by an independent integer (dy, dx) in [-max_shift, max_shift], zero fill."""
    n, _, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p))
    shifts = torch.randint(0, 2 * p + 1, (n, 2), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):  # n <= batch size; cheap at 8x8
        dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
        out[i] = padded[i, :, dy:dy + h, dx:dx + w]
    return out


def split_fingerprint(split: str = "test") -> str:
    """sha256 of the split's row indices (int64 little-endian): ties the weights to the split."""
    return hashlib.sha256(split_indices(split).astype("<i8").tobytes()).hexdigest()


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return (model(images).argmax(1) == labels).float().mean().item()


def train(epochs: int = 40, seed: int = 0, batch_size: int = 64, lr: float = 3e-3,
          weight_decay: float = 1e-4, verbose: bool = True) -> tuple:
    """Train a DigitsCNN; returns ``(model, info dict)``. Deterministic for a given seed."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = load_digits_data("train")
    x_test, y_test = load_digits_data("test")
    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(y_train) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2
    )
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(y_train), generator=gen)
        total = 0.0
        for s in range(steps_per_epoch):
            b = perm[s * batch_size:(s + 1) * batch_size]
            xb = _random_shift(x_train[b], gen)
            loss = F.cross_entropy(model(xb), y_train[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        if verbose and ((epoch + 1) % 5 == 0 or epoch == epochs - 1):
            print(f"epoch {epoch + 1:3d}/{epochs}  loss {total / len(y_train):.4f}  "
                  f"test acc {accuracy(model, x_test, y_test):.4f}", flush=True)
    model.eval()
    info = {
        "model": "DigitsCNN",
        "train_accuracy": round(accuracy(model, x_train, y_train), 6),
        "test_accuracy": round(accuracy(model, x_test, y_test), 6),
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
        "split": {"test_size": TEST_SIZE, "random_state": SPLIT_SEED, "stratified": True,
                  "test_indices_sha256": split_fingerprint("test")},
        "input": "(B, 1, 8, 8) float32, sklearn digits pixel value / 16, in [0, 1]",
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "optimizer": f"AdamW(lr={lr}, weight_decay={weight_decay}), one-cycle schedule",
        "augmentation": "random integer shifts of +-1 pixel, zero fill",
        "param_count": count_parameters(model),
        "torch_version": torch.__version__,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "date": datetime.date.today().isoformat(),
    }
    return model, info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=digits_weights_path(),
                        help="where to write the state dict (default: the package file); "
                             "a .json with the same stem is written next to it")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")

    torch.set_num_threads(1)
    try:
        torch.use_deterministic_algorithms(True)
    except Exception:  # pragma: no cover - older torch
        pass

    model, info = train(epochs=args.epochs, seed=args.seed)
    print(f"train accuracy {info['train_accuracy']:.4f}  test accuracy {info['test_accuracy']:.4f}  "
          f"params {info['param_count']}  ({info['train_seconds']} s)")

    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    info["weights_file"] = args.out.name
    info["weights_sha256"] = hashlib.sha256(args.out.read_bytes()).hexdigest()
    json_path = args.out.with_suffix(".json")
    json_path.write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} kB) and {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
