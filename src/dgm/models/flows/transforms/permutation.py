"""Mixing the features between layers: fixed permutations and a learned invertible linear map.

A coupling or autoregressive layer leaves some values unchanged or conditions on them in a fixed order, so
flows interleave layers that reorder features: a fixed permutation (log|det| = 0) or a learned invertible
matrix, Glow's invertible 1×1 convolution (Kingma & Dhariwal 2018, §3.2) in its LU form
``W = P L (U + diag(s))``: P a fixed permutation, L unit lower triangular, U strictly upper triangular, so
that ``log|det W| = Σ log|s|`` costs O(C) and the inverse is two triangular solves.

All act on dimension 1: the features of a vector ``(N, D)`` or the channels of an image ``(N, C, H, W)``,
the same map at every pixel (so an image's log-det is H·W times the per-pixel one).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dgm.core.errors import ConfigError, DataError
from dgm.models.flows.transforms.base import Transform


class Permutation(Transform):
    """``z[:, i] = x[:, permutation[i]]`` along dimension 1; log|det| = 0."""

    def __init__(self, permutation):
        super().__init__()
        perm = torch.as_tensor(permutation).long().flatten()
        if not torch.equal(perm.sort().values, torch.arange(len(perm))):
            raise ConfigError(f"not a permutation of 0..{len(perm) - 1}: {perm.tolist()}")
        self.register_buffer("permutation", perm)
        self.register_buffer("inverse_permutation", torch.argsort(perm), persistent=False)

    def _check(self, x: Tensor) -> None:
        if x.dim() < 2 or x.shape[1] != len(self.permutation):
            raise DataError(f"permutation of {len(self.permutation)} features got input {tuple(x.shape)}")

    def forward(self, x, context=None):
        self._check(x)
        return x.index_select(1, self.permutation), x.new_zeros(len(x))

    def inverse_and_log_det(self, z, context=None):
        self._check(z)
        return z.index_select(1, self.inverse_permutation), z.new_zeros(len(z))


class ReversePermutation(Permutation):
    """Reverse the order of the ``num_features`` features (or channels)."""

    def __init__(self, num_features: int):
        super().__init__(torch.arange(num_features - 1, -1, -1))


class RandomPermutation(Permutation):
    """A uniformly random permutation drawn from ``seed`` (the same seed rebuilds the same layer)."""

    def __init__(self, num_features: int, seed: int = 0):
        super().__init__(torch.randperm(num_features, generator=torch.Generator().manual_seed(seed)))


class LULinear(Transform):
    """``z = W x + b`` with ``W = P L (U + diag(sign · exp(log_abs_s)))`` learned in LU form (Glow, §3.2).

    Starts from a random rotation (drawn from ``seed``) and a zero bias. On images it is the invertible
    1×1 convolution: the same ``W`` mixes the channels of every pixel.
    """

    def __init__(self, num_features: int, seed: int = 0):
        super().__init__()
        if num_features < 1:
            raise ConfigError(f"num_features must be positive, got {num_features}")
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(num_features, num_features, generator=g, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = upper.diagonal()
        self.register_buffer("perm", p.float())
        self.register_buffer("sign", torch.sign(s).float())
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_abs_s = nn.Parameter(s.abs().log().float())
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.num_features = num_features

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.num_features, dtype=self.lower.dtype, device=self.lower.device)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * self.log_abs_s.exp())
        return lower, upper

    def weight(self) -> Tensor:
        """The matrix W (F × F)."""
        lower, upper = self._factors()
        return self.perm @ lower @ upper

    def _pixels(self, x: Tensor) -> int:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise DataError(f"linear map of {self.num_features} features got input {tuple(x.shape)}")
        return math.prod(x.shape[2:])

    def forward(self, x, context=None):
        pixels = self._pixels(x)
        z = torch.einsum("ij,nj...->ni...", self.weight(), x) + self.bias.reshape(-1, *[1] * (x.dim() - 2))
        return z, (pixels * self.log_abs_s.sum()).expand(len(x))

    def inverse_and_log_det(self, z, context=None):
        pixels = self._pixels(z)
        lower, upper = self._factors()
        y = (z - self.bias.reshape(-1, *[1] * (z.dim() - 2))).movedim(1, -1)
        flat = y.reshape(-1, self.num_features).T  # (F, N·pixels): solve W x = y column by column
        flat = torch.linalg.solve_triangular(lower, self.perm.T @ flat, upper=False, unitriangular=True)
        flat = torch.linalg.solve_triangular(upper, flat, upper=True)
        x = flat.T.reshape(y.shape).movedim(-1, 1)
        return x, (-pixels * self.log_abs_s.sum()).expand(len(z))
