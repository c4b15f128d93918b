"""What a job reads: the dataset named on the command line (models: apps/loading.py).

Datasets yield (x, label) with x a float tensor in the model's input space and label
an int (-1 when the data have none). Each dataset also describes itself (`describe`)
for the run's identity, cheaply: names and sizes of files, not their full contents.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..extras import require
from ..loading import call_factory
from .config import JobError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
ARRAY_KEYS = ("x", "inputs", "images", "data")
LABEL_KEYS = ("y", "labels", "targets", "label")


# --------------------------------------------------------------------------- preprocessing

class Preprocess:
    """Image preprocessing from a config dict: mode ("RGB" default, "L"), resize [h, w]
    (bilinear), scale (default 1/255), mean and std per channel (default none)."""

    def __init__(self, cfg: Dict[str, Any], for_images: bool):
        self.mode = cfg.get("mode", "RGB")
        if self.mode not in ("RGB", "L"):
            raise JobError(f"preprocess mode must be 'RGB' or 'L', got {self.mode!r}")
        self.resize = cfg.get("resize")
        if self.resize is not None and (not isinstance(self.resize, list) or len(self.resize) != 2
                                        or not all(isinstance(v, int) and v > 0 for v in self.resize)):
            raise JobError(f"preprocess resize must be [height, width], got {self.resize!r}")
        if not for_images and ("mode" in cfg or "resize" in cfg):
            raise JobError("preprocess mode and resize apply to image folders only")
        self.scale = float(cfg.get("scale", 1 / 255 if for_images else 1.0))
        self.mean = cfg.get("mean")
        self.std = cfg.get("std")
        for key in ("mean", "std"):
            v = cfg.get(key)
            if v is not None and (not isinstance(v, list) or not all(isinstance(a, (int, float)) for a in v)):
                raise JobError(f"preprocess {key} must be a list of numbers, one per channel")
        if self.std is not None and any(s == 0 for s in self.std):
            raise JobError("preprocess std must not contain 0")

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() * self.scale
        c = x.shape[0] if x.dim() >= 1 else 1
        for key, op in (("mean", torch.sub), ("std", torch.div)):
            v = getattr(self, key)
            if v is not None:
                if len(v) not in (1, c):
                    raise JobError(f"preprocess {key} has {len(v)} values for {c} channels")
                x = op(x, torch.tensor(v, dtype=x.dtype).view((-1,) + (1,) * (x.dim() - 1)))
        return x


# --------------------------------------------------------------------------- datasets

class DigitsData(torch.utils.data.Dataset):
    """The bundled digits, held-out split: the default data of the bundled model."""

    def __init__(self):
        from ...data.digits import load_digits_data

        self.x, self.y = load_digits_data("test")

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])

    def describe(self):
        return {"kind": "bundled", "source": "pathattr.data.digits test split"}


class ArrayData(torch.utils.data.Dataset):
    """Inputs from a .npy (N, ...) array or a .npz with an array `x`/`inputs`/`images`/
    `data` (or a single array) and optional labels `y`/`labels`/`targets`."""

    def __init__(self, path: Path, prep: Preprocess):
        self.path, self.prep = path, prep
        try:
            if path.suffix == ".npy":
                self.x, self.y = np.load(path, mmap_mode="r"), None
            else:
                z = np.load(path)
                keys = list(z.keys())
                xk = next((k for k in ARRAY_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                if xk is None:
                    raise JobError(f"data {path}: no input array; name it one of {ARRAY_KEYS} (found {keys})")
                yk = next((k for k in LABEL_KEYS if k in keys), None)
                self.x, self.y = z[xk], (z[yk] if yk else None)
        except (OSError, ValueError) as exc:
            raise JobError(f"data {path} is not a readable numpy file: {exc}") from exc
        if self.x.ndim < 2 or not np.issubdtype(self.x.dtype, np.number):
            raise JobError(f"data {path}: inputs must be a numeric array (N, ...), got {self.x.dtype} {self.x.shape}")
        if self.y is not None and self.y.shape[:1] != self.x.shape[:1]:
            raise JobError(f"data {path}: labels have shape {self.y.shape}, inputs {self.x.shape}")

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        x = self.prep.normalise(torch.from_numpy(np.array(self.x[i])))
        return x, (-1 if self.y is None else int(self.y[i]))

    def describe(self):
        return {"kind": "array", "source": str(self.path.resolve()), "digest": _file_digest(self.path)}


class ImageFolderData(torch.utils.data.Dataset):
    """Every image under a folder (sorted paths). Labels from first-level subfolders
    (sorted names -> 0, 1, ...) when every image lies in one, else -1. Unreadable
    images are listed in `skipped` (or raise with strict=True)."""

    def __init__(self, root: Path, prep: Preprocess, strict: bool):
        require("job", "PIL")
        from PIL import Image

        self.root, self.prep = root, prep
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        self.files: List[Path] = []
        self.skipped: List[str] = []
        sizes = set()
        for p in files:
            try:  # verify() reads the whole file and checks its structure without decoding
                with Image.open(p) as im:
                    size = im.size
                    im.verify()
            except Exception as exc:  # PIL raises many types for broken files
                if strict:
                    raise JobError(f"unreadable image {p}: {exc} (drop --strict to skip and list it)") from exc
                self.skipped.append(str(p.relative_to(root)))
                continue
            self.files.append(p)
            sizes.add(size)
        if not self.files:
            raise JobError(f"data folder {root} holds no readable images ({', '.join(IMAGE_EXTS)})")
        if len(sizes) > 1 and prep.resize is None:
            raise JobError(f"data folder {root}: images have {len(sizes)} different sizes; "
                           f"set resize [height, width] in a preprocess file")
        rel = [p.relative_to(root).parts for p in self.files]
        if all(len(r) >= 2 for r in rel):
            classes = sorted({r[0] for r in rel})
            self.classes = classes
            self.labels = [classes.index(r[0]) for r in rel]
        else:
            self.classes, self.labels = [], [-1] * len(self.files)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.files[i]) as im:
            im = im.convert(self.prep.mode)
            if self.prep.resize is not None:
                h, w = self.prep.resize
                im = im.resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return self.prep.normalise(torch.from_numpy(np.ascontiguousarray(a))), self.labels[i]

    def describe(self):
        h = hashlib.sha256()
        for p in self.files:
            h.update(f"{p.relative_to(self.root)}\0{p.stat().st_size}\n".encode())
        return {"kind": "image_folder", "source": str(self.root.resolve()), "digest": h.hexdigest(),
                "skipped": list(self.skipped)}


class FactoryData(torch.utils.data.Dataset):
    """A user's Dataset from `module:factory`; items are x or (x, label, ...)."""

    def __init__(self, spec: str):
        self.spec = spec
        ds = call_factory(spec, "data")
        if not (hasattr(ds, "__len__") and hasattr(ds, "__getitem__")):
            raise JobError(f"data {spec!r} must return a map-style torch Dataset (with __len__ and __getitem__), "
                           f"got {type(ds).__name__}")
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        item = self.ds[i]
        x, y = (item[0], item[1] if len(item) > 1 else -1) if isinstance(item, (tuple, list)) else (item, -1)
        x = torch.as_tensor(x)
        return (x if x.is_floating_point() else x.float()), int(y) if not isinstance(y, torch.Tensor) else int(y.item())

    def describe(self):
        return {"kind": "factory", "source": self.spec}


def open_dataset(spec: Optional[str], prep_cfg: Dict[str, Any], strict: bool) -> torch.utils.data.Dataset:
    """The dataset named by `--data` (None: the bundled digits)."""
    if spec is None:
        if prep_cfg:
            raise JobError("preprocess applies to --data; the bundled digits are already in the model's input space")
        return DigitsData()
    path = Path(spec)
    if path.is_dir():
        return ImageFolderData(path, Preprocess(prep_cfg, for_images=True), strict)
    if path.is_file():
        if path.suffix not in (".npy", ".npz"):
            raise JobError(f"data file {path} must be .npy or .npz (or give an image folder or module:factory)")
        return ArrayData(path, Preprocess(prep_cfg, for_images=False))
    if ":" in spec and "/" not in spec and "\\" not in spec:
        if prep_cfg:
            raise JobError("preprocess does not apply to a module:factory dataset: do it in the Dataset")
        return FactoryData(spec)
    raise JobError(f"data path not found: {spec}")


def _file_digest(path: Path) -> str:
    """sha256 of size, first and last MiB: cheap on large arrays, changes with any re-save."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()


# --------------------------------------------------------------------------- models

def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the class name and every parameter and buffer (name, dtype, shape, bytes)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
