"""The engine: the four stages of every straight-path method, one file each.

    batch     validated inputs, targets, baselines and extra forward args
    schedule  per-example alphas and weights (the C++ scheduler's wrapper)
    points    p = x' + alpha (x - x') for each (example, alpha)
    runner    the only code that calls the user's model (chunks, autocast, OOM back-off)
    fold      acc += sum_k w_k * scale_k * g_k

`PathEngine` ties them together; methods/ call it. See docs/design.md.
"""
from .core import PathBatch, PathEngine, PathIntegral

__all__ = ["PathEngine", "PathBatch", "PathIntegral"]
