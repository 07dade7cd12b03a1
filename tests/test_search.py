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
