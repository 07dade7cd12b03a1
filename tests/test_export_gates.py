"""The export's gates fail loudly (issue 15, item 6): ``make export`` (the pipeline's export stage run alone) passes
no ``--accept-gate-failure``, so a missed gate exits 1 and installs nothing; the whole pipeline accepts the miss
only because its release lists it under Warnings. No conversion: fast."""
from __future__ import annotations

from pathlib import Path

from bench.pipeline.stages import Pipeline, PipelineConfig


def _pipeline(tmp_path: Path, commands: list, rc: int) -> Pipeline:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "generator.pt").write_bytes(b"stand-in")  # the export stage only checks that the run finished
    # the training size and no original: the stand-in run has no architecture.json to size or rebuild from
    pipe = Pipeline(PipelineConfig(run_dir=run, preset="small", dtype="int8", input_size=None, original="none"),
                    echo=lambda line: None)
    pipe._sh = lambda cmd: commands.append(cmd) or rc  # the export command is what is checked, not run
    return pipe


def test_export_stage_alone_does_not_accept_gate_failures(tmp_path):
    commands: list = []
    assert _pipeline(tmp_path, commands, rc=1).run(["export"]) == 1
    assert commands[-1][1:4] == ["-m", "export", str(tmp_path / "run")]
    assert "--accept-gate-failure" not in commands[-1]


def test_pipeline_with_release_accepts_and_records(tmp_path):
    commands: list = []
    _pipeline(tmp_path, commands, rc=0).run(["export", "release"])
    assert "--accept-gate-failure" in commands[-1]
    strict = _pipeline(tmp_path, [], rc=0)
    strict.cfg.strict_gates = True
    seen: list = []
    strict._sh = lambda cmd: seen.append(cmd) or 0
    strict.run(["export", "release"])
    assert "--accept-gate-failure" not in seen[-1]


def test_export_stage_alone_accepts_only_the_latency_only_original():
    """``make export`` with the default ``ORIGINAL=init``: the compressed generator's gates fail loudly; the original
    with initialised weights is timed, not judged (its PSNR is no quality figure), so its export accepts and the
    release lists the misses. An original with trained weights (a baseline run) is judged like the compressed one."""
    pipe = Pipeline(PipelineConfig(run_dir=Path("run"), python="py", input_size=None), echo=lambda s: None)
    pipe.stages = ("export",)
    compressed, original = pipe.export_commands()
    assert "--accept-gate-failure" not in compressed
    assert original[-3:] == ["--accept-gate-failure", "--int8-target-db", "0"]
    assert original[original.index("--original-weights") + 1] == "init"
    # and nothing kept in float by the PSNR of random weights: its int8 file is all int8 like the compressed one
    pipe.cfg.export_args = ["--int8-target-db=32"]
    assert pipe.export_commands()[1][-1] == "--accept-gate-failure"  # a value the user gave is kept
    pipe.cfg.export_args = []
    pipe.cfg.original = "runs/baseline"
    assert all("--accept-gate-failure" not in cmd and "--int8-target-db" not in cmd for cmd in pipe.export_commands())


def test_a_stage_command_that_refuses_its_input_makes_the_pipeline_exit_2(tmp_path):
    """A bad value passed through (``--export-arg=--dtype=int4``) is bad input for the pipeline too: exit 2, as
    the stage's command said; a failure of the work stays exit 1."""
    assert _pipeline(tmp_path, [], rc=2).run(["export"]) == 2
    assert _pipeline(tmp_path, [], rc=3).run(["export"]) == 1


def test_a_failed_bench_rerun_keeps_the_earlier_complete_tables(tmp_path):
    """The bench stage benches in place (an interrupted run resumes there), with the last complete tables kept
    aside and put back when the new run fails (device lost, busy): a release never loses its figures to a rerun
    that measured nothing."""
    import json

    import pytest

    from bench.pipeline.stages import STAMP, StageFailed

    pipe = _pipeline(tmp_path, [], rc=0)
    manifest = tmp_path / "run" / "export" / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({"model": "m", "files": []}))
    pipe.bench_manifests = lambda: [manifest]
    pipe.bench_targets = lambda: [{"kind": "host", "name": "host"}]
    out = tmp_path / "run" / "bench" / "host"
    out.mkdir(parents=True)
    (out / "latency.json").write_text(json.dumps({"complete": True, "rows": [{"model": "old"}]}))
    (out / STAMP).write_text(json.dumps({"settings": ["older"]}))

    def bench(rc):
        def one(target, folder, manifests, reference, settings):
            (folder / "latency.json").write_text(json.dumps({"complete": False, "rows": [{"model": "new"}]}))
            return rc
        return one

    pipe._bench_one = bench(3)
    with pytest.raises(StageFailed, match=r"the earlier complete tables are kept; this attempt's tables and logs: "
                                          r".*\.host\.failed"):
        pipe.stage_bench()
    assert json.loads((out / "latency.json").read_text())["rows"] == [{"model": "old"}]
    assert json.loads((out.parent / ".host.failed" / "latency.json").read_text())["rows"] == [{"model": "new"}]
    assert not (out.parent / ".host.prev").exists()
    pipe._bench_one = bench(0)
    assert pipe.stage_bench()["status"] == "ran"
    assert json.loads((out / "latency.json").read_text())["rows"] == [{"model": "new"}] and (out / STAMP).is_file()
    assert not (out.parent / ".host.prev").exists()
