"""Evaluate a finished run folder: FID and KID of its generator, params, MACs and an input/output grid.

Protocol per family (GAN Compression / OMGD; all FID/KID via :mod:`compress.evaluate.metrics`,
pool3 features of the standard FID Inception, ``pytorch-fid`` preprocessing):

* **pix2pix**: the generator translates every A image of the dataset's test split (``val`` when there is no
  ``test``; ``architecture.json``'s ``dataset.test_dir``); its outputs are compared with the real B images of
  the same split.
* **cyclegan**: the generator translates ``testA`` (``testB`` for ``BtoA``); its outputs are compared with the
  real images of the target domain: by default ``trainB + testB`` (horse2zebra: 1,334 + 140 = 1,474 zebras, as
  GAN Compression did), or ``testB`` only (``real_set="testB"``).
* **dcgan**: ``num_samples`` images from seeded z ~ N(0, I) (seed 0 by default) are compared with the real
  CIFAR-10 ``train`` images of the npz (``real_set="test"`` or ``"train+test"`` also accepted).

Inputs are read in eval mode: a bicubic resize to the run's image size (``config.json`` ``image_size``), no
crop, no flip (the reference test-time preprocessing). Real images are brought to the same size the same way
before their features are taken, so a 128-pixel generator is compared with 128-pixel real images (the
Inception then resizes both to 299). Their statistics are cached by :mod:`compress.evaluate.reference`
under the label ``<dataset>_<real set>_<size>px`` and keyed on the decoded pixels, so changing, adding or
removing a real image recomputes them.

FID: ``method="fast"`` of :func:`compress.evaluate.metrics.fid_from_features`, equal to pytorch-fid's sqrtm FID to
~1e-7 relative in a fraction of a second instead of 10-70 s on 2 CPU cores. KID: unbiased, mean and std over
random subsets (:func:`compress.evaluate.metrics.kid_from_features`), subset size ``min(1000, N_fake, N_real)``.

Outputs in the run folder: ``evaluation.json`` (atomic), ``evaluation_grid.png`` and an "Evaluation" section
appended to ``compression_report.md`` (re-rendered from ``compression_report.json`` + ``evaluation.json``).
An evaluation is skipped when ``evaluation.json`` exists, the SHA-256 of ``generator.pt`` and
``architecture.json`` are unchanged and the settings are the same, unless ``force``.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from compress.data.codec import float_to_uint8, uint8_to_float
from compress.errors import InputError
from compress.evaluate.features import features_from_tensor
from compress.evaluate.metrics import KID_SUBSET_SIZE, KID_SUBSETS, fid_from_features, kid_from_features
from compress.evaluate.reference import reference_statistics
from compress.io import atomic_write_json, atomic_write_text
from compress.macs import count_macs, count_params
from compress.io import sha256_file

LOGGER = logging.getLogger("coronetgan.evaluate")

EVALUATION_FILE = "evaluation.json"
GRID_FILE = "evaluation_grid.png"
REPORT_JSON = "compression_report.json"
REPORT_MD = "compression_report.md"
SECTION_TITLE = "## Evaluation"
#: Bumped when the content of evaluation.json changes meaning (an old file is then recomputed).
EVALUATION_FORMAT = 1
#: Default number of DCGAN samples (the notes' reference figures used 5,000).
DCGAN_DEFAULT_SAMPLES = 5000
REAL_SETS = {"pix2pix": ("test",), "cyclegan": ("train+test", "testB"), "dcgan": ("train", "test", "train+test")}
DEFAULT_REAL_SET = {"pix2pix": "test", "cyclegan": "train+test", "dcgan": "train"}


@dataclass
class EvalSettings:
    """What an evaluation computes (stored in evaluation.json; a change of any field re-evaluates).

    Attributes:
        num_samples: DCGAN: images generated (default 5000). pix2pix/CycleGAN: at most this many test inputs
            (``None``: all of them, the standard protocol).
        real_set: see :data:`REAL_SETS`; ``None``: the family default (:data:`DEFAULT_REAL_SET`). For
            CycleGAN, ``testB`` means the real target domain's test folder (``testA`` for BtoA) and
            ``train+test`` both of its folders.
        max_real: at most this many real images (the first ones, in file / array order); ``None``: all.
        kid_subsets: KID subsets (default 100); the subset size is ``min(kid_subset_size, N_fake, N_real)``.
        kid_subset_size: KID subset size (default 1000).
        seed: seed of the DCGAN latent vectors z (``torch.Generator().manual_seed(seed)``) and of KID's subsets
            is :data:`compress.evaluate.metrics.KID_SEED`.
        batch_size: images per generator / Inception call.
        grid_columns: images per row of the grid.
    """

    num_samples: int | None = None
    real_set: str | None = None
    max_real: int | None = None
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    seed: int = 0
    batch_size: int = 50
    grid_columns: int = 8

    def resolved(self, family: str) -> "EvalSettings":
        """A copy with the family defaults filled in and every value checked.

        Raises:
            InputError: a real set the family does not have, or a non-positive count (the flag is named).
        """
        s = EvalSettings(**asdict(self))
        if s.real_set is None:
            s.real_set = DEFAULT_REAL_SET[family]
        if s.real_set not in REAL_SETS[family]:
            raise InputError(f"--real-set {s.real_set!r} for a {family} run: expected one of "
                             f"{', '.join(REAL_SETS[family])}")
        if family == "dcgan" and s.num_samples is None:
            s.num_samples = DCGAN_DEFAULT_SAMPLES
        for name, flag, low in (("num_samples", "--num-samples", 2), ("max_real", "--max-real", 2),
                                ("kid_subsets", "--kid-subsets", 1), ("kid_subset_size", "--kid-subset-size", 2),
                                ("batch_size", "--batch-size", 1), ("grid_columns", "--grid-columns", 1)):
            v = getattr(s, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
                raise InputError(f"{flag} {v!r}: expected an integer >= {low}")
        return s


@dataclass
class RunFiles:
    """The files of a run folder that an evaluation reads, checked up front."""

    run_dir: Path
    generator: Path
    architecture: Path
    config: dict = field(default_factory=dict)
    report: dict | None = None


def check_run_dir(run_dir: str | Path) -> RunFiles:
    """Check that ``run_dir`` is a finished run and read its config/report.

    Raises:
        InputError: the folder does not exist, or ``generator.pt`` / ``architecture.json`` is missing (named),
            or ``config.json`` / ``compression_report.json`` is not valid JSON.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run folder {run_dir} does not exist; expected a folder written by `python -m compress`")
    files = RunFiles(run_dir, run_dir / "generator.pt", run_dir / "architecture.json")
    for path, what in ((files.architecture, "the architecture file"), (files.generator, "the generator weights")):
        if not path.is_file():
            raise InputError(f"{path} is missing: {what} that `python -m compress` writes at the end of a run; "
                             f"is the run in {run_dir} finished? (nothing to evaluate)")
    for name, attr in (("config.json", "config"), (REPORT_JSON, "report")):
        p = run_dir / name
        if p.is_file():
            try:
                setattr(files, attr, json.loads(p.read_text()))
            except json.JSONDecodeError as exc:
                raise InputError(f"{p} is not valid JSON ({exc})") from None
    return files


