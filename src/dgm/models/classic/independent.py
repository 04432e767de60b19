"""The fully independent model p(x) = Π_i p(x_i): the baseline every other model must beat.

With D binary pixels it has D parameters; the chain rule with full tables would need 2^D − 1. Its
maximum-likelihood fit is closed-form: the empirical frequency of each value at each position,
smoothed by adding ``alpha`` pseudo-counts per value (Laplace's rule of succession for alpha = 1), so a
pixel never seen "on" in training does not give −∞ log-likelihood on the test set.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError
from dgm.core.model import GenerativeModel
from dgm.core.registry import register


@register(
    "independent",
    description="product of independent marginals p(x) = Π p(x_i) (Bernoulli, categorical or Gaussian)",
    paper="baseline (CS236 lecture 2: representation)",
    family="classic",
    supports=("binary", "categorical", "real"),
)
class IndependentModel(GenerativeModel):
    """Independent Bernoulli / categorical / Gaussian marginals, fitted in closed form or by gradient.

    Args:
        event_shape: shape of one example.
        support: ``"binary"`` (Bernoulli), ``"categorical(k)"`` or ``"real"`` (Gaussian).
        alpha: pseudo-count added to every value of every marginal by :meth:`fit` (discrete supports).
        min_scale: floor on the Gaussian standard deviations fitted by :meth:`fit` (real support).
    """

    def __init__(self, event_shape, support: str = "binary", alpha: float = 1.0, min_scale: float = 1e-3):
        super().__init__(event_shape, support)
        if alpha < 0:
            raise ConfigError(f"alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.min_scale = float(min_scale)
        D = self.num_dims
        if self.support.kind == "binary":
            self.logits = nn.Parameter(torch.zeros(D))
        elif self.support.kind == "categorical":
            self.logits = nn.Parameter(torch.zeros(D, self.support.num_categories))
        else:
            self.loc = nn.Parameter(torch.zeros(D))
            self.log_scale = nn.Parameter(torch.zeros(D))

    def distribution(self) -> Distribution:
        """p(x) over flattened examples, as a ``torch.distributions`` object with event shape (D,)."""
        if self.support.kind == "binary":
            base = Bernoulli(logits=self.logits)
        elif self.support.kind == "categorical":
            base = Categorical(logits=self.logits)
        else:
            base = Normal(self.loc, self.log_scale.exp())
        return Independent(base, 1)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.validate(x)
        self.class_labels(context, len(x))  # refuses a context: this model has none
        return self.distribution().log_prob(x.reshape(len(x), -1).to(self._value_dtype()))

    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ):
        n = self.check_num_samples(num_samples)
        self.class_labels(context, n)
        with torch.no_grad():
            x = draw(self.distribution(), (n,), generator)
        return x.float().reshape(n, *self.event_shape)

    def _value_dtype(self) -> torch.dtype:
        # Categorical.log_prob indexes with its argument, so the values must be integers.
        return torch.long if self.support.kind == "categorical" else next(self.parameters()).dtype

    def num_parameters(self) -> int:
        k = self.support.num_categories
        return self.num_dims * (k - 1 if k else 2)

    @torch.no_grad()
    def fit(self, data, *, initialize: bool = True, generator=None) -> Iterator[dict[str, float]]:
        """Closed-form maximum likelihood (smoothed by ``alpha``): one step, yields the training NLL."""
        x, _ = self.training_arrays(data, generator)
        x = x.reshape(len(x), -1)
        n = len(x)
        if self.support.kind == "real":
            self.loc.copy_(x.mean(0))
            self.log_scale.copy_(x.std(0, correction=0).clamp_min(self.min_scale).log())
        else:
            k = self.support.num_categories
            if k == 2:  # binary: the count of ones per position is all that is needed
                ones = x.sum(0, dtype=torch.float64)
                counts = torch.stack([n - ones, ones], 1).to(self.logits.dtype)
            else:
                counts = self._value_counts(x, k)
            probs = (counts + self.alpha) / (n + k * self.alpha)
            if self.support.kind == "binary":
                self.logits.copy_(torch.logit(probs[:, 1]))
            else:
                self.logits.copy_(probs.log())
        # x is validated and flat already: score it with the distribution, not a second pass of log_prob.
        yield {"train_loss": -self.distribution().log_prob(x.to(self._value_dtype())).mean().item()}

    def _value_counts(self, x: Tensor, k: int) -> Tensor:
        """counts[i, v] = #{n : x[n, i] = v}, by one bincount over (position, value) pairs."""
        counts = torch.zeros(self.num_dims * k, dtype=torch.float64, device=x.device)
        offsets = torch.arange(self.num_dims, device=x.device) * k
        for chunk in x.long().split(4096):  # chunks keep the int64 copy small
            counts += torch.bincount((chunk + offsets).flatten(), minlength=len(counts))
        return counts.reshape(self.num_dims, k).to(self.logits.dtype)
