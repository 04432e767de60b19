"""Naive Bayes: the generative classifier p(y) Π_d p(x_d | y) (CS236 lecture 2).

The "naive" assumption is that the D features are independent given the class, which turns a table of
Π k_d values per class into D small ones. Classification is Bayes' rule,
p(y | x) = p(y) p(x | y) / Σ_c p(c) p(x | c). Ng & Jordan (2002), "On discriminative vs. generative
classifiers", show that it reaches its (higher) asymptotic error with O(log D) examples where logistic
regression, its discriminative counterpart (``logistic-regression``), needs O(D): naive Bayes wins with
little data, logistic regression with much (``benchmarks/classic.py`` reproduces the learning curves).

Maximum likelihood is closed-form: class frequencies, and per class the smoothed value frequencies
(Bernoulli / categorical features, ``alpha`` pseudo-counts) or means and variances (Gaussian features, with
scikit-learn's ``var_smoothing`` added to every variance).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError, DataError
from dgm.core.model import GenerativeModel
from dgm.core.registry import register


@register(
    "naive-bayes",
    description="naive Bayes p(y) Π p(x_d | y), Bernoulli/categorical/Gaussian features; classifies",
    paper="Ng & Jordan 2002, On discriminative vs. generative classifiers (CS236 lecture 2)",
    family="classic",
    tiny={"num_classes": 3},
    supports=("binary", "categorical", "real"),
)
class NaiveBayes(GenerativeModel):
    """Class-conditional model with independent features given the class.

    Ng & Jordan (2002), "On discriminative vs. generative classifiers".

    ``log_prob(x, context=y)`` is log p(x | y); without context it is the marginal log p(x) =
    log Σ_y p(y) p(x | y), so the model is also an unconditional density (a mixture with observed
    components). :meth:`joint_log_prob` gives log p(x, y), :meth:`predict_proba` gives p(y | x).

    Args:
        num_classes: C.
        alpha: pseudo-count per feature value (Bernoulli and categorical features).
        var_smoothing: Gaussian features: this fraction of the largest feature variance is added to every
            class variance (as scikit-learn's GaussianNB does), so a constant feature has finite density.
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        num_classes: int = 10,
        alpha: float = 1.0,
        var_smoothing: float = 1e-9,
    ):
        super().__init__(event_shape, support)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}")
        if not alpha >= 0 or not var_smoothing >= 0:
            raise ConfigError("alpha and var_smoothing must be >= 0")
        self.num_classes, self.alpha, self.var_smoothing = num_classes, float(alpha), float(var_smoothing)
        C, D = num_classes, self.num_dims
        self.class_logits = nn.Parameter(torch.zeros(C))
        if self.support.kind == "binary":
            self.logits = nn.Parameter(torch.zeros(C, D))
        elif self.support.kind == "categorical":
            self.logits = nn.Parameter(torch.zeros(C, D, self.support.num_categories))
        else:
            self.loc = nn.Parameter(torch.zeros(C, D))
            self.log_scale = nn.Parameter(torch.zeros(C, D))

    @property
    def conditional(self) -> bool:
        return True

    # ------------------------------------------------------------------ distributions
    def prior(self) -> Categorical:
        """p(y)."""
        return Categorical(logits=self.class_logits)

    def class_conditional(self) -> Distribution:
        """p(x | y) for every class at once: batch shape (C,), event shape (D,)."""
        if self.support.kind == "binary":
            return Independent(Bernoulli(logits=self.logits), 1)
        if self.support.kind == "categorical":
            return Independent(Categorical(logits=self.logits), 1)
        return Independent(Normal(self.loc, self.log_scale.exp()), 1)

    def _values(self, x: Tensor) -> Tensor:
        x = x.reshape(len(x), 1, -1)  # broadcast against the class batch dimension
        return x.long() if self.support.kind == "categorical" else x.to(self.class_logits.dtype)

    def joint_log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """log p(x, y): shape ``(N,)`` for given labels, ``(N, C)`` for every class when ``y`` is None."""
        x = self.validate(x)
        table = self.prior().logits + self.class_conditional().log_prob(self._values(x))
        if y is None:
            return table
        y = self.check_classes(y, self.num_classes, len(x))
        return table.gather(1, y[:, None])[:, 0]

    # ------------------------------------------------------------------ contract
    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(x | y) with labels as ``context``; the marginal log p(x) without."""
        if context is None:
            return self.joint_log_prob(x).logsumexp(1)
        x = self.validate(x)
        y = self.check_classes(context, self.num_classes, len(x))
        return self.class_conditional().log_prob(self._values(x)).gather(1, y[:, None])[:, 0]

    def loss(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Generative training fits the joint: −mean log p(x, y) with labels, −mean log p(x) without."""
        if context is None:
            return -self.log_prob(x).mean()
        return -self.joint_log_prob(x, context).mean()

    def predict_proba(self, x: Tensor) -> Tensor:
        """p(y | x) by Bayes' rule, shape ``(N, C)``."""
        return self.joint_log_prob(x).softmax(1)

    def predict(self, x: Tensor) -> Tensor:
        """The maximum a posteriori class, shape ``(N,)``."""
        return self.joint_log_prob(x).argmax(1)

    @torch.no_grad()
    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ):
        """x ~ p(x | y) for given labels; y ~ p(y) first without them (ancestral sampling of the joint)."""
        n = self.check_num_samples(num_samples)
        if context is None:
            y = draw(self.prior(), (n,), generator)
        else:
            y = self.check_classes(context, self.num_classes, n)
        if self.support.kind == "binary":
            dist = Bernoulli(logits=self.logits[y])
        elif self.support.kind == "categorical":
            dist = Categorical(logits=self.logits[y])
        else:
            dist = Normal(self.loc[y], self.log_scale[y].exp())
        return draw(dist, (), generator).float().reshape(n, *self.event_shape)

    def num_parameters(self) -> int:
        k = self.support.num_categories
        per_class = self.num_dims * (k - 1 if k else 2)
        return self.num_classes - 1 + self.num_classes * per_class

    # ------------------------------------------------------------------ fitting
    @torch.no_grad()
    def fit(self, data, *, initialize: bool = True, generator=None) -> Iterator[dict[str, float]]:
        """Closed-form maximum likelihood of the joint from labelled data, in one pass."""
        x, y = self.training_arrays(data, generator)
        if y is None:
            raise DataError("naive-bayes is fitted on labelled data: the dataset has no labels (y)")
        x = x.reshape(len(x), -1)
        y = self.check_classes(y, self.num_classes, len(x))
        dtype = self.class_logits.dtype
        one_hot = torch.nn.functional.one_hot(y, self.num_classes).double()
        nc = one_hot.sum(0)
        # p(y) = N_c / N; a class absent from the data gets a floor instead of log 0.
        self.class_logits.copy_((nc / len(x)).clamp_min(1e-12).log().to(dtype))
        if self.support.kind == "real":
            xd = x.double()
            mean = one_hot.T @ xd / nc.clamp_min(1)[:, None]
            var = one_hot.T @ (xd * xd) / nc.clamp_min(1)[:, None] - mean**2
            epsilon = self.var_smoothing * xd.var(0, correction=0).max()
            var = var.clamp_min(0) + epsilon.clamp_min(1e-12)
            self.loc.copy_(mean.to(dtype))
            self.log_scale.copy_((0.5 * var.log()).to(dtype))
        else:
            k = self.support.num_categories
            counts = torch.zeros(self.num_classes, self.num_dims * k, dtype=torch.float64, device=x.device)
            rows = max(1, 2**22 // (self.num_dims * k))  # bounds the one-hot chunk (N·D·k values)
            for xc, oc in zip(x.split(rows), one_hot.split(rows), strict=True):
                counts += oc.T @ torch.nn.functional.one_hot(xc.long(), k).double().reshape(len(xc), -1)
            probs = (counts.reshape(self.num_classes, self.num_dims, k) + self.alpha) / (
                nc[:, None, None] + k * self.alpha
            ).clamp_min(1e-12)
            probs = probs.clamp(1e-12, 1)
            if self.support.kind == "binary":
                self.logits.copy_((probs[..., 1].log() - probs[..., 0].log()).to(dtype))
            else:
                self.logits.copy_(probs.log().to(dtype))
        yield {"train_loss": -self.joint_log_prob(x, y).mean().item(), "train_accuracy": self._accuracy(x, y)}

    def _accuracy(self, x: Tensor, y: Tensor) -> float:
        return (self.predict(x) == y).double().mean().item()
