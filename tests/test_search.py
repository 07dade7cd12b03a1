"""The stop rule by name: DHP's ``terminate`` and the centring inside its window (compress/search.py)."""
from __future__ import annotations

import pytest

from compress.search import Decision, centring_decision, dhp_terminate

T, TOL = 0.75, 0.02


@pytest.mark.parametrize("r,stop", [(0.70, False), (0.7299, False), (0.73, True), (0.75, True), (0.80, True)])
def test_dhp_terminate_is_remaining_macs_within_limit(r, stop):
    # DHP stops once pruned/original MACs <= (1 - target) + limit
    assert dhp_terminate(r, T, TOL) is stop


@pytest.mark.parametrize("r,snap,inwin,fine,expected", [
    (0.60, False, False, False, Decision.CONTINUE),        # short of the window
    (0.60, True, True, True, Decision.CONTINUE),           # left the window downwards: keep searching
    (0.74, False, False, False, Decision.APPROACH),        # in the window, short: batch by batch
    (0.75, True, True, True, Decision.FREEZE),             # exactly on target
    (0.76, False, False, False, Decision.FREEZE),          # past the target, nothing to return to
    (0.76, True, False, False, Decision.REFINE),           # a coarse check passed the target
    (0.76, True, True, True, Decision.CLOSEST_FINISH),     # one batch stepped past the target
    (0.80, True, True, True, Decision.STOP_BEFORE),        # left the window from inside it
    (0.80, True, False, False, Decision.REFINE),           # a coarse check jumped past the window
    (0.80, True, False, True, Decision.GREEDY_FINISH),     # one batch jumped past the window
    (0.80, False, False, False, Decision.OVERSHOOT),       # first check already past the window
])
def test_centring_decision_table(r, snap, inwin, fine, expected):
    assert centring_decision(r, T, TOL, has_snapshot=snap, in_window=inwin, batch_by_batch=fine) is expected


def test_budget_ending_inside_the_window_short_of_the_target_finishes_on_the_target():
    """The budget runs out with the reduction inside the window but short of the target: the controller removes
    the channels of smallest |z| up to the target (what the next proximal steps would zero first), instead of
    freezing wherever the budget ended (pix2pix 95% at 400 steps used to stop at 94.4%)."""
    import torch

    from compress.hyper import HyperNetwork
    from compress.models import DCGANGenerator
    from compress.search import SearchController

    torch.manual_seed(0)
    hyper = HyperNetwork(DCGANGenerator(ngf=16), (1, 100, 1, 1))
    ctl = SearchController({"G": hyper}, target=T, tolerance=TOL, check_interval=10 ** 9, regularization=1.0)
    while hyper.macs_reduction() < T - TOL:
        ctl.proximal("G", lr=0.002)
    before = hyper.macs_reduction()
    assert T - TOL <= before < T - 0.005, before
    z_before = {k: z.detach().clone() for k, z in hyper.prunable_latents().items()}
    masks_before = {k: m.clone() for k, m in hyper.masks().items()}
    ctl.exhaust(step=400)
    st = ctl.status["G"]
    assert st.status == "reached" and st.step == 400
    assert abs(st.reduction - T) < abs(before - T) and abs(st.reduction - T) <= 0.005, st.reduction
    # only channels that were among the smallest |z| still kept were removed, and none came back
    after = hyper.masks()
    removed = {k: masks_before[k] & ~after[k] for k in z_before}
    assert any(m.any() for m in removed.values())
    assert all(not (after[k] & ~masks_before[k]).any() for k in z_before)
    largest_removed = max(z_before[k][m].abs().max() for k, m in removed.items() if m.any())
    smallest_kept = min(z_before[k][after[k]].abs().min() for k in z_before if after[k].any())
    assert largest_removed <= smallest_kept


def test_budget_ending_short_of_the_window_removes_nothing():
    import torch

    from compress.hyper import HyperNetwork
    from compress.models import DCGANGenerator
    from compress.search import SearchController

    torch.manual_seed(0)
    hyper = HyperNetwork(DCGANGenerator(ngf=16), (1, 100, 1, 1))
    ctl = SearchController({"G": hyper}, target=T, tolerance=TOL, check_interval=10 ** 9, regularization=1.0)
    for _ in range(20):
        ctl.proximal("G", lr=0.002)
    before = hyper.macs_reduction()
    assert before < T - TOL
    ctl.exhaust(step=20)
    assert ctl.status["G"].status == "budget_exhausted" and ctl.status["G"].reduction == before


def test_budget_ending_past_the_window_between_checks_goes_back_and_finishes_on_the_target():
    """The budget ends between checks after a step that took the reduction past the window: the controller does
    what a check would have done (back to the last check, then channel by channel towards the target) instead of
    freezing the overshoot as ``budget_exhausted``."""
    import torch

    from compress.hyper import HyperNetwork
    from compress.models import DCGANGenerator
    from compress.search import SearchController

    torch.manual_seed(0)
    hyper = HyperNetwork(DCGANGenerator(ngf=16), (1, 100, 1, 1))
    ctl = SearchController({"G": hyper}, target=T, tolerance=TOL, check_interval=10 ** 9, regularization=1.0)
    ctl._snapshot("G")  # the last check, at the start (reduction 0)
    while hyper.macs_reduction() <= T + TOL:
        ctl.proximal("G", lr=0.01)
    assert hyper.macs_reduction() > T + TOL
    ctl.exhaust(step=50)
    st = ctl.status["G"]
    assert st.status == "reached" and abs(st.reduction - T) <= TOL, (st.status, st.reduction)
    # without a check to go back to, the overshoot is said as such
    torch.manual_seed(0)
    hyper = HyperNetwork(DCGANGenerator(ngf=16), (1, 100, 1, 1))
    ctl = SearchController({"G": hyper}, target=T, tolerance=TOL, check_interval=10 ** 9, regularization=1.0)
    while hyper.macs_reduction() <= T + TOL:
        ctl.proximal("G", lr=0.01)
    ctl.exhaust(step=50)
    assert ctl.status["G"].status == "overshoot"


def test_a_first_check_past_the_window_goes_back_to_the_start_and_approaches_batch_by_batch():
    """DHP's check interval (100) with fast proximal steps: the first check already lands past the window. The
    controller goes back to the latent vectors before the first step (``start``) and checks every batch, so the
    stop lands in the window (it froze a 20% target at 29% as ``overshoot``)."""
    import torch

    from compress.hyper import HyperNetwork
    from compress.models import DCGANGenerator
    from compress.search import SearchController

    torch.manual_seed(0)
    hyper = HyperNetwork(DCGANGenerator(ngf=16), (1, 100, 1, 1))
    ctl = SearchController({"G": hyper}, target=T, tolerance=TOL, check_interval=100, regularization=1.0)
    ctl.start()
    start = {k: z.detach().clone() for k, z in hyper.prunable_latents().items()}
    while hyper.macs_reduction() <= T + TOL:
        ctl.proximal("G", lr=0.01)
    assert not ctl.maybe_check(100)
    assert ctl.status["G"].status == "searching" and ctl.interval == 1
    assert all(torch.equal(z, start[k]) for k, z in hyper.prunable_latents().items())
    step = 100
    while not ctl.done and step < 10_000:
        ctl.proximal("G", lr=0.002)
        step += 1
        ctl.maybe_check(step)
    st = ctl.status["G"]
    assert st.status == "reached" and abs(st.reduction - T) <= TOL, (st.status, st.reduction)
