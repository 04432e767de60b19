"""Elementwise bijections: learned affine / scaling, and the logit / sigmoid maps of preprocessing.

The logit of dequantised data in [0, 1] is a flow layer like any other, so its log-det enters the reported
likelihood (DESIGN.md §4): RealNVP (Dinh, Sohl-Dickstein & Bengio 2017, §4.1) and MAF (Papamakarios,
Pavlakou & Murray 2017) model ``logit(α + (1 − 2α) x)`` with α = 0.05 and 1e-6 respectively.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm.core.errors import ConfigError, DataError
from dgm.models.flows.transforms.base import Transform, sum_except_batch


def _as_shape(shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


class ElementwiseAffine(Transform):
    """``z = x · exp(log_scale) + shift`` with learned parameters of shape ``shape``.

    ``shape`` broadcasts against one example: ``(D,)`` for a vector, ``(C, 1, 1)`` for one value per channel
    of an image, ``(C, H, W)`` for one per pixel. ``shift=False`` gives NICE's diagonal scaling layer
    (Dinh, Krueger & Bengio 2014, §3.3), whose ``exp(S)`` lets the flow weigh its latent dimensions.
    Starts as the identity. log|det| = Σ log_scale over every value of the example.

    ``data_init=s`` instead sets the parameters from the first training batch (as ActNorm does; a buffer
    ``initialized`` records it, so a loaded checkpoint is not re-initialised): each output value gets root
    mean square ``s`` (with ``shift``: mean 0 and standard deviation ``s``). Why: Adam moves a log-scale by
    about ``lr`` per step whatever its gradient, and dequantised pixels that are always near 0 need a
    log-scale near 6 (their width is 1/256), so from the identity NICE spends thousands of steps only
    growing its scaling.
    """

    def __init__(self, shape, shift: bool = True, data_init: float | None = None):
        super().__init__()
        self.shape = _as_shape(shape)
        self.log_scale = nn.Parameter(torch.zeros(self.shape))
        self.shift = nn.Parameter(torch.zeros(self.shape)) if shift else None
        if data_init is not None and not data_init > 0:
            raise ConfigError(f"data_init must be a positive standard deviation or None, got {data_init!r}")
        self.data_init = data_init
        if data_init is not None:  # only then, so that checkpoints of the plain layer keep their keys
            self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set the parameters from the batch ``x`` (examples along dim 0) as described above."""
        shape = (1,) * (x.dim() - 1 - len(self.shape)) + self.shape
        dims = (0, *(1 + i for i, n in enumerate(shape) if n == 1))
        x = x.to(self.log_scale.dtype)
        # Without a shift to centre with, the root mean square is what the scale can set.
        spread = x.square().mean(dims).sqrt() if self.shift is None else x.std(dims, correction=0)
        log_scale = math.log(self.data_init or 1.0) - spread.clamp_min(1e-8).log()  # constant features
        self.log_scale.copy_(log_scale.reshape(self.shape))
        if self.shift is not None:
            self.shift.copy_((-x.mean(dims) * log_scale.exp()).reshape(self.shape))
        if self.data_init is not None:
            self.initialized.fill_(True)

    def _log_det(self, x: Tensor) -> Tensor:
        return self.log_scale.expand(x.shape[1:]).sum().expand(len(x))

    def forward(self, x, context=None):
        if self.data_init is not None and self.training and not bool(self.initialized) and len(x) > 1:
            self.initialize(x)
        z = x * self.log_scale.exp()
        if self.shift is not None:
            z = z + self.shift
        return z, self._log_det(x)

    def inverse_and_log_det(self, z, context=None):
        if self.shift is not None:
            z = z - self.shift
        return z * torch.exp(-self.log_scale), -self._log_det(z)

    def extra_repr(self) -> str:
        init = f", data_init={self.data_init:g}" if self.data_init is not None else ""
        return f"shape={self.shape}, shift={self.shift is not None}{init}"


class Logit(Transform):
    """``z = logit(s)``, ``s = α + (1 − 2α) x``: data in [0, 1] → the real line.

    The squeeze by α keeps ``z`` finite at 0 and 1. Per value
    ``log|dz/dx| = log(1 − 2α) − log s − log(1 − s)``, computed as
    ``log(1 − 2α) + softplus(z) + softplus(−z)`` so that it stays accurate where ``s`` rounds to 0 or 1.
    As a bijection it maps the slightly wider interval ``(−α', 1 + α')``, ``α' = α / (1 − 2α)``, onto the
    real line, and its inverse (sampling) can land in that margin, or (where σ rounds to 0 or 1 in float32)
    one rounding step beyond it: those points are accepted too, so a flow scores its own samples. Anything
    further out is refused with a DataError (this layer is for
    data rescaled to [0, 1], e.g. the dequantised datasets).
    """

    def __init__(self, alpha: float = 1e-6):
        super().__init__()
        if not 0 < alpha < 0.5:
            raise ConfigError(f"logit alpha must be in (0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    def forward(self, x, context=None):
        s = self.alpha + (1 - 2 * self.alpha) * x
        eps = torch.finfo(s.dtype).eps if s.is_floating_point() else 0.0
        if s.numel() and (s.min() < -eps or s.max() > 1 + eps):
            raise DataError(
                f"the logit preprocessing needs data in [0, 1] (dequantised and divided by the number of "
                f"levels); got values in [{x.min().item():g}, {x.max().item():g}]"
            )
        # A sample whose latent saturates the sigmoid comes back as s = 0 or 1 exactly (float32 rounds
        # σ(z) to 1 above z ≈ 17): keep it inside (0, 1) so that a flow can always score its own samples.
        s = s.clamp(torch.finfo(s.dtype).tiny, 1 - eps / 2)
        z = torch.log(s) - torch.log1p(-s)
        log_det = math.log1p(-2 * self.alpha) + F.softplus(z) + F.softplus(-z)
        return z, sum_except_batch(log_det)

    def inverse_and_log_det(self, z, context=None):
        x = (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)
        log_det = -math.log1p(-2 * self.alpha) - F.softplus(z) - F.softplus(-z)
        return x, sum_except_batch(log_det)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(Transform):
    """``z = σ(x)``: the real line → (0, 1); log|dz/dx| = −softplus(−x) − softplus(x).

    The inverse (the logit) refuses latents outside (0, 1) with a DataError.
    """

    def forward(self, x, context=None):
        return torch.sigmoid(x), sum_except_batch(-F.softplus(-x) - F.softplus(x))

    def inverse_and_log_det(self, z, context=None):
        if z.numel() and (z.min() <= 0 or z.max() >= 1):
            raise DataError(f"the inverse sigmoid needs values in (0, 1); got [{z.min():g}, {z.max():g}]")
        x = torch.log(z) - torch.log1p(-z)
        return x, sum_except_batch(-torch.log(z) - torch.log1p(-z))
