"""The family registry: every registered family works through the one interface the trainer, evaluation
and export use, on tiny synthetic data (and, marked slow, on its real dataset); and a fourth family that is
declared in one place (here, in this module) runs through trainer, artifacts, evaluation data and export
inputs without any other code knowing about it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, default_collate

from compress.artifacts import architecture_of, build_generator, load_generator
from compress.config import RunConfig, preset
from compress.errors import InputError
from compress.evaluate.core import EvalSettings, evaluation_data
from compress.families import FAMILIES, Family, generator_input_shape, get_family, register
from compress.families.calibration import InputSets, noise_input_sets
from compress.families.evaluation import EvalData
from compress.families.recipe import GANRecipe, gan_loss
from compress.models.base import INPUT, OUTPUT, PrunableConv, PrunableNetwork
from export.inputs import resolve_input_sets

REFERENCE_FAMILIES = ("pix2pix", "cyclegan", "dcgan")


# ------------------------------------------------------------------------------------ synthetic datasets


def _image(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A smooth random RGB image (gradients plus noise), so that resizing and JPEG keep some structure."""
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([xx, yy, 1 - xx], -1) * rng.uniform(80, 200, 3) + rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _image_folders(root: Path, seed: int, folders: dict[str, int], width: int, height: int) -> Path:
    """Folders of random RGB images under ``root``: name -> image count."""
    rng = np.random.default_rng(seed)
    for phase, n in folders.items():
        (root / phase).mkdir(parents=True)
        for i in range(n):
            _image(rng, width, height).save(root / phase / f"{phase}_{i}.png")
    return root


def _aligned(root: Path) -> Path:
    """pix2pix layout: side-by-side A|B files in train/ and val/."""
    return _image_folders(root, 0, {"train": 4, "val": 3}, 128, 64)


def _unaligned(root: Path) -> Path:
    """CycleGAN layout: trainA/ trainB/ testA/ testB/."""
    return _image_folders(root, 1, {"trainA": 4, "trainB": 3, "testA": 3, "testB": 2}, 48, 48)


def _cifar(root: Path) -> Path:
    """A CIFAR-10-shaped npz (x_* (N, 32, 32, 3) uint8 HWC, y_* labels)."""
    rng = np.random.default_rng(2)
    root.mkdir(parents=True)
    arrays = {f"x_{s}": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for s, n in (("train", 6), ("test", 4))}
    arrays.update(y_train=rng.integers(0, 10, 6), y_test=rng.integers(0, 10, 4))
    np.savez(root / "tiny_cifar.npz", **arrays)
    return root


#: Per family: a writer of a tiny dataset in its layout, and run settings small enough for a CPU test.
SYNTHETIC = {
    "pix2pix": (_aligned, dict(image_size=32, load_size=36, batch_size=2, generator=dict(ngf=8, num_downs=5),
                               discriminator=dict(ndf=8))),
    "cyclegan": (_unaligned, dict(image_size=32, load_size=36, batch_size=2, pool_size=2,
                                  generator=dict(ngf=8, n_blocks=2), discriminator=dict(ndf=8))),
    "dcgan": (_cifar, dict(batch_size=4, generator=dict(ngf=8), discriminator=dict(ndf=8))),
}


def synthetic_config(name: str, tmp_path: Path) -> RunConfig:
    writer, overrides = SYNTHETIC[name]
    data = writer(tmp_path / f"{name}_data")
    return RunConfig(**{"model": name, "preset": "small", **preset(name, "small"), **overrides,
                        "dataset": str(data), "device": "cpu"}).validate()


# -------------------------------------------------------------------------------------------- registry


def test_registry_lists_the_reference_families_in_order():
    assert tuple(FAMILIES) == REFERENCE_FAMILIES
    assert set(SYNTHETIC) == set(FAMILIES), "every registered family needs a synthetic dataset in this test"
    for name, family in FAMILIES.items():
        assert isinstance(family, Family) and family.name == name and get_family(name) is family
        assert family.default_real_set in family.real_sets and set(family.presets) == {"paper", "small"}


def test_unknown_family_is_named_with_the_choices():
    with pytest.raises(InputError, match=r"model family 'stylegan': expected one of pix2pix, cyclegan, dcgan"):
        get_family("stylegan")
    with pytest.raises(InputError, match=r"--model 'stylegan'"):
        RunConfig(model="stylegan").validate()
    with pytest.raises(InputError, match=r"--model 'stylegan'"):
        preset("stylegan", "small")
    with pytest.raises(ValueError, match="already registered"):
        register(FAMILIES["dcgan"])


# ------------------------------------------------------------------- every family, through its interface


