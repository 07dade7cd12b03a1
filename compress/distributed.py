"""Data-parallel training with torchrun (issue 18): ``torchrun --nproc_per_node N -m compress ...``.

Each of the N processes (ranks) trains the same networks on its own share of the training set and the ranks
average their gradients before every optimizer step, so every rank holds the same parameters throughout:

* **Gradients**: after each backward pass of :func:`compress.step.gan_step` the gradients of that step's
  optimizer are summed over the ranks with ``torch.distributed.all_reduce`` and divided by N (the gradient of the
  mean loss over the effective batch, per-rank batch x N), before the Adam step; the proximal step (eq. 5) then
  runs on identical latent vectors on every rank. This is what DDP does, written out: DDP's reducer hooks each
  parameter's gradient once per forward/backward pair, while a search step generates the convolution weights
  inside the forward pass (eqs. 1-4, ``torch.func.functional_call``), reuses them across CycleGAN's three
  generator calls, runs two backward passes over different parameter sets (discriminator step, generator step)
  and switches ``requires_grad`` between them -- DDP would need ``find_unused_parameters`` and a static graph it
  does not have. One explicit all-reduce per optimizer step is exact and independent of all that.
* **Start of each stage**: rank 0's parameters and buffers are broadcast to every rank (as DDP's constructor
  does), then each rank's RNGs (torch, CUDA, numpy, python) are reseeded from (seed, rank, stage, step), so the
  ranks draw different crops, flips, DCGAN noise, dropout and image-pool choices. With N = 1 nothing changes.
* **Checks**: at every MACs check of the search a SHA-256 of every rank's latent vectors, masks, statuses and
  check interval is gathered (``all_gather``) and compared; a difference raises :class:`RankMismatchError`. The
  stop decision is rank 0's, broadcast to all ranks (who, their states being equal, took the same one).
* **Interruptions**: a Ctrl-C / SIGTERM is held until the next step starts (:mod:`compress.cli_errors`); at
  every step's start the ranks all-reduce (MAX) what each holds (:meth:`Distributed.raise_if_interrupted`), so
  that a signal that reached one rank -- or reached the ranks on both sides of a step boundary -- stops every
  rank before the same step; rank 0 then checkpoints that step. Without it a rank that stopped alone left the
  others waiting in the next step's gradient all-reduce until gloo's timeout or torchrun's SIGKILL.
* **Files**: only rank 0 writes the run folder (config, log.txt, metrics, samples, checkpoints, generator,
  reports); the other ranks log warnings to stderr.
* BatchNorm: per-rank batch statistics (no SyncBatchNorm, like DDP by default); the running statistics that
  rank 0 writes are rank 0's, as with DDP's ``broadcast_buffers``.

Backend: NCCL on CUDA (rank r on ``cuda:LOCAL_RANK``), gloo on the CPU (``--device cpu``; the tests).
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
import random
import signal
import zlib
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

LOGGER = logging.getLogger("coronetgan.distributed")

#: Elements per all-reduce / broadcast bucket (2^26 fp32 = 256 MiB): bounds the extra memory of the flat copy.
BUCKET_ELEMENTS = 1 << 26


class RankMismatchError(RuntimeError):
    """The ranks of a data-parallel run hold different search states (latent vectors, masks or statuses)."""


def environment_rank() -> int:
    """This process's rank: the process group's when one is initialised, else torchrun's ``RANK`` (0 without)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that writes files and shows progress bars."""
    return environment_rank() == 0


