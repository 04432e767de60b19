"""dgm: deep generative models with one interface.

>>> import dgm
>>> model = dgm.build("independent", event_shape=(64,))
>>> train, valid = dgm.data.load("digits-binary", "train"), dgm.data.load("digits-binary", "valid")
>>> dgm.train(model, train, valid, out="runs/x")
>>> dgm.load("runs/x").log_prob(valid.x)
"""

__version__ = "0.1.0"

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
