"""A learned rotation as a product of Householder reflections (log|det| = 0).

Each reflection ``H(v) = I − 2 v vᵀ / (vᵀv)`` is orthogonal; a product of ``K`` of them is an orthogonal
matrix, and with ``K = D`` every orthogonal matrix of determinant ``(−1)^D`` is such a product, so an
unconstrained set of vectors ``v_1 … v_K`` parameterises the rotations smoothly (Tomczak & Welling 2016,
"Improving Variational Auto-Encoders using Householder Flow"; the rotations of Gaussianization flows,
Meng, Song, Song & Ermon 2020, §3.2). Volume preserving: ``log|det| = 0``; the inverse is the transpose,
the same reflections in reverse order.

The product is applied in one piece, by the UT transform (Joffrain, Low, Quintana-Ortí, van de Geijn &
Van Zee 2006, "Accumulating Householder transformations, revisited", eq. 3): with ``U = [v_1 … v_K]``,

    H(v_1) ⋯ H(v_K) = I − U T⁻¹ Uᵀ,    T = strictly-upper(UᵀU) + diag(vᵢᵀvᵢ / 2),

so ``Q x`` is two matrix products and one K × K triangular solve, where reflecting one vector at a time
took K dependent updates (64 of them per layer on 8×8 digits: most of a training step's time).
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
        """Q (D × D)."""
        eye = torch.eye(self.num_features, dtype=self.vectors.dtype, device=self.vectors.device)
        return self._rotate(eye, transpose=True)  # rows e_iᵀ Q

    def _rotate(self, x: Tensor, transpose: bool) -> Tensor:
        """Rows ``x_n`` to ``Q x_n`` (``x Qᵀ``), or to ``Qᵀ x_n`` (``x Q``) with ``transpose``."""
        v = self.vectors  # rows are the vᵢ: U = vᵀ
        gram = v @ v.T
        tau = (gram.diagonal() / 2).clamp_min(torch.finfo(v.dtype).tiny)  # a zero vector reflects nothing
        t = gram.triu(1) + torch.diag(tau)
        # x Qᵀ = x − (x U) T⁻ᵀ Uᵀ and x Q = x − (x U) T⁻¹ Uᵀ: solve W Tᵀ = x U (or W T = x U) for W.
        w = torch.linalg.solve_triangular(t if transpose else t.T, x @ v.T, upper=transpose, left=False)
        return x - w @ v

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise DataError(f"rotation of {self.num_features} features got input {tuple(x.shape)}")

    def forward(self, x, context=None):
        self._check(x)
        return self._rotate(x, transpose=False), x.new_zeros(len(x))

    def inverse_and_log_det(self, z, context=None):
        self._check(z)
        return self._rotate(z, transpose=True), z.new_zeros(len(z))

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, num_reflections={len(self.vectors)}"
