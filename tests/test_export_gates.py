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
    assert original[-1] == "--accept-gate-failure" and original[original.index("--original-weights") + 1] == "init"
    pipe.cfg.original = "runs/baseline"
    assert all("--accept-gate-failure" not in cmd for cmd in pipe.export_commands())


def test_a_stage_command_that_refuses_its_input_makes_the_pipeline_exit_2(tmp_path):
    """A bad value passed through (``--export-arg=--dtype=int4``) is bad input for the pipeline too: exit 2, as
    the stage's command said; a failure of the work stays exit 1."""
    assert _pipeline(tmp_path, [], rc=2).run(["export"]) == 2
    assert _pipeline(tmp_path, [], rc=3).run(["export"]) == 1
