import os
from pathlib import Path

import pytest
import torch

# Test models are tiny: one intra-op thread avoids thread start-up and spin-waiting costs that dominate
# small ops (and that grow many-fold when other processes share the cores).
torch.set_num_threads(1)


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
