"""Data stage on real images from the shared mirror (``shared_data`` fixture): loaders, bad input, fetch."""
from __future__ import annotations

import hashlib
import io
import logging
import pickle
import shutil
import subprocess
import sys
import time
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import compress.data.download as download_mod
from compress.data import (AlignedDataset, CIFAR10Dataset, UnalignedDataset, fetch_dataset, load_rgb,
                           resolve_dataset)
from compress.data.checksums import MANIFEST, file_digest
from compress.data.codec import float_to_uint8, uint8_to_float
from compress.data.fetch import ENV_MIRROR, main
from compress.data.images import list_images
from compress.data.transforms import to_tensor
from compress.errors import InputError

GRAY_ZEBRA = "n02391049_226.jpg"  # one of the 7 grayscale images in horse2zebra/trainB
REPO = Path(__file__).resolve().parents[1]


def check_image_tensor(t: torch.Tensor, size: int = 256) -> None:
    assert t.dtype == torch.float32 and t.shape == (3, size, size)
    assert float(t.min()) >= -1.0 and float(t.max()) <= 1.0
    assert float(t.max()) - float(t.min()) > 0.5  # real image content, not a constant


def horse_files(shared_data: Path, n: int, domain: str = "trainA") -> list[Path]:
    return sorted((shared_data / "horse2zebra" / domain).iterdir())[:n]


@pytest.fixture
def mixed_domains(tmp_path, shared_data):
    """trainA: 3 real horses + text-as-jpg, truncated jpeg, 16x16, RGBA png, palette png, grayscale zebra;
    trainB: 3 real zebras."""
    a, b = tmp_path / "ds" / "trainA", tmp_path / "ds" / "trainB"
    a.mkdir(parents=True)
    b.mkdir()
    horses = horse_files(shared_data, 4)
    for p in horses[:3]:
        shutil.copy(p, a / p.name)
    for p in horse_files(shared_data, 3, "trainB"):
        shutil.copy(p, b / p.name)
    (a / "notes.jpg").write_text("this is not an image\n")
    raw = horses[3].read_bytes()
    (a / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    Image.open(horses[0]).resize((16, 16), Image.BICUBIC).save(a / "tiny.png")
    Image.open(horses[1]).convert("RGBA").save(a / "rgba.png")
    Image.open(horses[2]).convert("P", palette=Image.ADAPTIVE, colors=64).save(a / "palette.png")
    shutil.copy(shared_data / "horse2zebra" / "trainB" / GRAY_ZEBRA, a / GRAY_ZEBRA)
    return tmp_path / "ds"


# ----------------------------------------------------------------------------------------------- loaders
def test_unaligned_horse2zebra_real(shared_data):
    ds = UnalignedDataset(shared_data / "horse2zebra", "test")
    assert len(ds) == max(120, 140)  # max(len A, len B), CycleGAN reference
    torch.manual_seed(0)
    item = ds[0]
    assert set(item) == {"A", "B", "path_A", "path_B"}
    check_image_tensor(item["A"])
    check_image_tensor(item["B"])
    assert "testA" in item["path_A"] and "testB" in item["path_B"]
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["A"].shape == (2, 3, 256, 256) and batch["B"].dtype == torch.float32


def test_unaligned_eval_is_deterministic_and_serial(shared_data):
    ds = UnalignedDataset(shared_data / "horse2zebra", "test", train=False, crop_size=128)
    assert ds.serial
    x, y = ds[121], ds[121]
    assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])
    assert x["path_A"] == str(ds.paths_a[121 % 120]) and x["path_B"] == str(ds.paths_b[121])
    check_image_tensor(x["A"], 128)
    # eval = plain bicubic resize to crop size, no crop, no flip
    expected = to_tensor(load_rgb(ds.paths_a[1]).resize((128, 128), Image.BICUBIC))
    assert torch.equal(x["A"], expected)
    btoa = UnalignedDataset(shared_data / "horse2zebra", "test", direction="BtoA", train=False)
    assert "testB" in btoa[0]["path_A"] and len(btoa) == 140


