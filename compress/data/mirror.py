"""Local mirror: find a dataset in it and copy it with sha256 verification against ``SHA256SUMS``."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from tqdm import tqdm

from compress.data.catalog import DatasetSpec
from compress.data.checksums import CHUNK, MANIFEST, read_sha256sums
from compress.data.images import walk_files
from compress.errors import InputError

LOGGER = logging.getLogger("coronetgan.data")
SUMS = "SHA256SUMS"


def find_in_mirror(spec: DatasetSpec, mirror: Path) -> tuple[str, Path] | None:
    """Where ``mirror`` holds ``spec``: ``("folder", path)`` or ``("archive", path)``, else None.

    Order: full-dataset folders, then the official archive file (e.g. ``facades.tar.gz``), then subsets.

    Raises:
        InputError: ``mirror`` is not a folder.
    """
    if not mirror.is_dir():
        raise InputError(f"mirror {mirror} is not a folder (expected a folder holding dataset folders such as "
                         f"{', '.join(spec.folders)})")
    full = [n for n in spec.folders if n not in spec.subsets]
    for name in full:
        if (mirror / name).is_dir():
            return "folder", mirror / name
    if (mirror / spec.archive).is_file():
        return "archive", mirror / spec.archive
    for name in spec.subsets:
        if (mirror / name).is_dir():
            return "folder", mirror / name
    return None


def mirror_sums(mirror: Path, folder_name: str) -> dict[str, str] | None:
    """Expected sha256 of the files of ``mirror/folder_name`` (paths relative to it) from
    ``mirror/SHA256SUMS`` or ``mirror/folder_name/SHA256SUMS``; None when the mirror publishes none."""
    own = mirror / folder_name / SUMS
    if own.is_file():
        return read_sha256sums(own)
    top = mirror / SUMS
    if top.is_file():
        prefix = folder_name.rstrip("/") + "/"
        sums = {k[len(prefix):]: v for k, v in read_sha256sums(top).items() if k.startswith(prefix)}
        if sums:
            return sums
        LOGGER.warning("%s lists no file under %s/: copying without verification", top, folder_name)
    return None


def copy_verified(src: Path, dst: Path, sums: dict[str, str] | None) -> dict[str, str]:
    """Copy every file of ``src`` into ``dst`` (tqdm over bytes), hashing as it goes; return ``{rel: sha256}``.

    Raises:
        InputError: a copied file whose sha256 differs from ``sums`` or a file listed in ``sums`` that
            ``src`` lacks (the message names the file and both digests).
    """
    # links to folders are followed (a split linked from elsewhere is part of the dataset), each folder once
    files = sorted(p for p in walk_files(src) if p.is_file() and p.name not in (MANIFEST, SUMS))
    total = sum(p.stat().st_size for p in files)
    digests = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"copy {src.name}") as bar:
        for path in files:
            rel = path.relative_to(src).as_posix()
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            with open(path, "rb") as fin, open(target, "wb") as fout:
                for block in iter(lambda: fin.read(CHUNK), b""):
                    fout.write(block)
                    h.update(block)
                    bar.update(len(block))
            digests[rel] = h.hexdigest()
            if sums is not None and rel in sums and sums[rel] != digests[rel]:
                raise InputError(f"{path}: sha256 {digests[rel]} does not match {sums[rel]} listed in the "
                                 f"mirror's {SUMS}; the mirror copy is corrupt or modified")
    if sums is not None:
        missing = sorted(set(sums) - set(digests))
        if missing:
            raise InputError(f"mirror folder {src} lacks {len(missing)} file(s) listed in its {SUMS}, "
                             f"e.g. {', '.join(missing[:3])}")
        unlisted = sorted(set(digests) - set(sums))
        if unlisted:
            LOGGER.warning("%s: %d file(s) not listed in %s were copied unverified, e.g. %s",
                           src, len(unlisted), SUMS, ", ".join(unlisted[:3]))
    return digests
