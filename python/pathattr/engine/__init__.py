"""The engine: the stages of every straight-path method, one file each.

    batch     validated inputs, targets, baselines and extra forward args
    schedule  per-example alphas and weights (the C++ scheduler's wrapper)
    points    p = x' + alpha (x - x') for each (example, alpha)
    runner    the only code that calls the user's model (chunks, autocast, OOM back-off)
    fold      acc += sum_k w_k * scale_k * g_k

`PathEngine` (core.py) ties them together; methods/ call it. Beside the stages:
checks (argument checks), targets (which scalar is explained), rawoutput (non-tensor
model outputs), packing (tuples of inputs), graphs (CUDA graphs), profiling, deadline.
See docs/design.md.
"""
from .batch import PathBatch
from .core import PathEngine, PathIntegral
from .runner import ModelRunner

__all__ = ["PathEngine", "PathBatch", "PathIntegral", "ModelRunner"]