def test_grayscale_zebra_becomes_rgb(shared_data):
    path = shared_data / "horse2zebra" / "trainB" / GRAY_ZEBRA
    assert Image.open(path).mode == "L"
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (256, 256)
    t = to_tensor(img)
    assert t.shape == (3, 256, 256) and torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])


def test_aligned_combined_edges2shoes(shared_data):
    root = shared_data / "edges2shoes_subset"
    ds = AlignedDataset(root, "val")
    assert ds.layout == "combined" and len(ds) == 20
    torch.manual_seed(0)
    item = ds[0]
    assert set(item) == {"A", "B", "path"} and item["path"].endswith("_AB.jpg")
    check_image_tensor(item["A"])
    check_image_tensor(item["B"])
    # eval mode: A is the left half, B the right half, each resized to the crop size
    ev = AlignedDataset(root, "val", train=False)[0]
    ab = load_rgb(ds.items[0])
    assert ab.size == (512, 256)
    assert torch.equal(ev["A"], to_tensor(ab.crop((0, 0, 256, 256)).resize((256, 256), Image.BICUBIC)))
    assert torch.equal(ev["B"], to_tensor(ab.crop((256, 0, 512, 256)).resize((256, 256), Image.BICUBIC)))
    rev = AlignedDataset(root, "val", direction="BtoA", train=False)[0]
    assert torch.equal(rev["A"], ev["B"]) and torch.equal(rev["B"], ev["A"])
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["A"].shape == (3, 3, 256, 256) and len(batch["path"]) == 3


