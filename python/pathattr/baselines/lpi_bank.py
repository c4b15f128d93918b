"""Local Path Integration's reference bank (Yang et al., AAAI 2023; docs/methods.md §6).

Offline, once per model: the model's logits on a reference data set are clustered
with k-means into C neighbourhoods; each neighbourhood is clustered again into m
sub-clusters; a sub-cluster is represented by the real sample nearest its centroid
(in logit space) and weighted by its density = sub-cluster size / neighbourhood size.
The bank stores the C*m representatives, their densities, the C centres, the model's
fingerprint and the settings in one file (plain tensors, loadable with
weights_only=True). Online, `method="lpi"` assigns an input to the nearest centre by
its logits and integrates from that neighbourhood's references (methods/lpi.py).

A neighbourhood with fewer than m samples gets one sub-cluster per sample and is
padded with density-0 copies, so every neighbourhood has m references (regular
shapes; a padded path costs its gradients but adds nothing).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..engine.checks import all_finite, check_positive_int, check_seed, check_steps, first_tensor
from ..engine.runner import ModelRunner
from .sets import check_reference_set, gather_references

FORMAT = "pathattr.lpi.ReferenceBank/1"
_KEYS = ("references", "densities", "centres", "indices", "sizes", "fingerprint", "settings")


def model_fingerprint(model) -> str:
    """SHA-256 of the model's class name and every parameter and buffer (names, dtypes,
    shapes, bytes), independent of the device. Plain callables hash their qualified name."""
    h = hashlib.sha256()
    kind = type(model)
    h.update(f"{kind.__module__}.{kind.__qualname__}:{getattr(model, '__qualname__', '')}".encode())
    if isinstance(model, torch.nn.Module):
        tensors = list(model.named_parameters()) + [("buffer:" + n, b) for n, b in model.named_buffers()]
        for name, t in tensors:
            h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _state_key(model) -> Tuple:
    """Cheap key that changes when any parameter/buffer is replaced or modified in place."""
    if not isinstance(model, torch.nn.Module):
        return (id(model),)
    ts = list(model.parameters()) + list(model.buffers())
    return (id(model),) + tuple((t.data_ptr(), t._version, t.device.type) for t in ts)


@dataclass
class ReferenceBank:
    """LPI's references, built by `build_reference_bank`.

    references: (C, m, *shape) representatives (real samples), CPU, the data's dtype.
    densities: (C, m) float64, each row sums to 1 (padding entries are 0).
    centres: (C, K) float64 neighbourhood centres in logit space.
    indices: (C, m) int64 index of each representative in the data set.
    sizes: (C,) int64 samples per neighbourhood.
    fingerprint: `model_fingerprint` of the model the bank was built for.
    settings: n_neighbourhoods, n_references, seed, n_init, batch_size, n_samples.
    """

    references: torch.Tensor
    densities: torch.Tensor
    centres: torch.Tensor
    indices: torch.Tensor
    sizes: torch.Tensor
    fingerprint: str
    settings: Dict[str, Any]
    _verified: Optional[Tuple] = field(default=None, repr=False, compare=False)
    _checked: Optional[Tuple] = field(default=None, repr=False, compare=False)

    @property
    def n_neighbourhoods(self) -> int:
        return self.references.shape[0]

    @property
    def n_references(self) -> int:
        return self.references.shape[1]

    def check(self, name: str = "bank") -> "ReferenceBank":
        """ValueError/TypeError naming `name` unless the bank's parts fit together: shapes,
        dtypes, finite references and centres, densities >= 0 summing to 1 per
        neighbourhood. Remembered until a tensor is replaced or modified in place."""
        parts = (self.references, self.densities, self.centres, self.indices, self.sizes)
        key = tuple((id(t), getattr(t, "_version", None)) for t in parts)
        if self._checked == key:
            return self
        bad = f"{name} is not a valid pathattr LPI reference bank"
        for part, t in zip(("references", "densities", "centres", "indices", "sizes"), parts):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{bad}: its {part} is a {type(t).__name__}, not a tensor")
            if t.device.type == "meta":
                raise ValueError(f"{bad}: its {part} is on the meta device")
        refs, dens, cent = self.references, self.densities, self.centres
        if refs.dim() < 2 or refs.shape[0] == 0 or refs.shape[1] == 0 or not refs.is_floating_point():
            raise ValueError(f"{bad}: references must be a floating tensor "
                             f"(neighbourhoods, references, *input_shape); got {refs.dtype} {tuple(refs.shape)}")
        C, m = refs.shape[:2]
        if tuple(dens.shape) != (C, m) or not dens.is_floating_point():
            raise ValueError(f"{bad}: densities must be floating ({C}, {m}), "
                             f"got {dens.dtype} {tuple(dens.shape)}")
        if cent.dim() != 2 or cent.shape[0] != C or not cent.is_floating_point():
            raise ValueError(f"{bad}: centres must be floating ({C}, logits), "
                             f"got {cent.dtype} {tuple(cent.shape)}")
        if tuple(self.indices.shape) != (C, m) or tuple(self.sizes.shape) != (C,):
            raise ValueError(f"{bad}: indices must be ({C}, {m}) and sizes ({C},)")
        if not isinstance(self.fingerprint, str) or not isinstance(self.settings, dict):
            raise TypeError(f"{bad}: fingerprint must be a str and settings a dict")
        for part, t in (("references", refs), ("densities", dens), ("centres", cent)):
            if not all_finite(t):
                raise ValueError(f"{bad}: its {part} contain NaN or Inf")
        if bool((dens < 0).any()) or not torch.allclose(dens.double().sum(1), torch.ones(C, dtype=torch.float64),
                                                        atol=1e-6):
            raise ValueError(f"{bad}: densities must be >= 0 and sum to 1 in "
                             f"every neighbourhood")
        self._checked = key
        return self

    def check_model(self, model, name: str = "bank") -> None:
        """ValueError unless `model` is (still) the model this bank was built for."""
        key = _state_key(model)
        if self._verified == key:
            return
        fp = model_fingerprint(model)
        if fp != self.fingerprint:
            raise ValueError(
                f"{name} was built for another model (fingerprint {self.fingerprint[:12]}..., this model's is "
                f"{fp[:12]}...): its neighbourhoods and references do not describe this model; build a bank for it "
                f"with pathattr.build_reference_bank(model, dataset, ...)")
        self._verified = key

    def assign(self, logits: torch.Tensor) -> torch.Tensor:
        """Nearest neighbourhood centre (Euclidean, in logit space) of each row of logits (B, K): (B,) int64."""
        if logits.dim() != 2 or logits.shape[1] != self.centres.shape[1]:
            raise ValueError(f"bank: the model gives outputs of shape {tuple(logits.shape)} but the bank's centres "
                             f"have {self.centres.shape[1]} logits")
        c = self.centres.to(device=logits.device)
        return torch.cdist(logits.to(c.dtype), c).argmin(1)

    def save(self, path) -> None:
        """One file: plain tensors, strings and ints (load with `ReferenceBank.load`)."""
        torch.save({"format": FORMAT, "references": self.references, "densities": self.densities,
                    "centres": self.centres, "indices": self.indices, "sizes": self.sizes,
                    "fingerprint": self.fingerprint, "settings": dict(self.settings)}, path)

    @classmethod
    def load(cls, path) -> "ReferenceBank":
        """Read a bank written by `save` (torch.load with weights_only=True: no code runs)."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path, got {type(path).__name__}")
        where = f"path {os.fspath(path)!r}"
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except Exception as err:  # truncated, empty or foreign files: torch says it in its own terms
            raise ValueError(f"{where} is not a valid pathattr LPI reference bank ({FORMAT}): the file could not "
                             f"be read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{where} is not a pathattr LPI reference bank ({FORMAT}): not a valid bank")
        missing = [k for k in _KEYS if k not in data]
        if missing:
            raise ValueError(f"{where} is not a valid pathattr LPI reference bank: it lacks {', '.join(missing)}")
        if not isinstance(data["settings"], dict):
            raise ValueError(f"{where} is not a valid pathattr LPI reference bank: settings is not a dict")
        bank = cls(data["references"], data["densities"], data["centres"], data["indices"], data["sizes"],
                   data["fingerprint"], dict(data["settings"]))
        try:
            return bank.check(where)
        except TypeError as err:
            raise ValueError(str(err)) from None


