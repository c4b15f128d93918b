"""Reference sets for the methods that average over many baselines (docs/methods.md §6, §7).

A reference set is a tensor (R, *shape) or a `torch.utils.data.Dataset` whose items
are inputs or tuples starting with one (e.g. (image, label)). Only the items that are
drawn are read from a Dataset, so a large data set never has to fit in memory.

Sampling recipe (the references in `reference/` redraw with the same two lines, so
the same seed gives the same references and alphas there):

    g = torch.Generator().manual_seed(seed)
    index = torch.randint(R, (B, J), generator=g)          # with replacement (EG, IG_D)
    alphas = lo + (hi - lo) * torch.rand((B, J, k), generator=g, dtype=torch.float64)

(LPI's references are fixed by its bank, so it draws only the alphas, from a fresh
generator seeded the same way.) Results are deterministic given the seed and the batch.

Row (b, j) of the path batch pairs input b with reference index[b, j] and its own k
alphas alphas[b, j, :]: the pairing is explicit, never inferred from a flat layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch

from ..engine.checks import check_finite, check_seed, check_steps


def check_reference_set(references: Any, name: str = "baselines", like: Optional[torch.Tensor] = None) -> int:
    """The number R >= 1 of references in a tensor (R, *shape) or a Dataset (or, for a
    tuple of inputs, a tuple of tensors (R, *shape_i) with one R: engine/packing.py).

    With `like` (the inputs), also their shape (a Dataset's first item) and device. A
    tensor's values are checked finite last (after the cheaper checks); a Dataset's
    items when they are drawn (`gather_references`)."""
    if isinstance(references, (tuple, list)) and references and all(isinstance(r, torch.Tensor) for r in references):
        sizes = [check_reference_set(r, f"{name}[{i}]") for i, r in enumerate(references)]
        if len(set(sizes)) != 1:
            raise ValueError(f"{name}: every part of a tuple reference set must hold the same number of references; "
                             f"got {sizes}")
        return sizes[0]
    if isinstance(references, torch.Tensor):
        if references.dim() < 1:
            raise ValueError(f"{name} must be a reference set of shape (R, *input_shape), got a 0-d tensor")
        if not references.is_floating_point():
            raise TypeError(f"{name} must be a floating-point reference set, got dtype {references.dtype}")
        n = references.shape[0]
        if like is not None:
            _check_like(tuple(references.shape[1:]), references.device, like, name)
        if n:
            check_finite(references, name)
    elif isinstance(references, torch.utils.data.Dataset):
        try:
            n = len(references)
        except TypeError:
            raise TypeError(f"{name} must be a Dataset with a length (a map-style Dataset), got {type(references).__name__}")
    else:
        raise TypeError(f"{name} must be a tensor (R, *input_shape) or a torch.utils.data.Dataset, "
                        f"got {type(references).__name__}")
    if n == 0:
        raise ValueError(f"{name} is an empty reference set: it needs at least one reference")
    if like is not None and not isinstance(references, torch.Tensor):
        item = _item(references, 0, name)
        _check_like(tuple(item.shape), None, like, name)  # items move to the inputs' device when drawn
    return int(n)


def _check_like(shape, device, like: torch.Tensor, name: str) -> None:
    """References of one input's shape, on the inputs' device (device None: not checked)."""
    want = tuple(like.shape[1:])
    if shape != want:
        raise ValueError(f"{name} must hold references of one input's shape {want}; got references of shape {shape}")
    if device is not None and device != like.device:
        raise ValueError(f"{name} is on {device} but inputs are on {like.device}")


def gather_references(references: Any, index: torch.Tensor, like: torch.Tensor, name: str = "baselines") -> torch.Tensor:
    """References at `index` (any shape), as a tensor index.shape + like.shape[1:] in like's dtype and device.

    Checks that every reference has the shape of one input and is finite.
    """
    shape = tuple(like.shape[1:])
    flat = index.reshape(-1)
    if isinstance(references, (tuple, list)):
        raise TypeError(f"{name} is a tuple of reference sets, which goes with a tuple of inputs; for one input tensor "
                        f"pass one reference set (R, *{shape})")
    if isinstance(references, torch.Tensor):
        if tuple(references.shape[1:]) != shape:
            raise ValueError(f"{name} must have shape (R, *{shape}) to match the inputs; got {tuple(references.shape)}")
        if references.device != like.device:
            raise ValueError(f"{name} is on {references.device} but inputs are on {like.device}")
        rows = references.index_select(0, flat.to(references.device))
    else:
        unique, inverse = torch.unique(flat, return_inverse=True)
        items = [_item(references, int(i), name) for i in unique.tolist()]
        for t in items:
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} holds items of shape {tuple(t.shape)}; expected one input's shape {shape}")
        rows = torch.stack(items).to(like.device).index_select(0, inverse.to(like.device))
    rows = rows.to(dtype=like.dtype).reshape(tuple(index.shape) + shape).contiguous()
    if rows.numel():
        check_finite(rows.reshape(-1, *shape) if shape else rows.reshape(-1), name)
    return rows


def _item(dataset, i: int, name: str) -> torch.Tensor:
    item = dataset[i]
    if isinstance(item, (tuple, list)):
        if not item:
            raise ValueError(f"{name}[{i}] is an empty tuple; expected an input or (input, ...)")
        item = item[0]
    if not isinstance(item, torch.Tensor):
        raise TypeError(f"{name}[{i}] must be a tensor (or a tuple starting with one), got {type(item).__name__}")
    if not item.is_floating_point():
        raise TypeError(f"{name}[{i}] must be a floating-point tensor, got dtype {item.dtype}")
    return item


def draw(n_refs: int, batch: int, per_input: int, k: int, seed: int, lo: float = 0.0,
         hi: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """The sampling recipe of the module docstring: index (B, J) int64 and alphas (B, J, k) float64, on the CPU."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(n_refs, (batch, per_input), generator=g)
    alphas = lo + (hi - lo) * torch.rand((batch, per_input, k), generator=g, dtype=torch.float64)
    return index, alphas


def draw_alphas(batch: int, per_input: int, k: int, seed: int, lo: float, hi: float) -> torch.Tensor:
    """Alphas only (LPI, whose references are fixed): (B, J, k) float64 ~ U(lo, hi), on the CPU."""
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand((batch, per_input, k), generator=g, dtype=torch.float64)


@dataclass(frozen=True)
class DistributionBaseline:
    """A baseline distribution D for IG_D / IDG_D = E_{x'~D} IG(x; x') (docs/methods.md §7).

    Pass it as `baselines=` to `integrated_gradients`, `integrated_decision_gradients`
    or `Explainer.attribute` (methods "ig" and "idg"). Build it with
    `distribution_baseline(references, n_baselines=None, seed=0)`.
    """

    references: Any  # tensor (R, *shape) or Dataset
    n_baselines: Optional[int]  # None: every reference for every input (exact mean over the set)
    seed: int
    size: int  # R

    def index(self, batch: int) -> torch.Tensor:
        """(B, K) reference indices for a batch of B inputs."""
        if self.n_baselines is None:
            return torch.arange(self.size).view(1, -1).expand(batch, -1)
        return draw(self.size, batch, self.n_baselines, 1, self.seed)[0]


def distribution_baseline(references: Any, n_baselines: Optional[int] = None, seed: int = 0) -> DistributionBaseline:
    """A distribution baseline for IG / IDG: IG_D(x) = E_{x' ~ D} IG(x; x') (docs/methods.md §7).

    Args:
        references: the distribution's samples, a tensor (R, *input_shape) or a Dataset
            (items are inputs or tuples starting with one).
        n_baselines: None (default) uses all R references for every input: the exact
            mean over the set (R paths per input). An int K draws K references per
            input, with replacement, from a torch.Generator seeded with `seed`.
        seed: the sampling seed (only used when n_baselines is given).

    Completeness: sum_i IG_D,i = F(x) - mean_k F(x'_k) up to quadrature error; the
    convergence delta reported is that difference. Cost: K times the method's cost
    per input (all K paths of all inputs run as one batch of straight paths).
    """
    n = check_reference_set(references, "references")
    k = check_steps(n_baselines, "n_baselines", allow_none=True)
    return DistributionBaseline(references, k, check_seed(seed), n)
