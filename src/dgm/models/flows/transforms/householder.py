"""A learned rotation as a product of Householder reflections (log|det| = 0).

Each reflection ``H(v) = I − 2 v vᵀ / (vᵀv)`` is orthogonal; a product of ``K`` of them is an orthogonal
matrix, and with ``K = D`` every orthogonal matrix of determinant ``(−1)^D`` is such a product, so an
unconstrained set of vectors ``v_1 … v_K`` parameterises the rotations smoothly (Tomczak & Welling 2016,
"Improving Variational Auto-Encoders using Householder Flow"; the rotations of Gaussianization flows,
Meng, Song, Song & Ermon 2020, §3.2). Volume preserving: ``log|det| = 0``; the inverse is the transpose,
the same reflections in reverse order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dgm.core.errors import ConfigError, DataError
from dgm.models.flows.transforms.base import Transform


class HouseholderRotation(Transform):
    """``z = Q x`` with ``Q = H(v_1) H(v_2) ⋯ H(v_K)`` on vectors ``(N, D)``.

    Args:
        num_features: D.
        num_reflections: K (None: D, enough for any rotation).
        seed: seeds the initial vectors (standard normal draws: a random rotation).
    """

    def __init__(self, num_features: int, num_reflections: int | None = None, seed: int = 0):
        super().__init__()
        if num_features < 1:
            raise ConfigError(f"num_features must be positive, got {num_features}")
        k = num_features if num_reflections is None else int(num_reflections)
        if k < 1:
            raise ConfigError(f"num_reflections must be positive, got {num_reflections}")
        self.num_features = num_features
        g = torch.Generator().manual_seed(seed)
        self.vectors = nn.Parameter(torch.randn(k, num_features, generator=g))

    def matrix(self) -> Tensor:
        """Q (D × D), built by applying the reflections to the identity."""
        eye = torch.eye(self.num_features, dtype=self.vectors.dtype, device=self.vectors.device)
        return self._reflect(eye, reverse=True)  # row i: e_iᵀ H(v_1) ⋯ H(v_K) = row i of Q

    def _reflect(self, x: Tensor, reverse: bool) -> Tensor:
        # x ← x − 2 (x·v̂) v̂ᵀ for each unit vector, rightmost reflection first for Q x (rows are examples).
        v = self.vectors / self.vectors.norm(dim=1, keepdim=True).clamp_min(
            torch.finfo(self.vectors.dtype).tiny
        )
        for u in v.flip(0) if not reverse else v:
            x = x - 2 * (x @ u)[:, None] * u
        return x

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise DataError(f"rotation of {self.num_features} features got input {tuple(x.shape)}")

    def forward(self, x, context=None):
        self._check(x)
        # Whichever is cheaper: reflect the batch directly, or build Q once and multiply.
        z = self._reflect(x, reverse=False) if len(x) <= self.num_features else x @ self.matrix().T
        return z, x.new_zeros(len(x))

    def inverse_and_log_det(self, z, context=None):
        self._check(z)
        x = self._reflect(z, reverse=True) if len(z) <= self.num_features else z @ self.matrix()
        return x, z.new_zeros(len(z))

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, num_reflections={len(self.vectors)}"
