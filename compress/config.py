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
import math
import re
from dataclasses import dataclass, field
from typing import Any

from compress.accel import PRECISIONS
from compress.errors import InputError
from compress.families import get_family

PRESETS = ("paper", "small")


#: Largest seed: torch's and numpy's generators take seeds in [0, 2**32 - 1] (numpy's legacy ``RandomState``).
MAX_SEED = 2**32 - 1


def check_seed(seed, flag: str = "--seed") -> None:
    """Raise :class:`InputError` unless ``seed`` is an integer in [0, :data:`MAX_SEED`] (named with ``flag``); the
    one check of a seed for training (:meth:`RunConfig.validate`) and evaluation."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{flag} {seed!r}: expected an integer from 0 to {MAX_SEED}")


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
    qat_steps: int = 0                     # last converging steps with int8 activations simulated (compress/qat.py)
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
    def from_dict(cls, data: Any, where: str = "config") -> "RunConfig":
        """A config from a dict (``config.json``, a preset plus flags); ``where`` names the source in messages.

        Raises:
            InputError: not a dict, or keys that are not fields (types and ranges: :meth:`validate`).
        """
        if not isinstance(data, dict):
            raise InputError(f"{where} holds a {type(data).__name__}; expected a JSON object of run settings")
        data = dict(data)
        if "converge_epochs" in data:   # config.json of a run from before the total budget (search + converge)
            legacy = data.pop("converge_epochs")
            data.setdefault("epochs", float(data.get("search_epochs", 0.0)) + float(legacy))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{where} has unknown keys {unknown}; expected keys of RunConfig")
        return cls(**data)

    def validate(self) -> "RunConfig":
        """Check every field's type and range, the networks' options and the image size, up front.

        Returns:
            ``self``.
        Raises:
            InputError: the first bad value; the message names its flag (:func:`flag_of`), the value and what
                is expected.
        """
        family = get_family(self.model, "--model") if isinstance(self.model, str) else None
        if family is None:
            raise InputError(f"--model {self.model!r}: expected a family name")
        for f in dataclasses.fields(self):
            _check_type(f.name, f.type, getattr(self, f.name))
        if self.preset not in PRESETS:
            raise InputError(f"--preset {self.preset!r}: expected one of {', '.join(PRESETS)}")
        if self.direction not in DIRECTIONS:
            raise InputError(f"--direction {self.direction!r}: expected one of {', '.join(DIRECTIONS)}")
        if not 0.0 < self.target < 1.0:
            raise InputError(f"--target {self.target:g}: expected the fraction of MACs to remove, in (0, 1) "
                             "(0.75 = 75% removed)")
        if not 0.0 < self.tolerance < 0.5:
            raise InputError(f"--tolerance {self.tolerance:g}: expected a fraction in (0, 0.5), e.g. 0.02")
        for name in ("batch_size", "check_interval", "image_size", "load_size", "log_interval", "sample_interval",
                     "checkpoint_interval", "min_channels", "embedding_size", "nz"):
            if getattr(self, name) < 1:
                raise InputError(f"{flag_of(name)} {getattr(self, name)}: expected an integer >= 1")
        for name, zero in (("steps", "the budget from --epochs"), ("search_steps", "from --search-epochs"),
                           ("converge_steps", "the rest of the total budget"), ("max_train_images", "all"),
                           ("qat_steps", "no quantization-aware training"),
                           ("pool_size", "no image pool"), ("num_workers", "load in the main process")):
            if getattr(self, name) < 0:
                raise InputError(f"{flag_of(name)} {getattr(self, name)}: expected an integer >= 0 (0: {zero})")
        check_seed(self.seed)
        for name in ("lr", "mask_threshold", "latent_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise InputError(f"{flag_of(name)} {value}: expected a finite learning rate > 0"
                                 if name != "mask_threshold" else f"{flag_of(name)} {value}: expected a threshold > 0")
        for name in ("regularization", "epochs", "search_epochs", "lambda_l1", "lambda_cycle", "lambda_identity"):
            if getattr(self, name) < 0:
                raise InputError(f"{flag_of(name)} {getattr(self, name)}: expected a finite number >= 0")
        for name, low, high in (("min_channel_fraction", "[", "]"), ("decay_fraction", "[", "]"),
                                ("beta1", "[", ")")):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0) or (high == ")" and value == 1.0):
                raise InputError(f"{flag_of(name)} {value}: expected a fraction in {low}0, 1{high}")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise InputError(f"--device {self.device!r}: expected auto, cpu, cuda or cuda:N (N = 0, 1, ...)")
        from compress.baselines import BASELINES

        if self.baseline and self.baseline not in BASELINES:
            raise InputError(f"--baseline {self.baseline!r}: expected one of {', '.join(BASELINES)}")
        if self.reference_run and not self.baseline:
            raise InputError(f"--reference-run {self.reference_run}: only with --baseline "
                             f"{', '.join(BASELINES[:-1])} or {BASELINES[-1]}: a baseline matches that CoroNetGAN "
                             "run; a CoroNetGAN run searches its own masks")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.steps and self.search_steps and self.search_steps > self.steps:
            raise InputError(f"--search-steps {self.search_steps} > --steps {self.steps} (each given, or the "
                             f"{self.preset} preset's value): the search counts against the total budget; expected "
                             "--search-steps <= --steps: give both")
        family.check_network_options(self.generator, self.discriminator)
        family.check_image_size(self.image_size, self.generator, self.discriminator)
        if self.load_size < self.image_size:
            raise InputError(f"{flag_of('load_size')} {self.load_size} < --image-size {self.image_size}: the images "
                             "are resized to the load size and then cropped; expected a load size >= the image size")
        return self


#: Fields that ``python -m compress`` sets from a flag of the same name (``image_size`` -> ``--image-size``).
CLI_FIELDS = ("model", "dataset", "direction", "target", "tolerance", "steps", "epochs", "search_steps",
              "converge_steps", "qat_steps", "min_channel_fraction", "check_interval", "image_size", "batch_size", "lr",
              "latent_lr", "regularization", "compress_discriminator", "max_train_images", "sample_interval",
              "checkpoint_interval", "seed", "device", "skip_bad", "precision", "channels_last", "data_on_device",
              "compile")
#: ``--device`` values: auto, cpu, cuda or cuda:N.
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
DIRECTIONS = ("AtoB", "BtoA")


def flag_of(name: str) -> str:
    """How messages name a field: its flag (``--image-size``) when ``python -m compress`` has one, else
    ``config.json's <name>``."""
    if name in CLI_FIELDS or name in ("preset", "baseline", "reference_run", "generator", "discriminator"):
        return "--" + name.replace("_", "-")
    return f"config.json's {name}"


