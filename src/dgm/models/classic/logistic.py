"""Multinomial logistic regression: the discriminative counterpart of naive Bayes (CS236 lecture 2).

    p(y = c | x) = softmax(W x + b)_c

It models only the labels given the inputs, with no distribution over x: it cannot sample inputs or
score them, but it spends all its parameters on the decision boundary. With Bernoulli features the
posterior of naive Bayes has exactly this form, so the two are a generative–discriminative pair
(Ng & Jordan 2002); ``benchmarks/classic.py`` compares their learning curves.

Being discriminative, this model reads the common interface with the roles of x and y swapped:
``log_prob(x, context=y)`` is the log-likelihood log p(y | x) of the labels, ``loss`` the mean label NLL
plus the L2 penalty, and ``sample(n, context=x)`` draws labels for given inputs. ``fit`` minimises the
same penalised objective as scikit-learn's ``LogisticRegression(C=1 / (l2 · N))`` by full-batch L-BFGS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError, DataError
from dgm.core.model import GenerativeModel
from dgm.core.registry import register


@register(
    "logistic-regression",
    description="multinomial logistic regression p(y | x) = softmax(Wx + b); discriminative baseline",
    paper="Ng & Jordan 2002, On discriminative vs. generative classifiers (CS236 lecture 2)",
    family="classic",
    tiny={"num_classes": 3},
    supports=("binary", "categorical", "real"),
)
class LogisticRegression(GenerativeModel):
    """Softmax regression of the class on the inputs.

    Ng & Jordan (2002), "On discriminative vs. generative classifiers".

    Args:
        event_shape: shape of one input x (flattened into D features).
        support: the inputs' support; categorical(k) inputs are scaled to [0, 1] by 1/(k − 1) first.
        num_classes: C.
        l2: penalty (l2 / 2)·‖W‖² added to the mean label NLL (the bias is not penalised).
        tol: :meth:`fit` stops when an L-BFGS round (20 iterations) improves the objective by less than
            ``tol · max(1, objective)``, or after ``max_rounds`` rounds.
        max_rounds: cap on L-BFGS rounds in :meth:`fit`.
    """

    discriminative: ClassVar[bool] = True

    def __init__(
        self,
        event_shape,
        support: str = "real",
        num_classes: int = 10,
        l2: float = 1e-4,
        tol: float = 1e-7,
        max_rounds: int = 100,
    ):
        super().__init__(event_shape, support)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if not l2 >= 0 or not tol >= 0:
            raise ConfigError("l2 and tol must be >= 0")
        self.num_classes, self.l2, self.tol, self.max_rounds = (
            num_classes,
            float(l2),
            float(tol),
            int(max_rounds),
        )
        self.linear = nn.Linear(self.num_dims, num_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        k = self.support.num_categories
        self.input_scale = 1.0 / (k - 1) if k and k > 2 else 1.0

    @property
    def conditional(self) -> bool:
        return True

    def logits(self, x: Tensor) -> Tensor:
        """Wx + b for validated inputs, shape ``(N, C)``."""
        x = self.validate(x).reshape(len(x), -1).to(self.linear.weight.dtype)
        return self.linear(x * self.input_scale)

    def predict_proba(self, x: Tensor) -> Tensor:
        """p(y | x), shape ``(N, C)``."""
        return self.logits(x).softmax(1)

    def predict(self, x: Tensor) -> Tensor:
        return self.logits(x).argmax(1)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(y | x) of the labels ``context`` given the inputs ``x``, shape ``(N,)``."""
        if context is None:
            raise DataError(
                "logistic-regression models p(y | x) only: log_prob needs the labels as context "
                "(it has no density over the inputs)"
            )
        logits = self.logits(x)
        y = self.check_classes(context, self.num_classes, len(logits))
        return logits.log_softmax(1).gather(1, y[:, None])[:, 0]

    def penalty(self) -> Tensor:
        return 0.5 * self.l2 * self.linear.weight.pow(2).sum()

    def loss(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return -self.log_prob(x, context).mean() + self.penalty()

    @torch.no_grad()
    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ):
        """Labels y ~ p(y | x) for the inputs x given as ``context`` (one per sample), shape ``(n, 1)``."""
        n = self.check_num_samples(num_samples)
        if context is None:
            raise ConfigError(
                "logistic-regression is discriminative: it has no distribution over inputs to sample from; "
                "pass inputs as context to sample labels, or use predict_proba"
            )
        logits = self.logits(context)
        if len(logits) != n:
            raise DataError(f"sample({n}) needs {n} inputs as context, got {len(logits)}")
        return draw(Categorical(logits=logits), (), generator).float()[:, None]

    def num_parameters(self) -> int:
        """(C − 1)(D + 1): softmax logits are identified only up to a shared shift per input."""
        return (self.num_classes - 1) * (self.num_dims + 1)

    # ------------------------------------------------------------------ fitting
    def fit(self, data, *, initialize: bool = True, generator=None) -> Iterator[dict[str, float]]:
        """Full-batch L-BFGS with strong-Wolfe line search; one row per round of up to 20 iterations."""
        x, y = self.training_arrays(data, generator)
        if y is None:
            raise DataError("logistic-regression is fitted on labelled data: the dataset has no labels (y)")
        y = self.check_classes(y, self.num_classes, len(x))
        optimizer = torch.optim.LBFGS(
            self.parameters(), lr=1, max_iter=20, history_size=20, line_search_fn="strong_wolfe",
            tolerance_grad=1e-9, tolerance_change=1e-12,
        )  # fmt: skip

        def closure():
            optimizer.zero_grad()
            loss = self.loss(x, y)
            loss.backward()
            return loss

        previous = float("inf")
        for _ in range(self.max_rounds):
            optimizer.step(closure)
            with torch.no_grad():
                objective = self.loss(x, y).item()
                accuracy = (self.logits(x).argmax(1) == y).double().mean().item()
            yield {"train_loss": objective, "train_accuracy": accuracy}
            if previous - objective < self.tol * max(1.0, objective):
                return
            previous = objective
