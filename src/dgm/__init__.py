"""dgm: deep generative models with one interface.

>>> import dgm
>>> model = dgm.build("independent", event_shape=(64,))
>>> train, valid = dgm.data.load("digits-binary", "train"), dgm.data.load("digits-binary", "valid")
>>> dgm.train(model, train, valid, out="runs/x")
>>> dgm.load("runs/x").log_prob(valid.x)
"""

__version__ = "0.1.0"

import os

# PyTorch backs CPU tensors of 2 MB and more with transparent huge pages when this is set. A training step
# of a wide network allocates its weight-sized temporaries afresh (cast weights, gradients), and with 4 kB
# pages zero-filling them on first touch was a third of a step: MADE 2×8000 in bf16, one thread, 676 ms
# without against 408–475 ms with it. It must be set before the first large allocation, so here; set it to
# 0 to opt out. Only takes effect where the kernel allows huge pages (madvise or always).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from dgm import data
from dgm.core import (
    CheckpointError,
    ConfigError,
    DataError,
    DgmError,
    GenerativeModel,
    build,
    list_models,
    load,
    register,
)
from dgm.evaluation import bits_per_dim, evaluate
from dgm.training import TrainingError, TrainingInterrupted, train

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DgmError",
    "GenerativeModel",
    "TrainingError",
    "TrainingInterrupted",
    "__version__",
    "bits_per_dim",
    "build",
    "data",
    "evaluate",
    "list_models",
    "load",
    "register",
    "train",
]
