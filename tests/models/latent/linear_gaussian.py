"""A VAE whose marginal likelihood is known: z ~ N(0, I), x | z ~ N(Wz + b, σ² I), so x ~ N(b, WWᵀ + σ² I).

Built from the registered ``vae`` with no hidden layers (the decoder is one linear map, the Gaussian decoder's
scale one parameter per dimension), with the encoder set to a chosen linear Gaussian q(z | x).
"""

import torch
from torch.distributions import MultivariateNormal

import dgm
from dgm.models.latent.decoders import LOG_SCALE_BOUND
from dgm.models.latent.vae import LATENT_LOG_SCALE_BOUND


def _unclamp(t: torch.Tensor, bound: float) -> torch.Tensor:
    """The raw value whose soft clamp ``bound · tanh(raw / bound)`` is ``t``."""
    return bound * torch.atanh(t / bound)


def linear_gaussian_vae(num_dims=5, latent_dim=2, sigma=0.5, seed=0, orthogonal=False, posterior="exact"):
    """(model, W, b, sigma) in float64. ``posterior``: "exact" sets q(z | x) to the mean and marginal
    variances of the true posterior (exact when W has orthogonal columns, a diagonal approximation
    otherwise); "prior" leaves q = p(z)."""
    g = torch.Generator().manual_seed(seed)
    model = dgm.build("vae", event_shape=(num_dims,), support="real", latent_dim=latent_dim, hidden_sizes=[])
    model = model.double()
    W = torch.randn(num_dims, latent_dim, generator=g, dtype=torch.float64)
    if orthogonal:
        W = torch.linalg.qr(W).Q * torch.linspace(1.0, 2.0, latent_dim, dtype=torch.float64)
    b = torch.randn(num_dims, generator=g, dtype=torch.float64)
    with torch.no_grad():
        dec = model.decoder.net[0]
        dec.weight.copy_(W)
        dec.bias.copy_(b)
        model.likelihood.log_scale.fill_(_unclamp(torch.tensor(sigma).log(), LOG_SCALE_BOUND).item())
        enc = model.encoder.net[0]
        enc.weight.zero_()
        enc.bias.zero_()
        if posterior == "exact":
            precision = torch.eye(latent_dim, dtype=torch.float64) + W.T @ W / sigma**2
            cov = torch.linalg.inv(precision)
            A = cov @ W.T / sigma**2  # posterior mean = A (x − b)
            enc.weight[:latent_dim].copy_(A)
            enc.bias[:latent_dim].copy_(-A @ b)
            enc.bias[latent_dim:].copy_(_unclamp(0.5 * cov.diagonal().log(), LATENT_LOG_SCALE_BOUND))
    return model, W, b, sigma


def exact_log_px(x, W, b, sigma):
    cov = W @ W.T + sigma**2 * torch.eye(len(b), dtype=torch.float64)
    return MultivariateNormal(b, cov).log_prob(x)


def draw_data(n, W, b, sigma, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, W.shape[1], generator=g, dtype=torch.float64)
    return z @ W.T + b + sigma * torch.randn(n, len(b), generator=g, dtype=torch.float64)
