"""2-D toy densities, the usual test bed for flows (FFJORD's ``toy_data.py``, Grathwohl et al. 2019).

Every point is an i.i.d. draw (mixture components are chosen at random, not in fixed proportions).
Each (density, split) pair has its own fixed seed, so train / valid / test are fixed, distinct draws.
All sets are roughly centred with most mass inside [-4, 4]^2:

- ``moons``: two interleaving half circles (as scikit-learn's ``make_moons``) with Gaussian noise
  σ = 0.05, then FFJORD's map ``2x + (-1, -0.2)``;
- ``circles``: circles of radius 1 and 0.5 (``make_circles`` with ``factor=0.5``), noise σ = 0.08,
  scaled by 3 as in FFJORD;
- ``8gaussians``: 8 Gaussians of σ = 0.5 centred on a circle of radius 4, all divided by 1.414;
- ``checkerboard``: uniform on the 8 black squares of a 4x4 board of side 2 covering [-4, 4]^2;
- ``pinwheel``: 5 arms, radial σ = 0.3, tangential σ = 0.1, rate 0.25 (Johnson et al. 2016), x2;
- ``spirals``: FFJORD's ``2spirals``, two interleaved spirals of 1.5 turns, noise σ = 0.1.
"""

from __future__ import annotations

import numpy as np
import torch

from dgm.core.errors import ConfigError
from dgm.data.dataset import Dataset

SPLIT_SIZES = {"train": 24000, "valid": 3000, "test": 3000}
_SPLIT_SEEDS = {"train": 0, "valid": 1, "test": 2}


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    t = rng.uniform(0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
    x = np.where((rng.random(n) < 0.5)[:, None], upper, lower) + 0.05 * rng.standard_normal((n, 2))
    return 2 * x + np.array([-1.0, -0.2])


def _circles(rng: np.random.Generator, n: int) -> np.ndarray:
    t = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(rng.random(n) < 0.5, 1.0, 0.5)
    x = radius[:, None] * np.stack([np.cos(t), np.sin(t)], 1) + 0.08 * rng.standard_normal((n, 2))
    return 3 * x


def _8gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    angles = 2 * np.pi * rng.integers(8, size=n) / 8
    centers = 4 * np.stack([np.cos(angles), np.sin(angles)], 1)
    return (centers + 0.5 * rng.standard_normal((n, 2))) / 1.414


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.random(n) - 2 * rng.integers(2, size=n) + np.floor(x1) % 2
    return 2 * np.stack([x1, x2], 1)


def _pinwheel(rng: np.random.Generator, n: int, arms: int = 5) -> np.ndarray:
    radial_std, tangential_std, rate = 0.3, 0.1, 0.25
    features = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std]) + np.array([1.0, 0.0])
    angles = 2 * np.pi * rng.integers(arms, size=n) / arms + rate * np.exp(features[:, 0])
    (f0, f1), cos, sin = features.T, np.cos(angles), np.sin(angles)
    return 2 * np.stack([f0 * cos - f1 * sin, f0 * sin + f1 * cos], 1)  # each point rotated by its angle


def _spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.sqrt(rng.random(n)) * 540 * (2 * np.pi) / 360
    x = np.stack([-np.cos(t) * t + 0.5 * rng.random(n), np.sin(t) * t + 0.5 * rng.random(n)], 1)
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)  # which of the two arms
    return sign[:, None] * x / 3 + 0.1 * rng.standard_normal((n, 2))


TOYS = {
    "moons": _moons,
    "circles": _circles,
    "8gaussians": _8gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "spirals": _spirals,
}


def sample_toy(name: str, n: int, seed: int | tuple[int, ...]) -> np.ndarray:
    """``n`` float32 points ``(n, 2)`` from toy density ``name`` with ``np.random.default_rng(seed)``."""
    return TOYS[name](np.random.default_rng(seed), n).astype(np.float32)


def load_toy(name: str, split: str, num_examples: int | None = None) -> Dataset:
    """The fixed draw for ``split``: 24000 / 3000 / 3000 points unless ``num_examples`` is given."""
    n = SPLIT_SIZES[split] if num_examples is None else num_examples
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"{name}: num_examples must be a positive integer; got {num_examples!r}")
    # the seed names the density and the split, so every (density, split) is its own stream
    seed = (list(TOYS).index(name), _SPLIT_SEEDS[split])
    x = torch.from_numpy(sample_toy(name, n, seed))
    return Dataset(name=name, split=split, x=x, support="real", kind="points")