#: Fields a resumed run may change: where it runs and how its data is read, not what it computes.
RESUMABLE_CHANGES = ("device", "skip_bad", "num_workers")


def config_conflicts(saved: RunConfig, new: RunConfig) -> str:
    """The settings of ``new`` that differ from ``saved`` (a run being resumed), as one text ``--flag value
    (saved: value), ... differ(s)``, or ``""`` when none does; :data:`RESUMABLE_CHANGES` do not count, nor the
    load size that follows a changed image size."""
    out = []
    for f in dataclasses.fields(saved):
        old, value = getattr(saved, f.name), getattr(new, f.name)
        if f.name in RESUMABLE_CHANGES or old == value:
            continue
        if f.name == "load_size" and saved.image_size != new.image_size:
            continue
        out.append(f"{flag_of(f.name)} {_show(value)} (saved: {_show(old)})")
    return f"{', '.join(out)} {'differs' if len(out) == 1 else 'differ'}" if out else ""


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "{}"
    return str(value)


def _check_type(name: str, annotation: str, value: Any) -> None:
    """Raise InputError naming the field's flag when ``value`` is not of the field's declared type; numbers
    must be finite (a NaN or infinite learning rate would train a NaN generator without a word)."""
    kinds = {"int": "an integer", "float": "a finite number", "str": "a string", "bool": "true or false",
             "dict": "a set of KEY=VALUE arguments", "float | None": "a finite number"}
    kind = "a finite learning rate > 0" if name in ("lr", "latent_lr") else kinds[annotation]
    if annotation == "float | None" and value is None:
        return
    if annotation in ("int", "float", "float | None"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and (annotation != "int" or isinstance(value, int)) and math.isfinite(value)
    else:
        ok = isinstance(value, {"str": str, "bool": bool, "dict": dict}[annotation])
    if not ok:
        raise InputError(f"{flag_of(name)} {value!r}: expected {kind}")


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
