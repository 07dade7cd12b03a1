"""Known datasets: official sources, checksums, and the folder names a local mirror may use."""
from __future__ import annotations

from dataclasses import dataclass

from compress.errors import InputError

CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"  # CycleGAN repo download script
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"  # pix2pix repo download script
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # published on https://www.cs.toronto.edu/~kriz/cifar.html


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: ``kind`` is ``unaligned`` (CycleGAN), ``aligned`` (Pix2Pix) or ``cifar10``.

    ``folders`` are the folder names accepted in a mirror or a data dir, full dataset first, then known
    subsets (listed again in ``subsets``). ``md5`` is the official archive checksum where one is published
    (the Berkeley archives have none: their sha256 is recorded in the fetch manifest instead).
    """

    name: str
    kind: str
    url: str
    folders: tuple[str, ...]
    subsets: tuple[str, ...] = ()
    md5: str | None = None

    @property
    def archive(self) -> str:
        """File name of the official archive (last URL component)."""
        return self.url.rsplit("/", 1)[-1]


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("horse2zebra", "unaligned", CYCLEGAN_URL.format(name="horse2zebra"), ("horse2zebra",)),
    DatasetSpec("summer2winter_yosemite", "unaligned", CYCLEGAN_URL.format(name="summer2winter_yosemite"),
                ("summer2winter_yosemite",)),
    DatasetSpec("edges2shoes", "aligned", PIX2PIX_URL.format(name="edges2shoes"),
                ("edges2shoes", "edges2shoes_subset"), subsets=("edges2shoes_subset",)),
    DatasetSpec("facades", "aligned", PIX2PIX_URL.format(name="facades"),
                ("facades", "facades_tiny"), subsets=("facades_tiny",)),
    DatasetSpec("cifar10", "cifar10", CIFAR10_URL, ("cifar10", "cifar-10-batches-py", "cifar10_partial"),
                subsets=("cifar10_partial",), md5=CIFAR10_MD5),
)}


def get_spec(name: str) -> DatasetSpec:
    """The spec for a dataset name or one of its folder names (e.g. ``facades_tiny`` -> facades).

    Raises:
        InputError: unknown name (the message lists the known ones).
    """
    if name in DATASETS:
        return DATASETS[name]
    for spec in DATASETS.values():
        if name in spec.folders:
            return spec
    raise InputError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def find_spec(name: str) -> DatasetSpec | None:
    """Like :func:`get_spec` but returns None for an unknown name."""
    try:
        return get_spec(name)
    except InputError:
        return None
