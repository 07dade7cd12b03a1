"""The hypernetwork (eqs. 1-4), the proximal step (eq. 5), masks, and materialisation equivalence."""
from __future__ import annotations

import pytest
import torch

from compress.hyper import HyperConvWeights, HyperNetwork, channel_mask, materialize, proximal_step
from compress.hyper.hypernetwork import _Eq4, _eq4_elementwise
from compress.hyper.proximal import channel_masks
from compress.families import get_family
from compress.models import DCGANGenerator, ResnetGenerator, UNetGenerator


def test_hypernetwork_shapes_follow_eqs_1_to_4():
    h = HyperConvWeights(5, 7, (3, 3), transposed=False, embedding_size=8)
    assert h.W1.shape == (5, 7, 8) and h.W2.shape == (5, 7, 9, 8) and h.B2.shape == (5, 7, 9)
    assert h(torch.randn(5), torch.randn(7)).shape == (7, 5, 3, 3)
    t = HyperConvWeights(5, 7, (4, 4), transposed=True)
    assert t(torch.randn(5), torch.randn(7)).shape == (5, 7, 4, 4)


def test_hypernetwork_equals_explicit_formula():
    torch.manual_seed(0)
    h = HyperConvWeights(3, 4, (2, 2), transposed=False, embedding_size=2)
    with torch.no_grad():
        for p in h.parameters():
            p.normal_()
    z_in, z_out = torch.randn(3), torch.randn(4)
    w = h(z_in, z_out)
    for i in range(3):
        for j in range(4):
            v = z_in[i] * z_out[j] + h.B0[i, j]
            s = v * h.W1[i, j] + h.B1[i, j]
            f = h.W2[i, j] @ s + h.B2[i, j]
            assert torch.allclose(w[j, i].flatten(), f, atol=1e-6)


@pytest.mark.parametrize("transposed", [False, True])
def test_covariance_zeroing_latent_entry_removes_exactly_one_channel(transposed):
    torch.manual_seed(0)
    h = HyperConvWeights(6, 5, (3, 3), transposed=transposed)   # B0, B1, B2 at their zero init
    z_in, z_out = torch.randn(6), torch.randn(5)
    full = h(z_in, z_out)
    out_dim, in_dim = (1, 0) if transposed else (0, 1)
    z = z_out.clone()
    z[2] = 0
    w = h(z_in, z)
    assert torch.all(w.select(out_dim, 2) == 0)
    others = [j for j in range(5) if j != 2]
    assert torch.equal(w.index_select(out_dim, torch.tensor(others)), full.index_select(out_dim, torch.tensor(others)))
    z = z_in.clone()
    z[4] = 0
    w = h(z, z_out)
    assert torch.all(w.select(in_dim, 4) == 0)
    assert torch.count_nonzero(w) == full.numel() - full.numel() // 6


def test_covariance_in_a_whole_generator():
    torch.manual_seed(0)
    hyper = HyperNetwork(ResnetGenerator(ngf=4, n_blocks=2), (1, 3, 32, 32))
    with torch.no_grad():
        hyper.latent_vectors["trunk"][1] = 0
    w = hyper.generated_weights()
    # every layer writing the shared trunk loses output channel 1; every layer reading it loses input channel 1
    for name in ("down2", "blocks.0.conv2", "blocks.1.conv2"):
        assert torch.all(w[f"{name}.weight"][1] == 0)
    for name in ("blocks.0.conv1", "blocks.1.conv1"):
        assert torch.all(w[f"{name}.weight"][:, 1] == 0)
    assert torch.all(w["up1.weight"][1] == 0)   # ConvTranspose: (in, out, k, k)
    assert torch.count_nonzero(w["stem.weight"]) == w["stem.weight"].numel()


def test_proximal_operator_is_soft_threshold():
    z = torch.tensor([-2.0, -0.05, 0.0, 0.03, 0.5])
    proximal_step([z], regularization=0.5, lr=0.1)      # threshold 0.05
    assert torch.allclose(z, torch.tensor([-1.95, 0.0, 0.0, 0.0, 0.45]))
    # repeated steps reach exactly zero and stay there
    for _ in range(100):
        proximal_step([z], 0.5, 0.1)
    assert torch.count_nonzero(z) == 0


def test_mask_threshold_and_guard():
    z = torch.tensor([1.0, 0.004, -0.2, 0.0, 0.006, -0.001])
    assert channel_mask(z, 5e-3, min_channels=1).tolist() == [True, False, True, False, True, False]
    dead = torch.tensor([0.0, 1e-4, -3e-4, 0.0, 2e-4])
    m = channel_mask(dead, 5e-3, min_channels=2)
    assert m.sum() == 2 and m.tolist() == [False, False, True, False, True]
    assert channel_mask(torch.zeros(3), 5e-3, min_channels=4).sum() == 3
    # a latent vector driven entirely to zero keeps exactly the guard's count, not everything
    assert channel_mask(torch.zeros(16), 5e-3, min_channels=4).sum() == 4


