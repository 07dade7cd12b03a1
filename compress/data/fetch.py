"""``fetch_dataset`` (official source or local mirror, verified, atomic), ``resolve_dataset`` and the CLI.

CLI: ``python -m compress.data fetch NAME [--dest data/] [--mirror DIR] [--force] [--timeout S]``,
``python -m compress.data resolve NAME_OR_PATH``, ``python -m compress.data list``.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

from compress.data.catalog import DATASETS, DatasetSpec, find_spec, get_spec
from compress.data.checksums import (MANIFEST, file_digest, folder_files, read_sha256sums, verify_manifest,
                                     write_manifest)
from compress.data.download import CONNECT_TIMEOUT, download_file, extract_archive
from compress.data.mirror import SUMS, copy_verified, find_in_mirror, mirror_sums
from compress.cli_errors import run_cli
from compress.errors import InputError
from compress.io import replace_dir

LOGGER = logging.getLogger("coronetgan.data")
ENV_MIRROR = "CORONETGAN_DATA_MIRROR"
#: The checkout's neighbour folder of real datasets (README, "Data"), used when neither a flag nor $ENV_MIRROR names one.
SHARED_MIRROR = Path(__file__).resolve().parents[3] / "shared" / "data"


def mirror_root(flag: str | os.PathLike | None = None) -> Path:
    """The real-data mirror a command reads: its flag's value, else ``$CORONETGAN_DATA_MIRROR``, else
    :data:`SHARED_MIRROR` (``../shared/data`` beside the checkout). Not checked here."""
    return Path(flag or os.environ.get(ENV_MIRROR) or SHARED_MIRROR)
DEFAULT_DEST = Path("data")


def _mirror_hint(name: str) -> str:
    return (f" No usable mirror was given: pass --mirror DIR (fetch_dataset(..., mirror=DIR)) or set "
            f"${ENV_MIRROR} to a folder holding {name}/ (or its archive)")


@contextlib.contextmanager
def _staging(dest: Path, name: str):
    """A temp folder beside the final one (same file system, so the final rename is atomic)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=dest))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _commit(tmp: Path, final: Path) -> Path:
    """Rename ``tmp`` to ``final``; an older ``final`` (failed verification / --force) is moved aside first."""
    return replace_dir(tmp, final)


def _check_existing(final: Path, force: bool) -> bool:
    """True if ``final`` already holds a verified copy. Raises when it holds something fetch did not write."""
    if not final.exists():
        return False
    if not (final / MANIFEST).is_file() and not force:
        raise InputError(f"{final} exists but was not written by fetch (no {MANIFEST}); remove it, pass "
                         "--force to replace it, or choose another --dest")
    if force:
        return False
    ok, why = verify_manifest(final)
    if ok:
        LOGGER.info("%s already holds a verified copy: skipping", final)
        return True
    LOGGER.warning("%s failed verification (%s): fetching it again", final, why)
    return False


def _install_archive(spec: DatasetSpec, archive: Path, dest: Path, source: str, digests: dict[str, str]) -> Path:
    if spec.md5 and digests["md5"] != spec.md5:
        raise InputError(f"{source}: md5 {digests['md5']} does not match the official {spec.md5}; the archive "
                         "is corrupt or not the official file (delete it and fetch again)")
    final = dest / spec.name
    with _staging(dest, spec.name) as tmp:
        top = extract_archive(archive, tmp / "x")
        files = {p.as_posix(): file_digest(top / p) for p in folder_files(top)}
        write_manifest(top, spec.name, source, files, archive=spec.archive, archive_sha256=digests["sha256"],
                       archive_md5=digests["md5"], official_md5=spec.md5)
        LOGGER.info("%s: %d files extracted, sha256 recorded in %s", spec.name, len(files), MANIFEST)
        return _commit(top, final)


