"""The error cases of docs/errors.md, run in-process from the table itself: each row's command (with its
placeholders filled) must print exactly the row's message as its last stderr line and exit with the row's
status. Rows checked elsewhere (subprocesses: signals, another user, kill -9) are named in
``CHECKED_ELSEWHERE`` (those tests pass the row's id to ``check_case``); every row of the table is checked by
some test (``test_every_row_is_checked``)."""
from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path

import pytest
import torch

from compress.runlock import LOCK_FILE, run_lock
from reliability_helpers import (DCGAN_TINY, REPO, TEST_FILES, check_case, cli_main, fill, finished_run, load_table,
                                 saved_config, split_command, tiny_cifar, tiny_domains)

TABLE = load_table()

#: Rows run by other tests (subprocesses); each of those tests calls check_case with the row's id.
CHECKED_ELSEWHERE = {"ctrl-c-compress-subprocess", "sigterm-export-in-onnx2tf", "readonly-evaluate",
                     "readonly-export", "readonly-resume", "stale-lock-taken-over"}


def _crafted_checkpoint(paths, monkeypatch):
    saved_config(paths["run"], dataset=str(paths["npz"]))
    marker = paths["tmp"] / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (paths["run"] / "checkpoints").mkdir()
    torch.save({"stage": "search", "step": 4, "config": {}, "rng": {}, "x": Payload()},
               paths["run"] / "checkpoints" / "last.pt")
    yield
    assert not marker.exists(), "the crafted checkpoint ran its command"


def _truncated_checkpoint(paths, monkeypatch):
    saved_config(paths["run"], dataset=str(paths["npz"]))
    (paths["run"] / "checkpoints").mkdir()
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1000)}, buf)
    (paths["run"] / "checkpoints" / "last.pt").write_bytes(buf.getvalue()[:700])
    yield


def _saved(paths, monkeypatch):
    saved_config(paths["run"], dataset=str(paths["npz"]), image_size=32)
    yield


def _corrupt_config(paths, monkeypatch):
    paths["run"].mkdir()
    (paths["run"] / "config.json").write_text('{"model": "dcgan", "target": ')
    yield


def _locked(paths, monkeypatch):
    finished_run(paths["run"], paths["npz"])
    with run_lock(paths["run"], "python -m compress --run-dir RUN"):
        holder = json.loads((paths["run"] / LOCK_FILE).read_text())
        paths.update(pid=holder["pid"], host=holder["host"], since=holder["started"])
        yield


def _finished(paths, monkeypatch):
    finished_run(paths["run"], paths["npz"])
    yield


def _bad_architecture(text):
    def setup(paths, monkeypatch):
        finished_run(paths["run"], paths["npz"])
        (paths["run"] / "architecture.json").write_text(text)
        yield
    return setup


def _bad_image(paths, monkeypatch):
    tiny_domains(paths["data"])
    (paths["data"] / "trainA" / "notes.jpg").write_text("not an image")
    yield


def _model_file(paths, monkeypatch):
    (paths["tmp"] / "m.tflite").write_bytes(b"x")
    yield


def _disk_full_at_checkpoints(paths, monkeypatch):
    import compress.io

    real_open = open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def fake_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return Full(fh) if str(path).endswith(".tmp.pt") and "w" in mode else fh

    monkeypatch.setattr(compress.io, "open", fake_open, raising=False)
    yield


def _interrupt(target: str, after: int = 0):
    """Raise KeyboardInterrupt from ``module:attribute`` on its call number ``after + 1``."""
    def setup(paths, monkeypatch):
        import importlib

        module, attr = target.split(":")
        mod = importlib.import_module(module)
        real = getattr(mod, attr)
        calls = []

        def fake(*args, **kwargs):
            calls.append(1)
            if len(calls) > after:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(mod, attr, fake)
        if "export" in module or "evaluate" in module:
            finished_run(paths["run"], paths["npz"])
        yield
    return setup


def _nothing(paths, monkeypatch):
    yield


def _corrupt_manifest(paths, monkeypatch):
    finished_run(paths["run"], paths["npz"])
    (paths["run"] / "export").mkdir()
    (paths["run"] / "export" / "manifest.json").write_text('{"files": [')
    (paths["run"] / "export" / "generator_int8.tflite").write_bytes(b"an earlier export")
    yield
    assert (paths["run"] / "export" / "generator_int8.tflite").read_bytes() == b"an earlier export"


