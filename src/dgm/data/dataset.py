"""The in-memory dataset every loader returns and the trainer consumes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from dgm.core.errors import DataError

# A stochastic per-batch transform, e.g. dynamic binarisation: (x, generator) -> x.
BatchTransform = Callable[[Tensor, torch.Generator | None], Tensor]


@dataclass(frozen=True)
class Dataset:
    """One split of a dataset, held in memory as tensors.

    ``x`` holds raw values (DESIGN.md §4): float32 0./1. for binary data, 0..255 for 8-bit images,
    0..16 for digits, real numbers for the 2-D toys, ``long`` token ids ``(N, T)`` for text.
    ``transform`` is applied to every batch drawn with :meth:`get_batch` / :meth:`batches`; it is how
    dynamic binarisation gives a fresh Bernoulli draw each time an example is seen.
    """

    name: str
    split: str
    x: Tensor
    y: Tensor | None = None
    support: str = "real"
    kind: str = "vector"  # "image" | "points" | "text" | "vector"
    image_shape: tuple[int, ...] | None = None  # (C, H, W) whatever the layout of x
    num_classes: int | None = None
    vocab: str | None = None
    binarization: str | None = None  # "static" | "dynamic" | None
    transform: BatchTransform | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.y is not None and len(self.y) != len(self.x):
            raise DataError(f"{self.name}: {len(self.x)} examples but {len(self.y)} labels")

    # ------------------------------------------------------------------ views
    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def num_dims(self) -> int:
        return math.prod(self.event_shape)

    def __len__(self) -> int:
        return len(self.x)

    def flat(self) -> Dataset:
        """The same data with each example flattened to a vector ``(N, D)``."""
        return replace(self, x=self.x.reshape(len(self.x), -1))

    def as_images(self) -> Dataset:
        """The same data shaped ``(N, C, H, W)``; only for image data."""
        if self.image_shape is None:
            raise DataError(f"{self.name} is not image data; it has no (C, H, W) shape")
        return replace(self, x=self.x.reshape(len(self.x), *self.image_shape))

    def reshape_to(self, event_shape: tuple[int, ...]) -> Dataset:
        """The same data with each example reshaped to ``event_shape`` (same number of values)."""
        event_shape = tuple(event_shape)
        if event_shape == self.event_shape:
            return self
        if math.prod(event_shape) != self.num_dims:
            raise DataError(
                f"{self.name} examples have shape {self.event_shape} ({self.num_dims} values); "
                f"cannot reshape to {event_shape}"
            )
        return replace(self, x=self.x.reshape(len(self.x), *event_shape))

    def take(self, n: int) -> Dataset:
        """The first ``n`` examples (for quick runs and tests)."""
        return replace(self, x=self.x[:n], y=None if self.y is None else self.y[:n])

    # ---------------------------------------------------------------- batches
    def get_batch(
        self, index: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        x = self.x[index]
        if self.transform is not None:
            x = self.transform(x, generator)
        return x, (None if self.y is None else self.y[index])

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Yield ``(x, y)`` batches; ``y`` is None for unlabelled data."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            yield self.get_batch(order[start : start + batch_size], generator)

    def describe(self) -> dict:
        """Plain-data summary stored beside results, so every figure names its data."""
        return {
            "name": self.name,
            "split": self.split,
            "num_examples": len(self),
            "event_shape": list(self.event_shape),
            "support": self.support,
            "kind": self.kind,
            "binarization": self.binarization,
        }