# ------------------------------------------------------------------------------------------------ data


def _image_size(arch: dict, config: dict) -> int:
    """Side of the generator's input/output images (pixels): architecture input shape, else config."""
    shape = arch.get("input_shape") or []
    if arch.get("family") != "dcgan" and len(shape) == 4:
        return int(shape[-1])
    return int(config.get("image_size", 32 if arch.get("family") == "dcgan" else 256))


def _dataset_root(arch: dict, config: dict) -> Path:
    from compress.data import resolve_dataset

    ds = arch.get("dataset") or {}
    root = ds.get("root")
    if root and Path(root).exists():
        return Path(root)
    name = ds.get("name") or config.get("dataset")
    if not name:
        raise InputError("architecture.json names no dataset (dataset.name) and config.json has no 'dataset'")
    return resolve_dataset(name)


def load_resized(paths: list[Path], size: int, desc: str = "read images") -> np.ndarray:
    """Read image files as RGB, bicubic-resize each to ``size`` x ``size`` (the eval preprocessing of
    :mod:`compress.data.transforms`). Returns uint8 (N, size, size, 3).

    Raises:
        InputError: an unreadable file (named).
    """
    from compress.data import load_rgb

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(tqdm(paths, desc=desc, unit="img", leave=False, disable=len(paths) < 50)):
        img = load_rgb(p)
        if img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
        out[i] = np.asarray(img, dtype=np.uint8)
    return out


