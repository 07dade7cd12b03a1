"""Reference networks and the params/MACs accounting against the published figures."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from compress.artifacts import build_generator
from compress.errors import InputError
from compress.families import get_family
from compress.macs import MacsModel, count_macs, count_params
from compress.models import DCGANDiscriminator, DCGANGenerator, PatchGANDiscriminator, ResnetGenerator, UNetGenerator


def rel(a, b):
    return abs(a - b) / b


def test_unet256_matches_published_params_and_macs():
    g = UNetGenerator()
    assert rel(count_params(g), 54.41e6) < 0.001
    assert rel(count_macs(g, (1, 3, 256, 256)), 18.6e9) < 0.03


def test_resnet9_matches_published_params_and_macs():
    g = ResnetGenerator()
    assert rel(count_params(g), 11.38e6) < 0.001
    assert rel(count_macs(g, (1, 3, 256, 256)), 56.8e9) < 0.03


def test_dcgan_params_and_macs():
    # 100x256x16 + 256x128x16 + 128x64x16 + 64x3x16 weights + 3 BatchNorms (2 x (256 + 128 + 64)).
    g = DCGANGenerator()
    assert count_params(g) == 100 * 256 * 16 + 256 * 128 * 16 + 128 * 64 * 16 + 64 * 3 * 16 + 2 * (256 + 128 + 64)
    # Output-resolution convention: 4x4x256x100x16 + 8x8x128x256x16 + 16x16x64x128x16 + 32x32x3x64x16.
    expected = 16 * 256 * 100 * 16 + 64 * 128 * 256 * 16 + 256 * 64 * 128 * 16 + 1024 * 3 * 64 * 16
    assert count_macs(g, (1, 100, 1, 1)) == expected


def test_convtranspose_rule_differs_from_flopcounter_as_documented():
    """torch's FlopCounterMode counts a ConvTranspose at its input resolution (49.55 G for ResNet-9), compress.macs
    at its output resolution: the two differ by exactly (H_out W_out - H_in W_in) k^2 C_in C_out per
    transposed convolution, and agree on everything else."""
    g = ResnetGenerator().eval()
    sizes = {}
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, (i[0].shape, o.shape)))
             for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        g(torch.zeros(1, 3, 256, 256))
    for h in hooks:
        h.remove()
    assert rel(fc.get_total_flops() / 2, 49.55e9) < 0.01
    extra = sum((o[2] * o[3] - i[2] * i[3]) * m.kernel_size[0] * m.kernel_size[1] * m.in_channels * m.out_channels
                // m.groups for m, (i, o) in sizes.items())
    assert len(sizes) == 2 and extra > 0
    assert count_macs(g, (1, 3, 256, 256)) - fc.get_total_flops() // 2 == extra


def test_analytic_macs_model_agrees_with_hooks_for_pruned_widths():
    g = ResnetGenerator(ngf=16, n_blocks=3, channels={"trunk": 20, "block1": 7, "up1": 9})
    assert MacsModel(g, (1, 3, 64, 64)).full_macs == count_macs(g, (1, 3, 64, 64))
    u = UNetGenerator(ngf=8, num_downs=6, channels={"d2": 5, "u3": 11})
    assert MacsModel(u, (1, 3, 64, 64)).full_macs == count_macs(u, (1, 3, 64, 64))


@pytest.mark.parametrize("net,shape,out", [
    (UNetGenerator(ngf=8, num_downs=7), (2, 3, 128, 128), (2, 3, 128, 128)),
    (ResnetGenerator(ngf=8, n_blocks=2), (2, 3, 64, 64), (2, 3, 64, 64)),
    (DCGANGenerator(ngf=16), (2, 100, 1, 1), (2, 3, 32, 32)),
    (DCGANDiscriminator(ndf=16), (2, 3, 32, 32), (2,)),
    (PatchGANDiscriminator(in_channels=6, ndf=8), (2, 6, 256, 256), (2, 1, 30, 30)),
])
def test_forward_shapes(net, shape, out):
    y = net.eval()(torch.randn(shape))
    assert tuple(y.shape) == out
    if shape[1] != 6 and out[1:] == (3,) + tuple(shape[2:]) or net.family == "dcgan" and len(out) == 4:
        assert y.abs().max() <= 1.0


def test_unet_reference_structure():
    g = UNetGenerator()
    # dropout 0.5 in the three innermost ngf*8 up blocks (u4, u5, u6), BatchNorm, no bias but the last up-conv
    assert [i for i, d in enumerate(g.up_dropout) if isinstance(d, torch.nn.Dropout)] == [4, 5, 6]
    assert g.up[0].bias is not None and g.down[3].bias is None
    assert isinstance(g.down_norm[3], torch.nn.BatchNorm2d)


def test_patchgan_70x70_params():
    # The reference code prints 2.769 M (pix2pix, 6 input channels, BatchNorm) and 2.765 M (CycleGAN).
    expected = (6 * 64 * 16 + 64) + (64 * 128 * 16 + 256) + (128 * 256 * 16 + 512) + (256 * 512 * 16 + 1024) + (512 * 16 + 1)
    assert count_params(get_family("pix2pix").discriminator()) == expected
    assert round(count_params(get_family("cyclegan").discriminator()) / 1e6, 3) == 2.765


def test_build_generator_errors():
    with pytest.raises(InputError, match="family"):
        build_generator({"family": "stylegan"})
    with pytest.raises(InputError, match="bad generator arguments"):
        build_generator({"family": "cyclegan", "generator": {"depth": 3}})
    with pytest.raises(InputError, match="unknown latent vector"):
        ResnetGenerator(channels={"nope": 3})
    with pytest.raises(InputError, match="never pruned"):
        ResnetGenerator(channels={"output": 2})


def test_macs_table_command():
    out = subprocess.run([sys.executable, "-m", "compress.macs"], capture_output=True, text=True, check=True).stdout
    assert "54.41" in out and "11.38" in out and "56.80" in out


@pytest.mark.parametrize("make,size", [(UNetGenerator, 256), (ResnetGenerator, 64), (DCGANGenerator, None),
                                       (lambda: ResnetGenerator(ngf=16, n_blocks=3, channels={"trunk": 20,
                                                                                               "block1": 7}), 64)])
def test_macs_and_params_agree_with_thop(make, size):
    """The second, outside counter (ultralytics-thop): params equal (thop.profile); MACs equal convolution by
    convolution, with thop's own counting rules, once its transposed convolutions (counted at their input
    resolution, like FlopCounterMode) are scaled to the output resolution that compress.macs uses (the published
    convention: 56.8 G for ResNet-9)."""
    from thop import profile
    from thop.vision.basic_hooks import count_convNd, count_convtNd

    from compress.families import generator_input_shape

    g = make().eval()
    shape = generator_input_shape(g, size) if size else (1, 100, 1, 1)
    _, params = profile(g, inputs=(torch.zeros(shape),), verbose=False)
    assert params == count_params(g)
    counted: list[float] = []

    def hook(m, inputs, output):
        m.total_ops = torch.zeros(1, dtype=torch.float64)
        if isinstance(m, torch.nn.ConvTranspose2d):
            count_convtNd(m, inputs, output)  # input resolution; x (output / input pixels) = s^2
            counted.append(float(m.total_ops) * output.shape[-2] * output.shape[-1]
                           / (inputs[0].shape[-2] * inputs[0].shape[-1]))
        else:
            count_convNd(m, inputs, output)
            counted.append(float(m.total_ops))
        del m.total_ops

    hooks = [m.register_forward_hook(hook) for m in g.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        g(torch.zeros(shape))
    for h in hooks:
        h.remove()
    assert len(counted) == len(hooks) and sum(counted) == pytest.approx(count_macs(g, shape), rel=1e-9)
