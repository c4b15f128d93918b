"""Tensors in non-default memory layouts, shared by the kernel tests."""
import torch

KINDS = ["slice", "transpose", "channels_last", "row_slice"]


def noncontig(kind, n, shape, dtype):
    """A random (n, C, H, W) tensor laid out as `kind`; only "row_slice" views as (n, D)."""
    C, H, W = shape
    if kind == "slice":  # x[:, :, ::2]
        return torch.randn(n, C, 2 * H, W, dtype=dtype)[:, :, ::2]
    if kind == "transpose":
        return torch.randn(n, W, H, C, dtype=dtype).permute(0, 3, 2, 1)
    if kind == "channels_last":
        return torch.randn(n, C, H, W, dtype=dtype).to(memory_format=torch.channels_last)
    if kind == "row_slice":  # a row stride only: viewable as (n, D) without a copy
        return torch.randn(n, C * H * W + 5, dtype=dtype)[:, :C * H * W].view(n, C, H, W)
    raise AssertionError(kind)