def test_aligned_same_crop_and_flip_for_a_and_b(tmp_path, shared_data):
    src = sorted((shared_data / "edges2shoes_subset" / "val").iterdir())[0]
    # 1) identical halves (the real photo half twice, lossless PNG): a shared random crop+flip gives A == B
    photo = load_rgb(src).crop((256, 0, 512, 256))
    twin = Image.new("RGB", (512, 256))
    twin.paste(photo, (0, 0))
    twin.paste(photo, (256, 0))
    (tmp_path / "train").mkdir()
    twin.save(tmp_path / "train" / "twin_AB.png")
    for seed in range(4):
        item = AlignedDataset(tmp_path, flip=0.5, generator=torch.Generator().manual_seed(seed))[0]
        assert torch.equal(item["A"], item["B"])
    # 2) real pair, same seed: forcing the flip mirrors both A and B of the unflipped crop
    (tmp_path / "real" / "train").mkdir(parents=True)
    shutil.copy(src, tmp_path / "real" / "train" / src.name)
    flipped = AlignedDataset(tmp_path / "real", flip=1.0, generator=torch.Generator().manual_seed(3))[0]
    plain = AlignedDataset(tmp_path / "real", flip=False, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(flipped["A"], plain["A"].flip(-1)) and torch.equal(flipped["B"], plain["B"].flip(-1))
    assert not torch.equal(plain["A"], plain["B"])


def test_aligned_split_halves_facades(shared_data):
    root = shared_data / "facades_tiny"
    train = AlignedDataset(root, "train")
    assert train.layout == "split" and len(train) == 11
    a_path, b_path = train.items[0]
    assert a_path.name.replace("_A", "") == b_path.name.replace("_B", "")
    torch.manual_seed(1)
    item = train[0]
    check_image_tensor(item["A"])
    check_image_tensor(item["B"])
    assert item["path"] == str(a_path)
    test = AlignedDataset(root, "test", train=False)
    assert len(test) == 11 and all(a.name == b.name for a, b in test.items)
    ev = test[0]
    assert torch.equal(ev["B"], to_tensor(load_rgb(test.items[0][1])))  # 256x256 resized to 256: unchanged


def test_aligned_split_unpaired_file(tmp_path, shared_data, caplog):
    root = tmp_path / "facades"
    shutil.copytree(shared_data / "facades_tiny", root)
    (root / "trainB" / "3_B.jpg").unlink()
    with pytest.raises(InputError, match="3_A.jpg") as exc:
        AlignedDataset(root, "train")
    assert "no partner" in str(exc.value)
    with caplog.at_level(logging.WARNING, logger="coronetgan.data"):
        ds = AlignedDataset(root, "train", skip_bad=True)
    assert len(ds) == 10 and len(ds.skipped) == 1
    assert "1 item(s) skipped" in caplog.text


def test_cifar_npz(shared_data):
    npz = shared_data / "cifar10_partial" / "cifar10_partial.npz"
    train = CIFAR10Dataset(shared_data / "cifar10_partial")
    test = CIFAR10Dataset(npz, "test")
    assert len(train) == 5085 and len(test) == 1017 and train.kind == "npz"
    img, label = train[7]
    with np.load(npz) as z:
        x7, y7 = z["x_train"][7], int(z["y_train"][7])
    assert img.dtype == torch.float32 and img.shape == (3, 32, 32) and isinstance(label, int) and label == y7
    assert torch.equal(img, torch.from_numpy(x7).permute(2, 0, 1).float() / 127.5 - 1)
    assert -1.0 <= float(img.min()) and float(img.max()) <= 1.0
    x, y = next(iter(DataLoader(train, batch_size=8)))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.int64
    assert train.classes[0] == "airplane"


def _write_official_batches(folder: Path, shared_data: Path, per_batch: int = 6,
                            protocol: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Official layout: pickled dicts with bytes keys, b'data' (N, 3072) uint8 as R,G,B planes."""
    with np.load(shared_data / "cifar10_partial" / "cifar10_partial.npz") as z:
        x, y = z["x_train"][: per_batch * 6], z["y_train"][: per_batch * 6]
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        sl = slice(i * per_batch, (i + 1) * per_batch)
        d = {b"batch_label": name.encode(), b"labels": [int(v) for v in y[sl]],
             b"data": x[sl].transpose(0, 3, 1, 2).reshape(per_batch, 3072).copy(),
             b"filenames": [f"img_{j}.png".encode() for j in range(per_batch)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(d, fh, protocol=protocol)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                                      b"horse", b"ship", b"truck"], b"num_vis": 3072}, fh, protocol=protocol)
    return x, y


@pytest.mark.parametrize("protocol", [2, 5])  # the official files are protocol 2; a re-pickle is often 5
def test_cifar_official_batches(tmp_path, shared_data, protocol):
    x, y = _write_official_batches(tmp_path / "cifar-10-batches-py", shared_data, protocol=protocol)
    train = CIFAR10Dataset(tmp_path)  # parent folder of cifar-10-batches-py/
    assert train.kind == "batches" and len(train) == 30
    img, label = train[13]
    assert label == int(y[13])
    assert torch.equal(img, torch.from_numpy(x[13]).permute(2, 0, 1).float() / 127.5 - 1)
    test = CIFAR10Dataset(tmp_path / "cifar-10-batches-py", "test")
    assert len(test) == 6 and test[0][1] == int(y[30]) and test.classes[-1] == "truck"
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(InputError, match="data_batch_3"):
        CIFAR10Dataset(tmp_path, "train")


def test_cifar_bad_npz(tmp_path, shared_data):
    bad_keys = tmp_path / "keys.npz"
    np.savez(bad_keys, images=np.zeros((2, 32, 32, 3), np.uint8), labels=np.zeros(2, np.int64))
    with pytest.raises(InputError, match=r"keys\.npz.*missing key\(s\) x_train, y_train"):
        CIFAR10Dataset(bad_keys)
    chw = tmp_path / "chw.npz"
    np.savez(chw, x_train=np.zeros((2, 3, 32, 32), np.uint8), y_train=np.zeros(2, np.int64))
    with pytest.raises(InputError, match=r"chw\.npz: x_train has shape \(2, 3, 32, 32\); expected \(N, 32, 32, 3\)"):
        CIFAR10Dataset(chw)
    labels = tmp_path / "labels.npz"
    np.savez(labels, x_train=np.zeros((2, 32, 32, 3), np.uint8), y_train=np.zeros(3, np.int64))
    with pytest.raises(InputError, match="labels.npz"):
        CIFAR10Dataset(labels)
    not_zip = tmp_path / "text.npz"
    not_zip.write_text("hello")
    with pytest.raises(InputError, match="text.npz: not a readable npz"):
        CIFAR10Dataset(not_zip)
    evil = tmp_path / "evil" / "data_batch_1"
    evil.parent.mkdir()
    evil.write_bytes(pickle.dumps({b"data": Path("x"), b"labels": []}, protocol=2))
    with pytest.raises(InputError, match="refusing to load"):
        CIFAR10Dataset(evil.parent)


def test_pixel_codec_is_exact_both_ways_and_keeps_kind_and_layout():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)  # every byte, (1, 16, 16, 3)
    t = uint8_to_float(torch.from_numpy(x))
    assert t.shape == (1, 3, 16, 16) and t.dtype == torch.float32
    assert torch.equal(t, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1)
    a = uint8_to_float(x)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and np.array_equal(a, t.numpy())
    assert np.array_equal(float_to_uint8(a), x) and torch.equal(float_to_uint8(t), torch.from_numpy(x))
    chw = torch.from_numpy(x[0]).permute(2, 0, 1)  # CIFAR's channels-first uint8
    assert torch.equal(uint8_to_float(chw, channels_last=False), t[0])
    # out of range clamps; 0.0 -> 127.5 rounds half to even
    assert float_to_uint8(np.array([[[[-3.0]], [[1.5]], [[0.0]]]], np.float32)).tolist() == [[[[0, 255, 128]]]]


def test_list_images_recursive_and_min_count(tmp_path, shared_data):
    top = tmp_path / "imgs"
    (top / "sub").mkdir(parents=True)
    horses = horse_files(shared_data, 2)
    shutil.copy(horses[0], top / "b.jpg")
    shutil.copy(horses[1], top / "sub" / "a.JPG")
    (top / "notes.txt").write_text("x")
    assert list_images(top) == [top / "b.jpg", top / "sub" / "a.JPG"]
    assert list_images(top, recursive=False) == [top / "b.jpg"]
    with pytest.raises(InputError, match=r"FID folder .*imgs has too few image files \(it holds 1 image file\(s\) "
                                         r"and 1 other file\(s\), e.g. notes.txt\); expected at least 2 files"):
        list_images(top, "FID folder", min_count=2, recursive=False)


# ----------------------------------------------------------------------------------------------- bad input
def test_missing_and_empty_folders(tmp_path, shared_data):
    with pytest.raises(InputError, match=str(tmp_path / "nowhere")):
        UnalignedDataset(tmp_path / "nowhere")
    (tmp_path / "ds" / "trainA").mkdir(parents=True)
    (tmp_path / "ds" / "trainB").mkdir()
    shutil.copy(horse_files(shared_data, 1)[0], tmp_path / "ds" / "trainB")
    with pytest.raises(InputError, match=r"trainA has no image files \(it is empty\)"):
        UnalignedDataset(tmp_path / "ds")
    (tmp_path / "ds" / "trainA" / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="readme.txt"):
        UnalignedDataset(tmp_path / "ds")
    with pytest.raises(InputError, match=r"no aligned layout for phase 'val'; expected .*/val/ .*/valA/ and .*/valB/"):
        AlignedDataset(tmp_path / "ds", "val")
    with pytest.raises(InputError, match="load_size=200 < crop_size=256"):
        UnalignedDataset(shared_data / "horse2zebra", "test", load_size=200)
    with pytest.raises(InputError, match="direction='AB'"):
        AlignedDataset(shared_data / "facades_tiny", direction="AB")


def test_bad_files_raise_at_load_naming_the_file(mixed_domains):
    ds = UnalignedDataset(mixed_domains, serial=True)  # construction only lists names: cheap
    assert len(ds) == 9
    by_name = {p.name: i for i, p in enumerate(ds.paths_a)}
    with pytest.raises(InputError, match=r"notes\.jpg: not a readable image"):
        ds[by_name["notes.jpg"]]
    with pytest.raises(InputError, match=r"truncated\.jpg: not a readable image.*truncated"):
        ds[by_name["truncated.jpg"]]
    for name in ("tiny.png", "rgba.png", "palette.png", GRAY_ZEBRA):  # usable with a resize, made RGB
        check_image_tensor(ds[by_name[name]]["A"])
    assert Image.open(mixed_domains / "trainA" / "rgba.png").mode == "RGBA"
    assert Image.open(mixed_domains / "trainA" / "palette.png").mode == "P"
    # no resize: a 16x16 image cannot give a 256 crop
    crop = UnalignedDataset(mixed_domains, preprocess="crop", serial=True)
    with pytest.raises(InputError, match=r"tiny\.png: image is 16x16, smaller than crop_size=256"):
        crop[by_name["tiny.png"]]
    check_image_tensor(crop[0]["A"])


def test_validate_raises_up_front(mixed_domains):
    with pytest.raises(InputError, match=r"2 bad file\(s\) in .*trainA; first: .*notes\.jpg"):
        UnalignedDataset(mixed_domains, validate=True)


def test_skip_bad_counts_and_logs(mixed_domains, caplog):
    with caplog.at_level(logging.WARNING, logger="coronetgan.data"):
        ds = UnalignedDataset(mixed_domains, skip_bad=True, serial=True)
    assert len(ds) == 7 and len(ds.skipped) == 2
    assert {Path(p).name for p, _ in ds.skipped} == {"notes.jpg", "truncated.jpg"}
    assert "skipped 2 bad file(s)" in caplog.text
    assert all(r.name == "coronetgan.data" for r in caplog.records)
    for i in range(len(ds)):
        check_image_tensor(ds[i]["A"])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="coronetgan.data"):
        crop = UnalignedDataset(mixed_domains, skip_bad=True, preprocess="crop")
    assert len(crop) == 6 and "skipped 3 bad file(s)" in caplog.text  # the 16x16 one too


def test_aligned_bad_file_named(tmp_path, shared_data):
    (tmp_path / "train").mkdir()
    src = sorted((shared_data / "edges2shoes_subset" / "train").iterdir())[:2]
    shutil.copy(src[0], tmp_path / "train")
    raw = src[1].read_bytes()
    (tmp_path / "train" / "cut_AB.jpg").write_bytes(raw[: len(raw) // 2])
    ds = AlignedDataset(tmp_path)
    with pytest.raises(InputError, match=r"cut_AB\.jpg"):
        ds[0 if ds.items[0].name == "cut_AB.jpg" else 1]
    assert len(AlignedDataset(tmp_path, skip_bad=True)) == 1


# ----------------------------------------------------------------------------------------------- fetch
def test_fetch_from_mirror_verifies_and_skips(tmp_path, shared_data, caplog):
    dest = tmp_path / "data"
    with caplog.at_level(logging.INFO, logger="coronetgan.data"):
        out = fetch_dataset("facades", dest, mirror=shared_data)
    assert out == dest / "facades_tiny" and "SUBSET of facades" in caplog.text
    sums = {line.split()[1][2:]: line.split()[0]
            for line in (shared_data / "SHA256SUMS").read_text().splitlines() if "./facades_tiny/" in line}
    assert len(sums) == 44
    for rel, digest in sums.items():
        assert file_digest(dest / rel) == digest
    assert (out / MANIFEST).is_file()
    assert [p.name for p in dest.iterdir()] == ["facades_tiny"]  # no temp folders left
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="coronetgan.data"):
        assert fetch_dataset("facades", dest, mirror=shared_data) == out
    assert "already holds a verified copy" in caplog.text
    (out / "trainA" / "1_A.jpg").write_bytes(b"corrupt")
    fetch_dataset("facades", dest, mirror=shared_data)  # fails verification -> copied again
    assert file_digest(out / "trainA" / "1_A.jpg") == sums["facades_tiny/trainA/1_A.jpg"]
    assert AlignedDataset(out, "test").layout == "split"


def test_fetch_mirror_checksum_mismatch(tmp_path, shared_data):
    mirror = tmp_path / "mirror"
    shutil.copytree(shared_data / "facades_tiny", mirror / "facades_tiny")
    lines = [l for l in (shared_data / "SHA256SUMS").read_text().splitlines() if "./facades_tiny/" in l]
    (mirror / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    (mirror / "facades_tiny" / "testB" / "5.jpg").write_bytes(b"tampered")
    dest = tmp_path / "data"
    with pytest.raises(InputError, match=r"testB/5\.jpg: sha256 .* does not match"):
        fetch_dataset("facades", dest, mirror=mirror)
    assert list(dest.iterdir()) == []  # staged copy removed, nothing half-written


def test_fetch_env_mirror_cifar(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv(ENV_MIRROR, str(shared_data))
    out = fetch_dataset("cifar10", tmp_path / "data")
    assert out.name == "cifar10_partial"
    assert len(CIFAR10Dataset(out, "test")) == 1017
    assert resolve_dataset("cifar10", data_dir=tmp_path / "data") == out.resolve()


def test_fetch_offline_without_mirror_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_MIRROR, str(tmp_path / "no-such-mirror"))  # a stale env mirror is ignored
    calls = []

    def offline(url, timeout):
        calls.append((url, timeout))
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(download_mod, "open_url", lambda url, timeout, headers=None: offline(url, timeout))
    t0 = time.monotonic()
    with pytest.raises(InputError) as exc:
        fetch_dataset("horse2zebra", tmp_path / "data")
    assert time.monotonic() - t0 < 2.0
    msg = str(exc.value)
    assert "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip" in msg
    assert "--mirror" in msg and ENV_MIRROR in msg
    assert calls and calls[0][1] <= 10
    assert list((tmp_path / "data").iterdir()) == []


def test_fetch_official_archive_records_sha256(tmp_path, shared_data, monkeypatch):
    """The download path end to end, with the server replaced by an in-memory zip of real images."""
    monkeypatch.delenv(ENV_MIRROR, raising=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for domain in ("trainA", "trainB", "testA", "testB"):
            for p in horse_files(shared_data, 2, domain):
                zf.write(p, f"horse2zebra/{domain}/{p.name}")
    payload = buf.getvalue()

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

    monkeypatch.setattr(download_mod, "open_url", lambda url, timeout, headers=None: Response(payload))
    out = fetch_dataset("horse2zebra", tmp_path / "data")
    assert out == tmp_path / "data" / "horse2zebra"
    manifest = (out / MANIFEST).read_text()
    assert hashlib.sha256(payload).hexdigest() in manifest
    assert len(UnalignedDataset(out, "test")) == 2
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["horse2zebra"]
    # cifar10 has an official md5: a wrong archive is rejected
    monkeypatch.setattr(download_mod, "open_url", lambda url, timeout, headers=None: Response(payload))
    with pytest.raises(InputError, match="does not match the official c58f30108f718f92721af3b95e74349a"):
        fetch_dataset("cifar10", tmp_path / "data")


class _RangeServer:
    """An HTTP server on 127.0.0.1 serving one payload with ETag and byte ranges (If-Range honoured); it can cut
    the connection after ``cut`` bytes of the body, and records each request's Range header."""

    def __init__(self, payload: bytes):
        import http.server
        import threading

        self.payload, self.etag, self.cut, self.ranges, self.use_ranges = payload, '"v1"', None, [], True
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                asked = self.headers.get("Range")
                server.ranges.append(asked)
                start = 0
                if asked and server.use_ranges and self.headers.get("If-Range") == server.etag:
                    start = int(asked.split("=")[1].rstrip("-"))
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", server.etag)
                self.end_headers()
                if server.cut is not None:
                    body, server.cut = body[:server.cut], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/horse2zebra.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_a_dropped_download_continues_where_it_stopped(tmp_path):
    """A connection dropped part-way keeps the bytes received (the error says so) and the next try asks the
    server for the rest (Range + If-Range on the ETag): the file and its hashes are the whole payload's. A server
    whose file changed meanwhile (another ETag: it sends the whole file) or that ignores ranges is read again from
    the start. Real HTTP on 127.0.0.1."""
    payload = np.random.default_rng(0).bytes(3 << 20)   # three read blocks
    server = _RangeServer(payload)
    dest = tmp_path / ".horse2zebra.zip"
    try:
        server.cut = 1_500_000
        with pytest.raises(InputError, match=r"IncompleteRead.*1500000 bytes are kept in .*\.horse2zebra\.zip\.part; "
                                             "the same command again continues the download"):
            download_mod.download_file(server.url, dest, timeout=5)
        assert not dest.exists() and (tmp_path / ".horse2zebra.zip.part").stat().st_size == 1_500_000
        digests = download_mod.download_file(server.url, dest, timeout=5)
        assert server.ranges == [None, "bytes=1500000-"]
        assert dest.read_bytes() == payload and digests["sha256"] == hashlib.sha256(payload).hexdigest()
        assert digests["md5"] == hashlib.md5(payload).hexdigest()
        assert sorted(p.name for p in tmp_path.iterdir()) == [".horse2zebra.zip"]   # no .part, no .part.json

        # the file changed on the server between the tries: its whole new body, nothing of the old one
        dest.unlink()
        server.cut = 1_000_000
        with pytest.raises(InputError):
            download_mod.download_file(server.url, dest, timeout=5)
        server.payload, server.etag = payload[::-1], '"v2"'
        digests = download_mod.download_file(server.url, dest, timeout=5)
        assert server.ranges[-1] == "bytes=1000000-" and dest.read_bytes() == payload[::-1]
        assert digests["sha256"] == hashlib.sha256(payload[::-1]).hexdigest()

        # a server without ranges: 200 and the whole file again
        dest.unlink()
        server.cut, server.use_ranges = 700_000, False
        with pytest.raises(InputError):
            download_mod.download_file(server.url, dest, timeout=5)
        assert download_mod.download_file(server.url, dest, timeout=5)["sha256"] == \
            hashlib.sha256(payload[::-1]).hexdigest()
    finally:
        server.httpd.shutdown()


def test_fetch_refuses_foreign_folder_and_unknown_name(tmp_path, shared_data):
    (tmp_path / "data" / "facades_tiny").mkdir(parents=True)
    with pytest.raises(InputError, match="was not written by fetch"):
        fetch_dataset("facades", tmp_path / "data", mirror=shared_data)
    assert fetch_dataset("facades", tmp_path / "data", mirror=shared_data, force=True).is_dir()
    with pytest.raises(InputError, match="unknown dataset 'mnist'"):
        fetch_dataset("mnist", tmp_path / "data", mirror=shared_data)
    with pytest.raises(InputError, match="holds none of summer2winter_yosemite"):
        fetch_dataset("summer2winter_yosemite", tmp_path / "data", mirror=shared_data)


def test_resolve_dataset(tmp_path, shared_data, monkeypatch):
    monkeypatch.delenv(ENV_MIRROR, raising=False)
    assert resolve_dataset("horse2zebra", mirror=shared_data, data_dir=tmp_path) == (shared_data / "horse2zebra").resolve()
    assert resolve_dataset("edges2shoes", mirror=shared_data, data_dir=tmp_path).name == "edges2shoes_subset"
    assert resolve_dataset(str(shared_data / "facades_tiny")) == (shared_data / "facades_tiny").resolve()
    with pytest.raises(InputError, match="does not exist"):
        resolve_dataset(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="python -m compress.data fetch horse2zebra"):
        resolve_dataset("horse2zebra", data_dir=tmp_path)
    ds = AlignedDataset(resolve_dataset("facades", mirror=shared_data, data_dir=tmp_path), "test", train=False)
    assert isinstance(ds, AlignedDataset) and len(ds) == 11
    cifar = resolve_dataset("cifar10", mirror=shared_data, data_dir=tmp_path)
    assert cifar == (shared_data / "cifar10_partial").resolve()  # the mirror's partial set, as logged
    image, label = CIFAR10Dataset(cifar, "test")[0]
    assert tuple(image.shape) == (3, 32, 32) and -1 <= float(image.min()) <= float(image.max()) <= 1


def test_cli(tmp_path, shared_data, capsys):
    assert main(["fetch", "facades", "--dest", str(tmp_path / "d"), "--mirror", str(shared_data)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "d" / "facades_tiny")
    assert main(["fetch", "nope", "--dest", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset 'nope'") and "Traceback" not in err
    proc = subprocess.run([sys.executable, "-m", "compress.data", "fetch", "edges2shoes", "--dest",
                           str(tmp_path / "m"), "--mirror", str(shared_data)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "m" / "edges2shoes_subset") and "SUBSET" in proc.stderr
    assert len(list((tmp_path / "m" / "edges2shoes_subset" / "val").iterdir())) == 20
    proc = subprocess.run([sys.executable, "-m", "compress.data", "fetch", "facades", "--dest", str(tmp_path),
                           "--mirror", str(tmp_path / "nope")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "nope is not a folder" in proc.stderr and "Traceback" not in proc.stderr


def test_links_to_folders_are_followed_once(tmp_path, shared_data):
    """A link back to a folder above (``loop -> .``) listed every image again at each depth (205 for 5), two
    such links never ended; a split linked from elsewhere in a mirror was left out of the copy (or reported as
    missing against SHA256SUMS)."""
    import os

    from compress.data.images import list_images
    from compress.data.mirror import copy_verified

    a = tmp_path / "h2z" / "trainA"
    a.mkdir(parents=True)
    for p in horse_files(shared_data, 5, "trainA"):
        shutil.copy(p, a / p.name)
    os.symlink(".", a / "loop")
    os.symlink(".", a / "loop2")
    assert len(list_images(a)) == 5
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    os.symlink(a, mirror / "trainA")
    digests = copy_verified(mirror, tmp_path / "copy", None)
    assert sorted(digests) == sorted(f"trainA/{p.name}" for p in a.iterdir() if p.is_file())


def test_fid_reads_images_as_training_does(tmp_path, shared_data):
    """16-bit grey PNGs: the FID reader clipped them to white (``convert("RGB")``), training scales them; an image
    past PIL's decompression limit is one named error, not a DecompressionBombError traceback."""
    from compress.evaluate.features import _read_rgb

    photo = horse_files(shared_data, 1, "testA")[0]
    grey = np.asarray(Image.open(photo).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey.astype(np.uint16)).save(tmp_path / "g16.png")
    Image.open(photo).convert("L").save(tmp_path / "g8.png")
    np.testing.assert_array_equal(_read_rgb(tmp_path / "g16.png"), _read_rgb(tmp_path / "g8.png"))
    bomb = tmp_path / "bomb.png"
    Image.new("L", (1, 1)).save(bomb)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 0.1   # every image is now past twice the limit: PIL raises DecompressionBombError
        with pytest.raises(InputError, match=r"bomb\.png: not a readable image \(DecompressionBombError"):
            _read_rgb(bomb)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def test_an_image_too_small_is_named_with_what_would_take_it():
    """crop without resize: the crop size and the way out; a resizing preprocess: only an empty side (half of a
    1-pixel-wide A|B pair) is refused, and the message no longer tells to use the preprocess already in use."""
    from compress.data.transforms import Preprocess, check_size

    with pytest.raises(InputError, match=r"a\.png: image is 100x100, smaller than crop_size=256 .*use "
                                         r"preprocess='resize_and_crop'"):
        check_size("a.png", (100, 100), Preprocess(preprocess="crop", crop_size=256))
    check_size("a.png", (1, 1), Preprocess(preprocess="resize_and_crop", crop_size=256))
    with pytest.raises(InputError, match=r"a\.png: image is 0x8; expected at least 1x1 pixels") as info:
        check_size("a.png", (0, 8), Preprocess(preprocess="resize_and_crop", crop_size=256))
    assert "use preprocess" not in str(info.value)
