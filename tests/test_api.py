"""The public Python API of the README (issue 12, item 5), on a synthetic CIFAR-style npz: a few steps only."""
from __future__ import annotations

import numpy as np
import torch

import compress


def synthetic_cifar(folder):
    rng = np.random.default_rng(0)
    folder.mkdir()
    np.savez(folder / "cifar10_partial.npz",
             x_train=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), y_train=rng.integers(0, 10, 16),
             x_test=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), y_test=rng.integers(0, 10, 8))
    return folder


def test_package_exports_exactly_the_api():
    assert sorted(compress.__all__) == ["compress_model", "load_generator"]


def test_compress_model_then_load_generator(tmp_path):
    data = synthetic_cifar(tmp_path / "cifar10")
    report = compress.compress_model(
        "dcgan", 0.5, tmp_path / "run", dataset=str(data), device="cpu", batch_size=8, search_steps=30,
        converge_steps=2, check_interval=1, latent_lr=0.05, tolerance=0.1, generator={"ngf": 8},
        discriminator={"ndf": 8}, sample_interval=1000, checkpoint_interval=1000)
    assert report["pruned"]["macs"] < report["original"]["macs"]
    assert report["pruned"]["params"] < report["original"]["params"]  # the README's "MACs, params"
    if report["target_reached"]:
        assert abs(report["achieved_macs_reduction"] - 0.5) <= 0.1
    else:  # a 30-step budget may end first: then the report says so
        assert report["search"]["status"]["G"]["status"] == "budget_exhausted"
    generator, arch = compress.load_generator(tmp_path / "run")
    assert arch["family"] == "dcgan"
    with torch.no_grad():
        out = generator(torch.randn(2, 100, 1, 1))
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()