@pytest.mark.parametrize("name", REFERENCE_FAMILIES)
def test_family_builds_networks_and_runs_its_losses_on_a_synthetic_batch(name, tmp_path):
    family = get_family(name)
    cfg = synthetic_config(name, tmp_path)
    recipe = family.recipe(cfg)
    G, D = recipe.make_generator(), recipe.make_discriminator()
    assert isinstance(G, family.generator_class) and G.family == name
    assert isinstance(D, PrunableNetwork) and D.role == "discriminator"
    assert build_generator({"family": name, "generator": G.config()}).config() == G.config()

    train, held = family.dataset(cfg, train=True), family.dataset(cfg, train=False)
    assert len(train) >= cfg.batch_size and len(held) > 0
    batch = default_collate([train[i] for i in range(cfg.batch_size)])
    x = recipe.generator_input(batch)
    assert tuple(x.shape) == family.input_shape(G, cfg.image_size, cfg.batch_size) == \
        generator_input_shape(G, cfg.image_size, cfg.batch_size)
    fake = G(x)
    assert tuple(fake.shape) == (cfg.batch_size, 3, cfg.image_size, cfg.image_size)
    assert fake.abs().max() <= 1.0

    extra = recipe.extra_networks()
    if hasattr(recipe, "forward_extra"):  # as Trainer._step does
        recipe.forward_extra(extra, batch)
    loss_d, logs_d = recipe.discriminator_loss(D, batch, fake, extra)
    loss_g, logs_g = recipe.generator_loss(G, D, batch, fake, extra)
    assert torch.isfinite(loss_d) and torch.isfinite(loss_g) and logs_d and logs_g
    loss_g.backward()
    assert any(p.grad is not None for p in G.parameters())
    with torch.no_grad():
        rows = recipe.sample_rows(G, batch)
    assert rows and all(r.shape[1:] == fake.shape[1:] for r in rows)
    state = recipe.state()
    recipe.load_state(state)
    assert recipe.state().keys() == state.keys()  # what a checkpoint holds round-trips
    assert family.dataset_metadata(cfg)["name"] == cfg.dataset


@pytest.mark.parametrize("name", REFERENCE_FAMILIES)
def test_family_evaluation_protocol_and_export_inputs_on_synthetic_data(name, tmp_path):
    family = get_family(name)
    cfg = synthetic_config(name, tmp_path)
    G = family.recipe(cfg).make_generator().eval()
    arch = architecture_of(G, cfg.image_size, family.dataset_metadata(cfg))
    assert family.image_size(arch, cfg.to_dict()) == cfg.image_size

    settings = EvalSettings(num_samples=2, max_real=2).resolved(name)
    data = evaluation_data(arch, cfg.to_dict(), settings)
    assert isinstance(data, EvalData) and tuple(data.inputs.shape[1:]) == tuple(arch["input_shape"][1:])
    assert len(data.inputs) == 2 and 0 < len(data.real) <= 2 and data.real.dtype == np.uint8
    with torch.no_grad():
        outputs = G(data.inputs)
    rows = family.grid_rows(data, outputs, columns=2)
    assert rows and all(r.shape[1:] == outputs.shape[1:] for r in rows)

    sets = resolve_input_sets(arch, calibration_count=2, heldout_count=1)
    assert isinstance(sets, InputSets)
    assert sets.calibration.shape[1:] == sets.heldout.shape[1:] == tuple(arch["input_shape"][1:])
    assert len(sets.calibration) >= 1 and len(sets.heldout) == 1


def test_unseen_inputs_are_the_kinds_the_registry_names(monkeypatch):
    """export.photos draws each family's unseen inputs from its ``unseen_input_kinds``: pix2pix edge maps of the
    scikit-image photos and the photos, CycleGAN the photos, DCGAN (noise input) none."""
    from export.photos import PHOTOS, unseen_inputs

    pix = unseen_inputs("pix2pix", (16, 16))
    assert [n.split(":")[0] for n in pix.names] == ["edges"] * len(PHOTOS) + ["photo"] * len(PHOTOS)
    assert pix.inputs.shape == (2 * len(PHOTOS), 3, 16, 16) and "edges" in pix.description
    edges = pix.inputs[:len(PHOTOS)]
    assert edges.mean() > 0.5 > pix.inputs[len(PHOTOS):].mean()  # black edges on white: mostly white
    cyc = unseen_inputs("cyclegan", (16, 16))
    assert all(n.startswith("photo:") for n in cyc.names) and "edges" not in cyc.description
    assert np.array_equal(cyc.inputs, pix.inputs[len(PHOTOS):])
    assert unseen_inputs("dcgan", (16, 16)) is None
    monkeypatch.setattr(type(get_family("cyclegan")), "unseen_input_kinds", ("edges",))
    assert all(n.startswith("edges:") for n in unseen_inputs("cyclegan", (16, 16)).names)


