"""One training loop for both CoroNetGAN stages and every GAN family of :mod:`compress.families` (Algorithm 1).

Stage ``search``: the generator (and with G+D the discriminator) runs through its hypernetwork; after each
optimizer step the latent vectors take the proximal step (eq. 5) and the :class:`SearchController` checks
the MACs of the masks at a fixed interval until the target is reached within tolerance (or the budget runs
out). The masks then materialise a plain pruned network (:func:`compress.hyper.materialize`).

Stage ``converge``: ordinary GAN training of the pruned generator with fresh Adam optimizers
(lr 2e-4, beta1 0.5), constant then linearly decaying to 0 (pix2pix/CycleGAN reference schedule).
No teacher network.

Checkpoints (``checkpoints/last.pt``) are written atomically at intervals and at every stage boundary and
hold everything needed to continue (networks, hypernetworks, latent vectors, frozen masks, optimizers,
image pools, RNG states, the position in the seeded data order (:class:`compress.data.stream.BatchStream`),
step and stage): ``--resume`` continues from them and gives the result of the uninterrupted run. They hold
tensors and plain data only and are read with ``torch.load(weights_only=True)``: a checkpoint is a file a user
may receive with a run folder, and unpickling arbitrary objects would run code.

A non-finite loss stops the run at once (:class:`compress.errors.TrainingError`); checkpoints and
``generator.pt`` are only written from finite weights, so the last checkpoint is the last good state.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Subset
from tqdm import tqdm

from compress.accel import Accel
from compress.cli_errors import deferred_interrupts
from compress.artifacts import save_generator, torch_load_tensors
from compress.config import RunConfig, config_conflicts
from compress.data.stream import BatchStream, to_device
from compress.distributed import Distributed, is_main_process
from compress.errors import InputError, TrainingError, first_line
from compress.families import get_family
from compress.families.recipe import GANRecipe
from compress.hyper import HyperNetwork, materialize
from compress.hyper.batchnorm import recompute_batchnorm_statistics
from compress.hyper.materialize import materialization_gap_db
from compress.io import atomic_torch_save, atomic_write_json, atomic_write_text, ensure_dir, read_json
from compress.macs import count_params
from compress.run_files import CHECKPOINT, METRICS
from compress.samples import save_grid
from compress.search import SearchController
from compress.qat import (IMAGE_RANGE, RECALIBRATION_INTERVAL as QAT_RECALIBRATION_INTERVAL, QuantizationSimulation,
                          representative_batches)
from compress.step import StepHooks, gan_step

LOGGER = logging.getLogger("coronetgan.trainer")
#: Training items whose activations set the simulated int8 ranges of ``--qat-steps`` (the export calibrates on 100
#: source images by default, ``--calibration-count``).
QAT_CALIBRATION_ITEMS = 100


def progress(**kwargs) -> tqdm:
    """A tqdm bar; redrawn at most every 2 s when stderr is not a terminal (CI logs stay readable)."""
    import sys

    return tqdm(mininterval=0.2 if sys.stderr.isatty() else 2.0, dynamic_ncols=True,
                disable=not is_main_process(), **kwargs)


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda when present, else cpu; ``cpu``, ``cuda``, ``cuda:N``.

    Raises:
        InputError: another name, or a CUDA device this machine does not have.
    """
    from compress.config import DEVICE_PATTERN

    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise InputError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N (N = 0, 1, ...)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); expected "
                         f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return torch.device(name)


def rng_state() -> dict:
    """The RNG states of torch (CPU, CUDA), numpy and Python as tensors and plain data (loadable with
    ``weights_only=True``; numpy's and Python's own state objects are tuples holding arrays)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(gauss)},
            "python": {"version": version, "state": list(py_state), "gauss": py_gauss}}


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint written by the trainer, with ``torch.load(weights_only=True)``: tensors and plain data
    only, so a crafted file cannot run code.

    Raises:
        InputError: a file that is not such a checkpoint (corrupt, truncated, or holding other Python objects:
            refused, not executed); the message names the file.
    """
    state = torch_load_tensors(path, "a checkpoint of python -m compress", device)
    if not isinstance(state, dict) or not {"stage", "step", "config", "rng"} <= set(state):
        raise InputError(f"{path} is not a checkpoint of python -m compress (expected a dict with stage, step, "
                         "config and rng)")
    return state