@dataclass
class EvalData:
    """What a family's evaluation compares.

    Attributes:
        inputs: generator inputs: (N, 3, S, S) float32 in [-1, 1] (images) or (N, nz, 1, 1) z for DCGAN.
        real: uint8 real images (M, S, S, 3) (or (M, 3, 32, 32) CIFAR), for the reference statistics.
        real_label: cache label of the real set, e.g. ``horse2zebra_trainB+testB_128px``.
        description: one line for the report: which inputs, which real set, how many.
        targets: pix2pix: the real B images paired with ``inputs`` (for the grid), else None.
        input_source, real_source: folders / files the images came from (for evaluation.json).
    """

    inputs: torch.Tensor
    real: np.ndarray
    real_label: str
    description: str
    targets: torch.Tensor | None = None
    input_source: str = ""
    real_source: str = ""


def _limit(paths: list, n: int | None) -> list:
    return paths if n is None else paths[:n]


def evaluation_data(arch: dict, config: dict, s: EvalSettings) -> EvalData:
    """Inputs and real images for ``arch``'s family under settings ``s`` (resolved). See the module docstring.

    Raises:
        InputError: missing dataset folders / npz (named), too few images.
    """
    family = arch["family"]
    root = _dataset_root(arch, config)
    size = _image_size(arch, config)
    ds_meta = arch.get("dataset") or {}
    name = ds_meta.get("name") or config.get("dataset") or root.name
    if family == "dcgan":
        from compress.data import CIFAR10Dataset

        splits = ("train", "test") if s.real_set == "train+test" else (s.real_set,)
        real = np.concatenate([CIFAR10Dataset(root, split=sp).images.numpy() for sp in splits])
        total = len(real)
        real = real[: s.max_real] if s.max_real else real
        which = f"the first {len(real)} of the {total}" if len(real) < total else f"all {total}"
        nz = int(arch["generator"].get("nz", arch.get("input_shape", [1, 100])[1]))
        g = torch.Generator().manual_seed(int(s.seed))
        z = torch.randn(int(s.num_samples), nz, 1, 1, generator=g)
        label = f"{name}_{s.real_set}" + (f"_first{s.max_real}" if s.max_real else "")
        return EvalData(z, real, label,
                        f"{s.num_samples} samples (z ~ N(0, I), seed {s.seed}) against {which} real CIFAR-10 "
                        f"{s.real_set} images of {Path(root).name}", input_source=f"z seed {s.seed}",
                        real_source=f"{root} [{s.real_set}]")
    direction = ds_meta.get("direction") or config.get("direction", "AtoB")
    src, dst = ("A", "B") if direction == "AtoB" else ("B", "A")
    if family == "cyclegan":
        from compress.data import list_images

        in_dir = root / f"test{src}"
        in_paths = _limit(list_images(in_dir, "CycleGAN test input folder"), s.num_samples)
        real_dirs = [root / f"test{dst}"] if s.real_set == "testB" else [root / f"train{dst}", root / f"test{dst}"]
        real_paths = _limit([p for d in real_dirs for p in list_images(d, "CycleGAN real image folder")], s.max_real)
        inputs = uint8_to_float(torch.from_numpy(load_resized(in_paths, size, f"read {in_dir.name}")))
        real = load_resized(real_paths, size, "read real " + "+".join(d.name for d in real_dirs))
        real_name = "+".join(d.name for d in real_dirs)
        label = f"{name}_{real_name}_{size}px" + (f"_first{s.max_real}" if s.max_real else "")
        return EvalData(inputs, real, label,
                        f"outputs of {len(in_paths)} {in_dir.name} images against {len(real)} real "
                        f"{real_name} images, all at {size}x{size}", input_source=str(in_dir),
                        real_source=", ".join(map(str, real_dirs)))
    # pix2pix: paired test (or val) split
    from compress.data import AlignedDataset

    phase = ds_meta.get("test_dir")
    if not phase or not ((root / phase).exists() or (root / f"{phase}A").exists()):
        phase = next((p for p in ("test", "val") if (root / p).exists() or (root / f"{p}A").exists()), None)
    if phase is None:
        raise InputError(f"{root}: no test or val split to evaluate on (expected {root}/test/, {root}/val/ or "
                         f"{root}/testA/ + {root}/testB/)")
    ds = AlignedDataset(root, phase=phase, direction=direction, load_size=size, crop_size=size, flip=False,
                        train=False)
    n = len(ds) if s.num_samples is None else min(len(ds), s.num_samples)
    items = [ds[i] for i in tqdm(range(n), desc=f"read {phase}", unit="img", leave=False, disable=n < 50)]
    inputs = torch.stack([it["A"] for it in items])
    targets = torch.stack([it["B"] for it in items])
    real_t = targets[: s.max_real] if s.max_real else targets
    real = float_to_uint8(real_t).numpy()
    label = f"{name}_{phase}{dst}_{size}px" + (f"_first{s.max_real}" if s.max_real else "")
    return EvalData(inputs, real, label,
                    f"outputs of {n} {phase} A images against the {len(real)} real {phase} B images, "
                    f"all at {size}x{size}", targets=targets, input_source=f"{root / phase} (A)",
                    real_source=f"{root / phase} (B)")


