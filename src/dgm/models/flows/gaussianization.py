"""Gaussianization flow: trainable kernel-density marginal Gaussianization alternating with learned rotations.

Meng, Song, Song & Ermon (2020), "Gaussianization Flows", AISTATS. Iterative Gaussianization (Chen &
Gopinath 2001; Laparra, Camps-Valls & Malo 2011, RBIG) alternates two steps until the data look Gaussian:
make every marginal standard normal, then rotate so that the next marginal step sees new directions.
Gaussianization flows make both steps trainable and fit them jointly by maximum likelihood:

* marginal step (§3.1, :class:`~dgm.models.flows.transforms.KernelGaussianization`):
  ``z_d = Φ⁻¹(F_d(x_d))`` with ``F_d`` a kernel density estimate of ``num_kernels`` logistic kernels with
  learned anchors and bandwidths; log|dz/dx| = log f_d(x) − log φ(z);
* rotation (§3.2, :class:`~dgm.models.flows.transforms.HouseholderRotation`): a product of Householder
  reflections (D of them by default: any orthogonal matrix), volume preserving.

Initialisation from data (§3.3): each marginal step starts as a smoothed empirical CDF of what reaches it
(anchors at its input's quantiles), i.e. the flow starts as RBIG with random rotations, already a good
density model before any gradient step. :meth:`GaussianizationFlow.initialize` does this from a data set
(e.g. the whole training set); with ``data_init=True`` a model not yet initialised does it from the first
batch it sees in training mode (as ActNorm does), so ``dgm.train`` gets it too.

No closed-form inverse: sampling inverts each marginal step by bisection in log-CDF space (Newton-accelerated,
bracketed, accurate in the tails) to ``inverse_tol``; rotations invert exactly. The inverse runs without
gradients (samples are not differentiable with respect to the noise). Images are flattened.

Tails: a marginal step maps its kernels' exponential tails onto Gaussian ones, so stacking steps gives the
model heavier tails than any one KDE (in 1-D, two layers give ``log p(x) ≈ −c √|x|``); the density is
still exactly normalised.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgm.core.errors import ConfigError
from dgm.core.registry import register
from dgm.models.flows.base import Flow, make_base, preprocessing
from dgm.models.flows.transforms import Compose, HouseholderRotation, KernelGaussianization, Transform


@register(
    "gaussianization-flow",
    description="Gaussianization flow: trainable KDE marginal Gaussianization + Householder rotations",
    paper="Meng, Song, Song & Ermon 2020, Gaussianization Flows",
    family="flows",
    # One layer in the shared tests: composed marginal steps have heavier than logistic tails (the second
    # maps the first's exponential tail through φ⁻¹: p(x) ~ exp(−c √|x|)), and with randomly perturbed
    # bandwidths more than 1e-4 of the mass can lie beyond their 1-D integral's [-60, 60]. The 2-D grid test
    # in tests/models/flows covers composed layers.
    tiny={"num_layers": 1, "num_kernels": 3, "data_init": False},
    supports=("real",),
)
class GaussianizationFlow(Flow):
    """Gaussianization flow: Meng, Song, Song & Ermon (2020), "Gaussianization Flows", AISTATS.

    Args:
        event_shape: shape of one example (flattened to D values).
        support: ``"real"``.
        num_layers: (marginal Gaussianization, rotation) pairs.
        num_kernels: logistic kernels per dimension in each marginal step (the paper's anchor points).
        num_reflections: Householder reflections per rotation (None: D).
        min_bandwidth: floor of the kernel bandwidths.
        data_init: initialise each marginal step from the first training batch it sees, unless
            :meth:`initialize` was called first (False: keep the random initialisation).
        inverse_tol: the bisection stops within ``inverse_tol · (1 + |x|)`` (at least 32 ulp of the dtype).
        max_iter: bisection/Newton steps per marginal inverse (a RuntimeWarning if not converged).
        logit_alpha: if set, data in [0, 1] are first mapped by ``logit(α + (1 − 2α) x)`` (log-det included).
        seed: seeds the random anchors and rotations.
    """

    def __init__(
        self,
        event_shape,
        support: str = "real",
        num_layers: int = 8,
        num_kernels: int = 50,
        num_reflections: int | None = None,
        min_bandwidth: float = 1e-4,
        data_init: bool = True,
        inverse_tol: float = 1e-10,
        max_iter: int = 100,
        logit_alpha: float | None = None,
        seed: int = 0,
    ):
        super().__init__(event_shape, support)
        if num_layers < 1:
            raise ConfigError(f"num_layers must be positive, got {num_layers}")
        D = self.num_dims
        layers: list[Transform] = []
        for i in range(num_layers):
            layers.append(
                KernelGaussianization(
                    D,
                    num_kernels,
                    min_bandwidth=min_bandwidth,
                    inverse_tol=inverse_tol,
                    max_iter=max_iter,
                    data_init=data_init,
                    seed=seed + i,
                )
            )
            layers.append(HouseholderRotation(D, num_reflections, seed=seed + i))
        self.transform = Compose([*preprocessing(self.event_shape, logit_alpha, flatten=True), *layers])
        self.base = make_base("normal", (D,))

    @torch.no_grad()
    def initialize(self, x: Tensor, chunk_size: int = 1024) -> None:
        """Initialise every marginal step from data ``x`` (N, *event_shape), first layer first: each one's
        anchors go to the quantiles of what the layers below make of ``x`` (pushed through them in chunks of
        ``chunk_size`` rows, so that a whole training set fits in memory)."""
        h = self.validate(x).to(self._dtype())
        for layer in self.transform:
            if isinstance(layer, KernelGaussianization):
                layer.initialize(h)
            h = torch.cat([layer(chunk)[0] for chunk in h.split(chunk_size)])

    @property
    def initialized(self) -> bool:
        """Whether every marginal step has been initialised from data."""
        return all(bool(m.initialized) for m in self.modules() if isinstance(m, KernelGaussianization))
