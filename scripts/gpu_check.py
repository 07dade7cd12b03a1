"""The prepared GPU check of issue 18 (``make gpu-check``): one script, one results folder, under 8 minutes on
one GPU, nothing downloaded.

Sections, each timed and recorded even when it fails (the others still run):

1. ``smoke``: per family (pix2pix, cyclegan, dcgan) one ``python -m compress`` run on the device -- a search to
   50% of the MACs, materialisation, a few converging steps -- and its fp32 TFLite export
   (``export.export_run``, parity gate included; recorded as skipped where the TFLite stack, tensorflow and
   onnx2tf, is not installed, as on the project's CUDA machines: the export runs on the CPU). On CUDA the
   CycleGAN run holds its data on the GPU (``--data-on-device``).
2. ``compile``: a short DCGAN run with ``--compile`` (CUDA only: on the CPU the flag is ignored).
3. ``step_cost``: the step-cost table of ``python -m compress.benchmarks step-cost --device DEVICE`` (search step
   against plain step, every case; ``--tiny``: DCGAN small only).
4. ``memory``: peak GPU memory (``torch.cuda.max_memory_allocated``) of a U-Net-256 search at batch 4 (paper
   setting) beside plain training, each in a fresh process (``--tiny``: the small Pix2Pix; peak RSS on the CPU).
5. ``torchrun``: a 2-process data-parallel DCGAN run (``torchrun --nproc_per_node 2 -m compress``) when two GPUs
   are present (``--ddp always``: also on the CPU with gloo), checked for the ranks' agreement and loaded.

Two more sections run only when ``--sections`` names them (``make gpu-profile``):

6. ``profile``: the PyTorch profiler over the plain and the search step of ResNet-9 b1 and U-Net-256 b4
   (``compress.step_profile``: GPU busy time against wall time, kernels per step, top ops) and eq. 4 in three
   formulations (``--tiny``: DCGAN small).
7. ``precision``: each family's smoke run in bf16 and in fp32 (``--precision``), search outcome side by side.

Data: ``--data DIR``, a small copy of the mirror made by ``--make-data DIR`` (``make gpu-data``: a few MB from
``$CORONETGAN_DATA_MIRROR``/``../shared/data`` into the git-ignored ``gpu_data/``, to be carried with the checkout).

Usage::

    python scripts/gpu_check.py --make-data gpu_data                              # once, where the mirror is
    python scripts/gpu_check.py --data gpu_data --device cuda --out runs/gpu-check   # make gpu-check
    python scripts/gpu_check.py --data gpu_data --device cpu --tiny                  # CPU rehearsal (tests)
    python scripts/gpu_check.py --data gpu_data --sections profile,precision         # make gpu-profile

Writes ``OUT/results.json`` (every figure), ``OUT/results.md`` (the tables) and ``OUT/runs/`` (the smoke runs and
their exports). Exit status 0 when every section passed, 1 otherwise, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:          # run as a file: the checkout's packages, not an installed copy
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from compress.errors import InputError  # noqa: E402

#: What ``--make-data`` copies: mirror folder -> {subfolder: number of files (sorted names)}.
DATA_SUBSET = {"horse2zebra": {"trainA": 16, "trainB": 16, "testA": 4, "testB": 4},
               "edges2shoes_subset": {"train": 16, "val": 4}}
#: CIFAR-10 images copied into ``cifar10_partial/cifar10_partial.npz`` (train, test).
CIFAR_SUBSET = (512, 64)

#: family -> (dataset folder under --data, flags of its smoke run at full "small" size, at --tiny size).
SMOKE = {
    "pix2pix": ("edges2shoes_subset", ["--converge-steps", "30"],
                ["--image-size", "32", "--ngf", "8", "--generator", "num_downs=5", "--discriminator", "ndf=8",
                 "--batch-size", "2", "--converge-steps", "4"]),
    "cyclegan": ("horse2zebra", ["--converge-steps", "30"],
                 ["--image-size", "32", "--ngf", "8", "--generator", "n_blocks=2", "--discriminator", "ndf=8",
                  "--converge-steps", "4"]),
    "dcgan": ("cifar10_partial", ["--converge-steps", "30"],
              ["--ngf", "16", "--discriminator", "ndf=16", "--batch-size", "16", "--converge-steps", "4"]),
}
#: flags of every smoke run: 50% of the MACs within 300 search steps at the latent lr of the tests (a search of
#: tens of steps), then the few converging steps of SMOKE.
COMMON = ["--preset", "small", "--target", "0.5", "--latent-lr", "0.02", "--check-interval", "5", "--search-steps",
          "300", "--steps", "300", "--sample-interval", "1000", "--checkpoint-interval", "1000"]


def make_data(dest: Path, mirror: Path) -> dict:
    """Copy :data:`DATA_SUBSET` and :data:`CIFAR_SUBSET` from ``mirror`` into ``dest`` (replaced atomically).

    Returns {"files", "bytes"}. Raises InputError: a mirror folder is missing or holds too few files."""
    from compress.io import atomic_dir

    if not mirror.is_dir():
        raise InputError(f"--mirror {mirror}: not a folder; expected the data mirror (../shared/data or "
                         "$CORONETGAN_DATA_MIRROR)")
    with atomic_dir(dest) as tmp:
        for folder, subs in DATA_SUBSET.items():
            for sub, count in subs.items():
                src = mirror / folder / sub
                files = sorted(p for p in src.glob("*") if p.is_file()) if src.is_dir() else []
                if len(files) < count:
                    raise InputError(f"{src}: {len(files)} files; expected at least {count} (the data mirror)")
                (tmp / folder / sub).mkdir(parents=True)
                for p in files[:count]:
                    shutil.copy2(p, tmp / folder / sub / p.name)
        npz = mirror / "cifar10_partial" / "cifar10_partial.npz"
        if not npz.is_file():
            raise InputError(f"{npz}: not found; expected the CIFAR-10 npz of the data mirror")
        with np.load(npz, allow_pickle=False) as z:
            arrays = {"x_train": z["x_train"][:CIFAR_SUBSET[0]], "y_train": z["y_train"][:CIFAR_SUBSET[0]],
                      "x_test": z["x_test"][:CIFAR_SUBSET[1]], "y_test": z["y_test"][:CIFAR_SUBSET[1]]}
            if "label_names" in z.files:
                arrays["label_names"] = z["label_names"]
        (tmp / "cifar10_partial").mkdir()
        np.savez_compressed(tmp / "cifar10_partial" / "cifar10_partial.npz", **arrays)
    files = [p for p in dest.rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def _check_data(data: Path) -> None:
    for folder in [*DATA_SUBSET, "cifar10_partial"]:
        if not (data / folder).is_dir():
            raise InputError(f"--data {data}: {folder}/ missing; expected a folder made by `make gpu-data` "
                             "(python scripts/gpu_check.py --make-data DIR)")


def _run(cmd: list[str], log: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in the checkout, stdout+stderr to ``log``; raise RuntimeError (with the log's tail) on failure."""
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {proc.returncode}; log {log}:\n{tail}")
    return proc