def _from_mirror(spec: DatasetSpec, kind: str, src: Path, dest: Path, mirror: Path, force: bool) -> Path:
    if kind == "archive":
        final = dest / spec.name
        if _check_existing(final, force):
            return final
        sums = read_sha256sums(mirror / SUMS) if (mirror / SUMS).is_file() else {}
        digests = {"sha256": file_digest(src), "md5": file_digest(src, "md5")}
        if src.name in sums and sums[src.name] != digests["sha256"]:
            raise InputError(f"{src}: sha256 {digests['sha256']} does not match {sums[src.name]} in {mirror / SUMS}")
        return _install_archive(spec, src, dest, str(src), digests)
    final = dest / src.name
    if src.name in spec.subsets:
        LOGGER.warning("mirror %s holds only %s, a SUBSET of %s: using it", mirror, src.name, spec.name)
    if _check_existing(final, force):
        return final
    sums = mirror_sums(mirror, src.name)
    if sums is None:
        LOGGER.warning("mirror %s has no %s for %s: copying without verification (sha256 recorded)",
                       mirror, SUMS, src.name)
    with _staging(dest, src.name) as tmp:
        digests = copy_verified(src, tmp / src.name, sums)
        write_manifest(tmp / src.name, spec.name, str(src), digests, subset=src.name in spec.subsets,
                       verified_against=(str(mirror / SUMS) if sums is not None else None))
        LOGGER.info("%s: %d files copied from %s%s", spec.name, len(digests), src,
                    " and verified against SHA256SUMS" if sums is not None else "")
        return _commit(tmp / src.name, final)


def fetch_dataset(name: str, dest: str | os.PathLike = DEFAULT_DEST, mirror: str | os.PathLike | None = None,
                  force: bool = False, timeout: float = CONNECT_TIMEOUT) -> Path:
    """Get dataset ``name`` into ``dest`` and return its folder (e.g. ``dest/horse2zebra``).

    Source order: ``mirror`` (argument, else ``$CORONETGAN_DATA_MIRROR``): a full-dataset folder, the official
    archive file, then a known subset (logged as such; the copy keeps the subset's name, e.g.
    ``dest/facades_tiny``); else the official URL (:mod:`compress.data.catalog`). Mirror copies are verified
    against the mirror's ``SHA256SUMS``; CIFAR-10 archives against the official md5; every fetched folder gets
    a manifest (``.coronetgan-fetch.json``) of sha256 per file. Copies are staged in a temp folder in ``dest``
    and renamed into place. A destination that already verifies against its manifest is kept (skip).

    An explicit ``mirror`` that is missing or lacks the dataset is an error; an environment mirror that is
    missing or lacks it falls back to the official URL (logged).

    Raises:
        InputError: unknown name; explicit mirror without the dataset; checksum mismatch; offline with no
            mirror (within ``timeout`` seconds; names the URL, ``--mirror`` and ``$CORONETGAN_DATA_MIRROR``);
            ``dest/NAME`` exists but was not written by fetch (unless ``force``).
    """
    spec = get_spec(name)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    explicit = mirror is not None
    mirror_dir = Path(mirror) if explicit else (Path(os.environ[ENV_MIRROR]) if os.environ.get(ENV_MIRROR) else None)
    if mirror_dir is not None and not explicit and not mirror_dir.is_dir():
        LOGGER.warning("$%s=%s is not a folder: ignoring it", ENV_MIRROR, mirror_dir)
        mirror_dir = None
    if mirror_dir is not None:
        found = find_in_mirror(spec, mirror_dir)
        if found:
            return _from_mirror(spec, *found, dest, mirror_dir, force)
        wanted = ", ".join([*spec.folders, spec.archive])
        if explicit:
            raise InputError(f"mirror {mirror_dir} holds none of {wanted} for dataset {spec.name!r}")
        LOGGER.info("mirror %s ($%s) holds none of %s: trying %s", mirror_dir, ENV_MIRROR, wanted, spec.url)
    final = dest / spec.name
    if _check_existing(final, force):
        return final
    # the complete archive; while it downloads, download_file keeps the bytes received in .<archive>.part, which
    # survive a failed or interrupted try so that the next one continues
    archive = dest / f".{spec.archive}"
    LOGGER.info("downloading %s from %s", spec.name, spec.url)
    try:
        digests = download_file(spec.url, archive, timeout, hint=_mirror_hint(spec.name))
        return _install_archive(spec, archive, dest, spec.url, digests)
    finally:
        archive.unlink(missing_ok=True)


