"""Reproducible sampling from ``torch.distributions`` objects.

``Distribution.sample`` takes no ``torch.Generator``; models promise ``sample(..., generator=g)`` so that
the same generator gives the same draws. :func:`sample` covers the distributions `dgm` samples from,
drawing from the same law with the given generator (and delegating to ``.sample`` without one).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal


def sample(
    dist: Distribution, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None
) -> Tensor:
    sample_shape = torch.Size(sample_shape)
    if generator is None:
        return dist.sample(sample_shape)
    if isinstance(dist, Independent):
        return sample(dist.base_dist, sample_shape, generator)
    shape = sample_shape + dist.batch_shape
    if isinstance(dist, Bernoulli):
        u = torch.rand(shape, generator=generator, device=dist.probs.device, dtype=dist.probs.dtype)
        return (u < dist.probs.expand(shape)).to(dist.probs.dtype)
    if isinstance(dist, Categorical):
        probs = dist.probs.reshape(-1, dist.probs.shape[-1])
        n = max(1, sample_shape.numel())
        draws = torch.multinomial(probs, n, replacement=True, generator=generator)  # (batch, n)
        return draws.T.reshape(shape)
    if isinstance(dist, Normal):
        eps = torch.randn(shape, generator=generator, device=dist.loc.device, dtype=dist.loc.dtype)
        return dist.loc + dist.scale * eps
    raise NotImplementedError(f"seeded sampling of {type(dist).__name__} is not implemented")
