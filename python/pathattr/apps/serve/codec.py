"""JSON in and out: instances as nested lists or base64 arrays, attributions as
nested lists or base64 float16/float32, and an optional PNG heatmap.

Every decoding problem raises `BadRequest` with the HTTP status it deserves, so the
app answers bad input with a 4xx and a JSON body, never a 500.
"""
from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch

IN_DTYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64}
OUT_DTYPES = {"float16": np.float16, "float32": np.float32}
ENCODINGS = ("list", "base64")


class BadRequest(Exception):
    """A client error: `status` (4xx) and a message for the JSON body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _decode_b64(inst: dict, i: int) -> np.ndarray:
    unknown = set(inst) - {"b64", "dtype", "shape"}
    if unknown or "b64" not in inst:
        raise BadRequest(422, f"instances[{i}]: a base64 instance is {{'b64': str, 'dtype': str, 'shape': [ints]}}; "
                              f"got keys {sorted(inst)}")
    dtype, shape, data = inst.get("dtype", "float32"), inst.get("shape"), inst["b64"]
    if dtype not in IN_DTYPES:
        raise BadRequest(422, f"instances[{i}].dtype must be one of {sorted(IN_DTYPES)}, got {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadRequest(422, f"instances[{i}].shape must be a list of non-negative ints, got {shape!r}")
    if not isinstance(data, str):
        raise BadRequest(422, f"instances[{i}].b64 must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(422, f"instances[{i}].b64 is not valid base64") from None
    itemsize = np.dtype(IN_DTYPES[dtype]).itemsize
    if len(raw) != math.prod(shape) * itemsize:
        raise BadRequest(422, f"instances[{i}]: {len(raw)} bytes do not hold shape {shape} of {dtype} "
                              f"({math.prod(shape) * itemsize} bytes)")
    return np.frombuffer(raw, dtype=np.dtype(IN_DTYPES[dtype]).newbyteorder("<")).reshape(shape)


def _decode_list(inst: list, i: int) -> np.ndarray:
    try:
        arr = np.asarray(inst)
    except ValueError as err:  # ragged nesting, or more than numpy's 64 dimensions
        raise BadRequest(422, f"instances[{i}] is not a regular array of numbers ({err})") from None
    if arr.dtype.kind not in "iuf":  # strings, bools, objects (ragged or mixed)
        raise BadRequest(422, f"instances[{i}] must hold only numbers (got array kind {arr.dtype.kind!r})")
    return arr


def decode_instances(instances: Any, input_shape: Tuple[int, ...], dtype: torch.dtype, max_batch: int) -> torch.Tensor:
    """`instances` (a list of nested lists or base64 dicts) -> (n, *input_shape) tensor of `dtype`.

    422 for a wrong shape, a non-float dtype, a non-number or a NaN/inf; 413 for more
    than `max_batch` instances.
    """
    if not isinstance(instances, list) or not instances:
        raise BadRequest(422, "'instances' must be a non-empty list")
    if len(instances) > max_batch:
        raise BadRequest(413, f"{len(instances)} instances exceed this server's max batch of {max_batch}")
    rows = []
    for i, inst in enumerate(instances):
        if isinstance(inst, dict):
            arr = _decode_b64(inst, i)
        elif isinstance(inst, list):
            arr = _decode_list(inst, i)
        else:
            raise BadRequest(422, f"instances[{i}] must be a nested list or a base64 dict, got {type(inst).__name__}")
        if tuple(arr.shape) != tuple(input_shape):
            raise BadRequest(422, f"instances[{i}] has shape {list(arr.shape)}; this model takes {list(input_shape)}")
        if not np.isfinite(arr).all():
            raise BadRequest(422, f"instances[{i}] holds NaN or infinite values")
        rows.append(np.asarray(arr, dtype=np.float64))
    x = torch.from_numpy(np.stack(rows)).to(dtype)
    if not torch.isfinite(x).all():  # a float64 value beyond float16/float32 range
        raise BadRequest(422, f"instances hold values outside the range of the model's dtype {dtype}")
    return x


def parse_targets(target: Any, n: int, num_classes: Optional[int]) -> List[Optional[int]]:
    """`parameters.target`: null (argmax), an int for all, or a list of n ints/nulls."""
    items = [target] * n if target is None or not isinstance(target, list) else target
    if len(items) != n:
        raise BadRequest(422, f"parameters.target has {len(items)} entries for {n} instances")
    out = []
    for t in items:
        if t is None:
            out.append(None)
            continue
        if isinstance(t, bool) or not isinstance(t, int):
            raise BadRequest(422, f"parameters.target entries must be ints or null, got {t!r}")
        if t < 0 or (num_classes is not None and t >= num_classes):
            raise BadRequest(422, f"parameters.target must lie in [0, {num_classes}), got {t}")
        out.append(t)
    return out


def encode_array(a: torch.Tensor, encoding: str, dtype: str) -> Any:
    """A (*shape) tensor as nested lists, or {'b64', 'dtype', 'shape'} (little-endian)."""
    arr = a.detach().to("cpu", torch.float64).numpy().astype(OUT_DTYPES[dtype])
    if encoding == "list":
        return arr.tolist()
    data = base64.b64encode(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).decode("ascii")
    return {"b64": data, "dtype": dtype, "shape": list(arr.shape)}


def heatmap_png(a: torch.Tensor, min_side: int = 64) -> str:
    """Base64 PNG of |attributions| summed over channels (needs (H, W) or (C, H, W)),
    scaled by the 99th percentile, coloured with matplotlib's 'inferno', upscaled by
    nearest neighbour so the short side is at least `min_side` pixels."""
    from matplotlib import colormaps
    from PIL import Image

    m = a.detach().to("cpu", torch.float64).abs()
    if m.dim() == 3:
        m = m.sum(0)
    if m.dim() != 2:
        raise BadRequest(422, f"a heatmap needs image-shaped instances ((H, W) or (C, H, W)); got {list(a.shape)}")
    m = m.numpy()
    hi = float(np.percentile(m, 99))
    m = np.clip(m / hi, 0.0, 1.0) if hi > 0 else np.zeros_like(m)
    rgb = (colormaps["inferno"](m)[..., :3] * 255).astype(np.uint8)
    img = Image.fromarray(rgb)
    k = max(1, -(-min_side // min(rgb.shape[:2])))
    if k > 1:
        img = img.resize((rgb.shape[1] * k, rgb.shape[0] * k), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def parse_options(params: Any) -> Tuple[str, str, bool, Optional[float], Any]:
    """`parameters` -> (encoding, dtype, heatmap, timeout_ms, target); `rtol` is read by
    `parse_rtol`."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise BadRequest(422, "'parameters' must be an object")
    known = {"encoding", "dtype", "heatmap", "timeout_ms", "target", "rtol"}
    if set(params) - known:
        raise BadRequest(422, f"unknown parameters {sorted(set(params) - known)}; known: {sorted(known)}")
    enc = params.get("encoding", "list")
    if enc not in ENCODINGS:
        raise BadRequest(422, f"parameters.encoding must be one of {list(ENCODINGS)}, got {enc!r}")
    dt = params.get("dtype", "float32")
    if dt not in OUT_DTYPES:
        raise BadRequest(422, f"parameters.dtype must be one of {sorted(OUT_DTYPES)}, got {dt!r}")
    return enc, dt, parse_flag(params, "heatmap"), parse_timeout_ms(params), params.get("target")


def parse_flag(params: dict, name: str) -> bool:
    """`parameters.<name>`: true or false (default false)."""
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(422, f"parameters.{name} must be true or false, got {value!r}")
    return value


def parse_timeout_ms(params: dict) -> Optional[float]:
    """`parameters.timeout_ms`: None or a positive number of milliseconds."""
    to = params.get("timeout_ms")
    if to is not None and (isinstance(to, bool) or not isinstance(to, (int, float)) or not math.isfinite(to) or to <= 0):
        raise BadRequest(422, f"parameters.timeout_ms must be a positive number, got {to!r}")
    return to


def parse_rtol(params: Any) -> Optional[float]:
    """`parameters.rtol`: None, or a relative error in (0, 1) for this request (docs/methods.md §14)."""
    rt = params.get("rtol") if isinstance(params, dict) else None
    if rt is None:
        return None
    if isinstance(rt, bool) or not isinstance(rt, (int, float)) or not math.isfinite(rt) or not 0 < rt < 1:
        raise BadRequest(422, f"parameters.rtol must be a number in (0, 1), got {rt!r}")
    return float(rt)


def split_rows(x: torch.Tensor, sizes: Sequence[int]) -> List[torch.Tensor]:
    return list(torch.split(x, list(sizes)))
