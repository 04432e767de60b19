"""What every flow shares: a transform data → latent, a base distribution on the latent, and the
change-of-variables formula (DESIGN.md §1, §3).

    log p(x | y) = log p_base(z | y) + log|det ∂z/∂x|,   z = transform(x; y)

``sample`` draws ``z`` from the base and runs the transform's inverse; ``sample_and_log_prob`` also returns
the density of the samples from the same pass (for IAF the cheap direction, for MAF the D-pass one).
A class-conditional flow (``num_classes`` set) feeds the one-hot label to every conditioner.

Base distributions are small modules (so their parameters and device follow the flow) that give a
``torch.distributions`` object and draw seeded samples: :class:`StandardNormal`, :class:`StandardLogistic`
(NICE's prior) and :class:`GaussianMixture` (a learned mixture, e.g. for MAF MoG).
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    constraints,
)
from torch.distributions.utils import broadcast_all

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError
from dgm.core.model import GenerativeModel
from dgm.models.flows.transforms import Logit, Reshape, Transform


# ------------------------------------------------------------------------------ distributions
class Logistic(Distribution):
    """The logistic distribution: density ``σ(y)(1 − σ(y)) / scale`` with ``y = (x − loc) / scale``.

    torch builds it only as a transformed Uniform, whose density underflows to −inf a few dozen scales from
    the mode; here ``log p = −softplus(y) − softplus(−y) − log scale`` is accurate at any distance.
    """

    arg_constraints: ClassVar[dict] = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        self.loc, self.scale = broadcast_all(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def rsample(self, sample_shape=()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.icdf(u)

    def log_prob(self, value: Tensor) -> Tensor:
        y = (value - self.loc) / self.scale
        return -F.softplus(y) - F.softplus(-y) - self.scale.log()

    def cdf(self, value: Tensor) -> Tensor:
        return torch.sigmoid((value - self.loc) / self.scale)

    def icdf(self, value: Tensor) -> Tensor:
        tiny = torch.finfo(value.dtype).tiny
        u = value.clamp(tiny, 1 - torch.finfo(value.dtype).eps / 2)  # torch.rand may return exactly 0
        return self.loc + self.scale * (u.log() - torch.log1p(-u))

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return (self.scale * math.pi) ** 2 / 3

    def entropy(self) -> Tensor:
        return self.scale.log() + 2


# ------------------------------------------------------------------------------ base modules
class BaseDistribution(nn.Module):
    """A distribution over latents of shape ``shape``: ``distribution(context)`` (a torch Distribution),
    ``log_prob(z, context) -> (N,)`` and seeded ``sample(n, context, generator)``. Unconditional bases
    ignore the context."""

    def __init__(self, shape):
        super().__init__()
        self.shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
        # Carries dtype and device for parameter-free bases (follows .to() / .double(); not saved).
        self.register_buffer("_ref", torch.zeros(()), persistent=False)

    def distribution(self, context: Tensor | None = None) -> Distribution:
        raise NotImplementedError

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return self.distribution(context).log_prob(z)

    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class StandardNormal(BaseDistribution):
    """N(0, I) over latents of shape ``shape``."""

    def distribution(self, context=None):
        loc = self._ref.expand(self.shape)
        return Independent(Normal(loc, torch.ones_like(loc)), len(self.shape))

    def sample(self, num_samples, context=None, generator=None):
        return draw(self.distribution(), (num_samples,), generator)


class StandardLogistic(BaseDistribution):
    """Independent standard logistic latents: NICE's prior (Dinh et al. 2014, §3.4), heavier-tailed than a
    Gaussian, so that the loss gives better-behaved gradients far from the data."""

    def distribution(self, context=None):
        loc = self._ref.expand(self.shape)
        return Independent(Logistic(loc, torch.ones_like(loc)), len(self.shape))

    def sample(self, num_samples, context=None, generator=None):
        u = torch.rand(
            (num_samples, *self.shape), generator=generator, dtype=self._ref.dtype, device=self._ref.device
        )
        return Logistic(self._ref, torch.ones_like(self._ref)).icdf(u)


class GaussianMixture(BaseDistribution):
    """A learned mixture of ``num_components`` diagonal Gaussians over the flattened latent.

    The means start as standard-normal draws (from ``seed``) so that the components differ from the first
    step; scales start at 1 and weights uniform.
    """

    def __init__(self, shape, num_components: int = 10, seed: int = 0):
        super().__init__(shape)
        if num_components < 1:
            raise ConfigError(f"num_components must be positive, got {num_components}")
        d = math.prod(self.shape)
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.loc = nn.Parameter(torch.randn(num_components, d, generator=torch.Generator().manual_seed(seed)))
        self.log_scale = nn.Parameter(torch.zeros(num_components, d))

    def distribution(self, context=None):
        """The mixture over the *flattened* latent (event shape ``(D,)``)."""
        components = Independent(Normal(self.loc, self.log_scale.exp()), 1)
        return MixtureSameFamily(Categorical(logits=self.logits), components)

    def log_prob(self, z, context=None):
        return self.distribution().log_prob(z.reshape(len(z), -1))

    def sample(self, num_samples, context=None, generator=None):
        k = draw(Categorical(logits=self.logits), (num_samples,), generator)
        eps = torch.randn(
            num_samples, self.loc.shape[1], generator=generator, dtype=self.loc.dtype, device=self.loc.device
        )
        return (self.loc[k] + self.log_scale[k].exp() * eps).reshape(num_samples, *self.shape)


BASES = {"normal": StandardNormal, "logistic": StandardLogistic, "mog": GaussianMixture}


def make_base(name: str, shape, num_components: int = 10, seed: int = 0) -> BaseDistribution:
    """A base distribution by name: ``"normal"``, ``"logistic"`` or ``"mog"`` (``num_components``)."""
    if name not in BASES:
        raise ConfigError(f"unknown base distribution {name!r}; use one of {', '.join(BASES)}")
    return GaussianMixture(shape, num_components, seed) if name == "mog" else BASES[name](shape)


def preprocessing(event_shape, logit_alpha: float | None, flatten: bool) -> list[Transform]:
    """The transforms a flow puts before its layers: the logit of data in [0, 1] (when ``logit_alpha`` is
    set; its log-det is part of the density, DESIGN.md §4) and, for flat flows on images, a reshape to
    ``(D,)``."""
    layers: list[Transform] = []
    if logit_alpha is not None:
        layers.append(Logit(logit_alpha))
    if flatten and len(event_shape) > 1:
        layers.append(Reshape(event_shape, (math.prod(event_shape),)))
    return layers


# ------------------------------------------------------------------------------------- flows
class Flow(GenerativeModel):
    """Base class of the flows: ``transform`` (data → latent) and ``base`` (the latent distribution).

    Subclasses build both in their constructor (``self.transform``, ``self.base``) after calling
    ``super().__init__(event_shape, support, num_classes)``. Flows model real-valued data; discrete data
    are dequantised first (``digits-dequantized``, ``mnist-dequantized``).
    """

    exact = True
    transform: Transform
    base: BaseDistribution

    def __init__(self, event_shape, support: str = "real", num_classes: int | None = None):
        super().__init__(event_shape, support)
        if self.support.kind != "real":
            raise ConfigError(
                f"{type(self).__name__} is a flow over real values; dequantise discrete data first "
                "(e.g. the digits-dequantized and mnist-dequantized datasets)"
            )
        if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
            raise ConfigError(f"num_classes must be a positive int or None, got {num_classes!r}")
        self.num_classes = None if num_classes is None else int(num_classes)

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    @property
    def context_size(self) -> int:
        """Width of the context every conditioner receives (the one-hot label), 0 if unconditional."""
        return self.num_classes or 0

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.transform.output_shape(self.event_shape)

    def _dtype(self) -> torch.dtype:
        for t in itertools.chain(self.parameters(), self.buffers()):  # lazily: runs on every batch
            if t.is_floating_point():
                return t.dtype
        return torch.get_default_dtype()

    def _context(self, context, n: int) -> Tensor | None:
        labels = self.class_labels(context, n)
        return None if labels is None else F.one_hot(labels, self.num_classes).to(self._dtype())

    # ------------------------------------------------------------------ densities
    def to_latent(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(z, log|det ∂z/∂x|)`` for a batch of data (validated; labels as in :meth:`log_prob`)."""
        x = self.validate(x)
        return self.transform(x.to(self._dtype()), self._context(context, len(x)))

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p_base(z) + log|det ∂z/∂x|`` in nats, shape ``(N,)``; exact."""
        x = self.validate(x)
        ctx = self._context(context, len(x))
        z, log_det = self.transform(x.to(self._dtype()), ctx)
        return self.base.log_prob(z, ctx) + log_det

    # ------------------------------------------------------------------ sampling
    def sample_and_log_prob(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Samples ``(n, *event_shape)`` in the model's dtype and their log-densities ``(n,)``, from one
        inverse pass: ``log p(x) = log p_base(z) − log|det ∂x/∂z|``. Differentiable (reparameterised
        through the base draw), e.g. for minimising KL(this ‖ target) on the model's own samples."""
        n = self.check_num_samples(num_samples)
        ctx = self._context(context, n)
        z = self.base.sample(n, ctx, generator).to(self._dtype())
        x, log_det = self.transform.inverse_and_log_det(z, ctx)
        return x, self.base.log_prob(z, ctx) - log_det

    @torch.no_grad()
    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """``x = transform⁻¹(z)``, ``z ~ base``: float32 ``(n, *event_shape)``."""
        n = self.check_num_samples(num_samples)
        ctx = self._context(context, n)
        z = self.base.sample(n, ctx, generator).to(self._dtype())
        return self.transform.inverse(z, ctx).float().reshape(n, *self.event_shape)
