"""The main job as one pipeline: data -> compress -> evaluate -> export/quantize -> bench -> release.

``python -m bench.pipeline [STAGE ...] [--run-dir runs/main] [options]`` (``make pipeline`` runs all stages;
``make compress|evaluate|export|bench|release`` one). Each stage is the project's own command on the previous
stage's output, run as a subprocess so that it can also be run alone by hand:

=========  ==============================================================  =====================================
stage      command                                                         skipped when
=========  ==============================================================  =====================================
data       ``python -m compress.data fetch NAME --dest DATA_DIR``          fetch finds a verified copy (its own)
compress   ``python -m compress --model M --dataset D --target T           RUN holds a finished generator.pt
           --preset P --run-dir RUN [extra]`` (``--resume`` after a stop)  whose config.json is this config
evaluate   ``python -m compress.evaluate RUN [extra]``                     its own skip-if-unchanged
export     ``python -m export RUN --dtype all --input-size 256             its own skip-if-unchanged (manifest)
           --accept-gate-failure``, then the same with ``--original``
           (the unpruned generator of the same family and width)
bench      ``python bench/run_adb.py --device sm8450 --models              same manifest sha256s, same settings,
           ORIGINAL_MANIFEST MANIFEST --reference LABEL`` on the attached  same device (stamp file in the
           phone; without one ``--device host`` and the virtual device     output folder), complete tables
           (private adb server on 127.0.0.1)
release    :func:`bench.pipeline.release.build_release`                    never (cheap; always rebuilt)
           (``python -m bench.pipeline.release RUN``)
=========  ==============================================================  =====================================

Latency is measured at ``--input-size`` (default 256 x 256, the phone's input size of paper Table 3) whatever
the training size; a generator with a fixed size (DCGAN) keeps its own. The original beside the compressed
generator has the weights of ``--original-weights``: ``init`` (initialised: latency only), a baseline run
(``python -m compress --baseline unpruned``), a state-dict ``.pt``, or ``none`` (no original).

Phone detection: ``adb devices`` on the default adb server (port 5037; started like ``adb devices`` does, and
nothing else), ignoring virtual devices; a phone whose getprop matches the ``--device`` profile is benched. With
none, bench runs on the host CPU and on a virtual device: those rows are labelled ``host`` / ``virtual`` and are
never phone figures.

Every stage run is recorded in ``RUN/pipeline.json``: ``stages`` (the last run of each stage: status
ran/skipped/failed/unavailable, wall seconds, detail, load average before and after), ``last_ran`` (the last run
of each stage that did the work) and ``history``; the release index shows them. Exit status: 0 every requested stage
ran or was skipped, 1 a stage failed (later stages that need its output are not run; the release is still
built when its inputs exist), 2 bad input.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from bench.pipeline.record import STAGES, timings_markdown
from bench.pipeline.stages import DEFAULT_INPUT_SIZE, NO_ORIGINAL, Pipeline, PipelineConfig
from bench.profiles import check_device
from compress.cli_errors import run_cli
from compress.errors import InputError
from export.original import INIT


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m bench.pipeline`` (module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stages", nargs="*", metavar="STAGE",
                    help=f"stages to run, in pipeline order whatever the order given ({', '.join(STAGES)}; "
                         "default: all)")
    ap.add_argument("--run-dir", type=Path, help="run folder (default runs/main)")
    ap.add_argument("--latest", metavar="RUNS", help="use the newest finished run under RUNS as the run folder "
                    "(for evaluate/export/bench/release alone)")
    ap.add_argument("--model", default="cyclegan")
    ap.add_argument("--dataset", default="horse2zebra", help="dataset name (fetched by the data stage) or folder")
    ap.add_argument("--target", type=float, default=0.75, help="fraction of MACs to remove [0.75]")
    ap.add_argument("--preset", default="auto", choices=("auto", "paper", "small"),
                    help="auto: paper when CUDA is available, else small")
    ap.add_argument("--data-dir", type=Path, default=Path("data"), help="where the data stage puts datasets [data]")
    ap.add_argument("--compress-arg", action="append", default=[], metavar="FLAG",
                    help="extra flag for python -m compress (repeatable; = form: --compress-arg=--ngf=8)")
    ap.add_argument("--evaluate-arg", action="append", default=[], metavar="FLAG",
                    help="extra flag for python -m compress.evaluate (repeatable)")
    ap.add_argument("--dtype", default="all", help="export dtypes: fp32, fp16, int8 or all [all]")
    ap.add_argument("--export-arg", action="append", default=[], metavar="FLAG",
                    help="extra flag for python -m export (repeatable)")
    ap.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE, metavar="S",
                    help=f"export and bench at S x S whatever the training size [{DEFAULT_INPUT_SIZE}; 0: the "
                         "training size; generators with a fixed size (DCGAN) keep theirs]")
    ap.add_argument("--original-weights", default=INIT, metavar="W",
                    help=f"weights of the original (unpruned) generator exported and benched beside the "
                         f"compressed one: {INIT} (initialised: latency only), a baseline run folder (python -m "
                         f"compress --baseline unpruned), a state-dict .pt, or {NO_ORIGINAL} [{INIT}]")
    ap.add_argument("--strict-gates", action="store_true",
                    help="stop when an export quality gate is missed (default: accept, the release lists it)")
    ap.add_argument("--device", default="sm8450", help="phone profile for bench (sm8450, dimensity1200) or host")
    ap.add_argument("--phone", default="auto", choices=("auto", "never", "require"),
                    help="auto: the attached phone if any, else host + virtual device; never: host + virtual; "
                         "require: fail without a phone")
    ap.add_argument("--serial", help="adb serial of the phone (when several match)")
    ap.add_argument("--bench-arg", action="append", default=[], metavar="FLAG",
                    help="extra flag for bench/run_adb.py (repeatable; = form: --bench-arg=--runs=10)")
    ap.add_argument("--release-dir", type=Path, default=Path("release"), help="release root [release]")
    ap.add_argument("--timings", action="store_true",
                    help="print the wall time of each stage's last real run (Markdown, from RUN/pipeline.json) "
                         "and exit")
    return ap


def _split_flags(items: list[str]) -> list[str]:
    """``--compress-arg=--ngf=8`` style items -> argv pieces (``--ngf 8`` also accepted as one item)."""
    out: list[str] = []
    for it in items:
        out.extend(it.split())
    return out


def config_from_args(a: argparse.Namespace) -> PipelineConfig:
    """The :class:`PipelineConfig` of parsed flags. Raises :class:`InputError` for ``--run-dir`` with
    ``--latest``, a ``--latest`` folder without a finished run, an unknown ``--device`` or a negative
    ``--input-size``."""
    device = check_device(a.device)  # canonical: host, a profile key or a profile file's path
    if a.input_size < 0:
        raise InputError(f"--input-size {a.input_size}; expected a side in pixels (e.g. 256) or 0 for the "
                         "training size")
    if a.run_dir and a.latest:
        raise InputError("give --run-dir or --latest, not both")
    if a.latest:
        from export.__main__ import latest_run

        run_dir = latest_run(a.latest)
    else:
        run_dir = a.run_dir or Path("runs/main")
        if run_dir.exists() and not run_dir.is_dir():
            raise InputError(f"--run-dir {run_dir}: a file; expected a run folder (created by the compress stage)")
    return PipelineConfig(run_dir=run_dir, model=a.model, dataset=a.dataset, target=a.target, preset=a.preset,
                          data_dir=a.data_dir, compress_args=_split_flags(a.compress_arg),
                          evaluate_args=_split_flags(a.evaluate_arg), dtype=a.dtype,
                          export_args=_split_flags(a.export_arg), strict_gates=a.strict_gates, device=device,
                          phone=a.phone, serial=a.serial, bench_args=_split_flags(a.bench_arg),
                          release_dir=a.release_dir, input_size=a.input_size or None,
                          original=a.original_weights)


def _run(argv: Sequence[str] | None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bad = [s for s in a.stages if s not in STAGES and s != "all"]
    if bad:
        raise InputError(f"stage {bad[0]!r}: expected one of {', '.join(STAGES)} or all")
    stages = STAGES if not a.stages or "all" in a.stages else a.stages
    cfg = config_from_args(a)
    if a.timings:
        print(timings_markdown(cfg.run_dir), end="")
        return 0
    return Pipeline(cfg).run(stages)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.pipeline``: run the stages; bad input (exit 2), OS errors and Ctrl-C (exit 130) end
    with one line, no traceback (:func:`compress.cli_errors.run_cli`)."""
    return run_cli(lambda: _run(argv))
