"""The search stage's control: proximal steps, MACs checks at a fixed interval, and the stop rule.

Paper 3.2-3.3 / Algorithm 1. Two rules decide when the masks freeze, each a named function:

* :func:`dhp_terminate` (DHP's ``terminate``, ofsoundof/dhp): every ``check_interval`` batches the MACs of the
  masked network are computed, and the search may stop once the achieved reduction is within ``tolerance``
  of the ``target`` (DHP's ``limit``, 0.02).
* :func:`centring_decision` (ours): inside that window, move the stop as close to the target as the proximal
  steps allow -- check every batch, freeze at the first batch that reaches the target, and when a check
  lands past the target, go back to the last check short of it and approach again (batch by batch, or
  channel by channel when one proximal step jumps past).

The search ends when every compressed network (the generator, and the discriminator with G+D) is frozen.
A budget that runs out first ends the search with status ``budget_exhausted`` and the achieved reduction
(inside the window but short of the target, :meth:`SearchController.exhaust` first removes the channels of
smallest |z| one at a time up to the target). A first check already past the window goes back to the latent
vectors before the first step (:meth:`SearchController.start`) and approaches batch by batch; status
``overshoot`` remains only for a network that passes the window with no earlier state to return to (a controller
used without ``start``) or that no channel-by-channel step brings inside it.
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

import torch

from compress.hyper import HyperNetwork

LOGGER = logging.getLogger("coronetgan.search")


@dataclass
class NetworkStatus:
    """Search outcome of one compressed network."""

    status: str = "searching"            # searching | reached | overshoot | budget_exhausted
    reduction: float = 0.0               # achieved MACs reduction at the last check (fraction)
    step: int = 0                        # step at which the masks were frozen
    history: list = field(default_factory=list)   # (step, reduction) at every check


def dhp_terminate(reduction: float, target: float, tolerance: float) -> bool:
    """DHP's stop rule (``terminate`` in ofsoundof/dhp): the pruned network's MACs are at most
    ``(1 - target) + tolerance`` of the original, i.e. ``reduction >= target - tolerance``.

    Args:
        reduction: achieved MACs reduction of the masked network (fraction in [0, 1]).
        target: MACs reduction asked for (fraction, e.g. 0.75).
        tolerance: DHP's ``limit`` (0.02 in all of DHP's scripts).
    """
    return reduction >= target - tolerance


class Decision(enum.Enum):
    """What the centring does with one MACs check (see :func:`centring_decision`)."""

    CONTINUE = "continue"              # short of the window: keep searching at the current interval
    APPROACH = "approach"              # inside the window, short of the target: go on one batch at a time
    FREEZE = "freeze"                  # on target: freeze the masks here
    CLOSEST_FINISH = "closest_finish"  # one batch stepped past the target: finish channel by channel if closer
    REFINE = "refine"                  # a coarse check passed the target: restore the last check, go batch by batch
    STOP_BEFORE = "stop_before"        # left the window from inside it: restore the previous batch and freeze
    GREEDY_FINISH = "greedy_finish"    # one batch jumped past the window: restore, remove channels one at a time
    OVERSHOOT = "overshoot"            # past the window with no earlier state to return to: freeze, flagged


def centring_decision(reduction: float, target: float, tolerance: float, *, has_snapshot: bool,
                      in_window: bool, batch_by_batch: bool) -> Decision:
    """The centring of the stop inside DHP's window (ours; the paper and DHP stop anywhere in the window).

    Args:
        reduction: achieved MACs reduction at this check (fraction).
        target, tolerance: as in :func:`dhp_terminate`.
        has_snapshot: the latent vectors of an earlier check short of the target are kept.
        in_window: the previous check was inside the window, short of the target.
        batch_by_batch: checks already run after every batch (interval 1).
    Returns:
        The :class:`Decision` for this check. Before the window (:func:`dhp_terminate` false) it is CONTINUE.
    """
    if not dhp_terminate(reduction, target, tolerance):
        return Decision.CONTINUE
    if reduction < target:
        return Decision.APPROACH
    if reduction <= target + tolerance:
        if reduction > target and has_snapshot:
            return Decision.CLOSEST_FINISH if batch_by_batch else Decision.REFINE
        return Decision.FREEZE
    if in_window:
        return Decision.STOP_BEFORE
    if has_snapshot:
        return Decision.GREEDY_FINISH if batch_by_batch else Decision.REFINE
    return Decision.OVERSHOOT


class SearchController:
    """Drives the proximal steps and the stop rule for a set of hypernetwork-driven networks.

    Args:
        networks: name -> HyperNetwork ("G", and "D" with G+D compression).
        target: fraction of MACs to remove (0.75).
        tolerance: accepted distance to the target (0.02, DHP's limit).
        check_interval: batches between MACs checks (100 in DHP; the small preset uses 5).
        regularization: lambda of eq. 5 (0.5, paper 4.1.2).
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

    def start(self) -> None:
        """Keep every network's latent vectors as they are before the first search step, as the state a first
        check already past the window goes back to (then batch by batch: :data:`Decision.REFINE`). Without it a
        coarse interval (DHP's 100) with a fast latent learning rate froze a 20% target at 29%."""
        for name in self.networks:
            self._snapshot(name)

    def proximal(self, name: str, lr: float) -> None:
        """Eq. 5 on the latent vectors of ``name`` after its optimizer step (skipped once frozen)."""
        if self.status[name].status == "searching":
            self.networks[name].proximal_step(self.regularization, lr)

    @property
    def done(self) -> bool:
        return all(s.status != "searching" for s in self.status.values())

    def reductions(self) -> dict[str, float]:
        """Current MACs reduction of every network (frozen masks for frozen ones)."""
        return {name: net.macs_reduction() for name, net in self.networks.items()}

    def maybe_check(self, step: int) -> bool:
        """Check the MACs at the fixed interval (``step`` counts completed batches) and apply the stop rule
        (:func:`dhp_terminate`, then :func:`centring_decision`) to every network still searching.
        Returns ``done``."""
        if step % self.interval != 0:
            return self.done
        for name, net in self.networks.items():
            st = self.status[name]
            if st.status != "searching":
                continue
            r = net.macs_reduction()
            st.reduction = r
            st.history.append((step, r))
            decision = centring_decision(r, self.target, self.tolerance, has_snapshot=name in self._snapshots,
                                         in_window=name in self._in_window, batch_by_batch=self.interval == 1)
            self._apply(name, step, r, decision)
        return self.done

    def _apply(self, name: str, step: int, r: float, decision: Decision) -> None:
        net, st = self.networks[name], self.status[name]
        if decision is Decision.CONTINUE:
            # short of the window (latent entries can also grow back, so a network may leave it again)
            self._snapshot(name)
            self._in_window.discard(name)
        elif decision is Decision.APPROACH:
            self._snapshot(name)
            self._in_window.add(name)
            self.interval = 1
        elif decision is Decision.FREEZE:
            self._freeze(name, step, "reached")
        elif decision is Decision.CLOSEST_FINISH:
            self._closest_finish(name, r)
            self._freeze(name, step, "reached")
        elif decision is Decision.REFINE:
            LOGGER.info("%s: MACs reduction %.3f passed the target %.2f between checks; restoring the latent "
                        "vectors of the last check and checking every batch", name, r, self.target)
            self._restore(name)
            self.interval = 1
            st.reduction = net.macs_reduction()
        elif decision is Decision.STOP_BEFORE:
            self._restore(name)        # the previous batch was inside the window: stop there
            self._freeze(name, step, "reached")
        elif decision is Decision.GREEDY_FINISH:
            LOGGER.info("%s: one proximal step took the MACs reduction to %.3f, past the target %.2f+-%.2f; "
                        "restoring the previous step and removing the channels of smallest |z| one at a time",
                        name, r, self.target, self.tolerance)
            self._back_and_finish(name, step, "no channel-by-channel step lands within the window")
        else:  # Decision.OVERSHOOT
            self._freeze(name, step, "overshoot")
            LOGGER.warning("%s: MACs reduction %.3f passed the target %.2f+-%.2f before any check below it; "
                           "masks frozen there", name, r, self.target, self.tolerance)

    def exhaust(self, step: int) -> None:
        """The budget ran out: freeze every network still searching.

        Inside the window but short of the target, the channels of smallest |z| are removed one at a time until
        the target (:meth:`_greedy_finish`, the state closest to it is kept): they are the entries the next
        proximal steps would have zeroed first (eq. 5 shrinks every entry by the same amount), so the stop lands
        on the target instead of wherever the budget ended; status ``reached``. Short of the window, status
        ``budget_exhausted`` with the achieved reduction (no channel is removed that the search did not remove).
        Past the window (the budget ended between checks, after a step that overshot): back to the last check and
        channel by channel towards the target, as a check would have done; ``reached``, else ``overshoot``.
        """
        for name, st in self.status.items():
            if st.status == "searching":
                net = self.networks[name]
                st.reduction = net.macs_reduction()
                if st.reduction > self.target + self.tolerance:
                    # past the window since the last check (the budget ended between checks): as a check would
                    # have done, back to that check and channel by channel towards the target
                    self._back_and_finish(name, step, f"search budget ran out at step {step} past the target")
                    continue
                if abs(st.reduction - self.target) <= self.tolerance:
                    if st.reduction < self.target:
                        before = st.reduction
                        self._greedy_finish(name)
                        LOGGER.info("%s: search budget ran out at step %d inside the window, short of the target "
                                    "(MACs reduction %.4f); removed the channels of smallest |z| one at a time: "
                                    "%.4f", name, step, before, net.macs_reduction())
                    self._freeze(name, step, "reached")
                    continue
                self._freeze(name, step, "budget_exhausted")
                LOGGER.warning("%s: search budget exhausted at step %d: achieved MACs reduction %.3f, target "
                               "%.2f +- %.2f", name, step, st.reduction, self.target, self.tolerance)

    def _snapshot(self, name: str) -> None:
        self._snapshots[name] = {k: z.detach().clone() for k, z in self.networks[name].prunable_latents().items()}

    def _freeze(self, name: str, step: int, status: str) -> None:
        net = self.networks[name]
        net.frozen_masks = {k: m.clone() for k, m in net.masks().items()}
        st = self.status[name]
        st.status, st.step, st.reduction = status, step, net.macs_reduction()
        LOGGER.info("%s: masks frozen at step %d (%s), MACs reduction %.4f", name, step, status, st.reduction)

    def _back_and_finish(self, name: str, step: int, why_missed: str) -> None:
        """Back to the last check (when there is one), then :meth:`_greedy_finish` towards the target; frozen as
        ``reached`` inside the window, else ``overshoot`` (logged with ``why_missed``)."""
        if name in self._snapshots:
            self._restore(name)
            self._greedy_finish(name)
        r = self.networks[name].macs_reduction()
        ok = abs(r - self.target) <= self.tolerance
        self._freeze(name, step, "reached" if ok else "overshoot")
        if not ok:
            LOGGER.warning("%s: %s: MACs reduction %.3f for target %.2f+-%.2f", name, why_missed, r, self.target,
                           self.tolerance)

    @torch.no_grad()
    def _greedy_finish(self, name: str) -> None:
        """Zero, one at a time, the kept latent entry of smallest |z| (respecting the per-layer guard) until
        the MACs reduction reaches the target; keep whichever state is closest to the target."""
        net = self.networks[name]
        latents = net.prunable_latents()
        floors = net.floors()
        best = (abs(net.macs_reduction() - self.target), {k: z.clone() for k, z in latents.items()})
        while net.macs_reduction() < self.target:
            masks = net.masks()
            candidates = [(z.abs()[j].item(), k, j) for k, z in latents.items()
                          if int(masks[k].sum()) > floors[k]
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
        """Put back the latent vectors (and so the masks) of the last check. Only they: the hypernetwork's
        parameters, the norms' statistics and the optimizer state keep their newer values, which is harmless for
        materialisation (it reads the masks and the weights generated now) but means the restored state is not
        one the search trained in."""
        with torch.no_grad():
            for k, z in self.networks[name].prunable_latents().items():
                z.copy_(self._snapshots[name][k])

    # checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The controller's state for a checkpoint: check interval, window flags, per-network status, the
        latent-vector snapshots of the last check (for the stop rule's restore) and frozen masks."""
        return {"interval": self.interval, "in_window": sorted(self._in_window),
                "status": {n: vars(s) for n, s in self.status.items()},
                "snapshots": self._snapshots,
                "frozen": {n: net.frozen_masks for n, net in self.networks.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s ``state``. Raises KeyError for a state without its keys (checkpoints
        are this code's own: the trainer checks their format when it loads them)."""
        self.interval = state["interval"]
        self._in_window = set(state.get("in_window", []))
        self.status = {n: NetworkStatus(**s) for n, s in state["status"].items()}
        self._snapshots = state["snapshots"]
        for n, masks in state["frozen"].items():
            self.networks[n].frozen_masks = masks
