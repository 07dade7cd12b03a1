"""``python -m export.check_photos``: reading the user's photo folders and refusing bad input (synthetic images;
the measurement on real exports is in tests/test_export.py)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from compress.errors import InputError
from export.check_photos import load_photos, main as check_main


def _write(path, size=(40, 30), mode="RGB"):
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    data = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(data[..., 0] if channels == 1 else data, mode).save(path)


def test_photos_are_read_rgb_square_sorted_and_limited(tmp_path, caplog):
    _write(tmp_path / "b.png")
    _write(tmp_path / "a.JPG", (30, 50))
    _write(tmp_path / "c.png", mode="L")
    _write(tmp_path / "d.png", mode="RGBA")
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / ".hidden.png").write_bytes(b"")
    photos = load_photos([tmp_path])
    assert [n for n, _ in photos] == ["a", "b", "c", "d"]
    assert [p.size for _, p in photos] == [(30, 30), (30, 30), (30, 30), (30, 30)]
    assert all(p.mode == "RGB" for _, p in photos)
    with caplog.at_level("WARNING", logger="coronetgan.export"):
        assert [n for n, _ in load_photos([tmp_path], limit=2)] == ["a", "b"]
    assert "first 2 of 4" in caplog.text


def test_two_folders_sharing_a_name_keep_both(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        _write(tmp_path / folder / "same.png")
    _write(tmp_path / "x" / "same.jpg")
    assert [n for n, _ in load_photos([tmp_path / "x", tmp_path / "y"])] == [
        str(tmp_path / "x" / "same.jpg"), str(tmp_path / "x" / "same.png"), str(tmp_path / "y" / "same.png")]


@pytest.mark.parametrize("case, match", [
    ("missing", "not a folder"), ("empty", "no photo found"), ("corrupt", "broken.png: not a readable image")])
def test_bad_photo_folders_are_named(tmp_path, case, match):
    folder = tmp_path / "photos"
    if case != "missing":
        folder.mkdir()
    if case == "corrupt":
        _write(folder / "good.png")
        (folder / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match=match):
        load_photos([folder])


def test_the_cli_gives_bad_input_one_line_and_exit_2(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    _write(folder / "a.png")
    assert check_main([str(tmp_path / "no-run"), "--photos", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no-run" in err and "Traceback" not in err
    assert check_main([str(tmp_path / "no-run"), "--photos", str(folder), "--limit", "0"]) == 2
    assert "--limit 0" in capsys.readouterr().err
    assert check_main([str(tmp_path / "no-run"), "--photos", str(folder), "--out", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err
