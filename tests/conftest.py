import os
from pathlib import Path

import pytest

# Tests are offline: hub look-ups fail fast instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real shared datasets (../shared/data beside the checkout, as in CI)."""
    assert (SHARED_DATA / "banking77" / "train.parquet").is_file(), f"shared data missing at {SHARED_DATA}"
    return SHARED_DATA