def _logits(model, dataset, n: int, batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Model outputs (n, K) float64 on the CPU, forward only through the engine's model
    runner in chunks of `batch_size`, and one sample (for shape/dtype)."""
    ref = first_tensor(model)
    device = ref.device if ref is not None else None
    like = dataset[:1] if isinstance(dataset, torch.Tensor) else None
    if like is None and n:
        item = dataset[0]
        like = (item[0] if isinstance(item, (tuple, list)) else item).unsqueeze(0)
    kept = {}

    def make(s, k):
        chunk = gather_references(dataset, torch.arange(s, s + k), like, "dataset")
        kept.setdefault("sample", chunk[:1])
        return (chunk if device is None else chunk.to(device)), ()

    def check(out, s, k):
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != k:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"model must map a batch of the dataset to logits (batch, classes); got {shape} "
                             f"for {k} items")
        return out.detach().to("cpu", torch.float64)

    logits = ModelRunner(model, probe_batch_size=batch_size).outputs(n, 1, "cpu", make, check)
    if logits is None:
        logits = torch.zeros(0, 0, dtype=torch.float64)
    if not torch.isfinite(logits).all():
        raise FloatingPointError("the model's logits on the dataset contain NaN or Inf")
    return logits, kept.get("sample")


def build_reference_bank(model, dataset, n_neighbourhoods: int, n_references: int, seed: int = 0,
                         batch_size: int = 256, n_init: int = 10) -> ReferenceBank:
    """Build LPI's reference bank for `model` from `dataset` (docs/methods.md §6).

    Args:
        model: the model to be explained (eval mode), mapping (n, *shape) to logits (n, K).
        dataset: a tensor (N, *shape) or a Dataset (items are inputs or tuples starting
            with one), e.g. the training set; N >= n_neighbourhoods.
        n_neighbourhoods: C, k-means clusters of the logits (the paper used 7 and 9 on ImageNet).
        n_references: m, sub-clusters (and references) per neighbourhood (the paper used 20).
        seed: random_state of every KMeans (deterministic given the data and the logits).
        batch_size: samples per forward pass when computing the logits.
        n_init: KMeans restarts (fixed so results do not depend on sklearn's default).
    Cost: N forward passes and C + 1 k-means fits.
    """
    from sklearn.cluster import KMeans

    N = check_reference_set(dataset, "dataset")
    C = check_positive_int(n_neighbourhoods, "n_neighbourhoods")
    m = check_steps(n_references, "n_references")
    seed = check_seed(seed, maximum=2 ** 32 - 1)  # scikit-learn's random_state
    bs = check_positive_int(batch_size, "batch_size")
    n_init = check_positive_int(n_init, "n_init")
    if not callable(model):
        raise TypeError(f"model must be a callable (a torch.nn.Module), got {type(model).__name__}")
    if N < C:
        raise ValueError(f"n_neighbourhoods ({C}) must be at most the number of samples in dataset ({N})")
    if N < m:
        raise ValueError(f"n_references ({m}) must be at most the number of samples in dataset ({N})")
    logits, sample = _logits(model, dataset, N, bs)
    L = logits.numpy()
    top = KMeans(n_clusters=C, random_state=seed, n_init=n_init).fit(L)
    chosen = np.zeros((C, m), dtype=np.int64)
    dens = np.zeros((C, m), dtype=np.float64)
    sizes = np.zeros(C, dtype=np.int64)
    for c in range(C):
        members = np.flatnonzero(top.labels_ == c)
        sizes[c] = len(members)
        k = min(m, len(members))
        sub = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(L[members])
        for s in range(k):
            own = members[sub.labels_ == s]
            pool = own if len(own) else members  # an empty sub-cluster: nearest sample, density 0
            dist = np.linalg.norm(L[pool] - sub.cluster_centers_[s], axis=1)
            chosen[c, s] = pool[int(np.argmin(dist))]
            dens[c, s] = len(own) / len(members)
        chosen[c, k:] = chosen[c, 0]  # padding: density 0
    idx = torch.from_numpy(chosen)
    like = torch.empty((1,) + tuple(sample.shape[1:]), dtype=sample.dtype, device=sample.device)
    refs = gather_references(dataset, idx, like, "dataset")
    settings = {"n_neighbourhoods": C, "n_references": m, "seed": seed, "n_init": n_init, "batch_size": bs,
                "n_samples": N}
    return ReferenceBank(refs.cpu(), torch.from_numpy(dens), torch.from_numpy(top.cluster_centers_).double(), idx,
                         torch.from_numpy(sizes), model_fingerprint(model), settings)


def load_reference_bank(path) -> ReferenceBank:
    """Same as `ReferenceBank.load(path)`."""
    return ReferenceBank.load(path)
