"""Train the scenario models: ``python -m pathattr.data.train_scenarios [--which NAME|all] [--out-dir DIR]``.

This is the script that made ``burnt_snacks_cnn.pt``, ``burnt_snacks_certainty_cnn.pt``
and ``local_minimum_mlp.pt`` (and a ``.json`` next to each with its held-out accuracy,
seeds and settings). It is seeded and runs single-threaded with deterministic
algorithms on CPU, so a rerun with the same torch version reproduces the weights.
Training data come from ``TRAIN_SEED`` and the accuracy is measured on the
``HELDOUT_SEED`` examples (``scenario_models.burnt_snacks_heldout()`` etc.).

The certainty-aware model is trained with the damage function of docs/methods.md §8 (the ICG paper
A.3.2), implemented here in a few lines so that this script depends on nothing else:
per example an extent e ~ U(0, 1); certainties c ~ Bernoulli(e) or a continuous
Bernoulli with mean e (half each); each pixel kept with probability c, otherwise
replaced by the same pixel of another example of the batch or by U(0, 1) noise (half
each); the model sees ``(damaged image, c)``. A share of the batch is left undamaged
(c = 1), so that the accuracy on ordinary inputs stays high. It starts from the plain
model's weights (certainty-channel weights 0), so ``burnt_snacks`` is trained first.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import scenario_models as sm
from .models import count_parameters
from .scenarios import make_burnt_snacks, make_local_minimum

NAMES = tuple(sm.MODELS)


# ----------------------------------------------------------------------------- damage (docs/methods.md §8)

@functools.lru_cache(maxsize=1)
def _cb_mean_table():
    """(lambda, mean) of the continuous Bernoulli on a grid, for inverting mean -> lambda."""
    lam = np.concatenate([np.logspace(-12, -1, 400), np.linspace(0.1, 0.499, 400),
                          np.linspace(0.501, 0.9, 400), 1.0 - np.logspace(-1, -12, 400)])
    mean = lam / (2 * lam - 1) + 1.0 / (2 * np.arctanh(1 - 2 * lam))
    lam, mean = np.append(lam, 0.5), np.append(mean, 0.5)  # the formula is 0/0 at 1/2
    order = np.argsort(lam)
    return lam[order], mean[order]


def continuous_bernoulli_with_mean(mean: torch.Tensor, shape, gen: torch.Generator) -> torch.Tensor:
    """Samples in [0, 1] from a continuous Bernoulli whose *mean* is ``mean`` (the ICG paper A.3.2).

    The natural parameter lambda concentrates the mean near 1/2; the paper reparameterises
    by the mean, inverting ``mean(lambda)`` numerically (here: interpolation on a table).
    Means outside the reachable range (about [0.036, 0.964]) are clamped to it.
    ``mean`` broadcasts to ``shape``; sampling by the inverse CDF, in float64.
    """
    lam_tab, mean_tab = _cb_mean_table()
    m = mean.detach().cpu().double().numpy()
    lam = torch.as_tensor(np.interp(m, mean_tab, lam_tab), dtype=torch.float64).expand(shape)
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    near_half = (lam - 0.5).abs() < 1e-6
    lam_s = torch.where(near_half, torch.full_like(lam, 0.25), lam)  # keep the formula finite
    x = torch.log1p(u * (2 * lam_s - 1) / (1 - lam_s)) / torch.log(lam_s / (1 - lam_s))
    return torch.where(near_half, u, x).clamp(0.0, 1.0).float()


def damage(x: torch.Tensor, gen: torch.Generator, clean_fraction: float = 0.2) -> torch.Tensor:
    """Damage a batch ``(B, C, H, W)`` and append its certainty: returns ``(B, C + 1, H, W)``.

    Certainty is per pixel (shared by the channels). The four variants (binary or
    continuous certainty x other-example or noise fill) are drawn per example with equal
    probability; a ``clean_fraction`` of the examples keeps c = 1 and is not damaged.
    """
    b = x.shape[0]
    pix = (b, 1, *x.shape[2:])
    e = torch.rand(b, 1, 1, 1, generator=gen)
    binary = torch.rand(b, 1, 1, 1, generator=gen) < 0.5
    c_bin = (torch.rand(pix, generator=gen) < e).float()
    c_cont = continuous_bernoulli_with_mean(e, pix, gen)
    c = torch.where(binary, c_bin, c_cont)
    clean = torch.rand(b, 1, 1, 1, generator=gen) < clean_fraction
    c = torch.where(clean, torch.ones_like(c), c)
    keep = torch.rand(pix, generator=gen) < c  # c in {0, 1} keeps exactly where c = 1
    other = torch.roll(x, shifts=1, dims=0)  # another example of the batch, never itself
    adversarial = torch.rand(b, 1, 1, 1, generator=gen) < 0.5
    fill = torch.where(adversarial, other, torch.rand(x.shape, generator=gen))
    return torch.cat([torch.where(keep, x, fill), c], dim=1)


# ----------------------------------------------------------------------------- training

@torch.no_grad()
def accuracy(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return (model(inputs).argmax(1) == labels).float().mean().item()


def _fit(model, x, y, epochs, batch_size, lr, gen, transform=None, verbose=True, eval_fn=None):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(y) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.2)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for s in range(steps_per_epoch):
            b = perm[s * batch_size:(s + 1) * batch_size]
            xb = x[b] if transform is None else transform(x[b])
            loss = F.cross_entropy(model(xb), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        if verbose:
            extra = f"  held-out acc {eval_fn():.4f}" if eval_fn is not None else ""
            print(f"  epoch {epoch + 1:3d}/{epochs}  loss {total / len(y):.4f}{extra}", flush=True)


# Settings per model: training-set size, epochs, batch size, learning rate.
SETTINGS = {
    "burnt_snacks": dict(n_train=12000, epochs=3, batch_size=64, lr=3e-3),
    "burnt_snacks_certainty": dict(n_train=16000, epochs=8, batch_size=64, lr=1e-3, clean_fraction=0.2),
    "local_minimum": dict(n_train=40000, epochs=20, batch_size=128, lr=1e-2),
}


def _init_from_plain(model: torch.nn.Module, plain_state: dict) -> None:
    """Start the certainty model from the plain one: same layers, certainty-channel weights 0."""
    state = {k: v.clone() for k, v in plain_state.items()}
    w = state["features.0.weight"]  # (16, 1, 3, 3) -> (16, 2, 3, 3)
    state["features.0.weight"] = torch.cat([w, torch.zeros_like(w)], dim=1)
    model.load_state_dict(state)


def train(name: str, seed: int = 0, verbose: bool = True, n_heldout: int = sm.N_HELDOUT,
          init_state: dict = None, **overrides) -> tuple:
    """Train model ``name`` (one of ``NAMES``); returns ``(model, info dict)``. Deterministic.

    ``overrides`` replace entries of ``SETTINGS[name]`` (e.g. ``n_train=256, epochs=1``
    for a smoke test); ``n_heldout`` examples of the held-out seed are scored.
    ``init_state``: for ``"burnt_snacks_certainty"``, the plain model's state dict to
    start from (its image weights; certainty-channel weights start at 0). Damage
    training from scratch also works but needs several times the epochs before the
    square detector "clicks"; starting from the plain model makes it short and reliable.
    """
    if name not in NAMES:
        raise ValueError(f"name must be one of {NAMES}, got {name!r}")
    unknown = set(overrides) - set(SETTINGS[name])
    if unknown:
        raise ValueError(f"unknown settings for {name!r}: {sorted(unknown)}; known: {sorted(SETTINGS[name])}")
    cfg = {**SETTINGS[name], **overrides}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = sm.MODELS[name][1]()
    if init_state is not None:
        if name != "burnt_snacks_certainty":
            raise ValueError("init_state is only used by 'burnt_snacks_certainty'")
        _init_from_plain(model, init_state)
    t0 = time.perf_counter()
    if name == "local_minimum":
        data, held = make_local_minimum(cfg["n_train"], seed=sm.TRAIN_SEED), sm.local_minimum_heldout(n_heldout)
        x_eval, x_train = held.inputs, data.inputs
    else:
        data, held = make_burnt_snacks(cfg["n_train"], seed=sm.TRAIN_SEED), sm.burnt_snacks_heldout(n_heldout)
        x_eval, x_train = held.images, data.images
    if verbose:
        print(f"{name}: {cfg['n_train']} training examples generated in {time.perf_counter() - t0:.1f} s",
              flush=True)
    transform = None
    if name == "burnt_snacks_certainty":
        transform = functools.partial(damage, gen=gen, clean_fraction=cfg["clean_fraction"])
        x_eval = sm.with_certainty(x_eval, 1.0)
    eval_fn = functools.partial(accuracy, model, x_eval, held.labels)
    _fit(model, x_train, data.labels, cfg["epochs"], cfg["batch_size"], cfg["lr"], gen,
         transform=transform, verbose=verbose, eval_fn=eval_fn)
    model.eval()
    info = {
        "model": type(model).__name__,
        "name": name,
        "heldout_accuracy": round(eval_fn(), 6),
        "n_heldout": len(held),
        "heldout_class1_share": round(held.labels.float().mean().item(), 4),
        "train_seed_data": sm.TRAIN_SEED,
        "heldout_seed_data": sm.HELDOUT_SEED,
        "seed": seed,
        **cfg,
        "optimizer": f"AdamW(lr={cfg['lr']}, weight_decay=1e-4), one-cycle schedule",
        "param_count": count_parameters(model),
        "torch_version": torch.__version__,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "date": datetime.date.today().isoformat(),
    }
    if name == "burnt_snacks_certainty":
        info["init"] = "plain burnt_snacks model, certainty weights 0" if init_state is not None else "random"
        info.update(_certainty_checks(model, held.images))
        info["damage"] = ("docs/methods.md §8: e ~ U(0,1) per example; c ~ Bernoulli(e) or continuous Bernoulli "
                          "with mean e; keep ~ Bernoulli(c); fill from another example or U(0,1); "
                          f"{cfg['clean_fraction']:.0%} of examples undamaged")
    return model, info


@torch.no_grad()
def _certainty_checks(model, images: torch.Tensor) -> dict:
    """Seed 004 A.3.1: with c = 0 the output should not depend on x and be near the prior."""
    x0 = sm.with_certainty(images, 0.0)
    p0 = torch.softmax(model(x0), dim=1)[:, 1]
    noise = sm.with_certainty(torch.rand(images.shape, generator=torch.Generator().manual_seed(0)), 0.0)
    p_noise = torch.softmax(model(noise), dim=1)[:, 1]
    return {
        "c0_prob_class1_mean": round(p0.mean().item(), 4),
        "c0_prob_class1_std": round(p0.std().item(), 4),
        "c0_noise_prob_class1_mean": round(p_noise.mean().item(), 4),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", choices=NAMES + ("all",), default="all")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where to write NAME.pt and NAME.json (default: the package folder)")
    parser.add_argument("--seed", type=int, default=0, help="model init and batch-order seed")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    try:
        torch.use_deterministic_algorithms(True)
    except Exception:  # pragma: no cover - older torch
        pass
    for name in (NAMES if args.which == "all" else (args.which,)):
        out = sm.weights_path(name)
        if args.out_dir is not None:
            out = args.out_dir / out.name
        init = None
        if name == "burnt_snacks_certainty":  # start from the plain model made before it
            plain = out.with_name(sm.weights_path("burnt_snacks").name)
            if not plain.is_file():
                parser.error(f"{plain} not found: train burnt_snacks first (--which all does)")
            init = torch.load(plain, map_location="cpu", weights_only=True)
        model, info = train(name, seed=args.seed, init_state=init)
        print(f"{name}: held-out accuracy {info['heldout_accuracy']:.4f}  params {info['param_count']}  "
              f"({info['train_seconds']} s)", flush=True)
        state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, out)
        info["weights_file"] = out.name
        info["weights_sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
        out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
        print(f"wrote {out} ({out.stat().st_size / 1024:.0f} kB) and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