def _buckets(tensors: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Consecutive groups of tensors of one dtype and device, each up to :data:`BUCKET_ELEMENTS` elements."""
    bucket: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        if bucket and (size + t.numel() > BUCKET_ELEMENTS or t.dtype != bucket[0].dtype
                       or t.device != bucket[0].device):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel()
    if bucket:
        yield bucket


def _flat_op(tensors: list[torch.Tensor], op) -> None:
    """Apply a collective ``op`` (in place on a 1-d tensor) to ``tensors`` in flat buckets; results copied back."""
    for bucket in _buckets(tensors):
        flat = torch.cat([t.reshape(-1) for t in bucket])
        op(flat)
        offset = 0
        for t in bucket:
            t.copy_(flat[offset:offset + t.numel()].view(t.shape))
            offset += t.numel()


def search_digest(controller) -> bytes:
    """SHA-256 of what must be identical on every rank during the search: the check interval, and per network
    (``controller.networks``, a :class:`compress.search.SearchController`'s) its status, latent vectors (the bytes
    of every prunable vector) and masks. 32 bytes."""
    h = hashlib.sha256(str(controller.interval).encode())
    for name in sorted(controller.networks):
        net = controller.networks[name]
        h.update(f"{name}:{controller.status[name].status}".encode())
        for key, z in sorted(net.prunable_latents().items()):
            h.update(key.encode())
            h.update(z.detach().cpu().numpy().tobytes())
        for key, m in sorted(net.masks().items()):
            h.update(key.encode())
            h.update(m.detach().cpu().numpy().tobytes())
    return h.digest()


class Distributed:
    """This process's place in a data-parallel run (module docstring); a single process is rank 0 of 1 and
    every method is then a no-op that changes nothing.

    Args:
        rank, world_size: this process and the number of processes.
        device: the device this rank trains on (``cuda:LOCAL_RANK`` under torchrun on CUDA).
        owns_group: whether this object initialised the process group (and :meth:`close` destroys it).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, device: torch.device = torch.device("cpu"),
                 owns_group: bool = False):
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        self.owns_group = owns_group
        self.checks = 0

    @classmethod
    def from_env(cls, device: torch.device) -> "Distributed":
        """The run's context from torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_*``):
        a single process without it. Initialises the process group (NCCL on CUDA, gloo on the CPU) unless one
        exists. On CUDA each rank trains on ``cuda:LOCAL_RANK`` whatever index ``device`` names.

        Raises:
            compress.errors.InputError: more ranks on this node than CUDA devices.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(0, 1, device)
        owns = not dist.is_initialized()
        if device.type == "cuda":
            from compress.errors import InputError

            local = int(os.environ.get("LOCAL_RANK", "0"))
            if local >= torch.cuda.device_count():
                raise InputError(f"torchrun --nproc_per_node: local rank {local} but only "
                                 f"{torch.cuda.device_count()} CUDA device(s); expected at most one process per GPU")
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        if owns:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    **({"device_id": device} if device.type == "cuda" else {}))
        return cls(dist.get_rank(), dist.get_world_size(), device, owns_group=owns)

    @property
    def active(self) -> bool:
        """More than one rank."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: writes the run folder."""
        return self.rank == 0

    def describe(self, batch_size: int) -> str:
        """The data-parallel setting in words, for the log."""
        return (f"data-parallel over {self.world_size} ranks ({dist.get_backend()}): per-rank batch {batch_size}, "
                f"effective batch {batch_size * self.world_size}, learning rates not scaled")

    # --- every step ---------------------------------------------------------------------------------
    def reduce_gradients(self, opt: torch.optim.Optimizer) -> None:
        """Average the gradients of ``opt``'s parameters over the ranks, in place (before ``opt.step()``).

        Parameters without a gradient are left out; every rank runs the same graph, so the set is the same."""
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]

        def mean(flat: torch.Tensor) -> None:
            dist.all_reduce(flat)                  # SUM (gloo has no AVG); the result is the same on every rank
            flat.div_(self.world_size)

        _flat_op(grads, mean)

    def raise_if_interrupted(self, stage: str, step: int) -> None:
        """At the start of a training step (``step`` = the number of steps done in ``stage``): raise the
        interruption that any rank holds, on every rank, so that all stop before the same step (module
        docstring). One 1-element all-reduce per step; with one rank, :func:`compress.cli_errors.raise_if_interrupted`.

        Raises:
            KeyboardInterrupt / compress.cli_errors.Terminated: this rank or another one holds a Ctrl-C (SIGINT)
                or a SIGTERM (SIGTERM wins when the ranks hold both); on a rank that received nothing itself the
                exception's text names the rank that did.
        """
        from compress.cli_errors import interruption, pending_signal, raise_if_interrupted

        if not self.active:
            raise_if_interrupted()
            return
        mine = pending_signal()
        # 0 nothing, 1 SIGINT, 2 SIGTERM; the rank is carried too so that the others can name it
        code = {None: 0, signal.SIGINT: 1, signal.SIGTERM: 2}.get(mine, 1)
        flag = torch.tensor([code * self.world_size + self.rank if code else 0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        value = int(flag.item())
        if not value:
            return
        signum = signal.SIGTERM if value // self.world_size == 2 else signal.SIGINT
        if mine is not None:
            raise interruption(mine)
        raise interruption(signum, f"rank {value % self.world_size} received it; every rank stopped before "
                                   f"{stage} step {step + 1}")

    # --- stage boundaries ---------------------------------------------------------------------------
    def start_stage(self, nets: Iterable[nn.Module], seed: int, stage: str, step: int) -> None:
        """Before a stage's first (or first resumed) step: rank 0's parameters and buffers to every rank, then
        per-rank RNG streams seeded from (``seed``, rank, ``stage``, ``step``)."""
        if not self.active:
            return
        tensors = [t.data for net in nets for t in itertools.chain(net.parameters(), net.buffers())]
        _flat_op(tensors, lambda flat: dist.broadcast(flat, src=0))
        rank_seed = zlib.crc32(f"{seed}/{self.rank}/{stage}/{step}".encode())
        torch.manual_seed(rank_seed)             # also every CUDA device
        np.random.seed(rank_seed)
        random.seed(rank_seed)

    # --- the search's checks ------------------------------------------------------------------------
    def agree(self, controller, step: int) -> None:
        """Compare :func:`search_digest` over the ranks.

        Raises:
            RankMismatchError: the ranks' digests differ (names the step and every rank's digest).
        """
        if not self.active:
            return
        mine = torch.frombuffer(bytearray(search_digest(controller)), dtype=torch.uint8).to(self.device)
        every = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(every, mine)
        digests = [bytes(d.cpu().tolist()).hex()[:16] for d in every]
        if len(set(digests)) > 1:
            raise RankMismatchError(
                f"step {step}: the ranks hold different latent vectors / masks (SHA-256 prefixes by rank: "
                f"{', '.join(f'{r}={d}' for r, d in enumerate(digests))}); with averaged gradients they must be "
                "identical -- a rank ran other code, other data types or a non-deterministic reduction")
        self.checks += 1

    def check(self, controller, step: int) -> bool:
        """The search's MACs check at ``step`` (:meth:`compress.search.SearchController.maybe_check`), then on a
        checking step the ranks' agreement (:meth:`agree`) and rank 0's stop decision broadcast. Returns done."""
        interval = controller.interval
        done = controller.maybe_check(step)
        if not self.active or step % interval:
            return done
        self.agree(controller, step)
        flag = torch.tensor([int(done)], device=self.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def finish_search(self, controller, step: int) -> None:
        """After the search's last step: the frozen masks agree on every rank (:meth:`agree`); rank 0 logs how
        many checks agreed."""
        if not self.active:
            return
        self.agree(controller, step)
        if self.is_main:
            LOGGER.info("the %d ranks held bit-identical latent vectors and masks at all %d MACs checks",
                        self.world_size, self.checks)

    def close(self) -> None:
        """Wait for every rank (rank 0 may still be writing), then destroy the process group this object made."""
        if self.active and self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