class Trainer:
    """Runs (or resumes) a compress run in ``run_dir``.

    Args:
        cfg: validated run configuration.
        run_dir: run folder (created).
        resume: continue from ``run_dir/checkpoints/last.pt``.
    Raises:
        InputError: ``resume`` without a checkpoint, or a run folder that holds another config.
    """

    def __init__(self, cfg: RunConfig, run_dir: str | Path, resume: bool = False):
        self.cfg = cfg.validate()
        self.run_dir = Path(run_dir)
        # torchrun: one rank per GPU, rank 0 writes the run folder (compress.distributed); CUDA settings: accel
        self.dist = Distributed.from_env(pick_device(cfg.device))
        if self.dist.is_main:
            ensure_dir(self.run_dir)
        self.device = self.dist.device
        self.accel = Accel.for_run(cfg, self.device)
        self.hooks = StepHooks(self.accel.autocast, self.dist.reduce_gradients if self.dist.active else None)
        self.resume = resume
        self.qat: QuantizationSimulation | None = None   # --qat-steps: the int8 simulation of the converging stage
        self._qat_state: dict | None = None
        ckpt = self.run_dir / CHECKPOINT
        if resume and not ckpt.is_file():
            raise InputError(f"--resume: no checkpoint at {ckpt}; start the run without --resume")
        if not resume and ckpt.is_file():
            raise InputError(f"{self.run_dir} already holds a run ({ckpt}); pass --resume to continue it or "
                             "choose another --run-dir")
        if not resume and (self.run_dir / "generator.pt").is_file():  # a finished run whose checkpoint is gone
            raise InputError(f"{self.run_dir} already holds a finished run ({self.run_dir / 'generator.pt'}); a new "
                             "run would replace it: choose another --run-dir")
        if not resume and (self.run_dir / "config.json").is_file():
            self._check_own_config(self.run_dir / "config.json")
        self.family = get_family(cfg.model, "--model")
        self.recipe: GANRecipe = self.family.recipe(cfg)
        self.metrics_path = self.run_dir / METRICS
        self.timings: dict[str, float] = {}
        # read (and check) the checkpoint before the data scan and the networks: a refused file fails fast
        self.checkpoint = self._load_checkpoint() if resume else None

    # --- data ----------------------------------------------------------------------------------------
    def _batches(self) -> BatchStream:
        """The training batches in the run's seeded order (:class:`~compress.data.stream.BatchStream`); the
        training set is scanned for bad images when it is built (before step 1)."""
        ds = self.family.dataset(self.cfg, train=True)
        if self.cfg.max_train_images and len(ds) > self.cfg.max_train_images:
            idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(self.cfg.seed))
            ds = Subset(ds, idx[: self.cfg.max_train_images].tolist())
        if len(ds) == 0:
            raise InputError(f"dataset {self.cfg.dataset!r} has no training items")
        self.train_size = len(ds)
        if self.accel.data_on_device:   # the set held in device memory (compress/data/device.py)
            return self.accel.held_batches(ds, self.cfg.batch_size, self.cfg.seed, self.dist.rank,
                                           self.dist.world_size, drop_last=len(ds) >= self.cfg.batch_size,
                                           num_workers=self.cfg.num_workers)
        stream = BatchStream(ds, self.cfg.batch_size, drop_last=len(ds) >= self.cfg.batch_size, seed=self.cfg.seed,
                             num_workers=self.cfg.num_workers, device=self.device, rank=self.dist.rank,
                             world_size=self.dist.world_size, transform=self.accel.prepare_batch)
        self.train_size = stream.size_per_rank   # an epoch of the budget is one pass of all ranks over the set
        return stream

    def _sample_batch(self):
        try:
            ds = self.family.dataset(self.cfg, train=False)
        except InputError:
            ds = self.family.dataset(self.cfg, train=True)
        n = min(self.family.sample_count, len(ds))
        items = [ds[i] for i in range(n)]
        return to_device(torch.utils.data.default_collate(items), self.device)

    def steps_for(self, steps: int, epochs: float) -> int:
        """A budget in steps: ``steps`` if given, else ``epochs`` passes over the training set."""
        if steps > 0:
            return steps
        return max(1, int(math.ceil(epochs * self.train_size / self.cfg.batch_size)))

    # --- networks ------------------------------------------------------------------------------------
    def build_search_networks(self):
        """The search's networks: (G, D, extra). G is the generator under its hypernetwork (eqs. 1-4), D the
        discriminator (under its own hypernetwork with G+D compression), extra the networks trained alongside;
        also sets ``self.controller`` (the search's :class:`SearchController`).

        Raises:
            InputError: the target cannot be reached with every layer kept at its minimum channel count
                (the channel floors of :func:`compress.hyper.proximal.channel_floor`).
        """
        cfg, r = self.cfg, self.recipe
        G_plain = r.make_generator()
        self.G_input_shape = self.family.input_shape(G_plain, cfg.image_size)
        hyper_kw = dict(embedding_size=cfg.embedding_size, threshold=cfg.mask_threshold,
                        min_channels=cfg.min_channels, min_channel_fraction=cfg.min_channel_fraction)
        G = HyperNetwork(G_plain, self.G_input_shape, **hyper_kw).to(self.device)
        D = r.make_discriminator()
        if cfg.compress_discriminator:
            d_shape = (1, D.channels["input"], cfg.image_size, cfg.image_size)
            D = HyperNetwork(D, d_shape, **hyper_kw)
        D = D.to(self.device)
        extra = {k: v.to(self.device) for k, v in r.extra_networks().items()}
        hyper = {"G": G, **({"D": D} if isinstance(D, HyperNetwork) else {})}
        for name, net in hyper.items():
            reachable = net.max_macs_reduction()
            if cfg.target - cfg.tolerance > reachable and not cfg.baseline:
                raise InputError(f"--target {cfg.target}: {name} cannot lose that much; with every layer at its "
                                 f"floor ({cfg.min_channels} channels, --min-channel-fraction "
                                 f"{cfg.min_channel_fraction}) at most {reachable:.1%} of its MACs can be removed; "
                                 "expected a smaller --target, a lower floor or a wider generator (--ngf)")
        self.controller = SearchController(hyper, cfg.target, cfg.tolerance, cfg.check_interval,
                                           cfg.regularization)
        return G, D, extra

    def build_optimizers(self, G, D, extra, latent_lr: float | None):
        """Adam (lr ``cfg.lr``, betas (beta1, 0.999), fused on CPU/CUDA) for the generator side and the
        discriminator side; hypernetwork-driven networks get a second group ``"latent"`` at ``latent_lr``.
        The networks are first prepared for the device (:meth:`compress.accel.Accel.prepare_networks`)."""
        cfg = self.cfg
        self.accel.prepare_networks(G, D, *extra.values())
        betas = (cfg.beta1, 0.999)

        def groups(net):
            if isinstance(net, HyperNetwork):
                latents = {id(p) for p in net.latent_vectors.parameters()}
                rest = [p for p in net.search_parameters() if id(p) not in latents]
                return [{"params": rest, "lr": cfg.lr, "name": "weights"},
                        {"params": list(net.latent_vectors.parameters()), "lr": latent_lr or cfg.lr,
                         "name": "latent"}]
            return [{"params": [p for p in net.parameters() if p.requires_grad], "lr": cfg.lr, "name": "weights"}]

        g_groups = groups(G) + [g for k, v in extra.items() if k.startswith("G") for g in groups(v)]
        d_groups = groups(D) + [g for k, v in extra.items() if k.startswith("D") for g in groups(v)]
        # fused Adam: one kernel for all tensors instead of a per-tensor loop; on the CPU the per-tensor loop
        # was a third of a U-Net-256 search step (docs/compress.md)
        fused = self.device.type in ("cpu", "cuda")
        return (torch.optim.Adam(g_groups, betas=betas, fused=fused),
                torch.optim.Adam(d_groups, betas=betas, fused=fused))

    # --- logging, samples, checkpoints ---------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    @torch.no_grad()
    def _samples(self, stage: str, step: int, G_fn, nets) -> None:
        if not self.dist.is_main:
            return
        modes = [n.training for n in nets]
        for n in nets:
            n.eval()
        try:
            rows = self.recipe.sample_rows(G_fn, self.sample_batch)
            save_grid(rows, self.run_dir / "samples" / f"{stage}_{step:06d}.png")
        finally:
            for n, m in zip(nets, modes):
                n.train(m)

    def _save_checkpoint(self, state: dict, nets) -> None:
        """Write ``checkpoints/last.pt`` (atomically) from finite weights only: non-finite weights raise
        :class:`TrainingError` and the previous checkpoint stays the last good one."""
        self._check_finite_weights(nets, state["stage"], state["step"])
        if not self.dist.is_main:
            return
        state = {**state, "config": self.cfg.to_dict(), "recipe": self.recipe.state(), "rng": rng_state(),
                 "batches": self.batches.state_dict(), "timings": self.timings}
        atomic_torch_save(state, self.run_dir / CHECKPOINT)

    @contextlib.contextmanager
    def _restoring(self) -> Iterator[None]:
        """Turn what a checkpoint of the right format but the wrong content raises while it is restored (a key
        missing, a state dict of other networks) into the run's one-line input error.

        Raises:
            InputError: names the checkpoint and the first line of the reason."""
        try:
            yield
        except (KeyError, RuntimeError, TypeError, ValueError, IndexError, AttributeError) as exc:
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                raise
            raise InputError(f"{self.run_dir / CHECKPOINT} does not fit this run ({type(exc).__name__}: "
                             f"{first_line(exc)}); "
                             "expected a checkpoint python -m compress wrote for these settings: start a new run in "
                             "another --run-dir") from None

    @staticmethod
    def _check_own_config(path: Path) -> None:
        """A new run replaces the ``config.json`` of an earlier start in its folder (one that never checkpointed),
        never a file of other content.

        Raises:
            InputError: ``path`` is not the settings of a ``python -m compress`` run (named)."""
        try:
            RunConfig.from_dict(read_json(path), where=str(path))
        except InputError as exc:
            raise InputError(f"{path} is not the settings of a python -m compress run ({str(exc)[:200]}); a new run "
                             "would replace it: choose another --run-dir") from None

    def _load_checkpoint(self) -> dict:
        """The checkpoint (:func:`load_checkpoint`), checked against this run's config.

        Raises:
            InputError: unreadable or refused file, or a checkpoint of other settings (named).
        """
        path = self.run_dir / CHECKPOINT
        state = load_checkpoint(path, self.device)
        saved = RunConfig.from_dict(state["config"], where=f"{path}'s config")
        conflicts = config_conflicts(saved, self.cfg)
        if conflicts:
            raise InputError(f"--resume: {conflicts} from the settings of {path}; a resumed run "
                             "keeps its settings: leave these out, or start a new run in another --run-dir")
        self.recipe.load_state(state.get("recipe", {}))
        self.timings = state.get("timings", {})
        return state

    def _continue_from(self, state: dict) -> None:
        """Restore the RNG states and the data position of ``state``, last thing before training goes on
        (building networks draws from the RNG), and drop the metrics logged after it: only once the whole
        checkpoint has been restored, so that a resume refused for a checkpoint that does not fit leaves
        metrics.jsonl as it was."""
        set_rng_state(state["rng"])
        self.batches.load_state_dict(state["batches"])
        if self.dist.is_main:
            self._truncate_metrics(state["stage"], state["step"])

    def _truncate_metrics(self, stage: str, step: int) -> None:
        """Drop the ``metrics.jsonl`` lines logged after the checkpoint (stage, step): the resumed run logs
        those steps again (and a half-written last line of a killed run)."""
        if not self.metrics_path.is_file():
            return
        order = {"search": 0, "converge": 1}
        kept = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rec = json.loads(line)
                if (order[rec["stage"]], rec["step"]) <= (order[stage], step):
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        atomic_write_text(self.metrics_path, "".join(k + "\n" for k in kept))

    def _check_finite_logs(self, stage: str, step: int, logs: dict) -> None:
        bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
        if bad:
            name, value = next(iter(bad.items()))
            raise TrainingError(f"{stage} step {step}: the loss {name} is {value} (not finite); training stopped. "
                                f"{self._kept()}; start again in another --run-dir with a lower --lr / --latent-lr")

    def _check_finite_weights(self, nets, stage: str, step: int) -> None:
        for net in nets:
            for name, t in itertools.chain(net.named_parameters(), net.named_buffers()):
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise TrainingError(f"{stage} step {step}: {type(net).__name__} weight {name} is not finite; "
                                        f"training stopped. {self._kept()}; start again in another --run-dir with "
                                        "a lower --lr / --latent-lr")

    def _kept(self) -> str:
        """What a stopped run leaves: the last good checkpoint, never a generator.pt of bad weights."""
        ckpt = self.run_dir / CHECKPOINT
        if not ckpt.is_file():
            return "No checkpoint was written yet and no generator.pt"
        try:
            saved = load_checkpoint(ckpt)
            where = f" ({saved['stage']} step {saved['step']})"
        except InputError:
            where = ""
        return f"The last good checkpoint {ckpt}{where} is kept, no generator.pt was written"

    # --- the run -------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Run both stages (resuming where the checkpoint left off). Returns the compression report."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.batches = batches = self._batches()   # the data is checked before config.json is (re)written
        self.sample_batch = self._sample_batch()
        if self.dist.is_main:
            if not self.resume and self.metrics_path.is_file():
                # an earlier start in this folder that ended before its first checkpoint: nothing resumes it, and
                # its records would be read as this run's (the same steps twice in the training curves)
                LOGGER.warning("%s: records of an earlier start that never checkpointed; starting it afresh",
                               self.metrics_path)
                self.metrics_path.unlink()
            atomic_write_json(self.run_dir / "config.json", cfg.to_dict())
        total_budget = self.steps_for(cfg.steps, cfg.epochs)
        search_budget = min(self.steps_for(cfg.search_steps, cfg.search_epochs), total_budget)
        converge_budget = cfg.converge_steps or (total_budget - search_budget)   # until the search's length is known
        LOGGER.info("run %s: %s on %s (%d training items), target %.2f +- %.2f, device %s, budget %d steps in all, "
                    "the search up to %d of them%s", self.run_dir, cfg.model, cfg.dataset, self.train_size,
                    cfg.target, cfg.tolerance, self.device, total_budget, search_budget,
                    f", converging {cfg.converge_steps} (--converge-steps)" if cfg.converge_steps else "")
        LOGGER.info("CUDA settings: %s%s", self.accel.describe(),
                    f"; {self.dist.describe(cfg.batch_size)}" if self.dist.active else "")

        G, D, extra = self.build_search_networks()
        self.original = {"params": count_params(G.network), "macs": G.macs_model.full_macs,
                         "channels": dict(G.network.channels)}
        state = self.checkpoint if self.resume else {"stage": "search", "step": 0}
        self.checkpoint = None
        stage, step = state["stage"], state["step"]

        if stage == "search" and cfg.baseline:
            G_pruned, converge_budget = self._baseline(G, cfg.converge_steps or total_budget)
            D_pruned = D
            del G
            opt_G, opt_D = self.build_optimizers(G_pruned, D_pruned, extra, None)
            stage, step = "converge", 0
        elif stage == "search":
            opt_G, opt_D = self.build_optimizers(G, D, extra, cfg.latent_lr)
            if self.resume:
                with self._restoring():
                    G.load_state_dict(state["G"])
                    D.load_state_dict(state["D"])
                    for k, v in extra.items():
                        v.load_state_dict(state["extra"][k])
                    opt_G.load_state_dict(state["opt_G"])
                    opt_D.load_state_dict(state["opt_D"])
                    self.controller.load_state_dict(state["controller"])
                    self._continue_from(state)
                LOGGER.info("resumed the search at step %d", step)
            step = self._search(G, D, extra, opt_G, opt_D, step, search_budget, batches)
            # from the search's end to the converging stage's first checkpoint, a Ctrl-C waits (the searched
            # masks are kept): it is acted on at the converging stage's first step
            with deferred_interrupts():
                bn_batches = self._recompute_batchnorm(G, batches)
                G_pruned = materialize(G)
                D_pruned = materialize(D) if isinstance(D, HyperNetwork) else D
                gap = materialization_gap_db(G, G_pruned, self.recipe.generator_input(self.sample_batch))
                LOGGER.info("materialisation gap: %s", "identical outputs" if gap is None else f"PSNR {gap:.1f} dB")
                self.search_summary = {
                    "steps": step,
                    "status": {n: vars(s) for n, s in self.controller.status.items()},
                    "seconds": self.timings.get("search", 0.0),
                    "materialization_gap_db": gap,
                    "batchnorm_recomputed_batches": bn_batches,
                    "floors": G.floors(),
                    # entries at or above tau per latent vector at the stop (>= its floor: no vector collapses)
                    "latent_entries_above_threshold": {n: int((z.detach().abs() >= G.threshold).sum())
                                                       for n, z in G.prunable_latents().items()},
                }
                if not cfg.converge_steps:     # Algorithm 1: the search counts against the total budget
                    converge_budget = total_budget - step
                del G, D, opt_G, opt_D
                stage, step = "converge", 0
                state = None
                opt_G, opt_D = self.build_optimizers(G_pruned, D_pruned, extra, None)
                self._save_converge_checkpoint(G_pruned, D_pruned, extra, opt_G, opt_D, 0, converge_budget)
        else:
            with self._restoring():
                G_pruned = type(G.network)(**state["G_config"]).to(self.device)
                D_pruned = type(D.network if isinstance(D, HyperNetwork) else D)(**state["D_config"]).to(self.device)
                G_pruned.load_state_dict(state["G"])
                D_pruned.load_state_dict(state["D"])
                for k, v in extra.items():
                    v.load_state_dict(state["extra"][k])
                del G, D
                opt_G, opt_D = self.build_optimizers(G_pruned, D_pruned, extra, None)
                opt_G.load_state_dict(state["opt_G"])
                opt_D.load_state_dict(state["opt_D"])
                self.search_summary = dict(state["search_summary"])
                converge_budget = int(state["budget"])
                self._qat_state = state.get("qat")
                self._continue_from(state)
            LOGGER.info("resumed the converging stage at step %d", step)

        self._converge(G_pruned, D_pruned, extra, opt_G, opt_D, step, converge_budget, batches)
        report = self._finish(G_pruned, D_pruned)
        self.dist.close()
        return report

    def _recompute_batchnorm(self, G: HyperNetwork, batches) -> int:
        """BatchNorm running statistics of the masked search network recomputed on real training batches
        (:mod:`compress.hyper.batchnorm`) before materialisation; returns the number of batches (0: no BN)."""
        n = max(1, min(50, math.ceil(self.train_size / self.cfg.batch_size)))
        return recompute_batchnorm_statistics(G.network, lambda b: G(self.recipe.generator_input(b)),
                                              itertools.islice(batches, n))

    def _baseline(self, G: HyperNetwork, converge_budget: int):
        """Build a baseline generator instead of searching; it trains ``converge_budget`` steps, or with a
        reference run that run's whole budget (search + converge: equal budget)."""
        from compress.baselines import build_baseline, load_reference

        cfg = self.cfg
        reference = load_reference(cfg.reference_run) if cfg.reference_run else None
        fresh = self.recipe.make_generator()
        G_base = build_baseline(cfg.baseline, fresh, self.G_input_shape, reference, cfg.seed).to(self.device)
        if reference is not None and not cfg.converge_steps:
            converge_budget = reference["search"]["steps"] + reference["budget"]["converge_steps_done"]
        elif reference is not None:
            converge_budget = cfg.converge_steps
        self.search_summary = {"steps": 0, "seconds": 0.0, "baseline": cfg.baseline,
                               "reference_run": cfg.reference_run,
                               "status": {"G": {"status": f"baseline:{cfg.baseline}", "reduction":
                                                G.macs_model.reduction(G_base.channels), "step": 0, "history": []}}}
        LOGGER.info("baseline %s: %s channels, MACs reduction %.4f, training %d steps", cfg.baseline,
                    dict(G_base.channels), self.search_summary["status"]["G"]["reduction"], converge_budget)
        return G_base, converge_budget

    def _search(self, G, D, extra, opt_G, opt_D, step, budget, batches) -> int:
        cfg = self.cfg
        nets = [G, D, *extra.values()]
        self.dist.start_stage(nets, cfg.seed, "search", step)
        if step == 0:   # the state a first check past the target goes back to (after rank 0's broadcast)
            self.controller.start()
        t0 = time.perf_counter() - self.timings.get("search", 0.0)
        desc = f"search {cfg.model} -> {cfg.target:.0%}"
        first, in_step = step, False
        # a with block closes the bar when a step raises too: the error message then starts on its own line.
        # A Ctrl-C / SIGTERM is held until the next step starts (a step runs to its end: the state stays one that
        # can be checkpointed); a second one is not held, and is checkpointed only between steps.
        with progress(total=budget, initial=step, desc=desc, unit="it") as bar, deferred_interrupts():
            done = self.controller.done
            try:
                while not done and step < budget:
                    self.dist.raise_if_interrupted("search", step)  # one held while the last step ran, any rank
                    in_step = True
                    logs = gan_step(self.recipe, next(batches), G, D, extra, opt_G, opt_D,
                                    controller=self.controller, hooks=self.hooks)
                    step += 1
                    self._check_finite_logs("search", step, logs)
                    done = self.dist.check(self.controller, step)     # the MACs check (+ the ranks' agreement)
                    red = self.controller.reductions()
                    in_step = False
                    bar.update(1)
                    bar.set_postfix({**{k: f"{v:.3f}" for k, v in logs.items()},
                                     **{f"MACs-{k}": f"{v:.1%}" for k, v in red.items()}})
                    if step % cfg.log_interval == 0 or done:
                        self._log({"stage": "search", "step": step, **logs,
                                   **{f"macs_reduction_{k}": v for k, v in red.items()},
                                   "seconds": time.perf_counter() - t0})
                    if step % cfg.sample_interval == 0:
                        self._samples("search", step, lambda x: G(x, masked=True), nets)
                    if step % cfg.checkpoint_interval == 0 and not done:
                        self.timings["search"] = time.perf_counter() - t0
                        self._save_search_checkpoint(G, D, extra, opt_G, opt_D, step)
            except KeyboardInterrupt:
                if not in_step and step > first:  # between steps: the state of a finished step, worth keeping
                    self._save_interrupted("search", step, t0,
                                           lambda: self._save_search_checkpoint(G, D, extra, opt_G, opt_D, step))
                raise
        if not done:
            self.controller.exhaust(step)
        self.dist.finish_search(self.controller, step)
        self.timings["search"] = time.perf_counter() - t0
        self._samples("search", step, lambda x: G(x, masked=True), nets)
        for name, st in self.controller.status.items():
            msg = (f"search {name}: {st.status} at step {st.step}: MACs reduction {st.reduction:.4f} "
                   f"(target {cfg.target:.2f} +- {cfg.tolerance:.2f})")
            (LOGGER.info if st.status == "reached" else LOGGER.warning)(msg)
        return step

    def _save_interrupted(self, stage: str, step: int, t0: float, save: Callable[[], None]) -> None:
        """Checkpoint the state after ``step`` (a Ctrl-C / SIGTERM was held while it ran, or came between steps)
        with the stage's time so far (since ``t0``) before the command stops: a resumed run goes on from there,
        not from the last periodic checkpoint."""
        self.timings[stage] = time.perf_counter() - t0
        save()
        if self.dist.is_main:
            LOGGER.warning("interrupted: %s step %d checkpointed (%s)", stage, step, self.run_dir / CHECKPOINT)
        else:
            LOGGER.warning("interrupted after %s step %d (rank 0 writes the checkpoint)", stage, step)

    def _save_search_checkpoint(self, G, D, extra, opt_G, opt_D, step):
        self._save_checkpoint({"stage": "search", "step": step, "G": G.state_dict(), "D": D.state_dict(),
                               "extra": {k: v.state_dict() for k, v in extra.items()},
                               "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
                               "controller": self.controller.state_dict()}, [G, D, *extra.values()])

    def _save_converge_checkpoint(self, G, D, extra, opt_G, opt_D, step, budget):
        self._save_checkpoint({"stage": "converge", "step": step, "G": G.state_dict(), "D": D.state_dict(),
                               "G_config": G.config(), "D_config": D.config(),
                               "extra": {k: v.state_dict() for k, v in extra.items()},
                               "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
                               "search_summary": self.search_summary, "budget": budget,
                               "qat": self.qat.state() if self.qat is not None else None}, [G, D, *extra.values()])

    def _lr_at(self, step: int, budget: int) -> float:
        """Constant, then linear decay to 0 over the last ``decay_fraction`` of the budget (reference schedule)."""
        decay_start = int(budget * (1 - self.cfg.decay_fraction))
        if step < decay_start:
            return self.cfg.lr
        return self.cfg.lr * max(0.0, 1 - (step - decay_start) / max(1, budget - decay_start))

    def _qat_start(self, budget: int) -> int:
        """The converging step from which the int8 activations are simulated (``--qat-steps``; ``budget``: none)."""
        return max(0, budget - self.cfg.qat_steps) if self.cfg.qat_steps else budget

    def _qat_simulation(self, G) -> QuantizationSimulation:
        """The int8 simulation of the converging generator, with the ranges a resumed checkpoint saved."""
        sim = QuantizationSimulation(G, None if self.family.noise_input else IMAGE_RANGE)
        saved, self._qat_state = self._qat_state, None
        if saved is not None:
            with self._restoring():
                sim.load_state(saved)
        return sim

    def _qat_inputs(self) -> list[torch.Tensor]:
        """The representative inputs of the simulated ranges: the first :data:`QAT_CALIBRATION_ITEMS` training
        items (generator input, plus the target-domain images where the export's representative dataset has
        them), drawn with their own seeded RNG so that the training's random stream is untouched."""
        cfg = self.cfg
        saved = rng_state()
        try:
            torch.manual_seed(cfg.seed)
            random.seed(cfg.seed)
            np.random.seed(cfg.seed % 2**32)
            ds = self.family.dataset(cfg, train=True)
            items = [ds[i] for i in range(min(QAT_CALIBRATION_ITEMS, len(ds)))]
            batches = [to_device(torch.utils.data.default_collate(items[i:i + 16]), self.device)
                       for i in range(0, len(items), 16)]
            target = ("B",) if self.family.calibrates_with_target_domain else ()
            return representative_batches(batches, self.recipe.generator_input, target)   # DCGAN draws noise
        finally:
            set_rng_state(saved)

    def _converge(self, G, D, extra, opt_G, opt_D, step, budget, batches) -> None:
        cfg = self.cfg
        nets = [G, D, *extra.values()]
        qat_start = self._qat_start(budget)
        if qat_start < budget and step <= qat_start:
            LOGGER.info("int8 activations simulated from converging step %d to %d (--qat-steps %d)", qat_start,
                        budget, cfg.qat_steps)
        qat_inputs = None
        self.dist.start_stage(nets, cfg.seed, "converge", step)
        t0 = time.perf_counter() - self.timings.get("converge", 0.0)
        first, in_step = step, False
        # interruptions as in _search: held until the next step starts
        with progress(total=budget, initial=step, desc=f"converge {cfg.model}", unit="it") as bar, \
                deferred_interrupts():
            try:
                while step < budget:
                    self.dist.raise_if_interrupted("converge", step)  # as in _search
                    lr = self._lr_at(step, budget)
                    in_step = True
                    for opt in (opt_G, opt_D):
                        for g in opt.param_groups:
                            g["lr"] = lr
                    simulate = step >= qat_start
                    if simulate:
                        if self.qat is None:
                            self.qat = self._qat_simulation(G)
                        if (step - qat_start) % QAT_RECALIBRATION_INTERVAL == 0 or not self.qat.calibrated:
                            qat_inputs = qat_inputs if qat_inputs is not None else self._qat_inputs()
                            try:
                                self.qat.calibrate(qat_inputs)
                            except ValueError as exc:   # a non-finite activation: the weights are broken
                                raise TrainingError(f"converge step {step}: {exc}; training stopped. {self._kept()}"
                                                    "; start again in another --run-dir with a lower --lr") from None
                    with self.qat if simulate else contextlib.nullcontext():
                        logs = gan_step(self.recipe, next(batches), G, D, extra, opt_G, opt_D, hooks=self.hooks)
                    step += 1
                    self._check_finite_logs("converge", step, logs)
                    in_step = False
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
                    if step % cfg.log_interval == 0 or step == budget:
                        self._log({"stage": "converge", "step": step, **logs, "lr": lr,
                                   "seconds": time.perf_counter() - t0})
                    if step % cfg.sample_interval == 0:
                        self._samples("converge", step, G, nets)
                    if step % cfg.checkpoint_interval == 0 and step < budget:
                        self.timings["converge"] = time.perf_counter() - t0
                        self._save_converge_checkpoint(G, D, extra, opt_G, opt_D, step, budget)
            except KeyboardInterrupt:
                if not in_step and step > first:  # between steps: the state of a finished step, worth keeping
                    self._save_interrupted("converge", step, t0, lambda: self._save_converge_checkpoint(
                        G, D, extra, opt_G, opt_D, step, budget))
                raise
        self.timings["converge"] = time.perf_counter() - t0
        self._samples("converge", step, G, nets)
        self.converge_steps_done = step
        self._save_converge_checkpoint(G, D, extra, opt_G, opt_D, step, budget)

    def _finish(self, G, D) -> dict:
        from compress.report import compression_report, write_report

        cfg = self.cfg
        G = G.cpu().eval()
        self._check_finite_weights([G], "converge", self.converge_steps_done)
        report = compression_report(cfg, self.original, G, self.search_summary, self.timings,
                                    self.converge_steps_done, discriminator=D.cpu() if cfg.compress_discriminator else None)
        if self.dist.is_main:
            save_generator(self.run_dir, G, cfg.image_size, self.family.dataset_metadata(cfg))
            write_report(self.run_dir, report)
            LOGGER.info("wrote %s", self.run_dir / "compression_report.md")
        return report