@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCE_FAMILIES)
def test_family_yields_a_batch_of_its_real_dataset(name, shared_data, monkeypatch):
    monkeypatch.setenv("CORONETGAN_DATA_MIRROR", str(shared_data))
    family = get_family(name)
    values = {"model": name, **preset(name, "small"), "image_size": 32, "load_size": family.load_size(32) or 32,
              "batch_size": 2}
    if name == "pix2pix":   # a U-Net takes multiples of 2**num_downs: 5 downsamplings for 32 px
        values["generator"] = {**values["generator"], "num_downs": 5}
    cfg = RunConfig(**values).validate()
    for train in (True, False):
        ds = family.dataset(cfg, train=train)
        batch = default_collate([ds[i] for i in range(2)])
        x = family.recipe(cfg).generator_input(batch)
        G = family.recipe(cfg).make_generator()
        assert tuple(x.shape) == family.input_shape(G, 32, 2)


# ------------------------------------------------------------------------ a fourth family, declared here


class ToyGenerator(PrunableNetwork):
    """z (N, nz, 1, 1) -> image (N, 3, 16, 16): three ConvTranspose layers, widths 2*ngf, ngf."""

    family = "toy"

    def __init__(self, nz: int = 16, ngf: int = 8, channels=None):
        super().__init__()
        self._remember(nz=nz, ngf=ngf)
        self.nz, self.ngf = nz, ngf
        self.channels = c = self._resolve_channels(channels)
        self.convs = nn.ModuleList([nn.ConvTranspose2d(c[INPUT], c["g0"], 4, 1, 0, bias=False),   # 4x4
                                    nn.ConvTranspose2d(c["g0"], c["g1"], 4, 2, 1, bias=False),    # 8x8
                                    nn.ConvTranspose2d(c["g1"], c[OUTPUT], 4, 2, 1, bias=False)])  # 16x16
        self.norms = nn.ModuleList([nn.BatchNorm2d(c["g0"]), nn.BatchNorm2d(c["g1"])])

    def default_channels(self) -> dict[str, int]:
        return {INPUT: self.nz, OUTPUT: 3, "g0": 2 * self.ngf, "g1": self.ngf}

    def prunable_convs(self) -> list[PrunableConv]:
        return [PrunableConv("convs.0", "g0", (INPUT,), "norms.0"), PrunableConv("convs.1", "g1", ("g0",), "norms.1"),
                PrunableConv("convs.2", OUTPUT, ("g1",))]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norms[0](self.convs[0](z)))
        h = torch.relu(self.norms[1](self.convs[1](h)))
        return torch.tanh(self.convs[2](h))


class ToyDiscriminator(PrunableNetwork):
    """image (N, 3, 16, 16) -> logits (N,)."""

    family = "toy"
    role = "discriminator"

    def __init__(self, ndf: int = 8, channels=None):
        super().__init__()
        self._remember(ndf=ndf)
        self.ndf = ndf
        self.channels = c = self._resolve_channels(channels)
        self.convs = nn.ModuleList([nn.Conv2d(c[INPUT], c["l0"], 4, 2, 1), nn.Conv2d(c["l0"], c[OUTPUT], 8, 1, 0)])

    def default_channels(self) -> dict[str, int]:
        return {INPUT: 3, OUTPUT: 1, "l0": self.ndf}

    def prunable_convs(self) -> list[PrunableConv]:
        return [PrunableConv("convs.0", "l0", (INPUT,)), PrunableConv("convs.1", OUTPUT, ("l0",))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs[1](F.leaky_relu(self.convs[0](x), 0.2)).view(-1)


class ToyImages(Dataset):
    """``images.npy`` (N, 3, 16, 16) uint8 of a folder; items (image in [-1, 1], 0)."""

    def __init__(self, root: Path):
        self.images = np.load(Path(root) / "images.npy")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.images[i]).float() / 127.5 - 1.0, 0


class ToyRecipe(GANRecipe):
    """LSGAN on noise."""

    def generator_input(self, batch):
        return torch.randn(batch[0].shape[0], self.cfg.generator.get("nz", 16), 1, 1)

    def discriminator_loss(self, D, batch, fake, extra):
        loss = gan_loss(D(batch[0]), True, "lsgan") + gan_loss(D(fake.detach()), False, "lsgan")
        return loss, {"D": loss.item()}

    def generator_loss(self, G, D, batch, fake, extra):
        loss = gan_loss(D(fake), True, "lsgan")
        return loss, {"G": loss.item()}

    def sample_rows(self, G, batch):
        return [G(self.generator_input(batch))]


