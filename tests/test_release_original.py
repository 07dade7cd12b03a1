"""Issue 16: export at the phone's input size, the original beside the compressed generator, the release's
headline and HTML page, and run metadata from the run's own config. Synthetic run folders (no training, no
data mirror; tests/release_fixtures.py); the exact-command tests of ``make export`` are in test_make_export.py.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.pipeline.release import build_release, page_name
from bench.pipeline.stages import Pipeline, PipelineConfig
from compress.artifacts import load_generator, save_generator
from compress.errors import InputError
from compress.families import get_family
from compress.io import sha256_file
from export import ExportOptions
from export.__main__ import latest_run, main as export_main
from export.inputs import export_input_shape, resolve_input_sets
from export.original import is_original, prepare_original, read_original
from release_fixtures import TINY, synthetic_run

from bench_adb_fixtures import FAST, REPO, report, tiny_models  # noqa: F401


# --- 1. export at any input size ---------------------------------------------------------------------
def test_image_generators_export_at_any_size_their_layers_divide(tmp_path):
    gen, arch = load_generator(synthetic_run(tmp_path / "runs" / "c", "cyclegan", 32))
    assert export_input_shape(arch, gen) == (1, 3, 32, 32)
    assert export_input_shape(arch, gen, 256) == (1, 3, 256, 256)
    with pytest.raises(InputError, match=r"--input-size 30: the cyclegan generator returns 32x32 outputs for 30x30"):
        export_input_shape(arch, gen, 30)
    gen, arch = load_generator(synthetic_run(tmp_path / "runs" / "p", "pix2pix", 32))
    assert export_input_shape(arch, gen, 64) == (1, 3, 64, 64)
    with pytest.raises(InputError, match=r"--input-size 40: the pix2pix generator \(trained at 32x32\) cannot take "
                                         r"40x40 inputs .*expected a side that its downsampling layers divide"):
        export_input_shape(arch, gen, 40)


def test_dcgan_keeps_its_fixed_size(tmp_path, capsys):
    run = synthetic_run(tmp_path / "runs" / "d", "dcgan", 32)
    gen, arch = load_generator(run)
    assert export_input_shape(arch, gen, 32) == (1, 8, 1, 1)  # the size it has: accepted
    assert export_main([str(run), "--input-size", "256", "--dtype", "fp32"]) == 2
    assert capsys.readouterr().err == (
        "error: --input-size 256: the dcgan generator takes a 8x1x1 input (a latent vector, not an image); its "
        "output size is fixed at 32x32 by its layers. Export it without --input-size (or with --input-size 32)\n")
    assert not (run / "export").exists()


def test_calibration_and_heldout_images_are_resized_to_the_export_size(tmp_path):
    _, arch = load_generator(synthetic_run(tmp_path / "runs" / "c", "cyclegan", 32))
    sets = resolve_input_sets(arch, input_shape=(1, 3, 64, 64), calibration_count=3, heldout_count=2)
    assert sets.calibration.shape == (3, 3, 64, 64) and sets.heldout.shape == (2, 3, 64, 64)
    assert sets.description["size_hw"] == [64, 64]
    assert resolve_input_sets(arch, heldout_count=2, need_calibration=False).heldout.shape == (2, 3, 32, 32)


def test_input_size_is_checked_with_its_flag():
    with pytest.raises(InputError, match=r"--input-size 8; expected a side in pixels from 16 to 4096"):
        ExportOptions(input_size=8)
    assert ExportOptions(input_size=256).input_size == 256


# --- 2. the original ---------------------------------------------------------------------------------
def test_original_with_initialised_weights_is_latency_only_and_stable(tmp_path):
    run = synthetic_run(tmp_path / "runs" / "c")
    dest, wrote = prepare_original(run)
    assert wrote and dest == run / "original" and is_original(dest)
    rec = read_original(run)
    assert rec["weights"]["latency_only"] and rec["weights"]["kind"] == "initialised"
    full = get_family("cyclegan").generator(**TINY["cyclegan"])
    gen, arch = load_generator(dest)
    assert gen.channels == full.channels and arch["dataset"] == json.loads((run / "architecture.json").read_text())[
        "dataset"]
    sha = sha256_file(dest / "generator.pt")
    assert prepare_original(run) == (dest, False) and sha256_file(dest / "generator.pt") == sha
    # --latest never takes the original (written last, so newest) for a run
    assert latest_run(tmp_path / "runs") == run
    with pytest.raises(InputError, match="already an original"):
        prepare_original(dest)


def test_original_with_trained_weights_from_a_baseline_run_or_a_state_dict(tmp_path):
    run = synthetic_run(tmp_path / "runs" / "c")
    fam = get_family("cyclegan")
    torch.manual_seed(5)
    full = fam.generator(**TINY["cyclegan"])
    baseline = tmp_path / "runs" / "unpruned"
    save_generator(baseline, full, 32, {})
    (baseline / "evaluation.json").write_text(json.dumps({"fid": 123.4, "n_fake": 8}))
    dest, wrote = prepare_original(run, baseline)
    rec = read_original(run)
    assert wrote and rec["weights"]["kind"] == "baseline run" and not rec["weights"]["latency_only"]
    gen, _ = load_generator(dest)
    assert all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(), full.state_dict().values()))
    assert json.loads((dest / "evaluation.json").read_text())["fid"] == 123.4
    ckpt = tmp_path / "g.pt"
    torch.save(full.state_dict(), ckpt)
    assert prepare_original(run, ckpt)[1] and read_original(run)["weights"]["kind"] == "checkpoint"
    assert not (dest / "evaluation.json").exists()  # a state dict has no evaluation of its own


def test_original_weights_of_another_generator_are_refused(tmp_path):
    run = synthetic_run(tmp_path / "runs" / "c")
    with pytest.raises(InputError, match=r"--original-weights .*runs/c: its generator is pruned"):
        prepare_original(run, run)
    wider = tmp_path / "runs" / "wide"
    save_generator(wider, get_family("cyclegan").generator(ngf=8, n_blocks=1), 32, {})
    with pytest.raises(InputError, match=r"expected an unpruned cyclegan run with generator .*'ngf': 4"):
        prepare_original(run, wider)
    bad = tmp_path / "bad.pt"
    torch.save(load_generator(run)[0].state_dict(), bad)  # the pruned weights
    with pytest.raises(InputError, match=r"bad.pt does not match .*weights .* vs architecture"):
        prepare_original(run, bad)
    with pytest.raises(InputError, match=r"--original-weights nowhere: no such file or folder"):
        prepare_original(run, "nowhere")
    assert export_main([str(run), "--original-weights", "nowhere"]) == 2
    # refused weights leave an earlier original as it was (still registered, so no run search takes it for a run)
    dest, _ = prepare_original(run)
    before = {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()}
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(InputError, match=r"notes.txt could not be read \(not a torch file"):
        prepare_original(run, text)
    assert {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()} == before
    assert is_original(dest)


def test_bench_as_typed_takes_the_original_too(tmp_path, tiny_models):
    """``python bench/run_adb.py --device host`` with no --models: the newest run's manifest and its original's,
    the original first and the speed-up reference."""
    run = tmp_path / "runs" / "newest"
    for folder, label, src in ((run / "export", "cyclegan:newest", tiny_models["pruned"]["fp32"]),
                               (run / "original" / "export", "cyclegan:original", tiny_models["unpruned"]["fp32"])):
        folder.mkdir(parents=True)
        shutil.copy(src, folder / "generator_fp32.tflite")
        tflite = folder / "generator_fp32.tflite"
        entry = {"path": tflite.name, "dtype": "fp32", "sha256": sha256_file(tflite)}
        (folder / "manifest.json").write_text(json.dumps({"model": label, "macs": 400 if "orig" in label else 100,
                                                          "files": [entry]}))
    for d in (run, run / "original"):
        (d / "generator.pt").write_bytes(b"x")
        (d / "architecture.json").write_text("{}")
    (run / "original" / "original.json").write_text("{}")
    r = subprocess.run([sys.executable, str(REPO / "bench" / "run_adb.py"), "--device", "host", *FAST], cwd=tmp_path,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    rep = report(run / "bench" / "host")
    assert [row["model"] for row in rep["rows"]] == ["cyclegan:original", "cyclegan:newest"]
    assert rep["reference"] == "cyclegan:original" and rep["rows"][1]["speedup"] > 0
    assert rep["rows"][1]["macs_ratio"] == 4.0 and rep["rows"][1]["input"] != "-"
    md = (run / "bench" / "host" / "latency.md").read_text()
    assert "| input |" in md and "MACs ratio" in md and "4.00×" in md


# --- 3./6. the release: headline, tables, HTML page ------------------------------------------------------
def _latency(kind: str, rows: list[tuple[str, str, float]]) -> dict:
    device = {"phone": {"kind": "phone", "profile": "sm8450", "soc": "SM8450", "manufacturer": "samsung",
                        "model": "SM-S901B", "gpu_renderer": "Adreno (TM) 730"},
              "host": {"kind": "host", "profile": "host", "soc": "AMD EPYC", "runtime": "ai-edge-litert 2.1.0 (CPU)"},
              "virtual": {"kind": "virtual", "profile": "sm8450", "soc": "QTI SM8450"}}[kind]
    return {"device_label": kind, "device": device, "complete": True, "aborted": None,
            "config": {"warmup": 1, "runs": 5, "repeats": 1, "threads": 2, "use_gpu": kind != "host",
                       "gpu_backend": "cl"},
            "rows": [{"model": m, "dtype": d, "input": "256×256", "median_ms": ms, "p95_ms": ms * 1.1,
                      "status": "ok", "flags": [] if kind == "phone" else [kind], "size_mb": 0.1,
                      "macs": 300 if m.endswith("original") else 100, "delegate": "full"} for m, d, ms in rows]}


def _released_run(tmp_path: Path, with_original: bool = True) -> Path:
    run = synthetic_run(tmp_path / "runs" / "r")
    exp = run / "export"
    exp.mkdir()
    man = {"model": "cyclegan:r", "macs": 100, "image_size_hw": [256, 256], "gates_passed": True,
           "files": [{"path": "generator_fp32.tflite", "dtype": "fp32", "size_bytes": 1000, "psnr_db": 90.0,
                      "gate_db": 60}]}
    (exp / "manifest.json").write_text(json.dumps(man))
    if with_original:
        prepare_original(run)
        (run / "original" / "export").mkdir()
        (run / "original" / "export" / "manifest.json").write_text(json.dumps({**man, "model": "cyclegan:original",
                                                                                "macs": 300}))
    for target, kind in (("sm8450", "phone"), ("host", "host"), ("sm8450-virtual", "virtual")):
        (run / "bench" / target).mkdir(parents=True)
        rows = [("cyclegan:original", "fp32", 10.0), ("cyclegan:r", "fp32", 4.0),
                ("cyclegan:original", "int8", 6.0), ("cyclegan:r", "int8", 3.0)]
        lat = _latency(kind, rows if with_original else [r for r in rows if r[0] == "cyclegan:r"])
        (run / "bench" / target / "latency.json").write_text(json.dumps(lat))
        for ext in ("md", "csv"):  # bench's own tables, linked from the release
            (run / "bench" / target / f"latency.{ext}").write_text(f"{kind} table\n")
    return run


def test_release_headline_is_paper_table_3_with_the_machine_in_each_row(tmp_path):
    rel = build_release(_released_run(tmp_path), tmp_path / "release")
    index = (rel / "index.md").read_text()
    assert index.index("## Headline: original vs compressed at 256×256") < index.index("## Warnings")
    head = index.split("## Headline")[1].split("\n## ")[0]
    assert ("| SM8450 (Snapdragon 8 Gen 1) | fp32 | 256×256 | 10.00 | 4.00 | **2.50×** | 3.00× | **phone**: samsung "
            "SM-S901B, Adreno (TM) 730, GPU delegate (cl) |") in head
    assert ("| host CPU | int8 | 256×256 | 6.00 | 3.00 | **2.00×** | 3.00× | **host**: AMD EPYC CPU, ai-edge-litert "
            "2.1.0 (CPU), 2 threads (not a phone figure) |") in head
    assert "| SM8450 (Snapdragon 8 Gen 1) virtual | fp32 |" in head and "**virtual**: this host's CPU" in head
    assert "trained at 32×32" in head and "initialised weights: latency only" in head and "int8 scales" in head
    # every latency table: original and compressed per dtype, the speed-up beside the MACs ratio
    lat = index.split("## Latency")[1].split("\n## ")[0]
    assert lat.count("| speed-up | MACs ratio |") == 3
    assert "| fp32 | 256×256 | 10.00 / 11.00 | 4.00 / 4.40 | **2.50×** | 3.00× |" in lat
    assert "| latency fp32 on SM8450 (Snapdragon 8 Gen 1) (phone), median | 10.00 ms | 4.00 ms | speed-up **2.50×** " \
           "(MACs ratio 3.00×) |" in index
    assert (rel / "speedup.png").read_bytes()[:4] == b"\x89PNG"
    assert (rel / "original" / "original.json").is_file()
    for link in re.findall(r"\]\(([^)]+)\)", index):
        assert (rel / link).exists(), link


def test_release_page_is_one_self_contained_html_file(tmp_path):
    rel = build_release(_released_run(tmp_path), tmp_path / "release", name="v1")
    page = (rel / page_name("v1")).read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>Release: v1</title>" in page
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<th>speed-up</th>" in page and "<strong>2.50×</strong>" in page
    assert f"[{page_name('v1')}]({page_name('v1')})" in (rel / "index.md").read_text()


def test_an_original_export_of_other_weights_is_not_labelled_with_the_record(tmp_path):
    """The original's weights were changed (original.json rewritten) and its export then stopped: the files in
    original/export are of the earlier weights. The release leaves their figures out and says why (it labelled
    them with the new weights and showed their gate misses as the original's)."""
    run = _released_run(tmp_path)
    record = json.loads((run / "original" / "original.json").read_text())
    man_path = run / "original" / "export" / "manifest.json"
    man = json.loads(man_path.read_text())
    man["source"] = {"generator_pt_sha256": record["generator_pt_sha256"]}
    man_path.write_text(json.dumps(man))
    index = (build_release(run, tmp_path / "release") / "index.md").read_text()
    assert "is not of the weights" not in index and "| 10.00 | 4.00 |" in index
    man["source"] = {"generator_pt_sha256": "d76eff7ae0f3" + "0" * 52}
    man_path.write_text(json.dumps(man))
    index = (build_release(run, tmp_path / "release") / "index.md").read_text()
    warnings = index.split("## Warnings")[1].split("\n## ")[0]
    assert (f"Original: the original's export ({man_path}, generator d76eff7ae0f3) is not of the weights "
            f"original.json records ({record['generator_pt_sha256'][:12]}): its figures are left out; rerun the "
            "export stage.") in warnings
    assert "| 10.00 | 4.00 |" not in index    # no original column built from those files


def test_release_without_an_original_says_so(tmp_path):
    rel = build_release(_released_run(tmp_path, with_original=False), tmp_path / "release")
    index = (rel / "index.md").read_text()
    assert "The original (unpruned) generator was not exported" in index
    assert "| SM8450 (Snapdragon 8 Gen 1) | fp32 | 256×256 | - | 4.00 | - | - | **phone**" in index


# --- 5. run metadata is the run's own ------------------------------------------------------------------
def test_stage_records_take_model_dataset_target_from_the_run(tmp_path):
    run = synthetic_run(tmp_path / "runs" / "p2p", "pix2pix")
    p = Pipeline(PipelineConfig(run_dir=run), echo=lambda s: None)  # the defaults say cyclegan / horse2zebra
    p._record("export", {"status": "skipped"})
    rec = json.loads((run / "pipeline.json").read_text())["pipeline"]
    assert (rec["model"], rec["dataset"], rec["target"]) == ("pix2pix", str(tmp_path / "runs" / "data"), 0.5)
    assert (rec["dtype"], rec["input_size"]) == ("all", 256)
    # a later bench with other SIZE/DTYPE (which it does not use) keeps the export's recorded settings
    Pipeline(PipelineConfig(run_dir=run, dtype="int8", input_size=128), echo=lambda s: None)._record(
        "bench", {"status": "skipped"})
    rec = json.loads((run / "pipeline.json").read_text())["pipeline"]
    assert (rec["dtype"], rec["input_size"], rec["device"]) == ("all", 256, "sm8450")


def test_a_pipeline_record_of_another_shape_or_cut_short(tmp_path):
    """pipeline.json valid JSON but of another shape (a stage entry that is a string, one without wall_s): the
    release and ``--timings`` read what they can (a KeyError / AttributeError traceback before); one cut short is
    named as such for --timings (it said "no pipeline.json")."""
    from bench.pipeline.record import timings_markdown

    run = _released_run(tmp_path)
    (run / "pipeline.json").write_text(json.dumps({"stages": {"export": "ran", "bench": {"status": "failed"}},
                                                   "last_ran": {"export": {"status": "ran"}}}))
    index = (build_release(run, tmp_path / "release") / "index.md").read_text()
    assert "Pipeline stage `bench` failed" in index
    assert "| export | - |" in timings_markdown(run)
    (run / "pipeline.json").write_text('{"stages": ')
    with pytest.raises(InputError, match=r"pipeline\.json: not JSON: .*; expected the pipeline's record"):
        timings_markdown(run)


def test_export_stage_commands_at_the_phone_size_with_the_original(tmp_path):
    run = synthetic_run(tmp_path / "runs" / "c")
    cmds = Pipeline(PipelineConfig(run_dir=run, python="py"), echo=lambda s: None).export_commands()
    assert cmds == [["py", "-m", "export", str(run), "--dtype", "all", "--input-size", "256", "--accept-gate-failure"],
                    ["py", "-m", "export", str(run), "--dtype", "all", "--input-size", "256", "--accept-gate-failure",
                     "--original", "--original-weights", "init", "--int8-target-db", "0"]]
    dcgan = synthetic_run(tmp_path / "runs" / "d", "dcgan")
    cfg = PipelineConfig(run_dir=dcgan, python="py", original="none")
    assert Pipeline(cfg, echo=lambda s: None).export_commands() == [
        ["py", "-m", "export", str(dcgan), "--dtype", "all", "--accept-gate-failure"]]


def test_the_bench_stamp_does_not_depend_on_how_the_run_is_named(tmp_path, monkeypatch):
    """``make bench RUN=$PWD/runs/main`` (or a moved run) against tables stamped from ``runs/main``: the same
    stamp, so the bench is skipped (it was measured again: 73 s here, longer on a phone)."""
    run = _released_run(tmp_path)
    (run / "export" / "generator_fp32.tflite").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    target = {"name": "host", "kind": "host"}

    def stamp(run_dir):
        p = Pipeline(PipelineConfig(run_dir=run_dir, python="py", device="host"), echo=lambda s: None)
        return p.bench_stamp(target, [run_dir / "export" / "manifest.json"])

    relative = stamp(run.relative_to(tmp_path))
    assert relative == stamp(run) and list(relative["models"]) == ["export/generator_fp32.tflite"]
    moved = tmp_path / "moved"
    run.rename(moved)
    assert stamp(moved) == relative


def test_a_serial_that_is_not_attached_is_an_error_not_the_host(tmp_path, monkeypatch):
    """``make bench SERIAL=R5CT1234`` with no such phone: refused (the host and virtual tables were measured,
    or kept as "unchanged", and exit 0)."""
    import bench.pipeline.stages as stages

    monkeypatch.setattr(stages, "detect_phone", lambda device, serial=None: None)
    run = synthetic_run(tmp_path / "runs" / "s")
    pipe = Pipeline(PipelineConfig(run_dir=run, python="py", serial="R5CT1234"), echo=lambda s: None)
    with pytest.raises(InputError, match=r"--serial R5CT1234 \(make: SERIAL=...\): no attached phone with this "
                                         r"serial matches --device sm8450"):
        pipe.bench_targets()
    pipe = Pipeline(PipelineConfig(run_dir=run, python="py"), echo=lambda s: None)
    assert [t["kind"] for t in pipe.bench_targets()] == ["host", "virtual"]


def test_a_mixed_int8_file_is_labelled_in_the_release_tables():
    """Issue 15: a file with float convolutions is ``int8 (mixed: N of M convolutions float)`` wherever it is shown,
    the release's latency tables and headline included (the label comes with the bench rows)."""
    from bench.pipeline.compare import Pair, dtype_cell

    mixed = "int8 (mixed: 1 of 18 convolutions float)"
    assert dtype_cell(Pair("int8", {"dtype_label": "int8"}, {"dtype_label": "int8"})) == "int8"
    assert dtype_cell(Pair("int8", {"dtype_label": mixed}, {"dtype_label": "int8"})) == f"int8 (original file: {mixed})"
    assert dtype_cell(Pair("fp32", None, {"dtype": "fp32"})) == "fp32"


def test_charts_say_which_int8_file_is_mixed(tmp_path, monkeypatch):
    """The label reaches the charts too: a mixed file's bar (bench chart) and tick (release comparison chart)."""
    import matplotlib.axes

    from bench.pipeline.compare import comparison_plot
    from bench.tables import chart_note, plot

    drawn: list[str] = []  # every text and tick label the charts draw
    text, ticks = matplotlib.axes.Axes.text, matplotlib.axes.Axes.set_xticks
    monkeypatch.setattr(matplotlib.axes.Axes, "text",
                        lambda self, x, y, s, *a, **k: (drawn.append(str(s)), text(self, x, y, s, *a, **k))[1])
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xticks", lambda self, t, labels=None, **k: (
        drawn.extend(map(str, labels or [])), ticks(self, t, labels, **k))[1])

    assert chart_note({"dtype_label": "int8 (mixed: 1 of 18 convolutions float)"}) == "mixed: 1 of 18 float"
    assert chart_note({"dtype_label": "int8"}) == "" == chart_note(None)
    rows = [{"model": m, "dtype": "int8", "dtype_label": label, "status": "ok", "median_ms": ms, "p95_ms": ms,
             "macs": 1, "flags": ["host"]}
            for m, label, ms in (("orig", "int8 (mixed: 1 of 18 convolutions float)", 2.0), ("comp", "int8", 1.0))]
    lat = {"device": {"kind": "host"}, "rows": rows}
    assert comparison_plot([("host", lat)], "orig", "comp", tmp_path / "c.png", "256×256")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert "int8\noriginal: mixed: 1 of 18 float" in drawn  # the tick of the pair names the mixed side only
    drawn.clear()
    plot({"rows": rows, "device": {"kind": "host"}, "figures": "host", "device_label": "host CPU"}, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    assert drawn.count("mixed: 1 of 18 float") == 1 and "orig" in drawn and "comp" in drawn  # on the mixed bar


# --- what a run folder or a phone hands over stays in its place ------------------------------------------
def test_release_page_inlines_only_images_of_the_release(tmp_path):
    """The HTML page is mailed: a path or link from a handed-over string (a model name, the phone's getprop
    answers) must not pull a local file into it or become a script link."""
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-TOKEN")
    run = _released_run(tmp_path)
    report = json.loads((run / "compression_report.json").read_text())
    report["model"] = f"![x]({secret}) [click](javascript:alert(1)) ![y](../../secret.txt)"
    (run / "compression_report.json").write_text(json.dumps(report))
    lat = json.loads((run / "bench" / "sm8450" / "latency.json").read_text())
    lat["device"]["soc"] = f"![z]({secret})"
    lat["device"]["model"] = "x|![t](https://tracker.example/p.png)"
    (run / "bench" / "sm8450" / "latency.json").write_text(json.dumps(lat))
    rel = build_release(run, tmp_path / "release", name="v1")
    index = (rel / "index.md").read_text()
    assert "![t](" not in index and "![z](" not in index and "x\\|\\!\\[t\\]" not in index
    assert "x\\|!\\[t\\](https://tracker.example/p.png)" in index  # shown as text, the table intact
    page = (rel / page_name("v1")).read_text()
    assert "U0VDUkVULVRPS0VO" not in page and "SECRET-TOKEN" not in page  # base64 or plain
    assert 'href="javascript' not in page
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


def test_release_name_is_one_folder_and_replaces_only_a_release(tmp_path):
    run = _released_run(tmp_path)
    victim = tmp_path / "keep"
    victim.mkdir()
    (victim / "data.txt").write_text("mine")
    for name in ("../keep", str(victim), "..", "a/b"):
        with pytest.raises(InputError, match="--name"):
            build_release(run, tmp_path / "release", name=name)
    with pytest.raises(InputError, match="not a release folder"):
        build_release(run, tmp_path, name="keep")
    assert (victim / "data.txt").read_text() == "mine"
    rel = build_release(run, tmp_path / "release", name="v1")
    assert build_release(run, tmp_path / "release", name="v1") == rel  # an older release is replaced
    # another run's release of the same name is not (it was, silently)
    other = _released_run(tmp_path / "other")
    with pytest.raises(InputError, match=rf"v1: holds the release of another run \({re.escape(str(run.resolve()))}\)"):
        build_release(other, tmp_path / "release", name="v1")
    assert json.loads((rel / "release.json").read_text())["run_dir"] == str(run.resolve())
    r = subprocess.run([sys.executable, "-m", "bench.pipeline.release", str(run), "--out", str(tmp_path),
                        "--name", "keep"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "keep" in r.stderr
    # --out a file: one line, exit 2; --name titles the page as well as the folder
    (tmp_path / "afile").write_text("x")
    r = subprocess.run([sys.executable, "-m", "bench.pipeline.release", str(run), "--out", str(tmp_path / "afile")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr == f"error: --out {tmp_path / 'afile'}: a file; expected the release " \
        "root folder (created when missing)\n"
    assert (rel / "index.md").read_text().startswith("# Release: v1\n")


def test_release_warns_about_latency_rows_of_files_that_are_not_the_export(tmp_path):
    run = _released_run(tmp_path)
    man = json.loads((run / "export" / "manifest.json").read_text())
    man["files"][0]["sha256"] = "a" * 64
    (run / "export" / "manifest.json").write_text(json.dumps(man))
    lat = json.loads((run / "bench" / "host" / "latency.json").read_text())
    for r in lat["rows"]:
        r["sha256"] = "a" * 64 if r["model"] == "cyclegan:r" and r["dtype"] == "fp32" else "b" * 64
    (run / "bench" / "host" / "latency.json").write_text(json.dumps(lat))
    index = (build_release(run, tmp_path / "release") / "index.md").read_text()
    warn = [w for w in index.splitlines() if "not the current export" in w]
    assert len(warn) == 1 and " host: " in warn[0] and "cyclegan:r int8" in warn[0]
    assert "cyclegan:r fp32" not in warn[0]  # the row of the exported file
    # the older files' figures are not shown as the export's: the host's headline rows keep the current fp32
    # file only (int8 3.00 ms and the original's 10.00 / 6.00 ms were an older export's)
    head = index.split("## Headline")[1].split("\n## ")[0]
    host = [line for line in head.splitlines() if line.startswith("| host CPU |")]
    assert host and all("| 3.00 |" not in line and "| 10.00 |" not in line for line in host), host
    assert any("| fp32 |" in line and "| 4.00 |" in line for line in host), host


def test_release_warns_when_an_exported_original_was_not_timed(tmp_path):
    """`make bench ORIGINAL=none` after an export with the original: the release says the original was not timed
    on that target instead of silently showing no original column."""
    run = _released_run(tmp_path)
    index = (build_release(run, tmp_path / "release") / "index.md").read_text()
    assert "was exported but not timed" not in index
    lat = json.loads((run / "bench" / "host" / "latency.json").read_text())
    lat["rows"] = [r for r in lat["rows"] if r["model"] != "cyclegan:original"]
    (run / "bench" / "host" / "latency.json").write_text(json.dumps(lat))
    index = (build_release(run, tmp_path / "release2") / "index.md").read_text()
    warn = [w for w in index.splitlines() if "was exported but not timed" in w]
    assert len(warn) == 1 and "host: the original (cyclegan:original)" in warn[0], warn


def test_bench_target_folder_is_the_profile_key_even_for_a_profile_file(tmp_path):
    prof = tmp_path / "myphone.json"
    prof.write_text(json.dumps({"soc": "SM8450", "match": {"ro.soc.model": ["SM8450"]}}))
    targets = Pipeline(PipelineConfig(run_dir=tmp_path / "run", device=str(prof), phone="never"),
                       echo=lambda s: None).bench_targets()
    assert [t["name"] for t in targets] == ["host", "myphone-virtual"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"profiles": {"../../x": {"match": {"ro.soc.model": ["X"]}}}}))
    from bench.profiles import get_profile

    with pytest.raises(InputError, match="not a plain name"):
        get_profile(str(bad))


def test_an_export_keeps_only_files_of_its_own_folder(tmp_path):
    from export.pipeline import _files_intact

    outside = tmp_path / "outside.tflite"
    outside.write_bytes(b"x")
    entry = {"path": "../outside.tflite", "size_bytes": 1, "sha256": sha256_file(outside)}
    (tmp_path / "export").mkdir()
    assert not _files_intact(tmp_path / "export", [entry])
    assert not _files_intact(tmp_path / "export", [{**entry, "path": str(outside)}])


def test_export_options_check_counts_as_whole_numbers():
    for field, flag in (("threads", "--threads"), ("calibration_count", "--calibration-count"),
                        ("heldout_count", "--heldout-count")):
        for bad in (0, 2.5, "3"):
            with pytest.raises(InputError, match=flag):
                ExportOptions(**{field: bad})


def test_release_says_which_files_it_could_not_read(tmp_path):
    """A corrupt, truncated or non-object JSON file is a warning naming it, not "not run" or a traceback."""
    run = _released_run(tmp_path)
    (run / "export" / "manifest.json").write_text('{"files": [')
    (run / "evaluation.json").write_text("[1]")
    (run / "pipeline.json").write_bytes(b"\xff\xfe")
    (run / "bench" / "host" / "latency.json").write_text("")
    index = (build_release(run, tmp_path / "release") / "index.md").read_text()
    for name, why in (("export/manifest.json", "not JSON"), ("evaluation.json", "a JSON list, not an object"),
                      ("pipeline.json", "not JSON"), ("bench/host/latency.json", "not JSON")):
        assert re.search(rf"{re.escape(name)} is unreadable \({re.escape(why)}", index), name
    (run / "compression_report.json").write_text("[1]")
    with pytest.raises(InputError, match=r"compression_report.json: a JSON list, not an object; expected the report"):
        build_release(run, tmp_path / "release")


def test_a_mixed_int8_file_is_labelled_wherever_the_release_shows_it(tmp_path):
    """Issue 15: ``int8 (mixed: N of M convolutions float)`` beside the file in the files table, the GPU-delegate
    table and the Warnings, not only in the size-gate message."""
    from bench.pipeline.release import index_markdown

    mixed = "int8 (mixed: 2 of 18 convolutions float)"
    manifest = {"model": "generator", "files": [
        {"path": "generator_fp32.tflite", "dtype": "fp32", "label": "fp32", "gpu_delegate": {"gpu_ready": True}},
        {"path": "generator_int8.tflite", "dtype": "int8", "label": mixed,
         "gpu_delegate": {"gpu_ready": False, "reason": "a reason"}}]}
    page = index_markdown(tmp_path, {"target_macs_reduction": 0.75}, {}, manifest, None, [], {}, [], {})
    lines = [line for line in page.splitlines() if "generator_int8.tflite" in line]
    assert len(lines) >= 3 and all(mixed in line for line in lines), lines
    assert any(line.startswith(f"| generator_int8.tflite ({mixed}) | NOT ready (a reason) |") for line in lines)
    assert any(f"generator_int8.tflite ({mixed}) is not GPU-delegate ready" in line for line in lines)
    assert "| generator_fp32.tflite | ready |" in page  # a label that says no more than the dtype is left out
