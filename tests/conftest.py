import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _fresh_seed():
    # Each test draws its own random inputs; seeding per test keeps failures reproducible.
    torch.manual_seed(int.from_bytes(os.urandom(2), "little"))
    yield


@pytest.fixture
def real_data_dir() -> Path:
    """The shared real-data directory (DGM_DATA_DIR); tests needing it skip when it is absent."""
    d = os.environ.get("DGM_DATA_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("DGM_DATA_DIR is not set to the shared data directory")
    return Path(d)
