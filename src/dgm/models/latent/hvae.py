"""A hierarchical VAE with L stochastic layers: p(z_L) p(z_{L−1} | z_L) … p(z_1 | z_2) p(x | z_1).

Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders", §5: their two-stochastic-layer
architecture for MNIST is x → 2 × 100 tanh → z_1 (100) → 2 × 50 tanh → z_2 (50), with the generative
network its mirror image (Rezende, Mohamed & Wierstra 2014's deep latent Gaussian model, trained as in
Kingma & Welling 2014). Inference is bottom-up, q(z_1 | x) q(z_2 | z_1) … q(z_L | z_{L−1}), each a diagonal
Gaussian; every conditional prior p(z_l | z_{l+1}) is a diagonal Gaussian given by a network, and p(z_L) is
N(0, I). No KL is closed-form here (the prior of z_1 depends on the sampled z_2), so the ELBO uses the Monte
Carlo estimate; with ``num_train_samples`` = K > 1 the model is the 2-layer IWAE.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from dgm.core.errors import ConfigError, DataError
from dgm.core.registry import register
from dgm.models.latent.base import LatentVariableModel
from dgm.models.latent.decoders import Likelihood
from dgm.models.latent.networks import MLPDecoder, MLPEncoder, mlp
from dgm.models.latent.vae import LATENT_LOG_SCALE_BOUND
from dgm.nn.functional import hidden_sizes_list, soft_clamp


def _gaussian(h: Tensor) -> Independent:
    loc, log_scale = h.chunk(2, -1)
    return Independent(Normal(loc, soft_clamp(log_scale, LATENT_LOG_SCALE_BOUND).exp()), 1)


@register(
    "hvae",
    description="hierarchical VAE, L stochastic layers p(z2)p(z1|z2)p(x|z1) (Burda et al.'s 2-layer model)",
    paper="Burda, Grosse & Salakhutdinov 2016, Importance Weighted Autoencoders (2-layer architecture); "
    "Rezende, Mohamed & Wierstra 2014",
    family="latent",
    tiny={"latent_dims": [2, 1], "hidden_sizes": [[8], []]},
    supports=("binary", "categorical", "real"),
)
class HierarchicalVAE(LatentVariableModel):
    """A VAE with a stack of Gaussian stochastic layers.

    Args:
        latent_dims: sizes of z_1 … z_L, bottom (next to x) first; Burda et al.: ``[100, 50]``.
        hidden_sizes: one list of deterministic widths per stochastic layer: between x and z_1, z_1 and
            z_2, …; each generative network mirrors its inference network. Burda et al.:
            ``[[100, 100], [50, 50]]``.
        activation: hidden nonlinearity (tanh in the paper).
        decoder, num_train_samples, beta, gradient, kl_warmup: as :class:`dgm.models.latent.vae.VAE`
            (Sønderby et al. 2016 warm up over their first 200 epochs).
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        latent_dims=(100, 50),
        hidden_sizes=((100, 100), (50, 50)),
        activation: str = "tanh",
        decoder: str = "auto",
        num_train_samples: int = 1,
        beta: float = 1.0,
        gradient: str = "reparam",
        kl_warmup: int = 0,
    ):
        super().__init__(event_shape, support)
        self._check_common(num_train_samples, beta, gradient)
        self._setup_kl_warmup(kl_warmup)
        dims = hidden_sizes_list(latent_dims, "latent_dims")
        if not dims:
            raise ConfigError("latent_dims needs at least one stochastic layer")
        if not isinstance(hidden_sizes, list | tuple) or len(hidden_sizes) != len(dims):
            raise ConfigError(
                f"hidden_sizes needs one list of widths per stochastic layer ({len(dims)}), "
                f"got {hidden_sizes!r}"
            )
        hidden = [hidden_sizes_list(h) for h in hidden_sizes]
        self.latent_dims, self.num_train_samples, self.beta, self.gradient = (
            dims,
            num_train_samples,
            float(beta),
            gradient,
        )
        self.likelihood = Likelihood(self.support, self.num_dims, decoder)
        # encoder[l]: q(z_{l+1} | z_l) with z_0 = x;  decoder[0]: p(x | z_1), decoder[l]: p(z_l | z_{l+1}).
        self.encoder = nn.ModuleList(
            [MLPEncoder(self.event_shape, 0, hidden[0], 2 * dims[0], activation, self.likelihood.input_scale)]
            + [mlp(dims[i - 1], hidden[i], 2 * dims[i], activation) for i in range(1, len(dims))]
        )
        self.decoder = nn.ModuleList(
            [MLPDecoder(dims[0], hidden[0][::-1], self.num_dims, self.likelihood.params_per_dim, activation)]
            + [mlp(dims[i], hidden[i][::-1], 2 * dims[i - 1], activation) for i in range(1, len(dims))]
        )
        for net in self.encoder:  # every q(z_l | ·) starts as N(0, I)
            last = net.net[-1] if isinstance(net, MLPEncoder) else net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.register_buffer("baseline", torch.zeros(()))

    # ------------------------------------------------------------------ distributions
    def encode(self, x: Tensor, context: Tensor | None = None) -> Distribution:
        """q(z_1 | x), the bottom layer's posterior (batch shape (N,)); :meth:`encode_all` samples all."""
        x = self.validate(x)
        self.class_labels(context, len(x))
        return _gaussian(self.encoder[0](x.to(self.dtype)))

    def decode(self, z1: Tensor, context: Tensor | None = None) -> Distribution:
        """p(x | z_1) over flattened examples (batch shape ``z1.shape[:-1]``, event (D,))."""
        if not isinstance(z1, Tensor) or z1.dim() < 2 or z1.shape[-1] != self.latent_dims[0]:
            raise DataError(f"z1 must be a tensor of shape (N, {self.latent_dims[0]})")
        self.class_labels(context, z1.shape[-2])
        return self.likelihood.dist(self.decoder[0](z1.to(self.device, self.dtype)))

    def conditional_prior(self, level: int, z_above: Tensor) -> Distribution:
        """p(z_level | z_{level+1}) for level = 1 … L−1."""
        return _gaussian(self.decoder[level](z_above))

    def prior(self, context=None) -> Distribution:
        """p(z_L) = N(0, I), the top layer's prior."""
        zeros = torch.zeros(self.latent_dims[-1], dtype=self.dtype, device=self.device)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def encode_all(self, x: Tensor, noise: tuple | None = None, detach: bool = False):
        """Bottom-up draws (z_1, …, z_L) ~ q and log q(z_1, …, z_L | x), for noise of shape (S, N, d_l)."""
        if noise is None:
            noise = self._draw_noise(len(x), 1, None)
        h = x.to(self.dtype)
        zs, log_q = [], 0.0
        for net, eps in zip(self.encoder, noise, strict=True):
            q = _gaussian(net(h))
            z = q.base_dist.loc + q.base_dist.scale * eps
            if detach:
                z = z.detach()
            log_q = log_q + q.log_prob(z)
            zs.append(z)
            h = z
        return tuple(zs), log_q

    @torch.no_grad()
    def posterior_means(
        self, x: Tensor, context: Tensor | None = None, num_samples: int = 500, generator=None
    ):
        """E_q[z_l | x] per layer: exact for z_1; for l > 1, E_{q(z_{l-1} | x)}[mean of q(z_l | z_{l-1})]
        over ``num_samples`` draws of the layers below. Every example shares the same noise (common random
        numbers), so a layer whose posterior ignores x gets exactly equal means for all x, not Monte Carlo
        scatter that :meth:`active_units` would count."""
        q = self.encode(x, context)
        means = [q.mean]
        where = self.device if generator is None else generator.device  # then moved to the model's
        eps = torch.randn(
            num_samples, 1, q.mean.shape[-1], generator=generator, dtype=self.dtype, device=where
        )
        z = q.mean + q.stddev * eps.to(self.device)
        for net in self.encoder[1:]:
            q = _gaussian(net(z))
            means.append(q.mean.mean(0))
            eps = torch.randn(
                num_samples, 1, q.mean.shape[-1], generator=generator, dtype=self.dtype, device=where
            )
            z = q.mean + q.stddev * eps.to(self.device)
        return means

    def _log_prior(self, zs) -> Tensor:
        lp = self.prior().log_prob(zs[-1])
        for level in range(1, len(zs)):
            lp = lp + self.conditional_prior(level, zs[level]).log_prob(zs[level - 1])
        return lp

    # ------------------------------------------------------------------ hooks of LatentVariableModel
    def _noise_spec(self, n: int) -> tuple:
        return tuple(((n, d), "normal") for d in self.latent_dims)

    def _posterior_sample(self, x, labels, noise):
        return self.encode_all(x, noise)

    def _log_q(self, x, labels, zs) -> Tensor:
        h, log_q = x.to(self.dtype), 0.0
        for net, z in zip(self.encoder, zs, strict=True):
            log_q = log_q + _gaussian(net(h)).log_prob(z)
            h = z
        return log_q

    def _log_joint(self, x, labels, zs):
        return self._log_likelihood(x, zs, labels), self._log_prior(zs)

    def _decode_latent(self, latent, labels) -> Distribution:
        z1 = latent[0] if isinstance(latent, tuple) else latent
        return self.likelihood.dist(self.decoder[0](z1))

    def _prior_noise_spec(self, n: int) -> tuple:
        return self._noise_spec(n)

    def _prior_from_noise(self, noise, labels):
        z = noise[-1]  # p(z_L) = N(0, I)
        zs = [z]
        for level in range(len(self.latent_dims) - 1, 0, -1):
            p = self.conditional_prior(level, z)
            z = p.base_dist.loc + p.base_dist.scale * noise[level - 1]
            zs.insert(0, z)
        return tuple(zs)

    def _terms(self, x, labels, k, estimator, beta, importance_weighted) -> dict[str, Tensor]:
        zs, log_q = self.encode_all(x, self._draw_noise(len(x), k, None), detach=estimator == "reinforce")
        log_lik = self._log_likelihood(x, zs, labels)
        return self._bound(log_lik, self._log_prior(zs), log_q, estimator, beta, importance_weighted)

    def _row_values(self) -> int:
        widths = [self.num_dims * self.likelihood.params_per_dim]
        widths += [m.out_features for net in self.decoder for m in net.modules() if isinstance(m, nn.Linear)]
        return max(widths)