@pytest.mark.parametrize("make,shape", [
    (lambda: UNetGenerator(ngf=8, num_downs=6), (2, 3, 64, 64)),
    (lambda: ResnetGenerator(ngf=8, n_blocks=3), (2, 3, 64, 64)),
    (lambda: DCGANGenerator(ngf=16), (4, 100, 1, 1)),
    (lambda: get_family("cyclegan").discriminator(ndf=8), (2, 3, 64, 64)),
], ids=["pix2pix", "cyclegan", "dcgan", "patchgan"])
def test_materialised_network_equals_masked_hypernetwork(make, shape):
    torch.manual_seed(0)
    net = make()
    hyper = HyperNetwork(net, shape)
    with torch.no_grad():
        for p in hyper.hyper.parameters():          # trained-looking biases, not the zero init
            p.add_(0.01 * torch.randn_like(p))
        for z in hyper.prunable_latents().values():
            z[torch.rand(z.shape) < 0.6] = 0.0
        for m in net.modules():                       # non-trivial norm statistics and affine parameters
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
                m.weight.normal_()
                m.bias.normal_()
            if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d) and m.bias is not None:
                m.bias.normal_(0, 0.1)
    hyper.eval()
    x = torch.randn(shape)
    pruned = materialize(hyper).eval()
    assert sum(pruned.channels.values()) < sum(net.channels.values())
    assert dict(pruned.channels) == hyper.kept_channels()
    with torch.no_grad():
        a, b = hyper(x, masked=True), pruned(x)
    assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()
    # the pruned network's MACs are the masked estimate the search used
    assert hyper.macs() == hyper.macs_model(pruned.channels)


def test_output_layer_normalises_its_input_vector():
    """The output layer uses z_in / rms(z_in) in eq. 1; zeroed entries still remove their input channels."""
    torch.manual_seed(0)
    h = HyperConvWeights(6, 3, (3, 3), transposed=False, normalize_input=True)
    z_in, z_out = torch.randn(6), torch.ones(3)
    w = h(z_in, z_out)
    assert torch.allclose(h(0.1 * z_in, z_out), w, atol=1e-6)          # scale-free in z_in
    z_in[2] = 0
    assert torch.all(h(z_in, z_out)[:, 2] == 0)
    assert torch.all(h(torch.zeros(6), z_out) == 0)                     # an all-zero vector stays zero


@pytest.mark.parametrize("make", [lambda: DCGANGenerator(ngf=8), lambda: ResnetGenerator(ngf=8, n_blocks=2)])
def test_proximal_shrinkage_keeps_image_contrast(make):
    """Regression (session 2): eq. 5 shrinks every latent entry, the kept ones too; the generated image's
    contrast must not shrink with them (it did: DCGAN outputs of std 0.02 after a 50% search), and the fixed
    output vector gives every colour channel the same scale at initialisation."""
    torch.manual_seed(0)
    net = make()
    x = torch.randn(16, 100, 1, 1) if isinstance(net, DCGANGenerator) else torch.rand(2, 3, 64, 64) * 2 - 1
    hyper = HyperNetwork(net, (1, *x.shape[1:]))
    assert "output" not in hyper.latent_vectors and torch.equal(hyper.latent("output"), torch.ones(3))
    with torch.no_grad():
        before = hyper(x).std(dim=(0, 2, 3))
        proximal_step(hyper.prunable_latents().values(), regularization=1.0, lr=0.5)
        assert hyper.macs_reduction() > 0.3
        after = hyper(x, masked=True).std(dim=(0, 2, 3))
    assert before.min() > 0.1 and before.max() < 3 * before.min(), before
    assert after.min() > 0.5 * before.min(), (before, after)


def test_eq4_on_cuda_computes_the_batched_form_and_its_gradients():
    """The CUDA formulation of eq. 4 (broadcast product, autograd backward) against the CPU one (_Eq4)."""
    torch.manual_seed(0)
    W2, S, B2 = torch.randn(5, 7, 9, 8), torch.randn(5, 7, 8), torch.randn(5, 7, 9)
    grad = torch.randn(5, 7, 9)
    results = []
    for fn in (_Eq4.apply, _eq4_elementwise):
        xs = [t.clone().requires_grad_(True) for t in (W2, S, B2)]
        f = fn(*xs)
        f.backward(grad)
        results.append([f.detach()] + [x.grad for x in xs])
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_latent_vectors_of_a_network_are_stepped_and_masked_as_one_at_a_time():
    """proximal_step and channel_masks read the counts of all vectors in one transfer; each vector gets exactly
    what a call with it alone gives (projection, DHP's skip at the floor, shrink stopped by the floor, plain)."""
    def vectors():
        return [torch.tensor([0.30, 1e-3, 0.004, -0.50]),        # under its floor: projected
                torch.tensor([0.30, -0.02, 0.001, 0.004]),        # at its floor of 2: skipped
                torch.tensor([0.30, -0.02, 0.10, 0.004, -0.50]),  # the shrink would take it under its floor of 3
                torch.tensor([0.8, -0.6, 0.01, 0.0]),             # no floor: plain eq. 5
                torch.zeros(4)]
    floors = [3, 2, 3, 0, 2]
    together = vectors()
    proximal_step(together, regularization=0.5, lr=0.2, threshold=5e-3, floors=floors)
    alone = vectors()
    for z, f in zip(alone, floors):
        proximal_step([z], regularization=0.5, lr=0.2, threshold=5e-3, floors=[f])
    assert all(torch.equal(a, b) for a, b in zip(together, alone))
    masks = channel_masks(together, 5e-3, floors)
    assert [m.tolist() for m in masks] == [channel_mask(z, 5e-3, f).tolist() for z, f in zip(together, floors)]
    assert [int(m.sum()) for m in masks] == [3, 2, 3, 2, 2]


