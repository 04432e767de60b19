"""Normalisation layers as flow transforms, with their log-dets.

* :class:`ActNorm` (Kingma & Dhariwal 2018, Glow §3.1): a per-feature affine map whose parameters are
  initialised from the first training batch so that its outputs have zero mean and unit variance; after
  that an ordinary learned layer.
* :class:`BatchNorm` (Dinh, Sohl-Dickstein & Bengio 2017, RealNVP §3.7; Papamakarios, Pavlakou & Murray
  2017, MAF §3.4 / appendix B): ``z = (x − m) / sqrt(v + ε) · exp(γ) + β``, with ``(m, v)`` the batch mean
  and variance in training and their running averages in evaluation, so
  ``log|det| = Σ (γ − ½ log(v + ε))``. In training the batch statistics are treated as constants in the
  log-det, as in both papers; in evaluation the layer is an exact per-example bijection.

Both act per feature along dimension 1: per feature of a vector ``(N, D)``, per channel of an image
``(N, C, H, W)`` (statistics over batch and pixels; log-det multiplied by H·W).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dgm.core.errors import ConfigError, DataError
from dgm.models.flows.transforms.base import Transform


def _shape(x: Tensor, num_features: int) -> tuple[list[int], list[int], int]:
    """Reduction dims (all but 1), the broadcast shape of a per-feature parameter, and pixels per feature."""
    if x.dim() < 2 or x.shape[1] != num_features:
        raise DataError(f"a layer over {num_features} features got input {tuple(x.shape)}")
    dims = [0, *range(2, x.dim())]
    return dims, [num_features, *[1] * (x.dim() - 2)], math.prod(x.shape[2:])


class ActNorm(Transform):
    """``z = (x − loc) · exp(−log_scale)`` per feature, with data-dependent initialisation.

    The first :meth:`forward` in training mode sets ``loc`` and ``log_scale`` to the batch mean and log
    standard deviation (a buffer ``initialized`` records it, so a loaded checkpoint is not re-initialised).
    Before that the layer is the identity.
    """

    def __init__(self, num_features: int, eps: float = 1e-6):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.loc = nn.Parameter(torch.zeros(num_features))
        self.log_scale = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set the parameters so that ``forward(x)`` has zero mean and unit variance per feature."""
        dims, _, _ = _shape(x, self.num_features)
        self.loc.copy_(x.mean(dims))
        self.log_scale.copy_((x.std(dims, correction=0) + self.eps).log())
        self.initialized.fill_(True)

    def forward(self, x, context=None):
        _, shape, pixels = _shape(x, self.num_features)
        if self.training and not bool(self.initialized) and len(x) > 1:
            self.initialize(x)
        z = (x - self.loc.reshape(shape)) * torch.exp(-self.log_scale).reshape(shape)
        return z, (-pixels * self.log_scale.sum()).expand(len(x))

    def inverse_and_log_det(self, z, context=None):
        _, shape, pixels = _shape(z, self.num_features)
        x = z * self.log_scale.exp().reshape(shape) + self.loc.reshape(shape)
        return x, (pixels * self.log_scale.sum()).expand(len(z))


class BatchNorm(Transform):
    """Batch normalisation as a flow layer (see the module docstring), with learned ``log_gamma``, ``beta``.

    ``momentum`` is the weight of a new batch in the running averages. The inverse always uses the running
    averages (in training mode too: a batch of latents has no data statistics).
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        if not 0 < momentum <= 1:
            raise ConfigError(f"momentum must be in (0, 1], got {momentum}")
        self.num_features, self.momentum, self.eps = num_features, momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x, context=None):
        dims, shape, pixels = _shape(x, self.num_features)
        if self.training and len(x) > 1:
            mean, var = x.mean(dims), x.var(dims, correction=0)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean.to(x.dtype), self.running_var.to(x.dtype)
        log_std = 0.5 * torch.log(var + self.eps)
        z = (x - mean.reshape(shape)) * torch.exp(self.log_gamma - log_std).reshape(
            shape
        ) + self.beta.reshape(shape)
        return z, (pixels * (self.log_gamma - log_std).sum()).expand(len(x))

    def inverse_and_log_det(self, z, context=None):
        _, shape, pixels = _shape(z, self.num_features)
        mean, var = self.running_mean.to(z.dtype), self.running_var.to(z.dtype)
        log_std = 0.5 * torch.log(var + self.eps)
        x = (z - self.beta.reshape(shape)) * torch.exp(log_std - self.log_gamma).reshape(
            shape
        ) + mean.reshape(shape)
        return x, (pixels * (log_std - self.log_gamma).sum()).expand(len(z))
