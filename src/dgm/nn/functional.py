"""Small functions shared by several model families."""

from __future__ import annotations

import torch
from torch import Tensor


def soft_clamp(s: Tensor, bound: float | None) -> Tensor:
    """``bound · tanh(s / bound)``: a log-scale kept in (−bound, bound) with slope 1 near zero.

    Flows and VAEs put it on log-scales: a hard clamp has zero gradient outside its range, this one never
    stops learning, and it keeps ``exp(s)`` finite however far an input is from the data (no inf/NaN).
    ``None`` leaves ``s`` unchanged.
    """
    return s if bound is None else bound * torch.tanh(s / bound)
