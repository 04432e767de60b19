"""The training loop shared by every model."""

from dgm.training.trainer import (
    Trainer,
    TrainingError,
    TrainingInterrupted,
    TrainOptions,
    TrainResult,
    resolve_device,
    seed_everything,
    train,
)

__all__ = [
    "TrainOptions",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "resolve_device",
    "seed_everything",
    "train",
]