def _report(run: Path) -> dict:
    rep = json.loads((run / "compression_report.json").read_text())
    st = rep["search"]["status"]["G"]
    return {"status": st["status"], "achieved": rep["achieved_macs_reduction"], "search_steps": rep["search"]["steps"],
            "search_s": rep["seconds"].get("search", 0.0), "converge_s": rep["seconds"].get("converge", 0.0),
            "converge_steps": rep.get("budget", {}).get("converge_steps_done"),
            "gap_db": rep.get("materialization_gap_db"), "params": rep["pruned"]["params"]}


#: The TFLite stack of the export (pyproject.toml pins it); a CUDA machine's image may lack it.
TFLITE_STACK = ("tensorflow", "onnx2tf", "ai_edge_litert", "onnxsim")


def export_fp32(run: Path) -> dict:
    """The fp32 TFLite export of ``run`` (``export.export_run``, parity gate included): seconds, gate result, files.
    Where the TFLite stack is not installed (:data:`TFLITE_STACK`) the export is recorded as skipped with the
    reason: it runs on the CPU and is not what a GPU check measures.

    Raises:
        RuntimeError: the export ran and missed its gate.
    """
    import importlib.util

    missing = [m for m in TFLITE_STACK if importlib.util.find_spec(m) is None]
    if missing:
        return {"export_skipped": f"not installed here: {', '.join(missing)} (the export's TFLite stack)"}
    from export import ExportOptions, export_run

    t0 = time.perf_counter()
    manifest = export_run(run, ExportOptions(dtypes=("fp32",), heldout_count=2, force=True))
    if not manifest["gates_passed"]:
        raise RuntimeError(f"{run}: the fp32 export missed its gate: {manifest.get('gate_failures')}")
    return {"export_s": round(time.perf_counter() - t0, 1), "export_gates_passed": True,
            "export_files": [{k: e.get(k) for k in ("dtype", "path", "bytes")} for e in manifest["files"]]}


