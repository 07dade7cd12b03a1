"""Shared fixtures: the real-data mirror beside the checkout (``../shared/data``)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _mirror() -> Path:
    env = os.environ.get("CORONETGAN_DATA_MIRROR")
    return Path(env) if env else (REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real benchmark images (``../shared/data`` or ``$CORONETGAN_DATA_MIRROR``)."""
    root = _mirror()
    if not (root / "horse2zebra").is_dir():
        pytest.fail(f"real-data mirror not found at {root}: set CORONETGAN_DATA_MIRROR to the folder "
                    "holding horse2zebra/, edges2shoes_subset/, facades_tiny/ and cifar10_partial/")
    return root
