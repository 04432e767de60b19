"""A sigmoid belief network with one layer of binary latent units, trained with the score function.

Neal (1992), "Connectionist learning of belief networks": p(h) = Π_j Bernoulli(h_j; σ(b_j)) and
p(x | h) = Π_i Bernoulli(x_i; σ(W h + c)_i), here with an optional MLP between h and x. The latent units are
binary, so z = g(ε) is not differentiable and the reparameterisation trick does not apply: the inference
network q(h | x) = Π_j Bernoulli(σ(f(x))_j) is trained with the score-function (REINFORCE) estimator and a
baseline, as in Mnih & Gregor (2014), "Neural Variational Inference and Learning in Belief Networks" (NVIL;
here the moving-average baseline, their first variance-reduction step), or with VIMCO's leave-one-out
baselines for K > 1 samples (Mnih & Rezende 2016, "Variational inference for Monte Carlo objectives").
The KL between Bernoulli factorisations is analytic, so with K = 1 only the reconstruction term is estimated
by REINFORCE.

With few latent units the marginal likelihood is exact by enumerating all 2^H latent states
(:meth:`exact_log_prob`), which the tests use to check the importance-sampled ``log_prob``.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, kl_divergence

from dgm.core.errors import ConfigError, DataError
from dgm.core.registry import register
from dgm.models.latent.vae import VAE

MAX_ENUMERATED_UNITS = 20


@register(
    "sbn",
    description="sigmoid belief network: binary latent units, REINFORCE + baseline (VIMCO for K>1)",
    paper="Neal 1992, Connectionist learning of belief networks; Mnih & Gregor 2014, NVIL",
    family="latent",
    tiny={"latent_dim": 3, "hidden_sizes": [6]},
    supports=("binary", "categorical", "real"),
)
class SigmoidBeliefNetwork(VAE):
    """One layer of H binary latent units with a learned factorised Bernoulli prior.

    Neal (1992), "Connectionist learning of belief networks"; Mnih & Gregor (2014), "Neural Variational
    Inference and Learning in Belief Networks" (NVIL).

    Args:
        latent_dim: H, the number of binary latent units (200 in NVIL's MNIST SBN).
        hidden_sizes: hidden widths of the inference network (the decoder mirrors them); ``[]`` gives the
            classic linear-logistic SBN.
        gradient: only ``"reinforce"``: binary latents cannot be reparameterised.
        Other arguments as :class:`dgm.models.latent.vae.VAE` (MLP networks only).
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        latent_dim: int = 200,
        hidden_sizes=(),
        activation: str = "tanh",
        decoder: str = "auto",
        num_train_samples: int = 1,
        beta: float = 1.0,
        gradient: str = "reinforce",
        analytic_kl: bool = True,
    ):
        if gradient != "reinforce":
            raise ConfigError(
                "sbn has binary latent units, which cannot be reparameterised: use gradient='reinforce'"
            )
        super().__init__(
            event_shape,
            support,
            latent_dim,
            hidden_sizes,
            "mlp",
            (32, 64),
            activation,
            decoder,
            num_train_samples,
            beta,
            gradient,
            analytic_kl,
            None,
        )
        self.prior_logits = nn.Parameter(torch.zeros(latent_dim))

    # ------------------------------------------------------------------ the latent variable (Bernoulli)
    def _encoder_outputs(self) -> int:
        return self.latent_dim

    def _posterior(self, h: Tensor) -> Distribution:
        return Independent(Bernoulli(logits=h, validate_args=False), 1)

    def _latent_from_noise(self, q: Distribution, u: Tensor) -> Tensor:
        return (u < q.base_dist.probs).to(u.dtype)

    def _noise_spec(self, n: int) -> tuple:
        return (((n, self.latent_dim), "uniform"),)

    def _prior_noise_spec(self, n: int) -> tuple:
        return (((n, self.latent_dim), "uniform"),)

    def _prior_from_noise(self, noise, labels) -> Tensor:
        u = noise[0]
        return (u < torch.sigmoid(self.prior_logits)).to(u.dtype)

    def prior(self, context=None) -> Distribution:
        """p(h) = Π_j Bernoulli(σ(b_j))."""
        return Independent(Bernoulli(logits=self.prior_logits, validate_args=False), 1)

    def _kl(self, q: Distribution, labels) -> Tensor | None:
        if not self.analytic_kl:
            return None
        # torch's Bernoulli KL does not broadcast the prior's batch shape: expand it to q's.
        logits = self.prior_logits.expand_as(q.base_dist.logits)
        return kl_divergence(q, Independent(Bernoulli(logits=logits, validate_args=False), 1))

    def training_terms(self, x, context=None, estimator: str | None = None) -> dict[str, Tensor]:
        if estimator == "reparam":
            raise ConfigError("sbn has binary latent units: the reparameterisation gradient does not exist")
        return super().training_terms(x, context, estimator)

    # ------------------------------------------------------------------ exact likelihood
    @torch.no_grad()
    def exact_log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(x) = log Σ_h p(h) p(x | h), enumerating all 2^H latent states (H ≤ 20)."""
        if self.latent_dim > MAX_ENUMERATED_UNITS:
            raise DataError(
                f"exact_log_prob enumerates 2^{self.latent_dim} latent states; it is limited to "
                f"{MAX_ENUMERATED_UNITS} units — use log_prob(x, num_samples=K)"
            )
        x = self.validate(x)
        self.class_labels(context, len(x))
        states = torch.tensor(list(itertools.product((0.0, 1.0), repeat=self.latent_dim)), dtype=self.dtype)
        states = states.to(self.device)
        total = None
        rows = max(1, self.chunk_budget // max(1, len(x) * self._row_values()))
        for h in states.split(rows):
            joint = self._log_likelihood(x, h[:, None, :], None) + self.prior().log_prob(h)[:, None]
            part = torch.logsumexp(joint, 0)
            total = part if total is None else torch.logaddexp(total, part)
        return total