def _settings_line(run: Path) -> str:
    lines = [l for l in (run / "log.txt").read_text().splitlines() if "CUDA settings:" in l]
    return lines[-1].split("CUDA settings:", 1)[1].strip() if lines else "?"


class Check:
    """The check's state: arguments, environment of the subprocesses, and the results so far."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out: Path = args.out
        self.runs = self.out / "runs"
        os.environ["CORONETGAN_DATA_MIRROR"] = str(args.data.resolve())   # the in-process sections read it too
        self.env = {**os.environ,
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        self.results: dict[str, Any] = {"sections": {}}
        self.deadline = time.perf_counter() + args.budget_s

    def left(self) -> float:
        """Seconds left of ``--budget-s`` (a subprocess gets at least 30)."""
        return max(30.0, self.deadline - time.perf_counter())

    def section(self, name: str, fn: Callable[[], dict]) -> None:
        """Run one section; record its result, its seconds and, on failure, the error. Past ``--budget-s`` a
        section is recorded as skipped (failed), so that the results folder is written in time."""
        t0 = time.perf_counter()
        if t0 > self.deadline:
            self.results["sections"][name] = {"ok": False, "seconds": 0.0,
                                              "error": f"skipped: past the time budget (--budget-s {self.args.budget_s})"}
            return
        print(f"[gpu-check] {name} ...", flush=True)
        try:
            rec = {"ok": True, **fn()}
        except Exception as exc:  # noqa: BLE001 - a failed section is a result; the other sections still run
            rec = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"[gpu-check] {name}: {'ok' if rec['ok'] else 'FAILED: ' + rec['error'][:500]} ({rec['seconds']} s)",
              flush=True)
        self.results["sections"][name] = rec

    def compress_cmd(self, family: str, run: Path, extra: list[str]) -> list[str]:
        folder, full, tiny = SMOKE[family]
        return [sys.executable, "-m", "compress", "--model", family, "--dataset", str(self.args.data.resolve() / folder),
                *COMMON, *(tiny if self.args.tiny else full), "--device", self.args.device, "--run-dir", str(run),
                *extra]

    def compress_run(self, family: str, name: str, extra: list[str], launcher: list[str] | None = None) -> dict:
        """``python -m compress`` (under ``launcher``, e.g. torchrun, when given) into ``runs/<name>``, its log in
        ``runs/<name>.log``: the compression report's figures and the run's CUDA settings line."""
        run = self.runs / name
        cmd = self.compress_cmd(family, run, extra)
        _run([*launcher, *cmd[1:]] if launcher else cmd, self.runs / f"{name}.log", self.env, timeout=self.left())
        return {**_report(run), "settings": _settings_line(run)}

    def smoke(self, family: str) -> dict:
        from compress.artifacts import load_generator

        run = self.runs / family
        rec = self.compress_run(family, family, ["--data-on-device"] if family == "cyclegan" else [])
        load_generator(run)
        if rec["status"] != "reached":
            raise RuntimeError(f"{family}: search {rec['status']} at {rec['achieved']:.3f}: {rec}")
        rec.update(export_fp32(run))
        return rec

    def compile_smoke(self) -> dict:
        return self.compress_run("dcgan", "dcgan-compile", ["--compile"])

    def step_cost(self) -> dict:
        from compress import benchmarks

        rows = benchmarks.step_cost_rows(quick=self.args.tiny, device=self.args.device)
        results = {"kind": "step-cost", "machine": benchmarks.machine(), "rows": rows, "device": self.args.device}
        return {"rows": rows, "table": benchmarks.step_cost_table(results)}

    def memory(self) -> dict:
        from compress import benchmarks

        family, preset_name = ("pix2pix", "small") if self.args.tiny else ("pix2pix", "paper")
        rows = [benchmarks.memory_row(v, 1 if self.args.tiny else 3, family, preset_name, {}, self.args.device)
                for v in ("plain", "search")]
        return {"rows": rows, "family": family, "preset": preset_name}

    def torchrun(self) -> dict:
        from compress.artifacts import load_generator

        run = self.runs / "dcgan-torchrun"
        rec = self.compress_run("dcgan", run.name, [], launcher=[sys.executable, "-m", "torch.distributed.run",
                                                                 "--standalone", "--nproc_per_node", "2"])
        log = (run / "log.txt").read_text()
        agreed = [l for l in log.splitlines() if "bit-identical latent vectors and masks" in l]
        if not agreed:
            raise RuntimeError(f"{run}/log.txt: no line on the ranks' agreement")
        load_generator(run)
        return {**rec, "agreement": agreed[-1].split(": ", 1)[-1]}

    def profile(self, case: str) -> dict:
        from compress.step_profile import profile_case, profile_table

        rec = profile_case(case, self.args.device, steps=2 if self.args.tiny else 5,
                           warmup=1 if self.args.tiny else 5)
        return {**rec, "table": profile_table(rec)}

    def precision(self, family: str) -> dict:
        return {p: self.compress_run(family, f"{family}-{p}", ["--precision", p]) for p in COMPARED_PRECISIONS}


#: Every section, in the order they run; :data:`DEFAULT_SECTIONS` is ``make gpu-check``.
SECTIONS = ("memory", "step_cost", "smoke", "compile", "torchrun", "profile", "precision")
DEFAULT_SECTIONS = SECTIONS[:5]
#: The step-cost cases the ``profile`` section profiles (``--tiny``: dcgan-small instead).
PROFILE_CASES = ("cyclegan-resnet9-b1", "pix2pix-unet256-b4")
#: The precisions the ``precision`` section compares (``--precision`` of ``python -m compress``).
COMPARED_PRECISIONS = ("bf16", "fp32")


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in SECTIONS]
    if bad or not names:
        raise InputError(f"--sections {text!r}: expected a comma-separated list of {', '.join(SECTIONS)}")
    return names


def results_md(results: dict) -> str:
    """The results folder's Markdown: machine, one line per section, the smoke runs, step cost and memory."""
    m = results["machine"]
    s = results["sections"]
    lines = [f"# GPU check ({results['device']}{', tiny sizes' if results['tiny'] else ''})", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} cores, GPU: {m.get('gpu') or 'none'} "
             f"(CUDA devices: {results['cuda_devices']}), torch {results['torch']}; "
             f"{results['total_s']:.0f} s in all; finished {results['finished']}.", "",
             "| section | ok | s | note |", "|---|---|---|---|"]
    for name, rec in s.items():
        note = rec.get("error", "").splitlines()[0][:200] if not rec["ok"] else rec.get("skipped", "")
        lines.append(f"| {name} | {'yes' if rec['ok'] else '**NO**'} | {rec['seconds']} | {note} |")
    smoke = [(n, r) for n, r in s.items() if n.startswith(("smoke", "compile", "torchrun")) and r["ok"]
             and "status" in r]
    if smoke:
        lines += ["", "| run | status | MACs reduction | search steps | search s | converge steps / s | "
                      "materialisation gap dB | fp32 export | settings |", "|---|---|---|---|---|---|---|---|---|"]
        for n, r in smoke:
            gap = "identical" if r["gap_db"] is None else f"{r['gap_db']:.0f}"
            exp = (f"gate passed, {r['export_s']} s" if "export_s" in r else
                   f"skipped: {r['export_skipped']}" if "export_skipped" in r else "-")
            lines.append(f"| {n} | {r['status']} | {r['achieved']:.3f} | {r['search_steps']} | {r['search_s']:.1f} | "
                         f"{r['converge_steps']} / {r['converge_s']:.1f} | {gap} | {exp} | {r['settings']} |")
    prec = [(n.split("_", 1)[1], r) for n, r in s.items() if n.startswith("precision_") and r["ok"]]
    if prec:
        lines += ["", "## Search in bf16 against fp32 (same seed and flags)", "",
                  "| family | precision | status | MACs reduction | search steps | search s | "
                  "materialisation gap dB | params |", "|---|---|---|---|---|---|---|---|"]
        for family, r in prec:
            for p in COMPARED_PRECISIONS:
                x = r[p]
                gap = "identical" if x["gap_db"] is None else f"{x['gap_db']:.0f}"
                lines.append(f"| {family} | {p} | {x['status']} | {x['achieved']:.3f} | {x['search_steps']} | "
                             f"{x['search_s']:.1f} | {gap} | {x['params']:,} |")
    for n, r in s.items():
        if n.startswith("profile_") and r["ok"]:
            lines += ["", r["table"]]
    if s.get("step_cost", {}).get("ok"):
        lines += ["", "## Step cost", "", s["step_cost"]["table"]]
    if s.get("memory", {}).get("ok"):
        mem = s["memory"]
        lines += ["", f"## Peak memory, {mem['family']} {mem['preset']} preset (each variant in a fresh process)", "",
                  "| variant | batch | px | s per step | GPU peak after build MiB | **GPU peak MiB** | peak RSS MiB | "
                  "hypernetwork params |", "|---|---|---|---|---|---|---|---|"]
        for r in mem["rows"]:
            gpu = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
            lines.append(f"| {r['variant']} | {r['batch']} | {r['image_size']} | "
                         f"{', '.join(f'{t:.2f}' for t in r['step_s'])} | {gpu(r['gpu_peak_after_build_mib'])} | "
                         f"**{gpu(r['gpu_peak_mib'])}** | {r['peak_rss_mib']:.0f} | {r['hypernetwork_params'] / 1e6:.1f} M |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python scripts/gpu_check.py``: the prepared GPU check (module docstring), or with ``--make-data`` the
    copy of its data subset. Returns the exit status (2: bad input, said in one line)."""
    p = argparse.ArgumentParser(prog="python scripts/gpu_check.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--make-data", type=Path, metavar="DIR", help="copy the data subset into DIR and exit")
    p.add_argument("--mirror", type=Path, help="data mirror for --make-data (default $CORONETGAN_DATA_MIRROR, "
                                               "else ../shared/data)")
    p.add_argument("--data", type=Path, default=REPO / "gpu_data", help="the subset made by --make-data")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny networks and images (the CPU rehearsal)")
    p.add_argument("--ddp", choices=("auto", "always", "never"), default="auto",
                   help="the 2-process torchrun smoke: auto = when 2 GPUs are present")
    p.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                   help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: "
                        f"{','.join(DEFAULT_SECTIONS)})")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "gpu-check", help="the results folder (replaced)")
    p.add_argument("--budget-s", type=float, default=450.0,
                   help="seconds after which the remaining sections are skipped (default 450: results within "
                        "8 minutes on one GPU)")
    args = p.parse_args(argv)
    try:
        if args.make_data:
            from compress.data.fetch import mirror_root

            mirror = mirror_root(args.mirror)
            info = make_data(args.make_data, mirror)
            print(f"{args.make_data}: {info['files']} files, {info['bytes'] / 2**20:.1f} MiB from {mirror}")
            return 0
        from compress.trainer import pick_device

        device = pick_device(args.device)
        sections = _sections(args.sections)
        _check_data(args.data)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch

    from compress.benchmarks import machine

    t0 = time.perf_counter()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    check = Check(args)
    (check.runs).mkdir()
    # memory first: its workers are forked from this process, whose peak RSS they inherit (ru_maxrss survives
    # exec), and the exports below load TensorFlow
    if "memory" in sections:
        check.section("memory", check.memory)
    if "step_cost" in sections:
        check.section("step_cost", check.step_cost)
    if "smoke" in sections:
        for family in SMOKE:
            check.section(f"smoke_{family}", lambda f=family: check.smoke(f))
    if "compile" in sections and device.type == "cuda":
        check.section("compile", check.compile_smoke)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if "torchrun" in sections:
        if args.ddp == "always" or (args.ddp == "auto" and gpus >= 2):
            check.section("torchrun", check.torchrun)
        else:
            check.results["sections"]["torchrun"] = {"ok": True, "seconds": 0.0, "skipped": f"{gpus} CUDA device(s): "
                                                     "needs 2 (--ddp always forces it)"}
    if "profile" in sections:
        for case in ("dcgan-small",) if args.tiny else PROFILE_CASES:
            check.section(f"profile_{case}", lambda c=case: check.profile(c))
    if "precision" in sections:
        for family in SMOKE:
            check.section(f"precision_{family}", lambda f=family: check.precision(f))
    from compress.io import atomic_write_json, atomic_write_text

    check.results.update(device=str(device), tiny=args.tiny, machine=machine(), cuda_devices=gpus,
                         torch=torch.__version__, total_s=time.perf_counter() - t0,
                         finished=time.strftime("%Y-%m-%d %H:%M:%S"), command=" ".join(sys.argv))
    atomic_write_json(args.out / "results.json", check.results)
    atomic_write_text(args.out / "results.md", results_md(check.results))
    ok = all(r["ok"] for r in check.results["sections"].values())
    print(f"[gpu-check] {'all sections passed' if ok else 'FAILED sections'}; {args.out}/results.md "
          f"({check.results['total_s']:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    from compress.cli_errors import run_cli

    raise SystemExit(run_cli(main))
