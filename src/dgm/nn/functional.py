"""Small functions shared by several model families."""

from __future__ import annotations

import operator

import torch
from torch import Tensor

from dgm.core.errors import ConfigError

CLAMP_FNS = ("tanh", "softsign")


def soft_clamp(s: Tensor, bound: float | None, fn: str = "tanh") -> Tensor:
    """A log-scale kept in (−bound, bound) with slope 1 near zero.

    ``fn="tanh"``: ``bound · tanh(s / bound)``; ``fn="softsign"``: ``bound · softsign(s / bound)`` =
    ``s / (1 + |s| / bound)``, zuko's bound on its affine log-scales, which approaches the bound as 1/|s|
    instead of exponentially, so a large log-scale still has a usable gradient (at s = 3·bound tanh's slope
    is 0.01, softsign's 1/16).

    Flows and VAEs put it on log-scales: a hard clamp has zero gradient outside its range, this one never
    stops learning, and it keeps ``exp(s)`` finite however far an input is from the data (no inf/NaN).
    ``None`` leaves ``s`` unchanged.
    """
    if bound is None:
        return s
    if fn == "tanh":
        return bound * torch.tanh(s / bound)
    if fn == "softsign":
        return s / (1 + s.abs() / bound)
    raise ConfigError(f"the clamp function must be one of {', '.join(CLAMP_FNS)}, got {fn!r}")


def check_soft_clamp(bound: float | None, fn: str) -> None:
    """A layer's ``scale_clamp`` / ``scale_clamp_fn`` options, checked when it is built (one-line errors)."""
    if bound is not None and not bound > 0:
        raise ConfigError(f"scale_clamp must be positive or None, got {bound}")
    if fn not in CLAMP_FNS:
        raise ConfigError(f"scale_clamp_fn must be one of {', '.join(CLAMP_FNS)}, got {fn!r}")


def hidden_sizes_list(hidden_sizes, what: str = "hidden_sizes") -> list[int]:
    """Hidden widths as a list of positive ints: an int is one hidden layer (the CLI passes
    ``--hidden-sizes 64``), [] none; anything else (a string, a bool, a non-integer) is a ConfigError."""
    items = [hidden_sizes] if isinstance(hidden_sizes, int | str) else hidden_sizes
    try:
        if any(isinstance(h, bool | str) for h in items):
            raise TypeError
        sizes = [operator.index(h) for h in items]
    except TypeError:
        sizes = None
    if sizes is None or any(h < 1 for h in sizes):
        raise ConfigError(f"{what} must be a positive int or a list of positive ints, got {hidden_sizes!r}")
    return sizes
