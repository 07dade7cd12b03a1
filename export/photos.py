"""Natural photos that no run ever trains or calibrates on: the photographs the scikit-image wheel ships.

int8 is calibrated on the run's own source images, so agreement on the run's held-out images says little about a
user's photo of something else. The export therefore also measures every file on a fixed set of unseen photos:
the photographs in ``skimage/data`` of ``scikit-image==0.25.2`` (read from the installed package's folder, never
downloaded): :data:`PHOTOS`, RGB and greyscale. Each is centre-cropped to a square, resized (bicubic) to the
generator's H x W and scaled ``x / 127.5 - 1`` like every other input.

For pix2pix (edges -> photo) the same photos also become **edge maps** the way edges2shoes looks: black edges on a
white background (Canny 1986, scikit-image's ``skimage.feature.canny``, sigma 2, on the greyscale photo at 256 x 256,
the size of an edges2shoes half, then resized like the other inputs). CycleGAN gets the photos; DCGAN's input is
noise, so it has no photo set.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.metadata import version
from typing import Sequence

import numpy as np
from PIL import Image

from compress.data.codec import float_to_uint8, uint8_to_float
from compress.families import get_family

#: The photographs of ``skimage/data`` (file names): natural scenes, people, animals, objects, astronomy and
#: microscopy; synthetic images, text pages and logos of that folder are not photos and are left out.
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
          "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg",
          "brick.png", "camera.png", "coins.png", "grass.png", "gravel.png", "moon.png")
#: Size at which edge maps are drawn (an edges2shoes half is 256 x 256) and Canny's Gaussian sigma (pixels there).
EDGE_SIZE = 256
EDGE_SIGMA = 2.0


@dataclass
class UnseenSet:
    """Unseen inputs (N, 3, H, W) float32 in [-1, 1], one name per input, and a JSON-ready description."""

    inputs: np.ndarray
    names: list[str]
    description: dict


def _square(img: Image.Image) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def _photo(name: str) -> Image.Image:
    with resources.as_file(resources.files("skimage") / "data" / name) as path, Image.open(path) as img:
        return _square(img.convert("RGB"))


def _edge_map(photo: Image.Image) -> Image.Image:
    from skimage.feature import canny

    gray = np.asarray(photo.convert("L").resize((EDGE_SIZE, EDGE_SIZE), Image.BICUBIC), np.float64) / 255.0
    edges = canny(gray, sigma=EDGE_SIGMA)
    return Image.fromarray(np.where(edges, 0, 255).astype(np.uint8)).convert("RGB")


def _to_input(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return uint8_to_float(np.asarray(img.resize((w, h), Image.BICUBIC), dtype=np.uint8))


#: How each kind of the registry's ``unseen_input_kinds`` is made from a photo, with its name prefix and words.
_KINDS = {"edges": ("edges", _edge_map, "edge maps (Canny, black on white)"),
          "photos": ("photo", lambda photo: photo, "photos")}


def drawn_inputs(kind: str, images_nchw: np.ndarray) -> np.ndarray:
    """Inputs of one drawn unseen kind made with this module's recipe from other images (the export's validation
    inputs draw edge maps from the run's own target-domain training photos: :func:`export.int8_file.validation_inputs`).

    Args:
        kind: a kind of :data:`_KINDS` other than ``"photos"`` (``"edges"``: Canny, :func:`_edge_map`).
        images_nchw: (N, 3, H, W) float32 images in [-1, 1] (values outside are clamped).
    Returns:
        (N, 3, H, W) float32 in [-1, 1], the same H x W.
    Raises:
        ValueError: an unknown kind, or ``"photos"`` (nothing to draw).
    """
    if kind not in _KINDS or kind == "photos":
        raise ValueError(f"unseen input kind {kind!r}; expected one of {sorted(set(_KINDS) - {'photos'})}")
    draw = _KINDS[kind][1]
    size = tuple(images_nchw.shape[2:])
    pictures = float_to_uint8(np.asarray(images_nchw, np.float32))  # (N, H, W, 3)
    return np.stack([_to_input(draw(Image.fromarray(p)), size) for p in pictures]).astype(np.float32) \
        if len(pictures) else np.zeros_like(images_nchw, np.float32)


def square_photo(img: Image.Image) -> Image.Image:
    """A photo as every unseen input starts: RGB (greyscale and alpha dropped), centre-cropped to a square."""
    return _square(img.convert("RGB"))


def photo_set(family: str, photos: Sequence[tuple[str, Image.Image]], size: tuple[int, int],
              source: dict) -> UnseenSet | None:
    """The inputs a generator family is measured on, made from named photos with this module's recipe: the kinds
    its registry entry names (``unseen_input_kinds`` of :class:`compress.families.Family`), in that order, each
    input named ``KIND:PHOTO`` (``edges:retina``, ``photo:retina``).

    Args:
        family: a registered family name.
        photos: (name, RGB square image) pairs (:func:`square_photo`), any size.
        size: (H, W) of the generator's input (pixels).
        source: what the photos are (``"set"``, ``"files"``), copied into the description.
    Returns:
        (N * kinds, 3, H, W) float32 inputs in [-1, 1] with names and a JSON-ready description, or None for a
        family whose input is not an image (dcgan).
    Raises:
        InputError: an unregistered family.
    """
    wanted = get_family(family, "architecture family").unseen_input_kinds
    if not wanted:
        return None
    items = [(f"{_KINDS[k][0]}:{n}", _KINDS[k][1](p)) for k in wanted for n, p in photos]
    inputs = np.stack([_to_input(img, size) for _, img in items]).astype(np.float32) if items else \
        np.zeros((0, 3, *size), np.float32)
    return UnseenSet(inputs, [n for n, _ in items], {
        **source, "kinds": [_KINDS[k][2] for k in wanted], "count": int(len(items)), "size_hw": list(size),
        "crop": "centre square", "resize": "bicubic", "scaling": "x / 127.5 - 1",
        **({"edges": f"Canny sigma {EDGE_SIGMA:g} at {EDGE_SIZE} px"} if "edges" in wanted else {})})


def unseen_inputs(family: str, size: tuple[int, int]) -> UnseenSet | None:
    """The unseen inputs of a generator family (module docstring) at input size (H, W): :func:`photo_set` of
    :data:`PHOTOS`.

    Returns None for a family whose input is not an image (dcgan). Raises InputError for an unregistered family,
    ImportError when scikit-image is not installed (it is a dependency of the project).
    """
    if not get_family(family, "architecture family").unseen_input_kinds:
        return None
    photos = [(name.rsplit(".", 1)[0], _photo(name)) for name in PHOTOS]
    return photo_set(family, photos, size, {
        "set": f"scikit-image {version('scikit-image')} skimage/data photographs", "files": list(PHOTOS)})
