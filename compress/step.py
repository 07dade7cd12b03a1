"""One GAN training step (Algorithm 1's inner loop), shared by the trainer and the step-cost benchmarks.

The same step serves both stages and all three families: the family's recipe supplies the generator input and
the two losses; during the search the generator is the hypernetwork-driven one and the latent vectors take the
proximal step (eq. 5) right after their optimizer step (paper 3.2; DHP applies it after every batch).
:class:`StepHooks` carries what a device or a data-parallel run adds to a step (autocast, gradient averaging).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable

import torch
import torch.nn as nn

#: a timer factory: ``timer("phase name")`` returns a context manager timing that phase.
Timer = Callable[[str], ContextManager]


def _no_timer(_name: str) -> ContextManager:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class StepHooks:
    """What :func:`gan_step` runs around its parts; the defaults change nothing.

    Attributes:
        autocast: context manager factory wrapping every forward pass and loss (not the backward passes, the
            optimizer steps or the proximal step): :meth:`compress.accel.Accel.autocast`.
        reduce_gradients: called with each optimizer after its backward pass and before its step
            (:meth:`compress.distributed.Distributed.reduce_gradients`: the mean over the ranks); None: nothing.
    """

    autocast: Callable[[], ContextManager] = contextlib.nullcontext
    reduce_gradients: Callable[[torch.optim.Optimizer], None] | None = None


def set_requires_grad(nets: Iterable[nn.Module], flag: bool) -> None:
    """Switch gradients of every parameter of ``nets`` on/off (frozen generated conv weights stay as they are)."""
    for net in nets:
        for p in net.parameters():
            if p.requires_grad != flag and not getattr(p, "_frozen_conv_weight", False):
                p.requires_grad_(flag)


def group_lr(opt: torch.optim.Optimizer, name: str) -> float:
    """Learning rate of the parameter group called ``name`` (``"latent"``: the latent vectors' group).

    Raises:
        StopIteration: no group of that name.
    """
    return next(g["lr"] for g in opt.param_groups if g.get("name") == name)


def gan_step(recipe, batch, G, D: nn.Module, extra: dict[str, nn.Module], opt_G: torch.optim.Optimizer,
             opt_D: torch.optim.Optimizer, controller=None, timer: Timer | None = None,
             hooks: StepHooks | None = None) -> dict[str, float]:
    """One training step: the discriminator step, then the generator step, then (searching) eq. 5.

    Args:
        recipe: the family's :class:`~compress.families.recipe.GANRecipe` (generator input, losses).
        batch: one batch from the family's dataset (already on the device).
        G: the generator being compressed: a :class:`~compress.hyper.HyperNetwork` during the search, the plain
            pruned generator while converging. Called on the recipe's generator input, e.g. (N, 3, H, W).
        D: the discriminator (a HyperNetwork with G+D compression); ``extra``: networks trained alongside
            (CycleGAN's G_B, D_B; keys starting with "D" are discriminators).
        opt_G, opt_D: the two Adam optimizers; the latent vectors' group is named ``"latent"``.
        controller: the search's :class:`~compress.search.SearchController` (None while converging): after each
            optimizer step the latent vectors of its networks take the proximal step at that group's lr.
        timer: optional timer factory; wraps the backward passes, optimizer steps and proximal steps.
        hooks: autocast and gradient averaging (:class:`StepHooks`; default: none).
    Returns:
        The logged loss terms (floats) of both steps.
    """
    timer = timer or _no_timer
    hooks = hooks or StepHooks()
    d_nets = [D] + [v for k, v in extra.items() if k.startswith("D")]
    extra = dict(extra)  # per-step context: the recipe may add tensors (CycleGAN's G_B(B))
    with hooks.autocast():
        fake = G(recipe.generator_input(batch))
        if hasattr(recipe, "forward_extra"):
            recipe.forward_extra(extra, batch)
    set_requires_grad(d_nets, True)
    opt_D.zero_grad(set_to_none=True)
    with hooks.autocast():
        loss_D, logs = recipe.discriminator_loss(D, batch, fake, extra)
    with timer("D backward"):
        loss_D.backward()
    if hooks.reduce_gradients is not None:
        with timer("gradient all-reduce"):
            hooks.reduce_gradients(opt_D)
    with timer("D Adam step"):
        opt_D.step()
    if controller is not None and "D" in controller.networks:
        with timer("proximal step (eq. 5)"):
            controller.proximal("D", group_lr(opt_D, "latent"))
    set_requires_grad(d_nets, False)
    opt_G.zero_grad(set_to_none=True)
    with hooks.autocast():
        loss_G, logs_g = recipe.generator_loss(G, D, batch, fake, extra)
    with timer("G backward (through D, generator convs, hypernetwork)"):
        loss_G.backward()
    if hooks.reduce_gradients is not None:
        with timer("gradient all-reduce"):
            hooks.reduce_gradients(opt_G)
    with timer("G Adam step (hypernetwork + latents + G_B)"):
        opt_G.step()
    set_requires_grad(d_nets, True)
    if controller is not None:
        with timer("proximal step (eq. 5)"):
            controller.proximal("G", group_lr(opt_G, "latent"))
    logs.update(logs_g)
    return logs
