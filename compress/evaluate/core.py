"""Evaluate a finished run folder: FID and KID of its generator, params, MACs and an input/output grid.

The protocol -- what to generate and which real images to compare with -- is the run's family's
(:meth:`compress.families.base.Family.evaluation_data`: the GAN Compression / OMGD FID protocols, described in
:mod:`compress.families.pix2pix`, :mod:`~compress.families.cyclegan` and :mod:`~compress.families.dcgan`); all
FID/KID via :mod:`compress.evaluate.metrics`, pool3 features of the standard FID Inception, ``pytorch-fid`` preprocessing.

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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from compress.config import check_seed
from compress.errors import InputError
from compress.evaluate.features import features_from_tensor
from compress.evaluate.metrics import KID_SUBSET_SIZE, KID_SUBSETS, fid_from_features, kid_from_features
from compress.evaluate.reference import reference_key, reference_statistics
from compress.families import FAMILIES, get_family
from compress.families.evaluation import EvalData
from compress.io import atomic_write_json, atomic_write_text, read_json
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


@dataclass
class EvalSettings:
    """What an evaluation computes (stored in evaluation.json; a change of any field re-evaluates).

    Attributes:
        num_samples: DCGAN: images generated (default 5000). pix2pix/CycleGAN: at most this many test inputs
            (``None``: all of them, the standard protocol).
        real_set: one of the family's ``real_sets``; ``None``: its ``default_real_set``. For
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
        fam = get_family(family)
        if s.real_set is None:
            s.real_set = fam.default_real_set
        if s.real_set not in fam.real_sets:
            raise InputError(f"--real-set {s.real_set!r} for a {family} run: expected one of "
                             f"{', '.join(fam.real_sets)}")
        if s.num_samples is None:
            s.num_samples = fam.default_num_samples
        for name, flag, low in (("num_samples", "--num-samples", 2), ("max_real", "--max-real", 2),
                                ("kid_subsets", "--kid-subsets", 1), ("kid_subset_size", "--kid-subset-size", 2),
                                ("batch_size", "--batch-size", 1), ("grid_columns", "--grid-columns", 1)):
            v = getattr(s, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
                raise InputError(f"{flag} {v!r}: expected an integer >= {low}")
        check_seed(s.seed)
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
        raise InputError(f"run folder {run_dir} " + ("is a file" if run_dir.exists() else "does not exist")
                         + "; expected a folder written by `python -m compress`")
    files = RunFiles(run_dir, run_dir / "generator.pt", run_dir / "architecture.json")
    for path, what in ((files.architecture, "the architecture file"), (files.generator, "the generator weights")):
        if not path.is_file():
            raise InputError(f"{path} is missing: {what} that `python -m compress` writes at the end of a run; "
                             f"is the run in {run_dir} finished? (nothing to evaluate)")
    for name, attr in (("config.json", "config"), (REPORT_JSON, "report")):
        p = run_dir / name
        if p.is_file():
            value = read_json(p)
            if not isinstance(value, dict):
                raise InputError(f"{p} holds a JSON {type(value).__name__}; expected the object python -m compress "
                                 "writes")
            setattr(files, attr, value)
    if files.report is not None:   # the report is re-rendered with the evaluation at the end: check it first
        from compress.report import report_markdown

        try:
            report_markdown(files.report)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise InputError(f"{run_dir / REPORT_JSON} lacks what its Markdown report needs ({type(exc).__name__}: "
                             f"{exc}); expected the report python -m compress writes at the end of a run") from None
    return files


# ------------------------------------------------------------------------------------------------ data


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


def evaluation_data(arch: dict, config: dict, s: EvalSettings) -> EvalData:
    """Inputs and real images for ``arch``'s family under settings ``s`` (resolved). See the module docstring.

    Raises:
        InputError: missing dataset folders / npz (named), too few images.
    """
    root = _dataset_root(arch, config)
    name = (arch.get("dataset") or {}).get("name") or config.get("dataset") or root.name
    return get_family(arch["family"]).evaluation_data(arch, config, s, root, name)


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


# ------------------------------------------------------------------------------------------- evaluate


def _fingerprint(files: RunFiles) -> dict[str, str]:
    return {"generator.pt": sha256_file(files.generator), "architecture.json": sha256_file(files.architecture)}


def existing_evaluation(run_dir: Path, fingerprint: dict, settings: dict,
                        real_key: Callable[[], str] | None = None) -> dict | None:
    """The stored evaluation when it was made from the same files with the same settings and, when ``real_key``
    is given, the same real images (its content key, computed only when the rest matches), else None."""
    path = run_dir / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):   # unreadable, not UTF-8 or not JSON: recomputed and rewritten
        LOGGER.warning("%s cannot be read; evaluating again", path)
        return None
    if not isinstance(old, dict):
        LOGGER.warning("%s holds no evaluation object; evaluating again", path)
        return None
    if old.get("format") != EVALUATION_FORMAT or old.get("inputs_sha256") != fingerprint \
            or old.get("settings") != settings:
        return None
    if real_key is not None and old.get("real_key") != real_key():
        LOGGER.info("%s: the real images changed since the last evaluation; evaluating again", run_dir)
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
    from compress.artifacts import load_generator
    from compress.machine import describe_machine, machine_text
    from compress.trainer import pick_device

    from compress.artifacts import load_architecture

    dev = pick_device(device or "auto")  # checked before anything, a skipped evaluation included
    if cache_dir is not None and Path(cache_dir).exists() and not Path(cache_dir).is_dir():
        raise InputError(f"--cache-dir {cache_dir}: a file; expected a folder for the FID reference statistics")
    files = check_run_dir(run_dir)
    run_dir = files.run_dir
    arch = load_architecture(run_dir)
    family = arch.get("family")
    if family not in FAMILIES:
        raise InputError(f"{files.architecture}: family {family!r}; expected one of {', '.join(FAMILIES)}")
    fam = FAMILIES[family]
    s = (settings or EvalSettings()).resolved(family)
    settings_d = asdict(s)
    fingerprint = _fingerprint(files)
    data = None
    if not force:
        def current_real_key() -> str:   # the real set as it is now (a changed mirror changes N and FID)
            nonlocal data
            data = evaluation_data(arch, files.config, s)
            return reference_key(data.real)

        old = existing_evaluation(run_dir, fingerprint, settings_d, current_real_key)
        if old is not None:
            LOGGER.info("%s: generator.pt and architecture.json unchanged since the last evaluation "
                        "(same settings); skipped (use --force to recompute)", run_dir)
            write_report_section(run_dir, old, files.report)
            return {**old, "skipped": True}

    t = {}
    t0 = time.perf_counter()
    generator, arch = load_generator(run_dir)
    data = data if data is not None else evaluation_data(arch, files.config, s)
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
    grid = fam.grid_rows(data, outputs, s.grid_columns)
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
        "real_key": real.key or reference_key(data.real),   # the real images' content (skip-if-unchanged)
        "real_set": s.real_set,
        "real_label": data.real_label,
        "real_cache": str(real.cache_path) if real.cache_path else None,
        "real_from_cache": bool(real.from_cache),
        "input_source": data.input_source,
        "real_source": data.real_source,
        "protocol": (f"{data.description}; FID Inception pool3 (2048-d), pytorch-fid preprocessing "
                     f"(bilinear to 299), outputs quantised to 8 bits"),
        "image_size": fam.image_size(arch, files.config),
        "params": count_params(generator),
        "macs": count_macs(generator, input_shape),
        "input_shape": list(input_shape),
        "original": rep.get("original"),
        "macs_reduction": rep.get("achieved_macs_reduction"),
        "settings": settings_d,
        "inputs_sha256": fingerprint,
        "seconds": {k: round(v, 2) for k, v in t.items()},
        "machine": f"{machine_text(describe_machine())}, torch {torch.__version__}",
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
