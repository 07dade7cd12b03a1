"""Run configuration and presets of ``python -m compress``.

Two presets per family (the family-specific values are declared by each family,
:attr:`compress.families.base.Family.presets`; :data:`SMALL_COMMON` is shared):

* ``paper`` (default): the paper's / reference implementations' settings (pix2pix and CycleGAN
  reference code; paper 4.1): full-width generators at 256x256 (DCGAN 32x32), Adam 2e-4 beta1 0.5, one total
  budget of 200 epochs (the reference 100 constant + 100 decaying; DCGAN 75) of which the search may take up to
  100 (DCGAN 25) and the converging stage gets the rest (Algorithm 1), pix2pix batch 4 / lambda_L1 100, CycleGAN batch 1 / LSGAN /
  cycle 10 / identity 0.5 / pool 50, DCGAN batch 64; the MACs check every 100 batches (DHP).
* ``small``: narrower generators on smaller images with a short budget, so that a run on real data
  finishes in minutes on 2 CPU cores: 700 steps in all (DCGAN 1,000), the search up to 400 of them. The latent vectors get a larger learning rate, 5e-3 (the proximal
  step shrinks them by lambda * lr per step, so the search reaches the target in a few hundred steps
  instead of thousands), and lambda = 1: Adam moves a parameter by at most about lr per step, so with
  lambda >= 1 the soft threshold is never undone and the masks only ever shrink. With a latent lr close
  to tau (5e-3) and lambda = 0.5 an entry at zero can climb back over tau in two steps and the MACs
  reduction flickers by tens of points between checks (seen here on CycleGAN). At the paper's lr (2e-4,
  25 times below tau) that cannot happen, so the paper preset keeps lambda = 0.5. Everything else is
  the paper's recipe.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from compress.accel import PRECISIONS
from compress.errors import InputError
from compress.families import get_family

PRESETS = ("paper", "small")


@dataclass
class RunConfig:
    """Everything a run needs; saved as ``config.json`` in the run folder (see the CLI for each field)."""

    model: str = "cyclegan"
    preset: str = "paper"
    dataset: str = "horse2zebra"
    direction: str = "AtoB"
    target: float = 0.75
    tolerance: float = 0.02
    image_size: int = 256
    load_size: int = 286
    generator: dict = field(default_factory=dict)       # generator constructor kwargs (ngf, n_blocks, ...)
    discriminator: dict = field(default_factory=dict)   # discriminator constructor kwargs (ndf, ...)
    compress_discriminator: bool = False
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    latent_lr: float | None = None         # None: same as lr
    regularization: float = 0.5            # lambda of eq. 5 (paper 4.1.2)
    mask_threshold: float = 5e-3           # tau (DHP)
    min_channels: int = 4                  # floor of every latent vector, channels (DHP)
    min_channel_fraction: float = 0.0      # floor as a fraction of each vector (DHP remain_percentage; 0: none)
    embedding_size: int = 8                # m of eq. 3
    check_interval: int = 100              # batches between MACs checks (DHP)
    steps: int = 0                         # total budget in steps, search included (0: from epochs; Algorithm 1)
    epochs: float = 200.0                  # total budget in epochs when steps is 0
    search_steps: int = 0                  # the most the search may take of it (0: from search_epochs)
    search_epochs: float = 100.0
    converge_steps: int = 0                # override: converging steps (0: the rest of the total budget)
    decay_fraction: float = 0.5            # last half of the converging stage decays linearly to 0
    lambda_l1: float = 100.0               # pix2pix
    lambda_cycle: float = 10.0             # cyclegan
    lambda_identity: float = 0.5           # cyclegan (times lambda_cycle)
    pool_size: int = 50                    # cyclegan image pool
    nz: int = 100                          # dcgan
    sample_interval: int = 500
    checkpoint_interval: int = 500
    log_interval: int = 10
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    # CUDA only, ignored on the CPU (compress/accel.py): autocast, memory format, data held on the GPU, compile
    precision: str = "auto"                # auto (bf16 on CUDA) | bf16 | fp32
    channels_last: bool = True
    data_on_device: bool = False
    compile: bool = False
    skip_bad: bool = False
    max_train_images: int = 0              # 0: all; else a seeded subset (budget runs)
    baseline: str = ""                     # "" (CoroNetGAN) or unpruned | uniform | random (compress/baselines.py)
    reference_run: str = ""                # CoroNetGAN run a baseline matches (MACs, channels, budget)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        data = dict(data)
        if "converge_epochs" in data:   # config.json of a run from before the total budget (search + converge)
            legacy = data.pop("converge_epochs")
            data.setdefault("epochs", float(data.get("search_epochs", 0.0)) + float(legacy))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"config has unknown keys {unknown}; expected keys of RunConfig")
        return cls(**data)

    def validate(self) -> "RunConfig":
        """Raise InputError naming the flag when a value is out of range."""
        get_family(self.model, "--model")
        if self.preset not in PRESETS:
            raise InputError(f"--preset {self.preset!r}: expected one of {', '.join(PRESETS)}")
        if not 0.0 <= self.target < 1.0:
            raise InputError(f"--target {self.target}: expected the fraction of MACs to remove, in [0, 1) "
                             "(0.75 = 75% removed)")
        if not 0.0 < self.tolerance < 0.5:
            raise InputError(f"--tolerance {self.tolerance}: expected a fraction in (0, 0.5), e.g. 0.02")
        for name in ("batch_size", "check_interval", "image_size", "log_interval", "sample_interval",
                     "checkpoint_interval", "min_channels", "embedding_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected >= 1")
        for name in ("lr", "regularization", "mask_threshold", "steps", "epochs", "search_steps", "search_epochs",
                     "converge_steps"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected >= 0")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if not 0.0 <= self.min_channel_fraction <= 1.0:
            raise InputError(f"--min-channel-fraction {self.min_channel_fraction}: expected a fraction in [0, 1]")
        if self.steps and self.search_steps and self.search_steps > self.steps:
            raise InputError(f"--search-steps {self.search_steps} > --steps {self.steps}: the search counts against "
                             "the total budget; expected --search-steps <= --steps")
        return self


#: Settings of every family's ``small`` preset (see the module docstring for the latent lr and lambda).
SMALL_COMMON: dict[str, Any] = dict(check_interval=5, sample_interval=100, checkpoint_interval=100, log_interval=10,
                                    latent_lr=5e-3, regularization=1.0, search_epochs=0, epochs=0)


def preset(model: str, name: str) -> dict[str, Any]:
    """Field values of a preset ("paper" or "small") for a family.

    Raises:
        InputError: an unknown family (``--model``) or preset (``--preset``).
    """
    family = get_family(model, "--model")
    if name == "paper":
        return dict(family.presets["paper"])
    if name == "small":
        return {**SMALL_COMMON, **family.presets["small"]}
    raise InputError(f"--preset {name!r}: expected one of {', '.join(PRESETS)}")
