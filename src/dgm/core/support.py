"""Supports a model accepts (DESIGN.md §4) and the input checks that go with them.

Every model states the values its data may take: ``binary`` (0./1.), ``categorical(k)`` (integers
0..k-1, e.g. 0..16 for digits or 0..255 for 8-bit images) or ``real``. :func:`check_input` turns a
bad tensor into one clear :class:`DataError` instead of a deep PyTorch traceback.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from dgm.core.errors import ConfigError, DataError

_CATEGORICAL = re.compile(r"^categorical\((\d+)\)$")
_VALUES_CHECKED = contextvars.ContextVar("dgm_values_checked", default=False)


@contextlib.contextmanager
def values_checked():
    """A training step's checks, done once: inside this block :func:`check_input` checks shapes and dtypes
    but not values (NaN, range, integrality), and ``torch.distributions`` does not validate the arguments
    a model computes (a global default, restored after). The trainer checks each batch on the CPU before
    it moves and checks the loss afterwards; on a GPU each check inside the step would be a read back to
    the host, which stalls the queue of work (MADE: 7 per step)."""
    token = _VALUES_CHECKED.set(True)
    validate = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(validate)
        _VALUES_CHECKED.reset(token)


@dataclass(frozen=True)
class Support:
    kind: str  # "binary" | "categorical" | "real"
    num_categories: int | None = None

    @classmethod
    def parse(cls, spec: str | Support) -> Support:
        if isinstance(spec, Support):
            return spec
        if spec == "binary":
            return cls("binary", 2)
        if spec == "real":
            return cls("real")
        m = _CATEGORICAL.match(str(spec))
        if m and int(m.group(1)) >= 2:
            return cls("categorical", int(m.group(1)))
        raise ConfigError(
            f"unknown support {spec!r}; expected 'binary', 'real' or 'categorical(k)' with k >= 2"
        )

    @property
    def discrete(self) -> bool:
        return self.kind != "real"

    def __str__(self) -> str:
        return f"categorical({self.num_categories})" if self.kind == "categorical" else self.kind


def check_input(x, event_shape: tuple[int, ...], support: Support, what: str = "input") -> Tensor:
    """Validate a batch ``x`` of shape ``(N, *event_shape)`` against ``support``; return it as a tensor.

    Discrete data may arrive as any integer, bool or float dtype holding whole numbers; real data as
    any float or integer dtype. The returned tensor is float (long stays long for token ids).
    """
    if not isinstance(x, Tensor):
        raise DataError(f"{what} must be a torch.Tensor, got {type(x).__name__} (use torch.as_tensor)")
    if x.dtype.is_complex:
        raise DataError(f"{what} has complex dtype {x.dtype}; expected real values")
    event_shape = tuple(event_shape)
    if x.dim() != len(event_shape) + 1 or tuple(x.shape[1:]) != event_shape:
        raise DataError(
            f"{what} has shape {tuple(x.shape)}; this model expects (N, {', '.join(map(str, event_shape))})"
            + (" — add a batch dimension with x[None]" if tuple(x.shape) == event_shape else "")
        )
    if x.dtype == torch.bool:
        x = x.float()
    if _VALUES_CHECKED.get():
        return x.float() if support.kind == "real" and not x.dtype.is_floating_point else x
    if x.dtype.is_floating_point:
        if not torch.isfinite(x).all():
            bad = "NaN" if torch.isnan(x).any() else "inf"
            raise DataError(f"{what} contains {bad} values")
    elif support.kind == "real":
        x = x.float()
    if support.kind == "real" or x.numel() == 0:
        return x
    if x.dtype.is_floating_point and not torch.equal(x, torch.round(x)):
        raise DataError(f"{what} has non-integer values but this model's support is {support}")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > support.num_categories - 1:
        found = f"values in [{lo:g}, {hi:g}]"
        raise DataError(
            f"{what} has {found}; this model's support is {support} (0..{support.num_categories - 1})"
        )
    return x
