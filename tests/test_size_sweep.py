"""export.size_sweep: the int8 size gate measured on the narrowest generators it applies to (issue 15)."""
from __future__ import annotations

import json

import pytest

from export.size_sweep import SWEEP, main, narrowest_width, to_markdown
from export.tiny import stand_in_params


@pytest.mark.parametrize("name", [n for n, (_, g, _) in SWEEP.items() if "channels" not in g])
def test_narrowest_width_is_the_first_above_the_bound(name):
    family, generator, _ = SWEEP[name]
    width, params = narrowest_width(family, generator, 100_001)
    assert params == stand_in_params(family, width, generator) >= 100_001
    assert stand_in_params(family, width - 2e-3, generator) < 100_001 or width <= 2e-3


def test_bad_flags_exit_2_with_one_line(capsys, tmp_path):
    assert main(["--only", "resnet-42", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --only 'resnet-42'") and "Traceback" not in err
    assert main(["--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    (tmp_path / "afile").write_text("x")
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "afile")]) == 2
    assert capsys.readouterr().err.startswith(f"error: --out {tmp_path / 'afile'}: a file")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "size_sweep.partial.json").write_text("{not json")
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "out"), "--only", "dcgan"]) == 2
    err = capsys.readouterr().err
    assert "size_sweep.partial.json: not a size sweep's partial results" in err and "--restart" in err
    assert (tmp_path / "out" / "size_sweep.partial.json").read_text() == "{not json"   # left as it was


@pytest.mark.slow
def test_dcgan_row_measured_and_kept(shared_data, tmp_path, capsys):
    """The smallest DCGAN above 0.1 M parameters, trained for a few steps and exported: its int8 file meets the
    size gate; the same command again keeps the row instead of measuring it again."""
    out = tmp_path / "sweep"
    args = ["--only", "dcgan", "--out", str(out), "--data", str(shared_data), "--steps", "10",
            "--md", str(tmp_path / "t.md")]
    assert main(args) == 0
    row = json.loads((out / "size_sweep.partial.json").read_text())["rows"]["dcgan"]
    assert row["params"] > 100_000 and row["ratio"] == row["int8_bytes"] / row["fp32_bytes"] <= 0.30
    assert row["label"] == "int8" and (out / "size_sweep.log").stat().st_size > 0
    assert "| dcgan (width" in (tmp_path / "t.md").read_text()
    capsys.readouterr()
    assert main(args) == 0
    assert "kept from" in capsys.readouterr().out
    assert to_markdown([{**row, "ratio": 0.31}]).count("**missed**") == 1
