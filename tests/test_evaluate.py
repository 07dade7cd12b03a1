"""``python -m compress.evaluate`` and ``compress.evaluate.compare`` on tiny real runs (DCGAN, CycleGAN 32 px).

Kept fast: tiny generators trained for a few steps, a handful of generated images and real images
(``--num-samples``, ``--max-real``), a private FID cache folder. The FID/KID core itself (FID ~ 0 for identical
sets, rising with noise, cache invalidation) is tested in tests/test_fid.py; here the same properties are
checked through the evaluation's own reference-statistics path.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compress.config import RunConfig
from compress.errors import InputError
from compress.evaluate import EvalSettings, evaluate_run
from compress.evaluate.__main__ import main as evaluate_main
from compress.evaluate.compare import main as compare_main
from compress.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def tiny(model: str, **kw) -> RunConfig:
    base = dict(
        cyclegan=dict(dataset="horse2zebra", image_size=32, load_size=36, batch_size=1, max_train_images=8,
                      generator=dict(ngf=8, n_blocks=2), discriminator=dict(ndf=8), pool_size=2),
        dcgan=dict(dataset="cifar10", image_size=32, load_size=32, batch_size=8, max_train_images=64,
                   generator=dict(ngf=16), discriminator=dict(ndf=16)),
    )[model]
    cfg = dict(model=model, preset="small", target=0.3, latent_lr=0.05, regularization=1.0, check_interval=2,
               search_steps=8, converge_steps=1, sample_interval=1000, checkpoint_interval=1000, log_interval=5,
               device="cpu")
    return RunConfig(**{**cfg, **base, **kw}).validate()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_data):
    """Two finished tiny runs: a DCGAN CoroNetGAN run and a CycleGAN unpruned baseline (fast to train)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CORONETGAN_DATA_MIRROR", str(shared_data))
    mp.chdir(REPO)
    root = tmp_path_factory.mktemp("evalruns")
    torch.manual_seed(0)
    Trainer(tiny("dcgan"), root / "dcgan").run()
    Trainer(tiny("cyclegan", baseline="unpruned", converge_steps=1), root / "cyclegan").run()
    yield root
    mp.undo()


