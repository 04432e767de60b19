"""Multi-scale architecture for images (Dinh, Sohl-Dickstein & Bengio 2017, RealNVP §3.6).

* :class:`Squeeze` trades space for channels: each 2×2 block of pixels becomes 4 channels,
  ``(C, H, W) → (4C, H/2, W/2)``; a permutation of the values, so log|det| = 0.
* :class:`FactorOut` sends part of the channels straight to the latent and runs an inner transform on the
  rest, so deeper scales work on fewer values: ``x → (x_out, inner(x_in))``, flattened to one latent vector.
  log|det| is the inner transform's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dgm.core.errors import ConfigError, DataError
from dgm.models.flows.transforms.base import Transform


class Squeeze(Transform):
    """``(N, C, H, W) → (N, C·f², H/f, W/f)`` by pixel unshuffle (f = ``factor``); inverse: pixel shuffle."""

    def __init__(self, factor: int = 2):
        super().__init__()
        if factor < 1:
            raise ConfigError(f"squeeze factor must be positive, got {factor}")
        self.factor = factor

    def _check(self, shape) -> None:
        if len(shape) != 3 or shape[1] % self.factor or shape[2] % self.factor:
            raise DataError(
                f"squeeze by {self.factor} needs (C, H, W) with H, W divisible by it, got {shape}"
            )

    def forward(self, x, context=None):
        self._check(tuple(x.shape[1:]))
        return F.pixel_unshuffle(x, self.factor), x.new_zeros(len(x))

    def inverse_and_log_det(self, z, context=None):
        return F.pixel_shuffle(z, self.factor), z.new_zeros(len(z))

    def output_shape(self, input_shape):
        self._check(tuple(input_shape))
        c, h, w = input_shape
        return (c * self.factor**2, h // self.factor, w // self.factor)

    def input_shape(self, output_shape):
        c, h, w = output_shape
        return (c // self.factor**2, h * self.factor, w * self.factor)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class FactorOut(Transform):
    """Keep the first ``num_factored`` channels as latents; transform the rest with ``transform``.

    Args:
        in_shape: ``(C, H, W)`` of the input.
        transform: the inner transform, applied to ``(C − num_factored, H, W)`` (any output shape).
        num_factored: channels sent to the latent (default ⌊C/2⌋).

    The output is flat, ``(N, D)``: the factored values followed by the inner transform's output.
    """

    def __init__(self, in_shape, transform: Transform, num_factored: int | None = None):
        super().__init__()
        c, h, w = self.in_shape = tuple(int(s) for s in in_shape)
        self.num_factored = c // 2 if num_factored is None else int(num_factored)
        if not 0 < self.num_factored < c:
            raise ConfigError(f"factor-out needs 0 < num_factored < C = {c}, got {self.num_factored}")
        self.transform = transform
        self.rest_shape = (c - self.num_factored, h, w)
        self.inner_shape = tuple(transform.output_shape(self.rest_shape))

    def forward(self, x, context=None):
        if tuple(x.shape[1:]) != self.in_shape:
            raise DataError(f"factor-out expects (N, {self.in_shape}), got {tuple(x.shape)}")
        k = self.num_factored
        z, log_det = self.transform(x[:, k:], context)
        return torch.cat([x[:, :k].reshape(len(x), -1), z.reshape(len(x), -1)], 1), log_det

    def inverse_and_log_det(self, z, context=None):
        n, (_, h, w) = len(z), self.in_shape
        split = self.num_factored * h * w
        kept = z[:, :split].reshape(n, self.num_factored, h, w)
        rest, log_det = self.transform.inverse_and_log_det(
            z[:, split:].reshape(n, *self.inner_shape), context
        )
        return torch.cat([kept, rest], 1), log_det

    def output_shape(self, input_shape):
        if tuple(input_shape) != self.in_shape:
            raise ConfigError(f"factor-out expects inputs of shape {self.in_shape}, got {tuple(input_shape)}")
        return (math.prod(self.in_shape),)

    def input_shape(self, output_shape):
        return self.in_shape
