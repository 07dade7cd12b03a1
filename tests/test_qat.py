"""Quantization-aware training (compress/qat.py, issue 15 "next tools"): the simulated int8 activations sit where
the int8 file has them, round on TFLite's grid, train through a straight-through gradient, and leave nothing
behind; ``--qat-steps`` is checked like every count flag."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compress.cli import main as compress_main
from compress.models import DCGANGenerator, ResnetGenerator, UNetGenerator
from compress.qat import (IMAGE_RANGE, QMAX, QMIN, QuantizationSimulation, fake_quantize, representative_batches,
                          simulation_points)


def _unet() -> UNetGenerator:
    torch.manual_seed(0)
    return UNetGenerator(ngf=4, num_downs=5).eval()


def test_points_are_the_tensors_of_the_int8_file():
    # U-Net: BatchNorm is folded into its convolution, so the convolution's own output is not a tensor of the file
    points = {(p.module, p.where) for p in simulation_points(_unet())}
    assert ("down.1", "input") in points and ("down_norm.1", "output") in points
    assert ("down.1", "output") not in points
    assert ("down.0", "output") in points          # the outermost down convolution has no norm
    assert ("up.0", "output") in points
    fixed = {(p.module, p.where): p.fixed for p in simulation_points(_unet())}
    assert fixed[("", "input")] == IMAGE_RANGE and fixed[("", "output")] == IMAGE_RANGE
    # ResNet: InstanceNorm stays an op of its own: the convolution's output and the norm's are both int8
    res = {(p.module, p.where) for p in simulation_points(ResnetGenerator(ngf=4, n_blocks=1))}
    assert {("blocks.0.conv1", "output"), ("blocks.0.norm1", "output"), ("stem", "output")} <= res
    # DCGAN: noise input, calibrated
    dc = simulation_points(DCGANGenerator(ngf=4), input_range=None)
    assert dc[0].module == "" and dc[0].where == "input" and dc[0].fixed is None


def test_fake_quantize_is_tflites_int8_grid():
    x = torch.rand(2001, generator=torch.Generator().manual_seed(0)) * 8 - 3   # no ties at half steps
    lo, hi = -2.0, 4.0
    y = fake_quantize(x, lo, hi)
    # the reference: TFLite's asymmetric int8 (scale (max - min) / 255, zero point rounded, clamp to [-128, 127])
    scale = (hi - lo) / 255.0
    zp = int(round(-128 - lo / scale))
    ref = (np.clip(np.round(x.numpy() / scale) + zp, -128, 127) - zp) * scale
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-6)
    assert len(torch.unique(y)) <= QMAX - QMIN + 1
    assert float(fake_quantize(torch.zeros(3), lo, hi).abs().max()) == 0.0         # 0 exactly representable
    # a range without 0 is widened to hold it (the quantizer's rule); values outside are clamped
    assert float(fake_quantize(torch.tensor([0.0, 0.5, 9.0]), 0.5, 1.0).max()) == pytest.approx(1.0, abs=1e-6)


def test_simulation_rounds_inside_the_context_only_and_trains_through_it():
    g = _unet()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    sim = QuantizationSimulation(g)
    with pytest.raises(RuntimeError, match="calibrate"):
        sim.__enter__()
    sim.calibrate([x[:2], x[2:]])
    assert sim.calibrated
    with torch.no_grad():
        ref = g(x)
        with sim:
            rounded = g(x)
        after = g(x)
    assert torch.equal(after, ref)                            # no hook left behind
    err = (rounded - ref).pow(2).mean().sqrt().item()
    assert 0 < err < 0.05                                     # rounded, close to float
    assert float(rounded.abs().max()) <= 1.0 + 1e-6
    # the output is on the fixed [-1, 1] grid: steps of 2/255 with 0 a level (the zero point is a whole number)
    levels = rounded / (2 / 255)
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    g.train()
    with sim:
        loss = g(x).abs().mean()
    loss.backward()
    grads = [p.grad for p in g.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads) and any(gr.abs().sum() > 0 for gr in grads)


def test_calibration_is_the_min_max_of_each_tensor_in_eval_mode():
    g = _unet().train()
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    seen = {}
    hook = g.down_norm[1].register_forward_hook(lambda _m, _a, out: seen.setdefault("bn1", out.detach().clone()))
    sim = QuantizationSimulation(g)
    sim.calibrate([x])
    hook.remove()
    assert g.training                                         # the mode is given back
    i = [(p.module, p.where) for p in sim.points].index(("down_norm.1", "output"))
    lo, hi = sim.ranges[i].tolist()
    assert lo == pytest.approx(float(seen["bn1"].min())) and hi == pytest.approx(float(seen["bn1"].max()))
    assert sim.ranges[0].tolist() == list(IMAGE_RANGE)        # the fixed input range is not calibrated
    # the state a checkpoint holds comes back, and only for the same generator
    other = QuantizationSimulation(_unet())
    other.load_state(sim.state())
    assert torch.equal(other.ranges, sim.ranges)
    with pytest.raises(ValueError, match="another generator"):
        QuantizationSimulation(UNetGenerator(ngf=4, num_downs=6)).load_state(sim.state())
    with pytest.raises(ValueError, match="no batch"):
        sim.calibrate([])


def test_representative_batches_add_the_target_domain():
    batches = [{"A": torch.zeros(2, 3, 8, 8), "B": torch.ones(2, 3, 8, 8)}]
    out = representative_batches(batches, lambda b: b["A"], ("B",))
    assert [float(t.mean()) for t in out] == [0.0, 1.0]
    assert len(representative_batches(batches, lambda b: b["A"])) == 1


@pytest.mark.parametrize("value", ["0", "-3"])
def test_qat_steps_flag_is_a_count(value, capsys, tmp_path):
    assert compress_main(["--model", "pix2pix", "--qat-steps", value, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"--qat-steps {value}" in err and "Traceback" not in err


@pytest.mark.parametrize("family", ["pix2pix", "dcgan"])
def test_stand_in_training_simulates_its_last_steps(family, shared_data, tmp_path, monkeypatch):
    from export.tiny import train_tiny_run

    entered, calibrated = [], []
    enter, calibrate = QuantizationSimulation.__enter__, QuantizationSimulation.calibrate
    monkeypatch.setattr(QuantizationSimulation, "__enter__", lambda self: entered.append(1) or enter(self))
    monkeypatch.setattr(QuantizationSimulation, "calibrate",
                        lambda self, b: calibrated.append(1) or calibrate(self, b))
    train_tiny_run(family, tmp_path / "run", shared_data, steps=3, qat_steps=2, n_images=8)
    assert len(entered) == 2 and len(calibrated) == 1        # steps 1 and 2 of 0..2, calibrated once at step 1
    assert (tmp_path / "run" / "generator.pt").is_file()
