import os
from pathlib import Path

import pytest
import torch

# Test models are tiny: one intra-op thread avoids thread start-up and spin-waiting costs that dominate
# small ops (and that grow many-fold when other processes share the cores).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_seed(request):
    # Each test draws its own random inputs; seeding per test keeps failures reproducible: a failing
    # test's report names its seed, and DGM_TEST_SEED=<seed> replays it.
    forced = os.environ.get("DGM_TEST_SEED")
    seed = int(forced) if forced else int.from_bytes(os.urandom(2), "little")
    request.node.user_properties.append(("torch_seed", seed))
    torch.manual_seed(seed)
    yield


@pytest.fixture(autouse=True)
def _cpu_for_auto(monkeypatch):
    # Where a GPU is present, device "auto" trains there and leaves the model there; the tests compare
    # trained models with CPU tensors and CPU-seeded runs, so "auto" means the CPU in them. The GPU path
    # has its own tests (named *cuda*); DGM_TEST_DEVICE=auto runs the whole suite with torch's choice.
    if not torch.cuda.is_available() or os.environ.get("DGM_TEST_DEVICE") == "auto":
        return
    import dgm.training
    import dgm.training.trainer as trainer

    original = trainer.resolve_device

    def resolve(device):
        return original("cpu" if device == "auto" else device)

    monkeypatch.setattr(trainer, "resolve_device", resolve)
    monkeypatch.setattr(dgm.training, "resolve_device", resolve)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    seed = dict(item.user_properties).get("torch_seed")
    if report.failed and seed is not None:
        report.sections.append(("torch seed", f"replay with DGM_TEST_SEED={seed} (tests/conftest.py)"))


@pytest.fixture
def real_data_dir() -> Path:
    """The shared real-data directory (DGM_DATA_DIR); tests needing it skip when it is absent."""
    d = os.environ.get("DGM_DATA_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("DGM_DATA_DIR is not set to the shared data directory")
    return Path(d)