def test_proximal_floor_keeps_the_largest_entries_and_skips_a_vector_at_its_floor():
    """DHP's skip rule and our per-step floor: no vector falls under its floor, whatever the shrinkage."""
    z = torch.tensor([0.30, -0.02, 0.10, 0.004, -0.50, 0.06])
    proximal_step([z], regularization=1.0, lr=1.0, threshold=5e-3, floors=[2])   # would zero everything
    assert z.tolist() == pytest.approx([5e-3, 0.0, 0.0, 0.0, -5e-3, 0.0])          # the two largest stop at tau
    at_floor = z.clone()
    proximal_step([z], regularization=1.0, lr=1.0, threshold=5e-3, floors=[2])
    assert torch.equal(z, at_floor)                                               # skipped, as in DHP
    assert channel_mask(z, 5e-3, min_channels=2).tolist() == [True, False, False, False, True, False]
    # an optimizer step took one of the two under tau: the step projects it back onto the floor
    z[0] = 1e-3
    proximal_step([z], regularization=1.0, lr=1.0, threshold=5e-3, floors=[2])
    assert z.tolist() == pytest.approx([5e-3, 0.0, 0.0, 0.0, -5e-3, 0.0])


@pytest.mark.parametrize("make,shape", [
    (lambda: UNetGenerator(ngf=8, num_downs=6), (1, 3, 64, 64)),
    (lambda: ResnetGenerator(ngf=8, n_blocks=3), (1, 3, 64, 64)),
    (lambda: DCGANGenerator(ngf=16), (1, 100, 1, 1)),
], ids=["pix2pix", "cyclegan", "dcgan"])
def test_no_latent_vector_collapses_under_heavy_shrinkage(make, shape):
    torch.manual_seed(0)
    hyper = HyperNetwork(make(), shape, min_channels=4, min_channel_fraction=0.1)
    for _ in range(50):
        hyper.proximal_step(regularization=1.0, lr=0.5)
    floors, masks = hyper.floors(), hyper.masks()
    for name, z in hyper.prunable_latents().items():
        assert int((z.abs() >= hyper.threshold).sum()) == floors[name], name
        assert int(masks[name].sum()) == floors[name] and floors[name] >= 4
        assert floors[name] >= 0.1 * z.numel()


def test_search_forward_is_the_materialised_network():
    """The search's forward pass (the default, masks applied) computes what the materialised network does,
    also with trained-looking hypernetwork biases that give zeroed latent entries non-zero weights."""
    torch.manual_seed(0)
    hyper = HyperNetwork(ResnetGenerator(ngf=8, n_blocks=2), (1, 3, 32, 32))
    with torch.no_grad():
        for p in hyper.hyper.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for z in hyper.prunable_latents().values():
            z[:3] = 0.0
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    hyper.eval()
    pruned = materialize(hyper).eval()
    with torch.no_grad():
        assert torch.allclose(hyper(x), pruned(x), atol=1e-5, rtol=0)
        assert not torch.allclose(hyper(x, masked=False), pruned(x), atol=1e-3)   # DHP's unmasked forward differs
    from compress.hyper.materialize import materialization_gap_db

    gap = materialization_gap_db(hyper, pruned, x)
    assert gap is None or gap > 80


def test_batchnorm_statistics_after_materialisation_match_a_recomputation():
    from compress.hyper.batchnorm import batchnorm_layers, recompute_batchnorm_statistics

    torch.manual_seed(0)
    hyper = HyperNetwork(UNetGenerator(ngf=8, num_downs=5), (1, 3, 32, 32))
    with torch.no_grad():
        for z in hyper.prunable_latents().values():
            z[: z.numel() // 2] = 0.0
    batches = [torch.rand(4, 3, 32, 32) * 2 - 1 for _ in range(3)]
    assert recompute_batchnorm_statistics(hyper.network, hyper, batches) == 3
    pruned = materialize(hyper)
    reference = materialize(hyper)
    recompute_batchnorm_statistics(reference, reference, batches)
    for a, b in zip(batchnorm_layers(pruned), batchnorm_layers(reference)):
        assert torch.allclose(a.running_mean, b.running_mean, atol=1e-5)
        assert torch.allclose(a.running_var, b.running_var, atol=1e-4)
        assert int(a.num_batches_tracked) == 3
