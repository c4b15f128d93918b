"""Make the README's Burnt Snacks picture: ``python docs/make_scenario_pictures.py [OUT_DIR]``.

IG and IDG (zero baseline) on the plain model and ICG on the certainty-aware one, for
held-out images, explaining class 1 ("overcooked"); the target squares are outlined.
ICG is IG along the certainty channel: inputs ``(x, c = 1)``, baseline ``(x, c = 0)``,
and the attribution of a pixel is the one its certainty channel receives. Also prints
the share of |attribution| that falls inside the target squares, over class-1 images.
About a minute on a laptop CPU.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

import pathattr as pa
from pathattr.apps import viz
from pathattr.data import scenario_models as sm


def attributions(x: torch.Tensor, n_steps: int = 32) -> dict:
    """``{method: (n, H, W)}`` attributions of class 1 for images ``x`` ``(n, 1, H, W)``."""
    plain, cert = sm.load_burnt_snacks_model(), sm.load_burnt_snacks_certainty_model()
    target = torch.ones(len(x), dtype=torch.long)
    ig = pa.integrated_gradients(plain, x, target=target, n_steps=n_steps)
    idg = pa.integrated_decision_gradients(plain, x, target=target, n_steps=n_steps)
    icg = pa.integrated_gradients(cert, sm.with_certainty(x, 1.0), baselines=sm.with_certainty(x, 0.0),
                                  target=target, n_steps=n_steps, method="riemann_middle")
    return {"IG (zero baseline)": ig[:, 0], "IDG (zero baseline)": idg[:, 0], "ICG (certainty model)": icg[:, 1]}


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path(__file__).resolve().parent
    torch.manual_seed(0)
    held = sm.burnt_snacks_heldout(160)
    # Share of |attribution| inside the target squares, class-1 images.
    ones = held.labels == 1
    maps = attributions(held.images[ones])
    mask = held.masks[ones].double()
    print(f"{int(ones.sum())} class-1 images; target squares cover {mask.mean().item():.1%} of the pixels")
    for name, a in maps.items():
        mag = a.double().abs()
        inside = (mag * mask).flatten(1).sum(1) / mag.flatten(1).sum(1).clamp_min(1e-30)
        print(f"  {name:24s} |attr| inside the targets: median {inside.median().item():.1%}, "
              f"mean {inside.mean().item():.1%}")
    # Picture: three class-1 images with light decoys, one class-0 image.
    light = torch.tensor([any(k == "square" and v > 0.5 for k, v, *_ in o) for o in held.objects])
    pick = torch.cat([torch.nonzero(ones & light)[:3, 0], torch.nonzero(~ones)[:1, 0]])
    cols = attributions(held.images[pick])
    titles = [f"class {int(held.labels[i])}" for i in pick]
    path = viz.comparison_grid(held.images[pick], cols, out / "burnt_snacks.png", sign="all",
                               scale="map", masks=held.masks[pick], titles=titles)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
