"""A one-layer MAF is a Gaussian autoregressive model (test_models.py shows the identity); here, the ordering
matters: the same model class fits a target exactly in one ordering and cannot in the other.

Target: x1 ~ N(0, 1), x2 | x1 ~ N(x1², σ²). In the forward ordering (x1 first) every conditional is Gaussian
with a mean the MADE can learn, so the model class contains the target and the NLL reaches its entropy
H = ½ log(2πe) + ½ log(2πe σ²). In the reverse ordering the model needs p(x2), a shifted χ²₁-like law, and
p(x1 | x2), which is bimodal (±√(x2 − noise)): no Gaussian conditional fits either, so the best one-layer
model stays well above the entropy. (With more layers MAF can fix the reverse ordering: it is strictly more
flexible than a Gaussian AR model.)
"""

import math

import torch

from dgm.models.flows.base import StandardNormal
from dgm.models.flows.transforms import MaskedAffineAutoregressive

SIGMA = 0.3


def target(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(n, generator=g, dtype=torch.float64)
    x2 = x1**2 + SIGMA * torch.randn(n, generator=g, dtype=torch.float64)
    return torch.stack([x1, x2], 1)


def fit_gaussian_ar(x: torch.Tensor, ordering: str, steps: int = 150) -> float:
    """Train a one-layer MAF (a Gaussian AR model in ``ordering``) by full-batch Adam; return its NLL."""
    torch.manual_seed(0)
    layer = MaskedAffineAutoregressive(2, [32, 32], ordering=ordering, scale_clamp=None).double()
    base = StandardNormal((2,)).double()
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)

    def nll(data):
        z, log_det = layer(data)
        return -(base.log_prob(z) + log_det).mean()

    for _ in range(steps):
        optimizer.zero_grad()
        nll(x).backward()
        optimizer.step()
    with torch.no_grad():
        return nll(target(4000, 1)).item()


def test_forward_ordering_fits_exactly_and_reverse_ordering_cannot():
    x = target(2000, 0)
    entropy = 0.5 * math.log(2 * math.pi * math.e) + 0.5 * math.log(2 * math.pi * math.e * SIGMA**2)
    forward, reverse = fit_gaussian_ar(x, "natural"), fit_gaussian_ar(x, "reverse")
    assert forward < entropy + 0.1, (forward, entropy)
    assert reverse > forward + 0.5, (forward, reverse)
