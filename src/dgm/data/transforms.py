"""Preprocessing shared by datasets and models.

Three kinds, by how they enter a likelihood:

- stochastic per-batch transforms, callables ``(x, generator) -> x`` used as ``Dataset.transform``:
  :class:`DynamicBinarize`, :class:`UniformDequantize`;
- static functions applied once: :func:`binarize`;
- bijections in the flow convention data → latent (design.md §3): ``forward(x) -> (z, log_abs_det)``
  with ``log_abs_det`` of shape ``(N,)`` summed over all non-batch dims, and ``inverse(z) -> x``:
  :class:`Logit`, :class:`Standardize`. They are ``nn.Module`` s so a flow can hold them (buffers
  follow ``.to(device)`` and land in checkpoints), and they work in float32 and float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dgm.core.errors import DataError


def _sum_per_example(t: Tensor) -> Tensor:
    return t.reshape(len(t), -1).sum(1)


# --------------------------------------------------------------------------- stochastic, per batch
class DynamicBinarize:
    """``x ~ Bernoulli(p)`` with ``p`` the grey level in [0, 1], drawn afresh for every batch.

    Dynamic binarisation of MNIST, as used e.g. by Burda, Grosse & Salakhutdinov (2016, IWAE); a
    seeded ``generator`` makes the draws reproducible.
    """

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise DataError(f"DynamicBinarize needs probabilities in [0, 1]; got [{x.min():g}, {x.max():g}]")
        return torch.bernoulli(x, generator=generator)

    def __repr__(self) -> str:
        return "DynamicBinarize()"


class UniformDequantize:
    """``y = (x + u) / levels`` with ``u ~ U[0, 1)^D``: integers 0..levels-1 become reals in [0, 1).

    Uniform dequantisation (Uria, Murray & Larochelle 2013; Theis, van den Oord & Bethge 2016). A density
    ``p`` on ``y`` is a density on the integer scale ``v = x + u`` with
    ``log p_V(v) = log p(y) - D log(levels)``, and ``E_u[log p_V(x + u)]`` is a lower bound on the
    discrete ``log P(x)``. So a model trained on ``y``
    must **add** ``D · log(levels)`` nats to its NLL before reporting bits/dim on the 0..255 scale
    (design.md §4); :func:`dequantization_log_det` gives that constant.
    """

    def __init__(self, levels: int = 256):
        self.levels = levels

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = x if x.is_floating_point() else x.float()
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        # x + u < x + 1 exactly, but in float32 it rounds up to x + 1 for u within ~1e-5 of 1 near 255:
        # keep every value inside its own bin, and the result below 1.
        v = torch.minimum(x + u, torch.nextafter(x + 1, x))
        return (v / self.levels).clamp_max(1.0 - torch.finfo(x.dtype).eps / 2)

    def __repr__(self) -> str:
        return f"UniformDequantize(levels={self.levels})"


def dequantization_log_det(num_dims: int, levels: int = 256) -> float:
    """``D · log(levels)``: the nats to add to the NLL of data rescaled to [0, 1) by ``1 / levels``."""
    return num_dims * math.log(levels)


# ------------------------------------------------------------------------------- static
def binarize(x: Tensor, threshold: float) -> Tensor:
    """``1[x >= threshold]`` in the dtype of ``x`` (float32 for integer input): a static binarisation."""
    return (x >= threshold).to(x.dtype if x.is_floating_point() else torch.float32)


# ---------------------------------------------------------------------------- bijections
class Logit(nn.Module):
    """``z = logit(s)`` with ``s = α + (1 - 2α) x``, for ``x`` in [0, 1] (RealNVP's preprocessing).

    Dinh, Sohl-Dickstein & Bengio (2017), §4.1, with α = 0.05 there; MAF (Papamakarios et al. 2017)
    uses α = 1e-6 for MNIST. The squeeze by α keeps ``z`` finite at 0 and 1. Per dimension
    ``log |dz/dx| = log(1 - 2α) - log s - log(1 - s)``.
    """

    def __init__(self, alpha: float = 1e-6):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise DataError(f"Logit alpha must be in [0, 0.5); got {alpha}")
        self.alpha = alpha

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.alpha + (1 - 2 * self.alpha) * x
        z = torch.log(s) - torch.log1p(-s)
        log_det = math.log1p(-2 * self.alpha) - torch.log(s) - torch.log1p(-s)
        return z, _sum_per_example(log_det)

    def inverse(self, z: Tensor) -> Tensor:
        return (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Standardize(nn.Module):
    """``z = (x - μ) / σ`` elementwise; ``log |det| = -Σ log σ`` over the event dims.

    ``mean`` and ``std`` broadcast against one example (scalars, ``(D,)`` or ``(C, H, W)``).
    """

    def __init__(self, mean: Tensor | float, std: Tensor | float):
        super().__init__()
        std = torch.as_tensor(std)
        if (std <= 0).any():
            raise DataError("Standardize needs std > 0 in every dimension")
        self.register_buffer("mean", torch.as_tensor(mean))
        self.register_buffer("std", std)

    @classmethod
    def fit(cls, x: Tensor, min_std: float = 1e-6) -> Standardize:
        """Per-dimension mean and (population) std of ``x`` ``(N, ...)``; constant dimensions (MNIST's
        border pixels) get ``std = min_std`` instead of 0 so the map stays invertible."""
        return cls(x.mean(0), x.std(0, correction=0).clamp_min(min_std))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, std = self.mean.to(x), self.std.to(x)
        z = (x - mean) / std
        return z, _sum_per_example(-torch.log(std).broadcast_to(x.shape))

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.std.to(z) + self.mean.to(z)
