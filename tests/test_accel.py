"""The CUDA fast path (compress/accel.py, compress/data/device.py): CPU runs stay bit for bit as they were, and the
path's own code -- bf16 autocast with the weight generation in fp32, channels_last, the training set held on the
device -- works (run here on the CPU, where a real run ignores it)."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from compress.accel import Accel
from compress.config import RunConfig
from compress.data import AlignedDataset, CIFAR10Dataset, UnalignedDataset, load_rgb
from compress.data.codec import float_to_uint8, uint8_to_float
from compress.data.device import DeviceBatches, crop_flip
from compress.data.transforms import Params, apply
from compress.errors import InputError
from compress.step import StepHooks, gan_step
from compress.trainer import Trainer

CUDA_OPTIONS = dict(precision="bf16", channels_last=True, data_on_device=True, compile=True)


def tiny_dcgan(**kw) -> RunConfig:
    return RunConfig(**{**dict(model="dcgan", preset="small", dataset="cifar10", image_size=32, load_size=32,
                               batch_size=16, generator=dict(ngf=16), discriminator=dict(ndf=16), target=0.5,
                               latent_lr=0.02, regularization=1.0, check_interval=5, search_steps=12,
                               converge_steps=3, sample_interval=1000, checkpoint_interval=1000, log_interval=5,
                               max_train_images=64, device="cpu"), **kw}).validate()


def _digest(path) -> str:
    state = torch.load(path, weights_only=True)
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].numpy().tobytes())
    return h.hexdigest()


@pytest.mark.slow     # two runs: about 35 s on the shared 2-core VM
def test_cuda_options_leave_a_cpu_run_bit_identical(tmp_path, shared_data, monkeypatch):
    """A tiny CPU run with every CUDA option asked for (bf16, channels_last, data on device, compile) computes the
    same generator, bit for bit, and the same losses as one with the defaults: on the CPU they are all ignored."""
    monkeypatch.setenv("CORONETGAN_DATA_MIRROR", str(shared_data))
    Trainer(tiny_dcgan(), tmp_path / "defaults").run()
    Trainer(tiny_dcgan(**CUDA_OPTIONS), tmp_path / "cuda-options").run()
    assert _digest(tmp_path / "defaults" / "generator.pt") == _digest(tmp_path / "cuda-options" / "generator.pt")
    losses = [[{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
              for run in ("defaults", "cuda-options")]
    assert losses[0] == losses[1]
    saved = json.loads((tmp_path / "cuda-options" / "config.json").read_text())
    assert {k: saved[k] for k in CUDA_OPTIONS} == CUDA_OPTIONS


def test_the_accel_settings_are_off_on_the_cpu_whatever_the_config():
    assert Accel.for_run(tiny_dcgan(**CUDA_OPTIONS), torch.device("cpu")) == Accel(torch.device("cpu"))
    with pytest.raises(InputError, match="--precision 'fp16'"):
        tiny_dcgan(precision="fp16")


def test_bf16_autocast_keeps_the_weight_generation_in_fp32(tmp_path):
    """The CUDA path's step code, run on the CPU: under bf16 autocast the generator computes in bf16 but its
    weights (eqs. 1-4) come out in fp32, identical to those generated outside autocast; a whole search step with
    channels_last networks and batches trains (finite losses, fp32 parameters, the proximal step applied)."""
    torch.manual_seed(0)
    tr = Trainer(tiny_dcgan(), tmp_path / "run")
    tr.accel = Accel(torch.device("cpu"), bf16=True, channels_last=True)
    tr.hooks = StepHooks(tr.accel.autocast)
    G, D, extra = tr.build_search_networks()
    opt_G, opt_D = tr.build_optimizers(G, D, extra, 0.05)
    conv = next(m for m in D.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(p.is_contiguous() for p in G.hyper.parameters())     # the hypernetwork stays as it is
    z = torch.randn(4, 100, 1, 1)
    plain = {k: w.detach().clone() for k, w in G.generated_weights(G.masks()).items()}
    with tr.accel.autocast():
        weights = G.generated_weights(G.masks())
        out = G(z)
    assert {w.dtype for w in weights.values()} == {torch.float32}
    assert all(torch.equal(weights[k], plain[k]) for k in plain)
    assert out.dtype == torch.bfloat16
    z_before = {k: v.detach().clone() for k, v in G.prunable_latents().items()}
    batch = tr.accel.prepare_batch([torch.rand(8, 3, 32, 32) * 2 - 1, torch.zeros(8, dtype=torch.long)])
    assert batch[0].is_contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        logs = gan_step(tr.recipe, batch, G, D, extra, opt_G, opt_D, controller=tr.controller, hooks=tr.hooks)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert {p.dtype for p in G.parameters()} == {torch.float32}
    assert any(not torch.equal(z_before[k], v) for k, v in G.prunable_latents().items())


def test_device_batches_crop_the_loaders_pixels(shared_data):
    """The training set held on the device gives, for a crop and flip, exactly the pixels the CPU loader gives."""
    params = Params((3, 1), True)
    aligned = AlignedDataset(shared_data / "facades_tiny", "train", load_size=36, crop_size=32)
    held = DeviceBatches(aligned, 2, torch.device("cpu"), seed=0)
    want = apply(load_rgb(aligned.items[0][0]), params, aligned.opt)
    got = uint8_to_float(crop_flip(held.held["A"], 0, params.crop_xy, params.flip, 32), channels_last=False)
    assert torch.equal(got, want)
    batch = next(iter(held))
    assert set(batch) == {"A", "B", "path"} and batch["A"].shape == (2, 3, 32, 32) == batch["B"].shape
    assert batch["A"].dtype == torch.float32 and -1 <= float(batch["A"].min()) and float(batch["A"].max()) <= 1

    unaligned = UnalignedDataset(shared_data / "facades_tiny", "train", load_size=36, crop_size=32)
    held = DeviceBatches(torch.utils.data.Subset(unaligned, [4, 2]), 1, torch.device("cpu"), seed=0)
    want = apply(load_rgb(unaligned.paths_b[5]), params, unaligned.opt)
    got = uint8_to_float(crop_flip(held.held["B"], 5, params.crop_xy, params.flip, 32), channels_last=False)
    assert torch.equal(got, want)
    assert held.paths_a == [str(unaligned.paths_a[4]), str(unaligned.paths_a[2])]
    assert set(next(iter(held))) == {"A", "B", "path_A", "path_B"}


def test_device_batches_split_each_epoch_between_the_ranks(shared_data):
    cifar = CIFAR10Dataset(shared_data / "cifar10_partial", "train")
    subset = torch.utils.data.Subset(cifar, list(range(10)))
    seen = []
    for rank in (0, 1):
        held = DeviceBatches(subset, 1, torch.device("cpu"), seed=3, rank=rank, world_size=2)
        it = iter(held)
        for _ in range(5):          # one epoch: 10 items over 2 ranks
            images, labels = next(it)
            u8 = float_to_uint8(images, channels_last=False)[0]
            seen.append(next(i for i in range(10) if torch.equal(cifar.images[i], u8)))
    assert sorted(seen) == list(range(10))


def test_data_on_device_refuses_what_it_cannot_hold(shared_data):
    crop = AlignedDataset(shared_data / "facades_tiny", "train", load_size=32, crop_size=32, preprocess="crop")
    with pytest.raises(InputError, match="--data-on-device: the training set uses preprocess='crop'"):
        DeviceBatches(crop, 2, torch.device("cpu"))
    cifar = CIFAR10Dataset(shared_data / "cifar10_partial", "train")
    with pytest.raises(InputError, match="--data-on-device: the training set needs"):
        DeviceBatches(cifar, 2, torch.device("cpu"), max_bytes=1000)
