"""The VAE with a learned mixture-of-Gaussians prior (GMVAE).

p(z) = Σ_k π_k N(z; μ_k, diag σ_k²) with K components whose means and scales are learned (the weights
too with ``learn_weights``); p(x | z) and q(z | x) are the VAE's. A multimodal prior lets the aggregate
posterior form clusters instead of being pulled towards one Gaussian. The KL between a Gaussian q and a
mixture has no closed form, so the ELBO uses the Monte Carlo estimate log q(z | x) − log p(z) at the sampled
z (as in the CS236 homework's GMVAE, after Dilokthanakul et al. 2016 and Tomczak & Welling 2018, whose
VampPrior is the same bound with pseudo-input components).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from dgm.core.errors import ConfigError
from dgm.core.registry import register
from dgm.models.latent.vae import LATENT_LOG_SCALE_BOUND, VAE
from dgm.nn.functional import soft_clamp


@register(
    "gmvae",
    description="VAE with a learned mixture-of-Gaussians prior (K components), Monte Carlo KL",
    paper="Dilokthanakul et al. 2016, Deep Unsupervised Clustering with Gaussian Mixture VAEs; "
    "Tomczak & Welling 2018, VAE with a VampPrior (CS236 HW2 setting)",
    family="latent",
    tiny={"latent_dim": 2, "hidden_sizes": [8], "num_components": 3},
    supports=("binary", "categorical", "real"),
)
class GMVAE(VAE):
    """VAE whose prior is a learned mixture of ``num_components`` diagonal Gaussians.

    Dilokthanakul et al. (2016), "Deep Unsupervised Clustering with Gaussian Mixture VAEs"; Tomczak &
    Welling (2018), "VAE with a VampPrior".

    Args:
        num_components: K (500 in the CS236 reference setting).
        learn_weights: learn the mixture weights π (else uniform, as in the reference).
        Other arguments as :class:`dgm.models.latent.vae.VAE` (without ``analytic_kl`` and
        ``num_classes``: the KL is always a Monte Carlo estimate).
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        latent_dim: int = 10,
        hidden_sizes=(300, 300),
        architecture: str = "mlp",
        channels=(32, 64),
        activation: str = "elu",
        decoder: str = "auto",
        num_train_samples: int = 1,
        beta: float = 1.0,
        gradient: str = "reparam",
        num_components: int = 500,
        learn_weights: bool = False,
    ):
        super().__init__(
            event_shape,
            support,
            latent_dim,
            hidden_sizes,
            architecture,
            channels,
            activation,
            decoder,
            num_train_samples,
            beta,
            gradient,
            analytic_kl=False,
            num_classes=None,
        )
        if isinstance(num_components, bool) or not isinstance(num_components, int) or num_components < 1:
            raise ConfigError(f"num_components must be a positive int, got {num_components!r}")
        self.num_components = num_components
        k, d = num_components, latent_dim
        # Small random means around 0 and unit scales: the prior starts close to N(0, I) and the components
        # separate as training pulls them towards the codes.
        self.prior_loc = nn.Parameter(torch.randn(k, d) / math.sqrt(k))
        self.prior_log_scale = nn.Parameter(torch.zeros(k, d))
        if learn_weights:
            self.prior_logits = nn.Parameter(torch.zeros(k))
        else:
            self.register_buffer("prior_logits", torch.zeros(k))

    def _components(self) -> Independent:
        scale = soft_clamp(self.prior_log_scale, LATENT_LOG_SCALE_BOUND).exp()
        return Independent(Normal(self.prior_loc, scale), 1)

    def prior(self, context=None) -> Distribution:
        """p(z) = Σ_k π_k N(μ_k, diag σ_k²): a ``MixtureSameFamily`` (batch shape (), event (latent_dim,))."""
        return MixtureSameFamily(Categorical(logits=self.prior_logits), self._components())

    def _prior_noise_spec(self, n: int) -> tuple:
        return (((n,), "uniform"), ((n, self.latent_dim), "normal"))

    def _prior_from_noise(self, noise, labels) -> Tensor:
        u, eps = noise
        # The component by inverting the CDF of π at u, then z = μ_k + σ_k ε.
        cdf = torch.softmax(self.prior_logits, 0).cumsum(0)
        k = torch.searchsorted(cdf, u.contiguous()).clamp_max(self.num_components - 1)
        comp = self._components().base_dist
        return comp.loc[k] + comp.scale[k] * eps
