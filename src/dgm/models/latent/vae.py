"""The variational autoencoder and its importance-weighted and class-conditional variants.

Kingma & Welling (2014), "Auto-Encoding Variational Bayes", ICLR: p(z) = N(0, I), p(x | z) given by a
decoder network, and an encoder network giving a diagonal Gaussian q(z | x) (amortised inference). Training
maximises the ELBO (their eq. 3)

    log p(x) ≥ E_q[log p(x | z)] − KL(q(z | x) ‖ p(z)),

whose KL term is analytic for Gaussians (their Appendix B); the expectation uses z = μ + σ ⊙ ε (the
reparameterisation trick, §2.4). ``beta`` weights the KL (Higgins et al. 2017, β-VAE; β = 1 is the ELBO).

Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders", ICLR: the same model trained on
the K-sample bound L_K = E[log (1/K) Σ_k p(x, z_k)/q(z_k | x)] (eq. 8), tighter as K grows. ``vae`` and
``iwae`` are one implementation; K is ``num_train_samples`` (1 for ``vae``, 50 for ``iwae``).

Sohn, Lee & Yan (2015), "Learning Structured Output Representation using Deep Conditional Generative
Models", NeurIPS: the conditional VAE, q(z | x, y) and p(x | z, y) with a class label y (``cvae``).

``gradient="reinforce"`` replaces the reparameterisation gradient of the encoder by the score-function
estimator with a moving-average baseline (VIMCO's leave-one-out baselines for K > 1); see
:mod:`dgm.models.latent.estimators`. It exists to measure the variance difference; training with it is slow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from dgm.core.errors import ConfigError, DataError
from dgm.core.registry import register
from dgm.models.latent.base import LatentVariableModel
from dgm.models.latent.decoders import Likelihood, draw
from dgm.models.latent.networks import build_decoder, build_encoder
from dgm.nn.functional import hidden_sizes_list, soft_clamp

LATENT_LOG_SCALE_BOUND = 12.0


class VAE(LatentVariableModel):
    """VAE / IWAE / CVAE with MLP or convolutional networks.

    Kingma & Welling (2014), "Auto-Encoding Variational Bayes", ICLR.

    Args:
        event_shape: shape of one example; ``architecture="conv"`` needs an image ``(C, H, W)``.
        support: ``"binary"``, ``"categorical(k)"`` or ``"real"``.
        latent_dim: size of z.
        hidden_sizes: the encoder's hidden widths; the decoder mirrors them (e.g. ``[300, 300]``).
            With ``"conv"`` they are the dense layers between the convolutions and z.
        architecture: ``"mlp"`` or ``"conv"`` (stride-2 convolutions, mirrored by transposed ones).
        channels: convolution channels per stride-2 layer (``"conv"`` only).
        activation: hidden nonlinearity (relu, elu, tanh, softplus, leaky_relu, gelu).
        decoder: p(x | z): ``"auto"``, ``"bernoulli"``, ``"categorical"``, ``"discretized-logistic"`` or
            ``"gaussian"`` (see :mod:`dgm.models.latent.decoders`).
        num_train_samples: K of the training bound (1: the ELBO; > 1: the IWAE bound).
        beta: weight of the KL term (of log p(z) − log q(z | x) inside the weights for K > 1).
        gradient: ``"reparam"`` or ``"reinforce"`` (the encoder's gradient estimator).
        analytic_kl: use the closed-form KL where it exists (else a Monte Carlo estimate).
        num_classes: if set, the model is class-conditional: q(z | x, y) and p(x | z, y) (CVAE).
        kl_warmup: training steps over which the KL's weight rises linearly to ``beta`` (0: none); see
            :meth:`~dgm.models.latent.base.LatentVariableModel._setup_kl_warmup`.
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
        analytic_kl: bool = True,
        num_classes: int | None = None,
        kl_warmup: int = 0,
    ):
        super().__init__(event_shape, support)
        self._check_common(num_train_samples, beta, gradient)
        self._setup_kl_warmup(kl_warmup)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ConfigError(f"latent_dim must be a positive int, got {latent_dim!r}")
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
        ):
            raise ConfigError(f"num_classes must be an int >= 2 or None, got {num_classes!r}")
        hidden = hidden_sizes_list(hidden_sizes)
        chans = hidden_sizes_list(channels, "channels")
        if architecture == "conv" and not chans:
            raise ConfigError("architecture 'conv' needs at least one entry in channels")
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.num_train_samples, self.beta, self.gradient = num_train_samples, float(beta), gradient
        self.analytic_kl = bool(analytic_kl)
        self.likelihood = Likelihood(self.support, self.num_dims, decoder)
        cond = num_classes or 0
        self.encoder = build_encoder(
            architecture,
            self.event_shape,
            cond,
            hidden,
            self._encoder_outputs(),
            activation,
            chans,
            self.likelihood.input_scale,
        )
        self.decoder = build_decoder(
            architecture,
            latent_dim + cond,
            hidden[::-1],
            self.event_shape,
            self.likelihood.params_per_dim,
            activation,
            chans,
        )
        # q(z | x) starts as the prior (KL = 0): a proposal no narrower than p(z) keeps the importance
        # weights' variance finite from the first step.
        last = self.encoder.net[-1] if hasattr(self.encoder, "net") else self.encoder.head[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        # Moving average of the REINFORCE integrand: a baseline (control variate) that adds no bias.
        self.register_buffer("baseline", torch.zeros(()))
        self._check_estimator()

    def _check_estimator(self) -> None:
        pass

    # ------------------------------------------------------------------ the latent variable (Gaussian)
    def _encoder_outputs(self) -> int:
        return 2 * self.latent_dim

    def _posterior(self, h: Tensor) -> Distribution:
        loc, log_scale = h.chunk(2, -1)
        return Independent(Normal(loc, soft_clamp(log_scale, LATENT_LOG_SCALE_BOUND).exp()), 1)

    def _latent_from_noise(self, q: Distribution, eps: Tensor) -> Tensor:
        return q.base_dist.loc + q.base_dist.scale * eps

    def _noise_spec(self, n: int) -> tuple:
        return (((n, self.latent_dim), "normal"),)

    def prior(self, context: Tensor | None = None) -> Distribution:
        """p(z) = N(0, I) (batch shape (), event shape (latent_dim,))."""
        zeros = torch.zeros(self.latent_dim, dtype=self.dtype, device=self.device)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def _kl(self, q: Distribution, labels) -> Tensor | None:
        """KL(q ‖ p) in closed form, or None where it has none."""
        return kl_divergence(q, self.prior()) if self.analytic_kl else None

    def _prior_noise_spec(self, n: int) -> tuple:
        return (((n, self.latent_dim), "normal"),)

    def _prior_from_noise(self, noise, labels) -> Tensor:
        return noise[0]  # p(z) = N(0, I)

    # ------------------------------------------------------------------ networks
    def _one_hot(self, labels) -> Tensor | None:
        if labels is None:
            return None
        return F.one_hot(labels, self.num_classes).to(self.dtype)

    def _q(self, x: Tensor, labels) -> Distribution:
        return self._posterior(self.encoder(x.to(self.dtype), self._one_hot(labels)))

    def _decode_latent(self, z: Tensor, labels) -> Distribution:
        h = z.to(self.dtype)
        if labels is not None:
            y = self._one_hot(labels)
            h = torch.cat([h, y.expand(*h.shape[:-1], y.shape[-1])], -1)
        return self.likelihood.dist(self.decoder(h))

    def _observed_labels(self, context, n: int) -> Tensor | None:
        labels = self._labels(context, n)
        if labels is not None and (labels < 0).any():
            raise DataError(f"{self.name} is class-conditional: pass context=labels (no -1) to encode/decode")
        return labels

    def encode(self, x: Tensor, context: Tensor | None = None) -> Distribution:
        """q(z | x) (or q(z | x, y)): a ``torch.distributions`` object with batch shape (N,)."""
        x = self.validate(x)
        return self._q(x, self._observed_labels(context, len(x)))

    def decode(self, z: Tensor, context: Tensor | None = None) -> Distribution:
        """p(x | z) (or p(x | z, y)) over flattened examples: batch shape ``z.shape[:-1]``, event (D,)."""
        if not isinstance(z, Tensor) or z.dim() < 2 or z.shape[-1] != self.latent_dim:
            raise DataError(f"z must be a tensor of shape (N, {self.latent_dim})")
        z = z.to(self.device)
        return self._decode_latent(z, self._observed_labels(context, z.shape[-2]))

    # ------------------------------------------------------------------ weights and bounds
    def _posterior_sample(self, x: Tensor, labels, noise):
        q = self._q(x, labels)
        z = self._latent_from_noise(q, noise[0])
        return z, q.log_prob(z)

    def _log_q(self, x: Tensor, labels, z: Tensor) -> Tensor:
        return self._q(x, labels).log_prob(z)

    def _log_joint(self, x: Tensor, labels, z: Tensor):
        return self._log_likelihood(x, z, labels), self.prior(labels).log_prob(z)

    def _terms(self, x, labels, k, estimator, beta, importance_weighted) -> dict[str, Tensor]:
        q = self._q(x, labels)
        z = self._latent_from_noise(q, self._draw_noise(len(x), k, None)[0])
        if estimator == "reinforce":
            z = z.detach()
        log_lik = self._log_likelihood(x, z, labels)  # (K, N)
        kl = None if importance_weighted else self._kl(q, labels)
        return self._bound(
            log_lik, self.prior(labels).log_prob(z), q.log_prob(z), estimator, beta, importance_weighted, kl
        )

    # ------------------------------------------------------------------ the latent space
    @torch.no_grad()
    def reconstruct(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """E[x | z = mean of q(z | x)]: the decoder's mean at the posterior mean, in data units."""
        q = self.encode(x, context)
        labels = self._observed_labels(context, len(x))
        dist = self._decode_latent(q.mean, labels)
        return self.likelihood.mean(dist).reshape(len(x), *self.event_shape)

    @torch.no_grad()
    def interpolate(self, x0: Tensor, x1: Tensor, steps: int = 8, context: Tensor | None = None) -> Tensor:
        """Decoder means along the straight line between the posterior means of x0 and x1 (each (N, ...)):
        shape ``(N, steps, *event_shape)``."""
        z0, z1 = self.encode(x0, context).mean, self.encode(x1, context).mean
        t = torch.linspace(0, 1, steps, dtype=self.dtype, device=self.device)[:, None, None]
        z = (1 - t) * z0 + t * z1  # (steps, N, d)
        labels = self._observed_labels(context, len(z0))
        mean = self.likelihood.mean(self._decode_latent(z, labels))
        return mean.transpose(0, 1).reshape(len(z0), steps, *self.event_shape)

    @torch.no_grad()
    def sample_grid(
        self, num_per_class: int = 8, generator: torch.Generator | None = None, mean: bool = True
    ):
        """Class × latent grid of a class-conditional model: the same ``num_per_class`` draws of z decoded
        with every label, shape ``(C, num_per_class, *event_shape)`` (decoder means, or samples)."""
        if self.num_classes is None:
            raise ConfigError(f"{self.name} was built without num_classes: there is no class grid")
        n = self.check_num_samples(num_per_class)
        c = self.num_classes
        z = self._prior_latent(n, None, generator).expand(c, n, -1)
        labels = torch.arange(c, device=self.device).repeat_interleave(n).reshape(c, n)
        h = torch.cat([z, F.one_hot(labels, c).to(self.dtype)], -1)
        dist = self.likelihood.dist(self.decoder(h))
        out = self.likelihood.mean(dist) if mean else draw(dist, (), generator)
        return out.float().reshape(c, n, *self.event_shape)


_PAPER_VAE = "Kingma & Welling 2014, Auto-Encoding Variational Bayes"
_TINY = {"latent_dim": 2, "hidden_sizes": [8]}
_SUPPORTS = ("binary", "categorical", "real")

register(
    "vae",
    description="variational autoencoder: Gaussian q(z|x), ELBO with analytic KL; β, K, REINFORCE options",
    paper=_PAPER_VAE,
    family="latent",
    tiny=_TINY,
    supports=_SUPPORTS,
)(VAE)


@register(
    "iwae",
    description="importance weighted autoencoder: the VAE trained on the K-sample bound (K = 50)",
    paper="Burda, Grosse & Salakhutdinov 2016, Importance Weighted Autoencoders",
    family="latent",
    tiny={**_TINY, "num_train_samples": 3},
    supports=_SUPPORTS,
)
class IWAE(VAE):
    """The VAE trained on the K-sample importance-weighted bound (``num_train_samples`` = K, 50 by default,
    Burda et al.'s k = 50). Same arguments as :class:`VAE`."""

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        latent_dim: int = 50,
        hidden_sizes=(200, 200),
        architecture: str = "mlp",
        channels=(32, 64),
        activation: str = "tanh",
        decoder: str = "auto",
        num_train_samples: int = 50,
        beta: float = 1.0,
        gradient: str = "reparam",
        analytic_kl: bool = True,
        num_classes: int | None = None,
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
            analytic_kl,
            num_classes,
        )


@register(
    "cvae",
    description="conditional VAE p(x|z,y): class-conditional samples and class × latent grids",
    paper="Sohn, Lee & Yan 2015, Learning Structured Output Representation using Deep Conditional "
    "Generative Models",
    family="latent",
    tiny={**_TINY, "num_classes": 2},
    supports=_SUPPORTS,
)
class CVAE(VAE):
    """The class-conditional VAE: q(z | x, y), p(x | z, y), p(z) = N(0, I).

    Sohn, Lee & Yan (2015), "Learning Structured Output Representation using Deep Conditional Generative
    Models", NeurIPS.

    ``log_prob(x, context=y)`` estimates log p(x | y); without labels (or where a label is −1) it estimates
    the marginal log Σ_y p(y) p(x | y) under a uniform p(y), and ``sample`` draws y uniformly first.
    :meth:`sample_grid` decodes the same latent draws under every class. Same arguments as :class:`VAE`,
    with ``num_classes`` required (10 by default).
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
        analytic_kl: bool = True,
        num_classes: int = 10,
    ):
        if num_classes is None:
            raise ConfigError("cvae needs num_classes (for an unconditional model use vae)")
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
            analytic_kl,
            num_classes,
        )
