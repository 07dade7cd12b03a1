"""The search stage's control: proximal steps, MACs checks at a fixed interval, and the stop rule.

Paper 3.2-3.3 / Algorithm 1 with DHP's ``terminate`` rule: every ``check_interval`` batches the MACs of the
masked network are computed; a network whose achieved MACs reduction is within ``tolerance`` of the
``target`` has its masks frozen, and the search ends when every compressed network (the generator, and the
discriminator with G+D) is frozen. Centring (ours): a check that lands inside the window but short of the
target switches to a check every batch and freezes at the first batch that reaches the target, or at the
last batch inside the window if the next one would leave it, so a 95% target ends near 95%, not near 93%.
From above likewise: a coarse check that lands past the target (inside the window) after a check that was
short of it restores the latent vectors of that earlier check and goes on one batch at a time, so the masks
freeze at the first batch that reaches the target, not up to ``tolerance`` past it. When that one batch jumps
past the target (one proximal step can zero several entries), the channels of smallest |z| are removed one at
a time from the previous batch's state instead, whichever lands closer to the target.

Overshoot guard (ours): the proximal step can push many latent entries under the threshold between two
checks. The controller keeps a copy of the latent vectors at each check that was still short of the
target; if a check finds the reduction past ``target + tolerance``, it restores that copy and checks after
every batch from then on, so the target is approached one proximal step at a time. If even one step
jumps past the window, the masks are frozen there and the status says "overshoot" with the figures.
A budget that runs out first ends the search with status "budget_exhausted" and the achieved reduction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from compress.hyper import HyperNetwork, proximal_step

LOGGER = logging.getLogger("coronetgan.search")


@dataclass
class NetworkStatus:
    """Search outcome of one compressed network."""

    status: str = "searching"            # searching | reached | overshoot | budget_exhausted
    reduction: float = 0.0               # achieved MACs reduction at the last check (fraction)
    step: int = 0                        # step at which the masks were frozen
    history: list = field(default_factory=list)   # (step, reduction) at every check


class SearchController:
    """Drives the proximal steps and the stop rule for a set of hypernetwork-driven networks.

    Args:
        networks: name -> HyperNetwork ("G", and "D" with G+D compression).
        target: fraction of MACs to remove (0.75).
        tolerance: accepted distance to the target (0.02, DHP's limit).
        check_interval: batches between MACs checks (100 in DHP; the small preset uses 5).
        regularization: lambda of eq. 5 (0.5).
    """

    def __init__(self, networks: dict[str, HyperNetwork], target: float, tolerance: float,
                 check_interval: int, regularization: float):
        self.networks = networks
        self.target, self.tolerance = target, tolerance
        self.interval = check_interval
        self.regularization = regularization
        self.status = {name: NetworkStatus() for name in networks}
        self._snapshots: dict[str, dict[str, torch.Tensor]] = {}
        self._in_window: set[str] = set()

    def proximal(self, name: str, lr: float) -> None:
        """Eq. 5 on the latent vectors of ``name`` after its optimizer step (skipped once frozen)."""
        if self.status[name].status == "searching":
            proximal_step(self.networks[name].prunable_latents().values(), self.regularization, lr)

    @property
    def done(self) -> bool:
        return all(s.status != "searching" for s in self.status.values())

    def reductions(self) -> dict[str, float]:
        """Current MACs reduction of every network (frozen masks for frozen ones)."""
        return {name: net.macs_reduction() for name, net in self.networks.items()}

    def maybe_check(self, step: int) -> bool:
        """Check the MACs at the fixed interval (``step`` counts completed batches). Returns ``done``."""
        if step % self.interval != 0:
            return self.done
        for name, net in self.networks.items():
            st = self.status[name]
            if st.status != "searching":
                continue
            r = net.macs_reduction()
            st.reduction = r
            st.history.append((step, r))
            if self.target <= r <= self.target + self.tolerance:
                if r > self.target and name in self._snapshots:   # stepped past the target since the snapshot
                    if self.interval > 1:
                        LOGGER.info("%s: MACs reduction %.3f passed the target %.2f between checks; restoring "
                                    "the latent vectors of the last check and checking every batch",
                                    name, r, self.target)
                        self._restore(name)
                        self.interval = 1
                        st.reduction = net.macs_reduction()
                        continue
                    self._closest_finish(name, r)
                self._freeze(name, step, "reached")
            elif self.target - self.tolerance <= r < self.target:
                # Inside the window but short of the target: keep this state and go on one batch at a time,
                # so the search stops as close to the target as the proximal steps allow.
                self._snapshots[name] = {k: z.detach().clone() for k, z in net.prunable_latents().items()}
                self._in_window.add(name)
                self.interval = 1
            elif r > self.target + self.tolerance:
                if name in self._in_window:
                    self._restore(name)        # the previous batch was inside the window: stop there
                    self._freeze(name, step, "reached")
                elif name in self._snapshots and self.interval > 1:
                    LOGGER.info("%s: MACs reduction %.3f passed the target %.2f+-%.2f between checks; "
                                "restoring the latent vectors of the last check and checking every batch",
                                name, r, self.target, self.tolerance)
                    self._restore(name)
                    self.interval = 1
                    st.reduction = net.macs_reduction()
                elif name in self._snapshots:
                    LOGGER.info("%s: one proximal step took the MACs reduction to %.3f, past the target "
                                "%.2f+-%.2f; restoring the previous step and removing the channels of smallest "
                                "|z| one at a time", name, r, self.target, self.tolerance)
                    self._restore(name)
                    self._greedy_finish(name)
                    r = net.macs_reduction()
                    ok = abs(r - self.target) <= self.tolerance
                    self._freeze(name, step, "reached" if ok else "overshoot")
                    if not ok:
                        LOGGER.warning("%s: no channel-by-channel step lands within the window: MACs reduction "
                                       "%.3f for target %.2f+-%.2f", name, r, self.target, self.tolerance)
                else:
                    self._freeze(name, step, "overshoot")
                    LOGGER.warning("%s: MACs reduction %.3f passed the target %.2f+-%.2f before any check "
                                   "below it; masks frozen there", name, r, self.target, self.tolerance)
            else:
                # short of the window (latent entries can also grow back, so a network may leave it again)
                self._snapshots[name] = {k: z.detach().clone() for k, z in net.prunable_latents().items()}
                self._in_window.discard(name)
        return self.done

    def exhaust(self, step: int) -> None:
        """The budget ran out: freeze every network still searching with status ``budget_exhausted``."""
        for name, st in self.status.items():
            if st.status == "searching":
                st.reduction = self.networks[name].macs_reduction()
                if abs(st.reduction - self.target) <= self.tolerance:
                    self._freeze(name, step, "reached")
                    continue
                self._freeze(name, step, "budget_exhausted")
                LOGGER.warning("%s: search budget exhausted at step %d: achieved MACs reduction %.3f, target "
                               "%.2f +- %.2f", name, step, st.reduction, self.target, self.tolerance)

    def _freeze(self, name: str, step: int, status: str) -> None:
        net = self.networks[name]
        net.frozen_masks = {k: m.clone() for k, m in net.masks().items()}
        st = self.status[name]
        st.status, st.step, st.reduction = status, step, net.macs_reduction()
        LOGGER.info("%s: masks frozen at step %d (%s), MACs reduction %.4f", name, step, status, st.reduction)

    @torch.no_grad()
    def _greedy_finish(self, name: str) -> None:
        """Zero, one at a time, the kept latent entry of smallest |z| (respecting the per-layer guard) until
        the MACs reduction reaches the target; keep whichever state is closest to the target."""
        net = self.networks[name]
        latents = net.prunable_latents()
        best = (abs(net.macs_reduction() - self.target), {k: z.clone() for k, z in latents.items()})
        while net.macs_reduction() < self.target:
            masks = net.masks()
            candidates = [(z.abs()[j].item(), k, j) for k, z in latents.items()
                          if int(masks[k].sum()) > net.min_channels
                          for j in torch.nonzero(masks[k]).flatten().tolist()]
            if not candidates:
                break
            _, k, j = min(candidates)
            latents[k][j] = 0.0
            gap = abs(net.macs_reduction() - self.target)
            if gap < best[0]:
                best = (gap, {kk: z.clone() for kk, z in latents.items()})
        for k, z in latents.items():
            z.copy_(best[1][k])

    @torch.no_grad()
    def _closest_finish(self, name: str, r: float) -> None:
        """One batch stepped from short of the target to ``r`` past it (one proximal step can zero several
        entries): from the previous batch's latent vectors, remove channels of smallest |z| one at a time
        (:meth:`_greedy_finish`) and keep that state if it lands closer to the target than ``r``."""
        latents = self.networks[name].prunable_latents()
        current = {k: z.clone() for k, z in latents.items()}
        self._restore(name)
        self._greedy_finish(name)
        if abs(self.networks[name].macs_reduction() - self.target) >= abs(r - self.target):
            for k, z in latents.items():
                z.copy_(current[k])

    def _restore(self, name: str) -> None:
        with torch.no_grad():
            for k, z in self.networks[name].prunable_latents().items():
                z.copy_(self._snapshots[name][k])

    # checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"interval": self.interval, "in_window": sorted(self._in_window),
                "status": {n: vars(s) for n, s in self.status.items()},
                "snapshots": self._snapshots,
                "frozen": {n: net.frozen_masks for n, net in self.networks.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.interval = state["interval"]
        self._in_window = set(state.get("in_window", []))
        self.status = {n: NetworkStatus(**s) for n, s in state["status"].items()}
        self._snapshots = state["snapshots"]
        for n, masks in state["frozen"].items():
            self.networks[n].frozen_masks = masks
