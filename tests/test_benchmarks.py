"""The benchmark driver (compress/benchmarks.py) runs: tiny versions of its three measurements."""
from __future__ import annotations

import pytest
import torch

from compress import benchmarks
from compress.hyper import HyperNetwork
from compress.models import ResnetGenerator


def test_step_cost_and_breakdown_run_on_real_data(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("CORONETGAN_DATA_MIRROR", str(shared_data))
    monkeypatch.setitem(benchmarks.STEP_CASES, "tiny", ("dcgan", "small", {"generator": {"ngf": 8},
                                                                          "discriminator": {"ndf": 8},
                                                                          "batch_size": 4}))
    row = benchmarks.step_cost_case("tiny", rounds=2, per_round=1, breakdown_steps=1, warmup=1)
    assert row["search_ms_median"] > 0 and row["plain_ms_median"] > 0 and row["ratio_median"] > 0
    assert len(row["search_ms"]) == len(row["plain_ms"]) == 2
    bd = row["breakdown"]
    assert bd["per_step_s"]["hyper: weight generation forward (eqs. 1-4)"] > 0
    assert bd["isolated_s"]["hyper bwd"] > 0
    s = row["sizes"]
    # per (n, c) pair: B0 1 + W1 m + B1 m + W2 k^2 m + B2 k^2 = (m + 1) k^2 + 2m + 1 against k^2 weights
    assert 8 < s["hypernetwork_params"] / s["generator_params"] < 11.5
    table = benchmarks.step_cost_table({"machine": benchmarks.machine(), "rows": [row]})
    assert "| tiny |" in table and "Where the search step's time goes" in table
    assert bd["opt_G_also_steps"] == [] and "hypernetworks + latents) |" in table  # DCGAN trains one generator


def test_the_step_profile_and_eq4_formulations_run_on_real_data(shared_data, monkeypatch):
    """compress.step_profile (``make gpu-profile``) on the CPU: the profiler's per-step figures, the top ops, and
    eq. 4's three formulations agreeing with the project's."""
    from compress import step_profile

    monkeypatch.setenv("CORONETGAN_DATA_MIRROR", str(shared_data))
    monkeypatch.setitem(benchmarks.STEP_CASES, "tiny", ("dcgan", "small", {"generator": {"ngf": 8},
                                                                          "discriminator": {"ndf": 8},
                                                                          "batch_size": 4}))
    rec = step_profile.profile_case("tiny", "cpu", steps=2, warmup=1)
    for v in ("plain", "search"):
        r = rec[v]
        assert r["wall_ms"] > 0 and r["gpu_busy_ms"] == 0 and r["kernels_per_step"] == 0
        assert r["top_cpu"] and r["top_gpu"] == [] and r["cpu_ops_per_step"] > 0
    assert rec["search"]["cpu_ops_per_step"] > rec["plain"]["cpu_ops_per_step"]     # the hypernetwork's ops
    eq4 = rec["eq4"]
    assert set(eq4["ms"]) == {"baddbmm", "einsum", "mul_sum"} and eq4["layers"] == 4
    assert all(d < 1e-5 for d in eq4["max_rel_diff"].values())
    table = step_profile.profile_table(rec)
    assert "### tiny on cpu" in table and "| mul_sum |" in table


def test_allocation_table_compares_with_the_papers_figures_of_the_registry():
    layer = {"layer": "down.1", "out_channels": 4, "original_out": 16, "macs_share": 0.5}
    rows = [{"model": m, "target": t, "status": "met", "params_before": 1000, "params_after": 250, "layers": [layer]}
            for m, t in (("pix2pix", 0.75), ("cyclegan", 0.85), ("dcgan", 0.75), ("pix2pix", 0.5))]
    table = benchmarks.allocation_table({"rows": rows})
    assert "### pix2pix 75%: 25.0% of the parameters remain (paper: 24.3%)" in table
    assert "### cyclegan 85%: 25.0% of the parameters remain (paper: 14.8%)" in table
    assert "dcgan" not in table and "pix2pix 50%" not in table  # no published figure to compare with


def test_controllability_table_reports_budget_exhausted():
    row = {"model": "dcgan", "target": 0.9, "status": "budget_exhausted", "achieved": 0.41, "frozen_at_step": 400,
           "search_budget": 400, "search_s": 12.0, "wall_s": 20.0, "params_before": 1e6, "params_after": 5e5,
           "macs_before": 2e7, "macs_after": 1e7, "load_before": [2.0], "load_after": [2.1]}
    table = benchmarks.controllability_table({"machine": benchmarks.machine(), "note": "n", "rows": [row]})
    assert "budget exhausted" in table and "0.410" in table


def test_memory_worker_reports_peak_rss(shared_data, monkeypatch):
    monkeypatch.setenv("CORONETGAN_DATA_MIRROR", str(shared_data))
    r = benchmarks.memory_worker("search", 1, "dcgan", "small",
                                 {"generator": {"ngf": 8}, "discriminator": {"ndf": 8}, "batch_size": 4})
    assert r["peak_rss_mib"] >= r["peak_rss_after_build_mib"] >= r["peak_rss_after_import_mib"] > 0
    assert 0 < r["G_grad_mib"] <= r["G_trainable_mib"]
    # Adam holds exp_avg and exp_avg_sq for every parameter that had a gradient: twice the gradients, exactly
    assert r["G_adam_state_mib"] == pytest.approx(2 * r["G_grad_mib"])


def test_weight_cache_gives_the_same_gradients_as_separate_generations():
    torch.manual_seed(0)
    net = ResnetGenerator(ngf=4, n_blocks=1)
    h = HyperNetwork(net, (1, 3, 16, 16))
    x = torch.randn(2, 3, 16, 16)
    grads = []
    for reuse in (True, False):
        h.reuse_weights = reuse
        h.zero_grad(set_to_none=True)
        loss = h(x).square().mean() + h(x.flip(-1)).abs().mean()   # two calls, one graph
        loss.backward()
        grads.append([p.grad.clone() for p in h.hyper.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)
    # after a backward pass or a parameter change the weights are generated anew
    h.reuse_weights = True
    w1 = h.generated_weights()
    h(x).sum().backward()
    assert h._weights_cache is None
    w2 = h.generated_weights()
    assert all(w1[k] is not w2[k] for k in w1)
    with torch.no_grad():
        h.latent_vectors["trunk"].mul_(0.5)
    w3 = h.generated_weights()
    assert not torch.equal(w3["blocks.0.conv1.weight"], w2["blocks.0.conv1.weight"])