def _finished_with_photo(paths, monkeypatch):
    from PIL import Image

    finished_run(paths["run"], paths["npz"])
    (paths["tmp"] / "photos").mkdir()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(paths["tmp"] / "photos" / "red.png")
    yield


def _finished_with_original(paths, monkeypatch):
    from export.original import prepare_original

    finished_run(paths["run"], paths["npz"])
    original, _ = prepare_original(paths["run"])
    before = {p.name: p.read_bytes() for p in original.iterdir() if p.is_file()}
    yield
    assert {p.name: p.read_bytes() for p in original.iterdir() if p.is_file()} == before  # still registered


SETUP = {
    "resume-conflict": _saved, "resume-corrupt-config": _corrupt_config, "resume-no-checkpoint": _saved,
    "resume-crafted-checkpoint": _crafted_checkpoint, "resume-truncated-checkpoint": _truncated_checkpoint,
    "busy-compress": _locked, "busy-evaluate": _locked, "busy-export": _locked,
    "evaluate-architecture-not-json": _bad_architecture("{"),
    "evaluate-architecture-form": _bad_architecture('{"family": "dcgan"}'),
    "export-threads-zero": _finished, "export-out-under-file": _finished,
    "export-architecture-form": _bad_architecture('{"family": "dcgan", "generator": {}, "input_shape": "big"}'),
    "bad-image-before-step-1": _bad_image, "bench-out-under-file": _model_file,
    "compress-finished-run": _finished, "compress-reference-run-alone": _finished, "export-out-is-file": _finished,
    "export-manifest-corrupt": _corrupt_manifest, "check-photos-no-export": _finished_with_photo, "export-original-weights-not-torch": _finished_with_original,
    "bench-adb-port": _model_file, "bench-host-with-virtual": _model_file, "bench-connect-no-port": _model_file,
    "bench-label-dtype": _model_file, "bench-cooldown-negative": _model_file,
    "disk-full-checkpoint": _disk_full_at_checkpoints,
    "ctrl-c-compress": _interrupt("compress.trainer:gan_step", after=5),
    "ctrl-c-evaluate": _interrupt("compress.evaluate.__main__:evaluate_run"),
    "ctrl-c-export": _interrupt("export.__main__:export_run"),
    "ctrl-c-data": _interrupt("compress.data.fetch:fetch_dataset"),
    "ctrl-c-pipeline": _interrupt("bench.pipeline.cli:Pipeline"),
    "ctrl-c-bench": _interrupt("bench.cli:bench_models"),
}

IN_PROCESS = sorted(set(TABLE) - CHECKED_ELSEWHERE)


@pytest.fixture
def paths(tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("CORONETGAN_SCAN_CACHE", str(tmp_path / "scan-cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file, not a folder")
    return {"tmp": tmp_path, "run": tmp_path / "run", "file": tmp_path / "afile", "data": tmp_path / "data",
            "npz": tiny_cifar(tmp_path / "tiny.npz"), "dcgan_tiny": " ".join(DCGAN_TINY)}


@pytest.mark.parametrize("case_id", IN_PROCESS)
def test_case(case_id, paths, monkeypatch, capsys):
    case = TABLE[case_id]
    setup = SETUP.get(case_id, _nothing)(paths, monkeypatch)
    next(setup)
    program, argv = split_command(fill(case.command, paths))
    status = cli_main(program)(argv)
    err = capsys.readouterr().err
    check_case(case_id, err, status, paths)
    next(setup, None)
    if case_id in ("resume-crafted-checkpoint", "disk-full-checkpoint", "nonfinite-loss", "ctrl-c-compress"):
        assert not (paths["run"] / "generator.pt").exists()


def test_every_row_is_checked():
    sources = "\n".join((REPO / "tests" / name).read_text() for name in TEST_FILES if name != Path(__file__).name)
    for case_id in CHECKED_ELSEWHERE:
        assert case_id in TABLE, f"{case_id} is not a row of docs/errors.md"
        assert f'"{case_id}"' in sources, f"no test checks the row {case_id}"
    assert set(SETUP) <= set(TABLE), sorted(set(SETUP) - set(TABLE))
