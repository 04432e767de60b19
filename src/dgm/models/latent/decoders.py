"""Observation models p(x | z) of the latent-variable models: which distribution a decoder's outputs define.

- ``bernoulli`` for binary data (one logit per dimension);
- ``categorical`` for categorical(k) data (k logits per dimension, no order assumed);
- ``discretized-logistic`` for ordinal categorical(k) data such as 8-bit pixels: a logistic density on the
  0..k−1 scale integrated over each value's unit bin, the two end bins taking the tails (Salimans, Karpathy,
  Chen & Kingma 2017, PixelCNN++, eq. 2, with one component). Two numbers per dimension instead of k;
- ``gaussian`` for real data: the decoder gives the mean, the log-scale is one learned parameter per
  dimension. (A decoder-output variance lets the likelihood grow without bound as σ → 0 on a training point,
  Mattei & Frellsen 2018; a per-dimension σ keeps the maximum-likelihood problem well posed.)

Every distribution has event shape ``(D,)`` over flattened examples. :func:`draw` samples any of them with
a ``torch.Generator`` (the discretised logistic is not in ``torch.distributions``, so it lives here).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal, constraints

from dgm.core.distributions import sample as _core_sample
from dgm.core.errors import ConfigError
from dgm.core.support import Support
from dgm.nn.functional import soft_clamp

KINDS = {
    "binary": ("bernoulli",),
    "categorical": ("categorical", "discretized-logistic"),
    "real": ("gaussian",),
}
LOG_SCALE_BOUND = 12.0  # log-scales are soft-clamped to ±12: scales from 6e-6 to 1.6e5


def _log1mexp(t: Tensor) -> Tensor:
    """log(1 − exp(t)) for t < 0, accurate at both ends (Mächler 2012)."""
    return torch.where(t > -0.6931, torch.log(-torch.expm1(t)), torch.log1p(-torch.exp(t)))


class DiscretizedLogistic(Distribution):
    """A logistic(loc, scale) on the real line, discretised to the integers 0..k−1.

    P(v) = σ((v + ½ − loc)/scale) − σ((v − ½ − loc)/scale), with v = 0 taking (−∞, ½) and v = k−1 taking
    (k − 1.5, ∞). The log of the difference is computed as log σ(a) − softplus(b) + log(1 − e^{b−a}),
    which is exact and finite for every bin however far loc is from it.
    """

    arg_constraints: ClassVar[dict] = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = False

    def __init__(self, loc: Tensor, scale: Tensor, num_categories: int, validate_args=None):
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        self.num_categories = int(num_categories)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @property
    def support(self):
        return constraints.integer_interval(0, self.num_categories - 1)

    def log_prob(self, value: Tensor) -> Tensor:
        value = value.to(self.loc.dtype)
        inv = 1.0 / self.scale
        a = (value + 0.5 - self.loc) * inv  # upper edge of the bin, in logistic units
        b = (value - 0.5 - self.loc) * inv
        mid = F.logsigmoid(a) - F.softplus(b) + _log1mexp(b - a)
        first = F.logsigmoid(a)
        last = -F.softplus(b)
        top = self.num_categories - 1
        return torch.where(value <= 0, first, torch.where(value >= top, last, mid))

    @property
    def mean(self) -> Tensor:
        # The mode of the bins is the rounded location; used for reconstructions.
        return self.loc.round().clamp(0, self.num_categories - 1)

    def sample(self, sample_shape=(), generator: torch.Generator | None = None) -> Tensor:
        shape = torch.Size(sample_shape) + self.loc.shape
        u = torch.rand(shape, generator=generator, device=self.loc.device, dtype=self.loc.dtype)
        u = u.clamp(1e-6, 1 - 1e-6)
        y = self.loc + self.scale * (u.log() - (-u).log1p())
        return y.round().clamp(0, self.num_categories - 1)


def draw(dist: Distribution, sample_shape=(), generator: torch.Generator | None = None) -> Tensor:
    """Seeded sampling of every distribution the latent-variable models use (``dgm.core.distributions``
    plus :class:`DiscretizedLogistic`)."""
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if isinstance(base, DiscretizedLogistic):
        return base.sample(sample_shape, generator)
    return _core_sample(dist, tuple(sample_shape), generator)


class Likelihood(nn.Module):
    """The observation model of one support: parameter count per dimension and the distribution they give.

    Args:
        support: the data's :class:`Support`.
        kind: one of :data:`KINDS` for that support, or ``"auto"`` (bernoulli for binary, categorical for
            categorical(k) with k < 32, discretized-logistic for larger k such as 8-bit pixels, gaussian for
            real data).
    """

    def __init__(self, support: Support, num_dims: int, kind: str = "auto"):
        super().__init__()
        self.support = support
        allowed = KINDS[support.kind]
        if kind == "auto":
            kind = allowed[0]
            if support.kind == "categorical" and support.num_categories >= 32:
                kind = "discretized-logistic"
        if kind not in allowed:
            raise ConfigError(
                f"decoder {kind!r} does not model {support} data; use one of {', '.join(allowed)}"
            )
        self.kind = kind
        k = support.num_categories
        per_dim = {"bernoulli": 1, "categorical": k, "discretized-logistic": 2, "gaussian": 1}
        self.params_per_dim = per_dim[kind]
        if kind == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(num_dims))
        # Raw values enter the encoders on a [0, 1] scale for ordinal data (k−1 for categorical(k)).
        self.input_scale = 1.0 / (k - 1) if support.kind == "categorical" else 1.0

    def dist(self, params: Tensor) -> Distribution:
        """Decoder outputs ``(..., D, P)`` → p(x | z) with batch shape ``(...)`` and event shape ``(D,)``."""
        if self.kind == "bernoulli":
            base = Bernoulli(logits=params[..., 0], validate_args=False)
        elif self.kind == "categorical":
            base = Categorical(logits=params, validate_args=False)
        elif self.kind == "gaussian":
            scale = soft_clamp(self.log_scale, LOG_SCALE_BOUND).exp()
            base = Normal(params[..., 0], scale.expand(params.shape[:-1]), validate_args=False)
        else:
            k = self.support.num_categories
            # loc starts at the middle of the range; log-scale in bins, offset so that it starts near one bin.
            loc = (k - 1) / 2 + (k - 1) / 2 * params[..., 0]
            scale = soft_clamp(params[..., 1], LOG_SCALE_BOUND).exp()
            base = DiscretizedLogistic(loc, scale, k)
        return Independent(base, 1)

    def values(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """Flattened data ``(N, D)`` as the distribution takes them (long for a categorical)."""
        x = x.reshape(len(x), -1)
        return x.long() if self.kind == "categorical" else x.to(dtype)

    def mean(self, dist: Distribution) -> Tensor:
        """E[x | z] (probabilities for binary data, the expected value for categorical ones) in data units."""
        base = dist.base_dist
        if isinstance(base, Categorical):
            return (base.probs * torch.arange(base.probs.shape[-1], device=base.probs.device)).sum(-1)
        return base.mean
