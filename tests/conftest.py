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


def pytest_collection_modifyitems(config, items):
    """Mark every test that reads the real-image mirror ``real_data`` (directly or through a fixture), so that
    ``make test-fast`` (``-m "not slow and not real_data"``) runs on synthetic inputs only."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_data)
