"""FVSBN: the fully visible sigmoid belief network, one logistic regression per dimension.

Frey (1998), "Graphical Models for Machine Learning and Digital Communication", MIT Press; the MNIST
figure (97.45 nats) is from Gan, Henao, Carlson & Carin (2015), "Learning Deep Sigmoid Belief Networks
with Data Augmentation", AISTATS. The chain rule with every conditional a logistic regression on all
previous dimensions:

    p(x_i = 1 | x_<i) = σ(b_i + Σ_{j<i} W_ij x_j),

i.e. one linear map whose weight is masked to be strictly lower-triangular (in the ordering). The free
parameters are the D biases and the D(D-1)/2 kept weights: D(D+1)/2 in all. The categorical(k) variant
regresses softmax logits on the one-hot encoded previous values.

Each conditional is a logistic regression, so the maximum-likelihood fit over-fits on MNIST (training NLL
keeps falling while held-out NLL turns up). ``l1`` adds λ Σ |W_ij| to the training loss: the MAP estimate
under a Laplace prior on the weights, a sparsity-encouraging prior as in Gan et al.'s Bayesian treatment
(most of a pixel's 783 possible parents are irrelevant). The biases are not penalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError
from dgm.core.model import GenerativeModel
from dgm.core.progress import steps
from dgm.core.registry import register
from dgm.nn.masked import MaskedLinear, input_degrees, made_masks, make_ordering


@register(
    "fvsbn",
    description="fully visible sigmoid belief net: a logistic regression per dimension on the previous ones",
    paper="Frey 1998; Gan, Henao, Carlson & Carin 2015, Learning Deep Sigmoid Belief Networks",
    family="autoregressive",
    tiny={"ordering": "random"},
    supports=("binary", "categorical"),
)
class FVSBN(GenerativeModel):
    """Fully visible sigmoid (or softmax) belief network.

    Frey (1998), "Graphical Models for Machine Learning and Digital Communication", MIT Press; Gan, Henao,
    Carlson & Carin (2015), "Learning Deep Sigmoid Belief Networks with Data Augmentation", AISTATS.

    Args:
        event_shape: shape of one example (flattened to D values; raster order for images).
        support: ``"binary"`` (sigmoid conditionals) or ``"categorical(k)"`` (softmax on one-hot inputs).
        ordering: ``"natural"``, ``"reverse"``, ``"random"`` (drawn from ``seed``) or a permutation.
        num_classes: if set, the biases become one vector per class: p(x | y).
        l1: λ of the L1 penalty λ Σ |W_ij| added to :meth:`loss` (nats per example; 0: maximum
            likelihood). Over N training examples this is a Laplace prior with rate N·λ on each weight.
            ``log_prob`` is never penalised.
        seed: seeds a random ordering.
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        ordering="natural",
        num_classes: int | None = None,
        l1: float = 0.0,
        seed: int = 0,
    ):
        super().__init__(event_shape, support)
        if not self.support.discrete:
            raise ConfigError("fvsbn models binary or categorical(k) data")
        if num_classes is not None and num_classes < 1:
            raise ConfigError(f"num_classes must be a positive int or None, got {num_classes}")
        if isinstance(l1, bool) or not isinstance(l1, int | float) or not 0 <= l1 < float("inf"):
            raise ConfigError(f"l1 must be a finite number >= 0, got {l1!r}")
        self.num_classes, self.l1 = num_classes, float(l1)
        D = self.num_dims
        self.num_values = 1 if self.support.kind == "binary" else self.support.num_categories
        order = make_ordering(ordering, D, torch.Generator().manual_seed(seed))
        self.register_buffer("ordering", order)
        P = self.num_values
        mask = made_masks([input_degrees(order)], P, P)[0]  # strict: output d sees inputs before d only
        # The biases live outside the layer: one vector, or one per class.
        self.linear = MaskedLinear(P * D, P * D, mask, bias=False)
        # The log-likelihood is concave in (W, b), so zeros (every conditional uniform) is a fine start.
        nn.init.zeros_(self.linear.weight)
        self.bias = nn.Parameter(torch.zeros(num_classes or 1, P * D))

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    def _inputs(self, x: Tensor) -> Tensor:
        x = x.reshape(len(x), -1)
        dtype = self.linear.weight.dtype
        if self.support.kind == "binary":
            return x.to(dtype)
        return F.one_hot(x.long(), self.num_values).transpose(1, 2).reshape(len(x), -1).to(dtype)

    def _bias(self, context, n: int) -> Tensor:
        labels = self.class_labels(context, n)
        return self.bias.expand(n, -1) if labels is None else self.bias[labels]

    def _dist(self, logits: Tensor) -> Distribution:
        """Logits (N, P·D) laid out block-major → conditionals with batch shape (N, D)."""
        logits = logits.reshape(len(logits), self.num_values, self.num_dims)
        if self.support.kind == "binary":
            return Bernoulli(logits=logits[:, 0])
        return Categorical(logits=logits.transpose(1, 2))

    def conditionals(self, x: Tensor, context: Tensor | None = None) -> Distribution:
        """p(x_i | x_<i) for every dimension i (in the ordering), batch shape (N, D)."""
        x = self.validate(x)
        return self._dist(self.linear(self._inputs(x)) + self._bias(context, len(x)))

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.validate(x)
        values = x.reshape(len(x), -1)
        values = values.long() if self.support.kind == "categorical" else values.to(self.linear.weight.dtype)
        return self.conditionals(x, context).log_prob(values).sum(-1)

    def loss(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Mean NLL plus ``l1`` · Σ |W_ij| over the kept weights (the MAP objective; see ``l1``)."""
        nll = -self.log_prob(x, context).mean()
        if not self.l1:
            return nll
        return nll + self.l1 * self.linear.masked_weight().abs().sum()

    def num_parameters(self) -> int:
        """Exactly free parameters: (k-1)·[D·C + (k-1)·D(D-1)/2] with C classes (C = 1 unconditional);
        D(D+1)/2 for binary data. Softmax logits are shift-invariant and one-hot inputs sum to one, so
        each (output, input) pair of categorical dimensions has (k-1)² free weights."""
        D, k = self.num_dims, self.support.num_categories
        return (k - 1) * (D * (self.num_classes or 1) + (k - 1) * D * (D - 1) // 2)

    @torch.no_grad()
    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ):
        """Ancestral sampling: D steps, each one row-block of the masked weight (O(D²) per sample)."""
        n = self.check_num_samples(num_samples)
        P, D = self.num_values, self.num_dims
        bias = self._bias(context, n)
        weight = self.linear.masked_weight()
        inputs = torch.zeros(n, P * D, device=self.device, dtype=weight.dtype)
        x = torch.zeros(n, D, device=self.device)
        for d in steps(self.ordering.tolist(), "dim"):
            rows = torch.arange(P, device=self.device) * D + d
            logits = inputs @ weight[rows].T + bias[:, rows]
            if self.support.kind == "binary":
                value = draw(Bernoulli(logits=logits[:, 0]), (), generator)
                inputs[:, d] = value
            else:
                value = draw(Categorical(logits=logits), (), generator)
                inputs[torch.arange(n, device=self.device), value * D + d] = 1.0
            x[:, d] = value.float()
        return x.reshape(n, *self.event_shape)
