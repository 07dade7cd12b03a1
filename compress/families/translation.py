"""Families whose generator translates a source image into a target image: :class:`ImageTranslationFamily`.

Shared by pix2pix and CycleGAN: input and output (N, 3, S, S) in [-1, 1], the reference random-crop
preprocessing (load 286 for a crop of 256), a dataset folder with a source domain (``trainA``/``testA``, or
side-by-side A|B files in ``train``/``val``/``test``) whose images are the export's calibration inputs, and
evaluation grids of input / output (/ real target) rows.
"""
from __future__ import annotations

import inspect
import os
from abc import abstractmethod
from typing import Any, Mapping

import torch

from compress.errors import InputError
from compress.families.base import Family
from compress.families.calibration import InputSets, image_input_sets
from compress.families.evaluation import EvalData
from compress.families.options import NORM, WIDTH, Option
from compress.models.base import INPUT, PrunableNetwork
from compress.models.patchgan import PatchGANDiscriminator

#: pix2pix/CycleGAN reference options: images loaded at 286 pixels for a random crop of 256.
REFERENCE_LOAD_SIZE, REFERENCE_CROP_SIZE = 286, 256

#: What a run may set of the 70x70 PatchGAN discriminator (both image-to-image families use it).
PATCHGAN_OPTIONS = {"ndf": WIDTH, "n_layers": Option(int, minimum=1, meaning="stride-2 layers of the PatchGAN"),
                    "norm": NORM}


def constructor_default(cls: type, name: str) -> Any:
    """The default value of constructor argument ``name`` of ``cls`` (the networks declare theirs once)."""
    return inspect.signature(cls).parameters[name].default


class ImageTranslationFamily(Family):
    """A family of image-to-image generators (see the module docstring)."""

    discriminator_options = PATCHGAN_OPTIONS
    unseen_input_kinds = ("photos",)

    @abstractmethod
    def size_multiple(self, generator: Mapping[str, Any]) -> tuple[int, str]:
        """(m, why): the generator built from ``generator`` arguments takes square images whose side is a
        multiple of m pixels; ``why`` says where m comes from, for messages."""

    def check_image_size(self, image_size: int, generator: Mapping[str, Any], discriminator: Mapping[str, Any]) -> None:
        """Sides accepted: multiples of :meth:`size_multiple` that leave the PatchGAN at least one patch
        (side / 2**n_layers - 2 >= 1, its three 4x4 convolutions without stride padding: pix2pix reference
        ``NLayerDiscriminator``).

        Raises:
            InputError: another size (the message names ``--image-size``, the rule and sizes that work).
        """
        multiple, why = self.size_multiple(generator)
        n_layers = discriminator.get("n_layers", constructor_default(PatchGANDiscriminator, "n_layers"))
        patch_min = 3 * 2 ** n_layers
        smallest = max(multiple, -(-patch_min // multiple) * multiple)
        if image_size % multiple == 0 and image_size >= smallest:
            return
        examples = ", ".join(str(smallest + k * multiple) for k in range(3))
        patch = (f" and the PatchGAN discriminator (n_layers {n_layers}) at least {patch_min} pixels"
                 if patch_min > multiple else "")
        raise InputError(f"--image-size {image_size}: the {self.title} takes multiples of {multiple} ({why}){patch}; "
                         f"expected {examples}, ...")

    def input_shape(self, generator: PrunableNetwork, image_size: int, batch: int = 1) -> tuple[int, ...]:
        """(batch, C, image_size, image_size)."""
        return (batch, generator.channels[INPUT], image_size, image_size)

    def load_size(self, image_size: int) -> int:
        """``image_size`` x 286 / 256, rounded: the reference margin of the random crop."""
        return int(round(image_size * REFERENCE_LOAD_SIZE / REFERENCE_CROP_SIZE))

    @staticmethod
    def loader_options(cfg, train: bool) -> dict:
        """Keyword arguments of the image dataset classes (direction, load/crop size, eval mode, skip_bad); the
        training split is scanned (every image decoded once, cached) when it is built, so that a bad image is
        reported before the first training step."""
        return dict(direction=cfg.direction, load_size=cfg.load_size, crop_size=cfg.image_size, train=train,
                    skip_bad=cfg.skip_bad, validate=train)

    def dataset_metadata(self, cfg) -> dict:
        """Name and direction, plus the dataset ``root``, the source-domain training folder ``source_dir`` and
        the held-out ``test_dir`` (``layout: side_by_side`` for A|B files: export then takes the source half).

        Raises:
            InputError: the dataset cannot be resolved.
        """
        from compress.data import resolve_dataset

        dataset = super().dataset_metadata(cfg)
        root = resolve_dataset(cfg.dataset)
        dataset["root"] = str(root)
        src = "A" if cfg.direction == "AtoB" else "B"
        if (root / "trainA").is_dir():
            dataset["source_dir"], dataset["test_dir"] = f"train{src}", f"test{src}"
        else:
            dataset["source_dir"] = "train"
            dataset["test_dir"] = "val" if (root / "val").is_dir() else "test"
            dataset["layout"] = "side_by_side"
        return dataset

    def image_size(self, arch: Mapping[str, Any], config: Mapping[str, Any]) -> int:
        """The architecture's input width, else ``config.json``'s ``image_size`` (default 256)."""
        shape = arch.get("input_shape") or []
        if len(shape) == 4:
            return int(shape[-1])
        return int(config.get("image_size", REFERENCE_CROP_SIZE))

    def grid_rows(self, data: EvalData, outputs: torch.Tensor, columns: int) -> list[torch.Tensor]:
        """Input / output (/ real target when paired) rows of ``columns`` images."""
        rows = [data.inputs[:columns], outputs[:columns]]
        if data.targets is not None:
            rows.append(data.targets[:columns])
        return rows

    def input_sets(self, arch: Mapping[str, Any], shape: list[int], *,
                   calibration_dir: str | os.PathLike | None, calibration_count: int, heldout_count: int,
                   need_calibration: bool) -> InputSets:
        """Source-domain images of the run's dataset (:func:`compress.families.calibration.image_input_sets`)."""
        return image_input_sets(arch.get("dataset") or {}, (shape[2], shape[3]), calibration_dir=calibration_dir,
                                calibration_count=calibration_count, heldout_count=heldout_count,
                                need_calibration=need_calibration)
