"""`pathattr demo`: the main job on the bundled default, end to end.

Attributes the held-out split of the bundled digits model with IG and IDG, prints
throughput, and writes pictures a person would want to look at: inputs beside their
IG and IDG maps, and one example's logit-alpha curve with where IDG's adaptive
samples went and their importance factors (like Fig. 1 and 5 of the IDG paper).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import torch

from ..api import integrated_decision_gradients, integrated_gradients
from ..data.digits import load_digits_data, load_digits_model
from ..engine.runner import ModelRunner


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_demo(out_dir: str = "demo_out", n_steps: int = 50, limit: Optional[int] = None, quiet: bool = False) -> dict:
    from . import viz

    say = (lambda *a: None) if quiet else print
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = load_digits_model()
    run = ModelRunner(model).call  # the engine's one model caller
    images, labels = load_digits_data("test")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    n = images.shape[0]
    with torch.no_grad():
        pred = run(images).argmax(1)
    say(f"pathattr demo: DigitsCNN on {n} held-out digits, accuracy {(pred == labels).float().mean().item():.3f}")

    integrated_gradients(model, images[:4], target=pred[:4], n_steps=n_steps)  # warm-up
    ig, t_ig = _timed(lambda: integrated_gradients(model, images, target=pred, n_steps=n_steps,
                                                   return_convergence_delta=True))
    idg, t_idg = _timed(lambda: integrated_decision_gradients(model, images, target=pred, n_steps=n_steps,
                                                              return_details=True))
    n_probe = idg.settings["n_probe"]
    rows = [
        ("IG (gausslegendre)", t_ig, n_steps, 0, ig[1]),
        (f"IDG (adaptive, N={n_probe})", t_idg, n_steps, n_probe + 1, idg.delta),
    ]
    say(f"{'method':<26}{'images/s':>10}{'ms/image':>10}{'grad evals':>12}{'fwd evals':>11}{'mean |delta|':>14}")
    summary = {"images": n, "n_steps": n_steps, "methods": {}}
    for name, t, grads, fwd, delta in rows:
        say(f"{name:<26}{n / t:>10.1f}{1000 * t / n:>10.2f}{grads:>12d}{fwd:>11d}{delta.abs().mean().item():>14.2e}")
        summary["methods"][name] = {"seconds": t, "images_per_s": n / t, "gradient_evals_per_image": grads,
                                    "forward_evals_per_image": fwd, "mean_abs_delta": delta.abs().mean().item()}

    # One example of each digit 0-7, in order, for the comparison grid.
    picks = [int((labels == d).nonzero()[0]) for d in range(8) if (labels == d).any()]
    grid = viz.attribution_grid(
        images[picks], {"IG": ig[0][picks], "IDG": idg.attributions[picks]}, out / "attributions.png",
        titles=[f"label {int(labels[i])}, pred {int(pred[i])}" for i in picks], sign="absolute_value")

    # The example whose adaptive schedule is most concentrated shows IDG's point best.
    k = int(idg.counts.max(1).values.argmax())
    dense_a = torch.linspace(0, 1, 201, dtype=torch.float64)
    with torch.no_grad():
        pts = dense_a.view(-1, 1, 1, 1).float() * images[k:k + 1]
        dense_f = run(pts)[:, pred[k]]
    curve = viz.path_curve_plot(out / "path_curve.png", idg.probe_alphas, idg.probe_curve[k], idg.alphas[k],
                                importance=idg.importance[k], weights=idg.weights[k],
                                title=f"IDG on digit {int(labels[k])}: logit of class {int(pred[k])} along the path",
                                dense_alphas=dense_a, dense_curve=dense_f)
    torch.save({"images": images, "labels": labels, "target": pred, "ig": ig[0], "idg": idg.attributions,
                "idg_alphas": idg.alphas, "idg_weights": idg.weights}, out / "attributions.pt")
    summary["files"] = [str(grid), str(curve), str(out / "attributions.pt")]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    say(f"wrote {grid}, {curve}, {out / 'attributions.pt'} and {out / 'summary.json'}")
    return summary