class Toy(Family):
    """What a new family module declares: networks, presets, data, recipe, evaluation and export inputs."""

    name = "toy"
    title = "toy generator"
    generator_class = ToyGenerator
    presets = {"paper": dict(image_size=16, load_size=16, batch_size=8),
               "small": dict(image_size=16, load_size=16, batch_size=4, search_steps=30, converge_steps=4)}
    real_sets = ("all",)
    default_real_set = "all"
    default_num_samples = 6

    def discriminator(self, **kwargs):
        return ToyDiscriminator(**kwargs)

    def input_shape(self, generator, image_size, batch=1):
        return (batch, generator.channels[INPUT], 1, 1)

    def recipe(self, cfg):
        return ToyRecipe(self, cfg)

    def dataset(self, cfg, train=True):
        from compress.data import resolve_dataset

        return ToyImages(resolve_dataset(cfg.dataset))

    def load_size(self, image_size):
        return None

    def image_size(self, arch, config):
        return int(config.get("image_size", 16))

    def evaluation_data(self, arch, config, settings, root, name):
        z = torch.randn(settings.num_samples, arch["input_shape"][1], 1, 1,
                        generator=torch.Generator().manual_seed(settings.seed))
        return EvalData(z, ToyImages(root).images[: settings.max_real], f"{name}_all", "toy protocol")

    def grid_rows(self, data, outputs, columns):
        return [outputs[:columns]]

    def input_sets(self, arch, shape, *, calibration_dir, calibration_count, heldout_count, need_calibration):
        return noise_input_sets(self.name, shape[1], calibration_dir=calibration_dir,
                                calibration_count=calibration_count, heldout_count=heldout_count,
                                need_calibration=need_calibration)


@pytest.fixture
def toy_family():
    family = register(Toy())
    try:
        yield family
    finally:
        FAMILIES.pop(family.name)


def test_a_fourth_family_registered_in_one_place_runs_end_to_end(toy_family, tmp_path):
    from compress.cli import build_parser, config_from_args
    from compress.trainer import Trainer

    data = tmp_path / "toy_data"
    data.mkdir()
    np.save(data / "images.npy", np.random.default_rng(3).integers(0, 256, (12, 3, 16, 16), dtype=np.uint8))
    assert get_family("toy") is toy_family and "toy" in FAMILIES
    cfg = config_from_args(build_parser().parse_args([
        "--model", "toy", "--preset", "small", "--dataset", str(data), "--target", "0.3", "--latent-lr", "0.05",
        "--check-interval", "2", "--device", "cpu", "--image-size", "16"]))
    assert cfg.batch_size == 4 and cfg.load_size == 16  # the family's small preset; load size untouched

    run = tmp_path / "run"
    report = Trainer(cfg, run).run()
    assert report["model"] == "toy" and report["pruned"]["macs"] < report["original"]["macs"]
    assert report["achieved_macs_reduction"] > 0 and report["search"]["status"]["G"]["status"] in (
        "reached", "budget_exhausted")
    generator, arch = load_generator(run)
    assert isinstance(generator, ToyGenerator) and arch["family"] == "toy"
    assert arch["input_shape"] == [1, 16, 1, 1] and arch["dataset"]["name"] == str(data)
    assert list((run / "samples").glob("*.png"))

    config = json.loads((run / "config.json").read_text())
    settings = EvalSettings(max_real=5).resolved("toy")
    assert settings.real_set == "all" and settings.num_samples == 6
    data_eval = evaluation_data(arch, config, settings)
    assert data_eval.inputs.shape == (6, 16, 1, 1) and data_eval.real.shape == (5, 3, 16, 16)
    assert toy_family.grid_rows(data_eval, generator(data_eval.inputs), 4)[0].shape == (4, 3, 16, 16)

    sets = resolve_input_sets(arch, calibration_count=3, heldout_count=2)
    assert sets.calibration.shape == (3, 16, 1, 1) and sets.heldout.shape == (2, 16, 1, 1)
    assert sets.description["kind"] == "noise"

    # the export's family knowledge comes from the registry too: no unseen photos, no cross-layer equalisation
    from export.photos import unseen_inputs
    from quantize.equalize import _cle_links

    assert unseen_inputs("toy", (16, 16)) is None and _cle_links(generator) == []


def test_a_budget_in_epochs_replaces_the_presets_steps():
    """``--epochs`` alone is the total budget (the small preset's 700/1000 steps used to win silently);
    ``--steps`` with it still wins; a ``--steps`` below the preset's search budget names where 400 came from."""
    from compress.cli import build_parser, config_from_args

    def cfg(*flags):
        return config_from_args(build_parser().parse_args(["--model", "dcgan", "--preset", "small", *flags]))

    assert (cfg("--epochs", "0.5").steps, cfg("--epochs", "0.5").epochs) == (0, 0.5)
    assert cfg("--epochs", "0.5", "--steps", "500").steps == 500
    assert cfg().steps == 1000
    with pytest.raises(InputError, match=r"--search-steps 400 > --steps 100 \(each given, or the small preset's "
                                         r"value\).*give both"):
        cfg("--steps", "100")
