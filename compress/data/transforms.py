"""pix2pix/CycleGAN preprocessing without torchvision: resize, random crop, flip, scale to [-1, 1].

Constants are the reference options of junyanz/pytorch-CycleGAN-and-pix2pix (``options/base_options.py``):
``--load_size 286 --crop_size 256 --preprocess resize_and_crop``, flip unless ``--no_flip``, bicubic
resize, ``Normalize((0.5,)*3, (0.5,)*3)`` so pixels map to ``x / 127.5 - 1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from compress.data.codec import uint8_to_float
from compress.errors import InputError

LOAD_SIZE = 286  # reference --load_size
CROP_SIZE = 256  # reference --crop_size
PREPROCESS_MODES = ("resize_and_crop", "crop", "none")


@dataclass(frozen=True)
class Preprocess:
    """Preprocessing options.

    Args:
        load_size: side the image is resized to before cropping (``resize_and_crop`` only). Default 286.
        crop_size: side of the square crop. Default 256.
        flip: random horizontal flip: ``True`` = probability 0.5 (reference), ``False`` = never,
            a float in [0, 1] = that probability (1.0 forces it, for tests).
        preprocess: ``"resize_and_crop"`` (reference default), ``"crop"`` (random crop of the original,
            no resize) or ``"none"`` (no resize, no crop; sides rounded to a multiple of 4 as the reference
            ``__make_power_2`` does).
        train: ``False`` selects the eval mode: no randomness, no flip; ``resize_and_crop`` becomes a plain
            bicubic resize to ``crop_size``, ``crop`` a centre crop, ``none`` stays none.

    Too-small images: with a resize (``resize_and_crop``) any image size is fine (it is resized first),
    but ``load_size < crop_size`` is rejected here. With ``crop`` (no resize) an image smaller than
    ``crop_size`` on either side raises :class:`InputError` naming the file (or is skipped with ``--skip-bad``).

    Raises:
        InputError: unknown ``preprocess``, non-positive sizes, ``load_size < crop_size`` with
            ``resize_and_crop``, flip probability outside [0, 1].
    """

    load_size: int = LOAD_SIZE
    crop_size: int = CROP_SIZE
    flip: bool | float = True
    preprocess: str = "resize_and_crop"
    train: bool = True

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS_MODES:
            raise InputError(f"preprocess={self.preprocess!r}: expected one of {', '.join(PREPROCESS_MODES)}")
        for name in ("load_size", "crop_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"{name}={value!r}: expected a positive integer")
        if self.preprocess == "resize_and_crop" and self.load_size < self.crop_size:
            raise InputError(f"load_size={self.load_size} < crop_size={self.crop_size}: with "
                             "preprocess='resize_and_crop' the load size must be >= the crop size")
        if not isinstance(self.flip, (bool, int, float)) or not 0.0 <= float(self.flip) <= 1.0:
            raise InputError(f"flip={self.flip!r}: expected True, False or a probability in [0, 1]")

    @property
    def flip_prob(self) -> float:
        """Probability of a horizontal flip in train mode (0 in eval mode)."""
        if not self.train:
            return 0.0
        if isinstance(self.flip, bool):
            return 0.5 if self.flip else 0.0
        return float(self.flip)

    def min_size(self) -> int:
        """Smallest image side accepted (``crop_size`` for ``crop``, else 1: resizing handles any size)."""
        return self.crop_size if self.preprocess == "crop" else 1


@dataclass(frozen=True)
class Params:
    """One draw of the random parameters: crop corner (x, y) or None, and flip."""

    crop_xy: tuple[int, int] | None
    flip: bool


def check_size(path: str | Path, size: tuple[int, int], opt: Preprocess) -> None:
    """Raise :class:`InputError` naming ``path`` if an image of ``size`` (W, H) is too small for ``opt``."""
    w, h = size
    need = opt.min_size()
    if w < need or h < need:
        if opt.preprocess == "crop":
            raise InputError(f"{path}: image is {w}x{h}, smaller than crop_size={opt.crop_size} and "
                             f"preprocess={opt.preprocess!r} does not resize; expected at least {need}x{need} "
                             "(use preprocess='resize_and_crop')")
        # resizing takes any size but an empty side (e.g. one half of a 1-pixel-wide A|B pair)
        raise InputError(f"{path}: image is {w}x{h}; expected at least 1x1 pixels (an aligned A|B pair needs an "
                         "even width of at least 2)")


def sample_params(size: tuple[int, int], opt: Preprocess, generator: torch.Generator | None = None) -> Params:
    """Draw crop corner and flip for an image of ``size`` (W, H), like the reference ``get_params``.

    Uses torch's RNG (``generator`` or the global one, which DataLoader seeds per worker).
    Eval mode draws nothing. Train mode always draws x, y, then the flip (even when the flip probability is
    0 or 1), so runs that differ only in ``flip`` get the same crops.
    """
    if not opt.train:
        return Params(None, False)
    xy = None
    if opt.preprocess != "none":
        w, h = (opt.load_size, opt.load_size) if opt.preprocess == "resize_and_crop" else size
        x = int(torch.randint(0, max(0, w - opt.crop_size) + 1, (), generator=generator))
        y = int(torch.randint(0, max(0, h - opt.crop_size) + 1, (), generator=generator))
        xy = (x, y)
    flip = bool(torch.rand((), generator=generator).item() < opt.flip_prob)
    return Params(xy, flip)


def _round4(img: Image.Image) -> Image.Image:
    w, h = img.size
    nw, nh = max(4, int(round(w / 4) * 4)), max(4, int(round(h / 4) * 4))
    return img if (nw, nh) == (w, h) else img.resize((nw, nh), Image.BICUBIC)


def apply(img: Image.Image, params: Params, opt: Preprocess, path: str | Path = "<image>") -> torch.Tensor:
    """Apply ``opt`` with ``params`` to an RGB image; return a float32 tensor (3, H, W) in [-1, 1].

    Output side is ``crop_size`` except with ``preprocess='none'``.

    Raises:
        InputError: image too small for a crop without resize (names ``path``).
    """
    c = opt.crop_size
    if opt.preprocess == "resize_and_crop":
        if not opt.train:
            img = img.resize((c, c), Image.BICUBIC)
        else:
            img = img.resize((opt.load_size, opt.load_size), Image.BICUBIC)
            x, y = params.crop_xy
            img = img.crop((x, y, x + c, y + c))
    elif opt.preprocess == "crop":
        check_size(path, img.size, opt)
        if params.crop_xy is None:  # eval: centre crop
            x, y = (img.size[0] - c) // 2, (img.size[1] - c) // 2
        else:
            x, y = params.crop_xy
        img = img.crop((x, y, x + c, y + c))
    else:
        img = _round4(img)
    if params.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return to_tensor(img)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB ``PIL.Image`` (W x H) -> float32 tensor (3, H, W) with values ``x / 127.5 - 1`` in [-1, 1], in NCHW
    (contiguous) memory (:func:`compress.data.codec.uint8_to_float`)."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return uint8_to_float(torch.from_numpy(arr.copy())).contiguous()