@pytest.fixture()
def env(shared_data, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("CORONETGAN_DATA_MIRROR", str(shared_data))
    monkeypatch.setenv("CORONETGAN_FID_CACHE", str(tmp_path_factory.getbasetemp() / "fidcache"))
    monkeypatch.chdir(REPO)


SMALL = dict(num_samples=8, max_real=10, kid_subsets=5, batch_size=16)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_dcgan_evaluation_files_grid_report_and_skip(runs, env, tmp_path, capsys):
    run = _copy(runs / "dcgan", tmp_path / "dcgan")
    ev = evaluate_run(run, EvalSettings(real_set="test", **SMALL), progress=False)
    assert not ev["skipped"]
    stored = json.loads((run / "evaluation.json").read_text())
    for key in ("fid", "kid_mean", "kid_std", "n_fake", "n_real", "params", "macs", "settings", "inputs_sha256",
                "protocol", "machine", "seconds", "real_set"):
        assert key in stored, key
    assert stored["n_fake"] == 8 and stored["n_real"] == 10 and stored["real_set"] == "test"
    assert stored["kid_subset_size"] == 8 and stored["kid_subsets"] == 5
    assert np.isfinite(stored["fid"]) and stored["fid"] > 0
    rep = json.loads((run / "compression_report.json").read_text())
    assert stored["macs"] == rep["pruned"]["macs"] and stored["params"] == rep["pruned"]["params"]
    # grid: two rows of 4 samples (half of 8 each) of 32x32 with 2-pixel padding
    with Image.open(run / "evaluation_grid.png") as im:
        assert im.size == (4 * 34 + 2, 2 * 34 + 2)
    md = (run / "compression_report.md").read_text()
    assert md.startswith("# Compression report") and "Channels kept per layer" in md
    assert md.count("## Evaluation") == 1 and f"FID {stored['fid']:.2f}" in md and "KID" in md

    # unchanged files + settings: skipped (no recomputation), the section is not duplicated
    mtime = (run / "evaluation.json").stat().st_mtime_ns
    rc = evaluate_main([str(run), "--real-set", "test", "--num-samples", "8", "--max-real", "10",
                        "--kid-subsets", "5", "--batch-size", "16", "--quiet"])
    assert rc == 0 and "skipped" in capsys.readouterr().out
    assert (run / "evaluation.json").stat().st_mtime_ns == mtime
    assert (run / "compression_report.md").read_text().count("## Evaluation") == 1

    # a changed generator.pt is evaluated again
    state = torch.load(run / "generator.pt", weights_only=True)
    k = next(k for k, v in state.items() if v.is_floating_point())
    state[k] = state[k] + 0.01
    torch.save(state, run / "generator.pt")
    ev2 = evaluate_run(run, EvalSettings(real_set="test", **SMALL), progress=False)
    assert not ev2["skipped"] and ev2["inputs_sha256"]["generator.pt"] != stored["inputs_sha256"]["generator.pt"]
    assert ev2["real_from_cache"]  # the real statistics came from the cache the first call wrote
    from compress.artifacts import load_architecture
    from compress.evaluate.core import evaluation_data
    from compress.evaluate.reference import reference_key

    assert ev2["real_key"] == reference_key(
        evaluation_data(load_architecture(run), json.loads((run / "config.json").read_text()),
                        EvalSettings(real_set="test", **SMALL).resolved("dcgan")).real)

    # the real images changed (another mirror, an edited file): evaluated again, not "unchanged"
    import compress.evaluate.core as core

    real_key = core.reference_key
    try:
        core.reference_key = lambda source, protocol="pytorch-fid": "another set"
        ev3 = evaluate_run(run, EvalSettings(real_set="test", **SMALL), progress=False)
    finally:
        core.reference_key = real_key
    assert not ev3["skipped"]


def test_cyclegan_evaluation_uses_testA_and_target_domain(runs, env, tmp_path):
    run = _copy(runs / "cyclegan", tmp_path / "cyclegan")
    ev = evaluate_run(run, EvalSettings(real_set="testB", num_samples=6, max_real=8, kid_subsets=3), progress=False)
    assert ev["n_fake"] == 6 and ev["n_real"] == 8 and ev["image_size"] == 32
    assert ev["input_source"].endswith("testA") and ev["real_source"].endswith("testB")
    assert "32x32" in ev["protocol"]
    with Image.open(run / "evaluation_grid.png") as im:   # rows: input, output; 6 columns
        assert im.size == (6 * 34 + 2, 2 * 34 + 2)
    # default real set is train+test of the target domain
    ev2 = evaluate_run(run, EvalSettings(num_samples=4, max_real=6, kid_subsets=2), progress=False)
    assert ev2["real_set"] == "train+test" and "trainB" in ev2["real_source"] and "testB" in ev2["real_source"]


def test_reference_statistics_of_the_evaluation_behave(env, shared_data, tmp_path):
    """Through the evaluation's data path: identical sets give FID ~ 0, noise raises it, changed images miss
    the cache."""
    from compress.data.codec import uint8_to_float
    from compress.families.evaluation import load_resized
    from compress.evaluate.features import features_from_tensor
    from compress.evaluate.metrics import fid_from_features
    from compress.evaluate.reference import reference_statistics

    files = sorted((shared_data / "horse2zebra" / "testB").glob("*.jpg"))[:6]
    real = load_resized(files, 32)
    cache = tmp_path / "cache"
    st = reference_statistics(real, cache, name="t", progress=False)
    x = uint8_to_float(torch.from_numpy(real))
    same = features_from_tensor(x, progress=False)
    assert abs(fid_from_features(same, st.features, method="fast")) < 1e-3
    g = torch.Generator().manual_seed(0)
    fids = [fid_from_features(features_from_tensor(
        (x + s * torch.randn(x.shape, generator=g)).clamp(-1, 1), progress=False), st.features, method="fast")
        for s in (0.2, 0.6)]
    assert 1.0 < fids[0] < fids[1]
    assert reference_statistics(real, cache, name="t", progress=False).from_cache
    changed = real.copy()
    changed[0, 0, 0] ^= 0xFF
    assert not reference_statistics(changed, cache, name="t", progress=False).from_cache


def test_run_dir_without_generator_is_a_clear_error(runs, env, tmp_path, capsys):
    run = _copy(runs / "dcgan", tmp_path / "nogen")
    (run / "generator.pt").unlink()
    with pytest.raises(InputError, match="generator.pt is missing"):
        evaluate_run(run, EvalSettings(**SMALL), progress=False)
    assert evaluate_main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "generator.pt is missing" in err and "Traceback" not in err
    (run / "architecture.json").unlink()
    assert evaluate_main([str(run)]) == 2 and "architecture.json is missing" in capsys.readouterr().err
    assert evaluate_main([str(tmp_path / "nowhere")]) == 2 and "does not exist" in capsys.readouterr().err


def test_broken_report_or_evaluation_files(runs, env, tmp_path, capsys):
    """A compression_report.json that is not the report (a list, or without its search) is refused before any
    FID work (it crashed after writing evaluation.json); an evaluation.json that is a list or not UTF-8 is a stale
    result, evaluated again (an AttributeError / UnicodeDecodeError traceback before)."""
    run = _copy(runs / "dcgan", tmp_path / "broken")
    report = json.loads((run / "compression_report.json").read_text())
    args = [str(run), "--real-set", "test", "--num-samples", "8", "--max-real", "10", "--kid-subsets", "5",
            "--quiet"]
    for content, line in (("[]", "holds a JSON list; expected the object python -m compress writes"),
                          (json.dumps({"model": "dcgan"}), "lacks what its Markdown report needs (KeyError: ")):
        (run / "compression_report.json").write_text(content)
        assert evaluate_main(args) == 2
        err = capsys.readouterr().err
        assert f"error: {run / 'compression_report.json'}" in err and line in err and "Traceback" not in err
        assert not (run / "evaluation.json").exists()
    (run / "compression_report.json").write_text(json.dumps(report))
    for content in (b"[]", b"\xff\xfe{"):
        (run / "evaluation.json").write_bytes(content)
        assert evaluate_main(args) == 0, capsys.readouterr().err
        assert json.loads((run / "evaluation.json").read_text())["n_fake"] == 8


def test_bad_settings_name_the_flag(runs, env, tmp_path):
    run = _copy(runs / "dcgan", tmp_path / "bad")
    with pytest.raises(InputError, match="--real-set 'testB'"):
        evaluate_run(run, EvalSettings(real_set="testB"), progress=False)
    with pytest.raises(InputError, match="--num-samples"):
        evaluate_run(run, EvalSettings(num_samples=1), progress=False)
    for seed in (-1, 2**64):   # torch/numpy take [0, 2**32 - 1]: a ValueError traceback before
        with pytest.raises(InputError, match=rf"--seed {seed}: expected an integer from 0 to 4294967295"):
            evaluate_run(run, EvalSettings(seed=seed), progress=False)


def test_compare_renders_the_table(runs, env, tmp_path, capsys):
    a = _copy(runs / "dcgan", tmp_path / "a")
    b = _copy(runs / "cyclegan", tmp_path / "b")
    evaluate_run(a, EvalSettings(real_set="test", **SMALL), progress=False)
    evaluate_run(b, EvalSettings(real_set="testB", num_samples=4, max_real=8, kid_subsets=2), progress=False)
    out = tmp_path / "tables" / "t.md"
    # evaluated on different image sets: refused (FID is biased at small N), unless --mixed-n
    assert compare_main([str(b), str(a), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: the runs were evaluated on different image sets (" in err and "--mixed-n" in err
    assert not out.exists()
    assert compare_main([str(b), str(a), "--out", str(out), "--paper", "unpruned=61.53", "--title", "T",
                         "--mixed-n"]) == 0
    text = out.read_text()
    lines = [l for l in text.splitlines() if l.startswith("| ")]
    assert lines[0].startswith("| method | MACs (G) | params (M) | MACs reduction | FID | KID ± std | paper FID")
    assert lines[1].startswith("| unpruned |") and "61.53" in lines[1]       # unpruned sorted first
    assert lines[2].startswith("| CoroNetGAN 30%") and len(lines) == 3
    assert "generated vs" in text and "Machine:" in text
    # --out a folder, a config.json that is not JSON: one line, exit 2 (tracebacks before)
    capsys.readouterr()
    assert compare_main([str(a), "--out", str(tmp_path)]) == 2
    assert f"error: --out {tmp_path}: a folder; expected a file" in capsys.readouterr().err
    (a / "config.json").write_text('{"seed": 0,')
    assert compare_main([str(a)]) == 2 and "config.json is not valid JSON" in capsys.readouterr().err
    (a / "evaluation.json").unlink()
    assert compare_main([str(a)]) == 2 and "evaluation.json is missing" in capsys.readouterr().err


def test_compare_over_seeds_groups_methods(tmp_path):
    """``--over-seeds``: one row per method, KID/FID mean ± std over the runs' seeds (synthetic run folders)."""
    import json as _json

    from compress.evaluate.compare import render_seed_table, load_row

    def fake(name, seed, kid, fid, baseline=None):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(_json.dumps({"seed": seed}))
        (d / "evaluation.json").write_text(_json.dumps({"macs": 5e6, "params": 1e5, "fid": fid, "kid_mean": kid,
                                                       "kid_std": 0.001, "n_fake": 500, "n_real": 5085,
                                                       "real_set": "train"}))
        (d / "compression_report.json").write_text(_json.dumps({
            "baseline": baseline, "target_macs_reduction": 0.75, "original": {"macs": 2e7}, "target_reached": True,
            "seconds": {}, "budget": {"batch_size": 64}, "machine": "m"}))
        return d

    rows = [load_row(fake(f"c{s}", s, kid, fid)) for s, kid, fid in ((0, 0.10, 150.0), (1, 0.12, 160.0), (2, 0.14, 170.0))]
    rows += [load_row(fake("u0", 0, 0.2, 200.0, baseline="unpruned"))]
    text = render_seed_table(rows, title="T")
    assert "| CoroNetGAN 75% | 0.0050 | 0.100 | 0, 1, 2 | 0.1200 ± 0.0200 | 160.0 ± 10.0 | 0.1000 / 0.1200 / 0.1400 |" in text
    assert "| unpruned | 0.0050 | 0.100 | 0 | 0.2000 ± 0.0000 | 200.0 ± 0.0 | 0.2000 |" in text