# -------------------------------------------------------------------------------------------- generate


@torch.no_grad()
def generate(generator: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 50,
             device: torch.device | str = "cpu", desc: str = "generate", progress: bool = True) -> torch.Tensor:
    """Run ``generator`` (eval mode) on ``inputs`` in batches; returns float32 (N, 3, H, W) on the CPU, clamped
    to [-1, 1] (tanh outputs can exceed it by rounding only)."""
    generator = generator.to(device).eval()
    out = []
    for i in tqdm(range(0, len(inputs), batch_size), desc=desc, unit="batch", leave=False, disable=not progress):
        out.append(generator(inputs[i:i + batch_size].to(device)).float().cpu().clamp_(-1.0, 1.0))
    return torch.cat(out) if out else torch.zeros(0)


def grid_rows(family: str, data: EvalData, outputs: torch.Tensor, columns: int) -> list[torch.Tensor]:
    """Rows of the evaluation grid, each (<= columns, 3, H, W) in [-1, 1]: input / output (/ real target);
    DCGAN: two rows of samples."""
    if family == "dcgan":
        k = min(columns, len(outputs) // 2)
        return [outputs[:k], outputs[k:2 * k]] if k else [outputs[:1]]
    rows = [data.inputs[:columns], outputs[:columns]]
    if data.targets is not None:
        rows.append(data.targets[:columns])
    return rows


# ------------------------------------------------------------------------------------------- evaluate


def _fingerprint(files: RunFiles) -> dict[str, str]:
    return {"generator.pt": sha256_file(files.generator), "architecture.json": sha256_file(files.architecture)}


def existing_evaluation(run_dir: Path, fingerprint: dict, settings: dict) -> dict | None:
    """The stored evaluation when it was made from the same files with the same settings, else None."""
    path = run_dir / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if old.get("format") != EVALUATION_FORMAT or old.get("inputs_sha256") != fingerprint \
            or old.get("settings") != settings:
        return None
    return old


def evaluate_run(run_dir: str | Path, settings: EvalSettings | None = None, *, device: str | None = None,
                 force: bool = False, cache_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Evaluate the generator of a finished run folder and write its evaluation artifacts.

    Args:
        run_dir: a folder written by ``python -m compress`` (``generator.pt`` + ``architecture.json``).
        settings: :class:`EvalSettings` (family defaults when ``None``).
        device: torch device for the generator and the Inception (default: cuda when available, else cpu).
        force: recompute even when ``evaluation.json`` matches the current files and settings.
        cache_dir: FID reference-statistics cache (default ``$CORONETGAN_FID_CACHE`` or ~/.cache/coronetgan/fid).
        progress: tqdm bars.

    Returns:
        The evaluation dict (also written to ``run_dir/evaluation.json``) with ``"skipped": True`` when the
        stored one was reused. Keys: ``fid`` (pool3 FID, fast method), ``kid_mean``/``kid_std`` (unbiased KID
        over ``kid_subsets`` subsets of ``kid_subset_size``), ``n_fake``/``n_real``, ``params``, ``macs``
        (per image, published convention of :mod:`compress.macs`), ``settings``, ``protocol`` (text),
        ``inputs_sha256``, ``seconds`` (wall time per phase), ``machine``, ``grid``.

    Raises:
        InputError: missing ``generator.pt`` / ``architecture.json`` (named), mismatched weights, bad settings,
            missing data.
    """
    from compress.models import load_generator
    from compress.report import machine_description
    from compress.trainer import pick_device

    files = check_run_dir(run_dir)
    run_dir = files.run_dir
    arch = json.loads(files.architecture.read_text()) if files.architecture.is_file() else {}
    family = arch.get("family")
    if family not in REAL_SETS:
        raise InputError(f"{files.architecture}: family {family!r}; expected one of {', '.join(REAL_SETS)}")
    s = (settings or EvalSettings()).resolved(family)
    settings_d = asdict(s)
    fingerprint = _fingerprint(files)
    if not force:
        old = existing_evaluation(run_dir, fingerprint, settings_d)
        if old is not None:
            LOGGER.info("%s: generator.pt and architecture.json unchanged since the last evaluation "
                        "(same settings); skipped (use --force to recompute)", run_dir)
            write_report_section(run_dir, old, files.report)
            return {**old, "skipped": True}

    t = {}
    t0 = time.perf_counter()
    generator, arch = load_generator(run_dir)
    dev = pick_device(device or "auto")
    data = evaluation_data(arch, files.config, s)
    t["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    outputs = generate(generator, data.inputs, s.batch_size, dev, desc=f"generate {family}", progress=progress)
    t["generate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fake_feats = features_from_tensor(outputs, batch_size=s.batch_size, device=dev, progress=progress)
    t["features_fake"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    real = reference_statistics(data.real, cache_dir, name=data.real_label, batch_size=s.batch_size,
                                device=dev, progress=progress)
    t["features_real"] = time.perf_counter() - t0
    if len(outputs) < 2:
        raise InputError(f"{run_dir}: only {len(outputs)} generated image(s); FID/KID need at least 2 "
                         "(raise --num-samples)")
    t0 = time.perf_counter()
    fid = fid_from_features(fake_feats, real.features, method="fast")
    kid_mean, kid_std = kid_from_features(fake_feats, real.features, subsets=s.kid_subsets,
                                          subset_size=s.kid_subset_size)
    t["metrics"] = time.perf_counter() - t0

    generator = generator.cpu()
    input_shape = tuple(arch.get("input_shape") or data.inputs[:1].shape)
    grid = grid_rows(family, data, outputs, s.grid_columns)
    from compress.samples import save_grid

    save_grid(grid, run_dir / GRID_FILE, max_columns=s.grid_columns)
    rep = files.report or {}
    result: dict[str, Any] = {
        "format": EVALUATION_FORMAT,
        "run_dir": str(run_dir),
        "family": family,
        "dataset": (arch.get("dataset") or {}).get("name") or files.config.get("dataset"),
        "baseline": rep.get("baseline") or files.config.get("baseline") or None,
        "fid": float(fid),
        "fid_method": "fast (cross-Gram SVD; equals pytorch-fid's sqrtm FID to ~1e-7)",
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "kid_subsets": s.kid_subsets,
        "kid_subset_size": min(s.kid_subset_size, len(outputs), real.n),
        "n_fake": int(len(outputs)),
        "n_real": real.n,
        "real_set": s.real_set,
        "real_label": data.real_label,
        "real_cache": str(real.cache_path) if real.cache_path else None,
        "real_from_cache": bool(real.from_cache),
        "input_source": data.input_source,
        "real_source": data.real_source,
        "protocol": (f"{data.description}; FID Inception pool3 (2048-d), pytorch-fid preprocessing "
                     f"(bilinear to 299), outputs quantised to 8 bits"),
        "image_size": _image_size(arch, files.config),
        "params": count_params(generator),
        "macs": count_macs(generator, input_shape),
        "input_shape": list(input_shape),
        "original": rep.get("original"),
        "macs_reduction": rep.get("achieved_macs_reduction"),
        "settings": settings_d,
        "inputs_sha256": fingerprint,
        "seconds": {k: round(v, 2) for k, v in t.items()},
        "machine": machine_description(),
        "device": str(dev),
        "grid": GRID_FILE,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(run_dir / EVALUATION_FILE, result)
    write_report_section(run_dir, result, files.report)
    LOGGER.info("%s: FID %.2f, KID %.4f +- %.4f (%d vs %d images), %.3f M params, %.4f G MACs", run_dir, fid,
                kid_mean, kid_std, len(outputs), real.n, result["params"] / 1e6, result["macs"] / 1e9)
    return {**result, "skipped": False}


# -------------------------------------------------------------------------------------------- report


def evaluation_markdown(ev: dict) -> str:
    """The "Evaluation" section (Markdown) of ``compression_report.md`` for an evaluation dict."""
    orig = ev.get("original") or {}
    lines = [
        SECTION_TITLE, "",
        f"- Protocol: {ev['protocol']}.",
        f"- **FID {ev['fid']:.2f}** ({ev['n_fake']} generated vs {ev['n_real']} real images; FID is biased "
        "upwards at small N, compare only rows with the same N).",
        f"- **KID {ev['kid_mean']:.4f} ± {ev['kid_std']:.4f}** (unbiased MMD², cubic kernel; mean ± std over "
        f"{ev['kid_subsets']} subsets of {ev['kid_subset_size']}).",
        f"- Generator: {ev['params'] / 1e6:.3f} M params, {ev['macs'] / 1e9:.4f} G MACs per image "
        f"(input {'x'.join(map(str, ev['input_shape']))})"
        + (f"; unpruned {orig['params'] / 1e6:.3f} M params, {orig['macs'] / 1e9:.4f} G MACs"
           if orig.get("macs") else "") + ".",
        f"- Evaluated on {ev['device']} ({ev['machine']}) in {sum(ev['seconds'].values()):.0f} s; "
        f"real statistics {'from the cache' if ev.get('real_from_cache') else 'computed'} "
        f"({ev.get('real_label')}).",
        "", f"![input/output pairs]({ev['grid']})", "",
    ]
    return "\n".join(lines)


def write_report_section(run_dir: Path, ev: dict, report: dict | None) -> Path:
    """Re-render ``compression_report.md``: :func:`compress.report.report_markdown` of
    ``compression_report.json`` followed by :func:`evaluation_markdown`. Without a JSON report, an existing
    Markdown report keeps its text up to a previous Evaluation section. Written atomically."""
    md_path = Path(run_dir) / REPORT_MD
    if report is not None:
        from compress.report import report_markdown

        head = report_markdown(report)
    elif md_path.is_file():
        head = md_path.read_text().split(SECTION_TITLE, 1)[0]
    else:
        head = f"# Report: {run_dir}\n"
    text = head.rstrip("\n") + "\n\n" + evaluation_markdown(ev)
    return atomic_write_text(md_path, text)
