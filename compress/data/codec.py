"""The project's pixel codec: 8-bit images <-> generator images in [-1, 1].

Every image a generator reads or writes is scaled as the reference pix2pix/CycleGAN code scales it
(junyanz/pytorch-CycleGAN-and-pix2pix: ``ToTensor`` then ``Normalize((0.5,)*3, (0.5,)*3)`` on the way in,
``util.tensor2im``'s ``(x + 1) / 2 * 255`` on the way out): a byte ``x`` in 0..255 becomes ``x / 127.5 - 1``,
and a value ``y`` becomes ``round((clamp(y, -1, 1) + 1) * 127.5)`` (round half to even, numpy's and torch's
rounding), so decoding an encoded byte gives the byte back.

Layouts: 8-bit images are channels-last, (H, W, 3) or (N, H, W, 3) uint8, as image files decode; generator
images are channels-first, (3, H, W) or (N, 3, H, W) float32, as convolutions take them. CIFAR-10's arrays are
already channels-first: pass ``channels_last=False`` to keep the axes as they are.

Both functions take a torch tensor or a numpy array and return the same kind, computed in that library in
the operand's precision (float32 for the encoder), so the values are those every call site computed before
this module existed. The result is a permuted view of the computed values (no copy to contiguous memory):
a (N, H, W, 3) uint8 tensor encodes to a (N, 3, H, W) tensor with channels-last memory; call
``.contiguous()`` where NCHW memory is wanted (convolutions pick their algorithm by memory format, and the
results can differ in the last bit).
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Images = TypeVar("Images", torch.Tensor, np.ndarray)

#: Half the number of byte steps: ``x / HALF_RANGE - 1`` maps 0..255 onto [-1, 1].
HALF_RANGE = 127.5


def _check(images, what: str) -> None:
    if not isinstance(images, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{what}: expected a torch.Tensor or a numpy array, got {type(images).__name__}")
    if images.ndim not in (3, 4):
        raise ValueError(f"{what}: expected a (H, W, 3)/(3, H, W) image or a batch of them, "
                         f"got shape {tuple(images.shape)}")


def uint8_to_float(images: Images, *, channels_last: bool = True) -> Images:
    """8-bit images -> float32 images in [-1, 1]: ``x / 127.5 - 1``.

    Args:
        images: uint8 (H, W, 3) or (N, H, W, 3) (``channels_last=False``: (3, H, W) or (N, 3, H, W)), a torch
            tensor or a numpy array.
        channels_last: whether the channel axis of ``images`` is the last one (moved to the third-last).

    Returns:
        float32 (3, H, W) or (N, 3, H, W), the same kind as ``images``; exact: every byte maps to one value.

    Raises:
        TypeError: neither a tensor nor an array. ValueError: not 3-d or 4-d.
    """
    _check(images, "uint8_to_float")
    if isinstance(images, torch.Tensor):
        x = torch.movedim(images, -1, -3) if channels_last else images
        return x.to(torch.float32).div_(HALF_RANGE).sub_(1.0)
    x = np.moveaxis(images, -1, -3) if channels_last else images
    return x.astype(np.float32) / np.float32(HALF_RANGE) - np.float32(1.0)


def float_to_uint8(images: Images, *, channels_last: bool = True) -> Images:
    """Float images in [-1, 1] -> 8-bit images: ``round((clamp(x, -1, 1) + 1) * 127.5)``.

    Args:
        images: float (3, H, W) or (N, 3, H, W), a torch tensor (any float dtype, computed in float32; a
            tensor that requires grad is detached) or a numpy array (computed in its own float dtype).
            Values outside [-1, 1] are clamped.
        channels_last: move the channel axis to the end (default); False keeps (N, 3, H, W).

    Returns:
        uint8 (H, W, 3) or (N, H, W, 3), the same kind (and device) as ``images``.

    Raises:
        TypeError: neither a tensor nor an array. ValueError: not 3-d or 4-d.
    """
    _check(images, "float_to_uint8")
    if isinstance(images, torch.Tensor):
        x = images.detach().to(torch.float32).clamp(-1.0, 1.0).add(1.0).mul(HALF_RANGE).round().to(torch.uint8)
        return torch.movedim(x, -3, -1) if channels_last else x
    x = np.rint((np.clip(images, -1.0, 1.0) + 1.0) * HALF_RANGE).astype(np.uint8)
    return np.moveaxis(x, -3, -1) if channels_last else x