def resolve_dataset(name_or_path: str | os.PathLike, mirror: str | os.PathLike | None = None,
                    data_dir: str | os.PathLike = DEFAULT_DEST) -> Path:
    """A local folder (or CIFAR npz file) for a dataset name or a path.

    An existing path is returned as is (absolute). A dataset name (``horse2zebra``, ``facades``...) or a
    folder name of one (``facades_tiny``) is looked up in ``data_dir`` (a previous fetch), then in ``mirror``
    or ``$CORONETGAN_DATA_MIRROR``; full datasets before subsets (a subset is logged).

    Raises:
        InputError: a path that does not exist, or a name found nowhere (says how to fetch it).
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path.resolve()
    spec = find_spec(text)
    if spec is None:
        if os.sep in text or text.startswith(".") or "/" in text:
            raise InputError(f"dataset folder {path} does not exist")
        raise InputError(f"{text!r} is neither an existing path nor a known dataset ({', '.join(DATASETS)})")
    names = list(spec.folders) if text == spec.name else [text]  # an alias such as facades_tiny: only it
    mirror_dir = mirror if mirror is not None else os.environ.get(ENV_MIRROR)
    roots = [Path(data_dir)] + ([Path(mirror_dir)] if mirror_dir else [])
    for name in names:
        for root in roots:
            cand = root / name
            if cand.exists():
                if name in spec.subsets:
                    LOGGER.warning("using %s, a SUBSET of %s", cand, spec.name)
                return cand.resolve()
    raise InputError(f"dataset {text!r} not found in {' or '.join(str(r) for r in roots)} (looked for "
                     f"{', '.join(names)}); fetch it with `python -m compress.data fetch {spec.name} --dest "
                     f"{data_dir}`, or name a mirror with --mirror DIR or ${ENV_MIRROR}")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``python -m compress.data``, ``coronetgan-data``): exit 2 on bad input, one line for OS
    errors and Ctrl-C (exit 130), no traceback (:func:`compress.cli_errors.run_cli`)."""
    parser = argparse.ArgumentParser(prog="python -m compress.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="get a dataset from a mirror or its official source, verified")
    f.add_argument("name", help=f"one of {', '.join(DATASETS)}")
    f.add_argument("--dest", default=str(DEFAULT_DEST), help="destination folder (default: data/)")
    f.add_argument("--mirror", default=None, help=f"local mirror folder (default: ${ENV_MIRROR})")
    f.add_argument("--force", action="store_true", help="replace an existing destination folder")
    f.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT, help="network timeout in seconds")
    r = sub.add_parser("resolve", help="print the local folder for a dataset name or path")
    r.add_argument("name")
    r.add_argument("--mirror", default=None)
    r.add_argument("--data-dir", default=str(DEFAULT_DEST))
    sub.add_parser("list", help="list known datasets and their sources")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def body() -> int:
        if args.cmd == "fetch" and not (math.isfinite(args.timeout) and args.timeout > 0):
            raise InputError(f"--timeout {args.timeout:g}: expected a number of seconds > 0")
        if args.cmd == "fetch":
            dest = Path(args.dest)
            if dest.exists() and not dest.is_dir():
                raise InputError(f"--dest {dest}: a file; expected a folder (created when missing)")
            print(fetch_dataset(args.name, args.dest, args.mirror, force=args.force, timeout=args.timeout))
        elif args.cmd == "resolve":
            print(resolve_dataset(args.name, args.mirror, args.data_dir))
        else:
            for spec in DATASETS.values():
                print(f"{spec.name:24s} {spec.kind:10s} {spec.url}  mirror folders: {', '.join(spec.folders)}")
        return 0

    return run_cli(body)
