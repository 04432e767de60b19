"""Marginal Gaussianization by a trainable kernel density estimate: Gaussianization flows' elementwise layer.

Meng, Song, Song & Ermon (2020), "Gaussianization Flows", AISTATS, §3.1. Each value ``x_d`` goes through the
CDF of a learned one-dimensional density, a kernel density estimate with ``K`` logistic kernels,

    F_d(x) = (1/K) Σ_k σ((x − μ_dk) / h_dk),

and then through the inverse standard normal CDF: ``z_d = Φ⁻¹(F_d(x_d))``. If ``F_d`` were the true marginal
CDF, ``z_d`` would be exactly standard normal (the inverse-CDF / histogram-equalisation idea of iterative
Gaussianization; Chen & Gopinath 2001, Laparra et al. 2011). The anchors ``μ`` and bandwidths ``h`` are
trained by maximum likelihood, and :meth:`KernelGaussianization.initialize` starts them from data: anchors at
``K`` quantiles of each marginal, bandwidths from the spacing of neighbouring anchors, so that ``F_d`` starts
as a smoothed empirical CDF. Per value ``log|dz/dx| = log f_d(x) − log φ(z)``.

Numerics. ``F``, ``1 − F`` and ``f`` are sums of positive terms, summed in probability space and then
logged; where one falls below the dtype's normal range it is recomputed as a log-sum-exp of
``log σ(±u)``, so ``log F`` and ``log(1 − F)`` are accurate however far in the tails; ``z`` is ``Φ⁻¹``
of whichever of ``F`` and ``1 − F`` is smaller, from its log (:func:`normal_icdf_from_log`), so ``|x|`` up
to 1e4 (and beyond) gives finite values.
The inverse (sampling) solves ``log F(x) = log Φ(z)`` (or the same for the upper tail) per value inside the
bracket ``[min_k x_k, max_k x_k]``, ``x_k`` being where kernel k alone reaches the target (the mixture's CDF
lies between its kernels'), by bisection accelerated with Newton steps that are taken only when they stay
inside the bracket, to ``inverse_tol``.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm.core.errors import ConfigError, DataError
from dgm.models.flows.transforms.base import Transform

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _normal_log_pdf(z: Tensor) -> Tensor:
    return -0.5 * z * z - _HALF_LOG_2PI


@torch.no_grad()
def _lower_normal_icdf(log_p: Tensor) -> Tensor:
    """``z ≤ 0`` with ``log Φ(z) = log_p`` for ``log_p ≤ log ½``: ``ndtri`` where ``p`` is representable, the
    tail asymptote ``z ≈ −√(2L − log(4πL))`` (L = −log p) below, then Newton steps on ``log Φ``."""
    tiny = math.log(torch.finfo(log_p.dtype).tiny) + 10
    big = (-log_p).clamp(min=1.0)
    asymptote = -torch.sqrt(2 * big - torch.log(4 * math.pi * big))
    representable = log_p > tiny
    z = torch.where(representable, torch.special.ndtri(log_p.clamp(min=tiny).exp()), asymptote)
    if not bool(representable.all()):  # ndtri is accurate where p is representable: polish the rest only
        for _ in range(3):
            log_cdf = torch.special.log_ndtr(z)
            z = z - (log_cdf - log_p) * torch.exp(log_cdf - _normal_log_pdf(z))
    return z.clamp(max=0.0)


def normal_icdf_from_log(log_cdf: Tensor, log_sf: Tensor) -> Tensor:
    """``Φ⁻¹(F)`` from ``log F`` and ``log(1 − F)``, accurate in both tails and differentiable.

    The value comes from the smaller of the two tails (no cancellation near F = 1); its gradient is attached
    by the implicit function theorem, ``dz = dlog F · Φ(z) / φ(z)`` (or ``−dlog(1 − F) · Φ(−z) / φ(z)``).
    """
    upper = log_sf < log_cdf
    tail = torch.where(upper, log_sf, log_cdf)  # log of the smaller tail probability, ≤ log ½
    w = _lower_normal_icdf(tail.detach())  # ≤ 0: the value for the lower tail
    slope = torch.exp(tail.detach() - _normal_log_pdf(w))  # dw / d tail = Φ(w) / φ(w), with log Φ(w) = tail
    w = w + (tail - tail.detach()) * slope
    return torch.where(upper, -w, w)


def _quantiles(x: Tensor, levels: Tensor) -> Tensor:
    """Per-column quantiles ``(len(levels), D)`` of ``x`` (N, D), interpolated linearly as ``torch.quantile``
    does, from one sort (torch.quantile refuses more than 2^24 values, e.g. MNIST's training set)."""
    ordered = x.sort(0).values
    position = levels * (len(x) - 1)
    below = position.floor().long()
    above = (below + 1).clamp(max=len(x) - 1)
    frac = (position - below)[:, None]
    return ordered[below] * (1 - frac) + ordered[above] * frac


class KernelGaussianization(Transform):
    """``z_d = Φ⁻¹(F_d(x_d))`` with ``F_d`` a mixture of ``num_kernels`` logistics (see the module docstring).

    Args:
        num_features: D (inputs ``(N, D)``).
        num_kernels: K kernels per dimension (the paper's anchor "data points").
        min_bandwidth: floor of the bandwidths, keeps the log-densities finite.
        inverse_tol: the inverse stops when every bracket or Newton step is within ``inverse_tol · (1 + |x|)``
            (at least 32 ulp of the dtype).
        max_iter: at most this many bisection/Newton steps (a RuntimeWarning if not converged).
        data_init: initialise from the first batch seen in training mode (as ActNorm does), unless
            :meth:`initialize` was called; False keeps the random initialisation until then.
        seed: seeds the random initial anchors (standard normal, as in the paper).
    """

    def __init__(
        self,
        num_features: int,
        num_kernels: int = 50,
        min_bandwidth: float = 1e-4,
        inverse_tol: float = 1e-10,
        max_iter: int = 100,
        data_init: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if num_features < 1 or num_kernels < 1:
            raise ConfigError(
                f"need positive num_features and num_kernels, got {num_features}, {num_kernels}"
            )
        if not min_bandwidth > 0 or not inverse_tol > 0 or max_iter < 1:
            raise ConfigError(
                f"need min_bandwidth > 0, inverse_tol > 0 and max_iter >= 1, got {min_bandwidth}, "
                f"{inverse_tol}, {max_iter}"
            )
        self.num_features, self.num_kernels = num_features, num_kernels
        self.min_bandwidth, self.inverse_tol, self.max_iter = (
            float(min_bandwidth),
            float(inverse_tol),
            max_iter,
        )
        self.data_init = bool(data_init)
        g = torch.Generator().manual_seed(seed)
        self.loc = nn.Parameter(torch.randn(num_features, num_kernels, generator=g))
        self.log_bandwidth = nn.Parameter(torch.full((num_features, num_kernels), self.rule_of_thumb(1.0)))
        self.register_buffer("initialized", torch.tensor(False))

    def rule_of_thumb(self, std: float) -> float:
        """log bandwidth of K random anchors for data of standard deviation ``std``: Silverman's
        ``1.06 σ K^(−1/5)`` for a Gaussian kernel, scaled by √3/π to the logistic kernel of that variance."""
        return math.log(1.06 * std * self.num_kernels ** (-0.2) * math.sqrt(3) / math.pi)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Anchors at the K quantiles ``(k + ½) / K`` of each marginal of ``x`` (N, D), each bandwidth half
        the mean distance to its neighbouring anchors: ``F_d`` becomes a smoothed empirical CDF (histogram
        equalisation), so the layer maps each marginal of ``x`` to about N(0, 1)."""
        self._check(x)
        levels = (torch.arange(self.num_kernels, dtype=x.dtype, device=x.device) + 0.5) / self.num_kernels
        loc = _quantiles(x, levels).T  # (D, K), sorted
        if self.num_kernels > 1:
            gap = loc.diff(dim=1)
            h = 0.25 * (torch.cat([gap[:, :1], gap], 1) + torch.cat([gap, gap[:, -1:]], 1))
        else:
            h = x.std(0, correction=0)[:, None] if len(x) > 1 else torch.ones_like(loc)
        # Ties (discrete or repeated values) give zero gaps: keep a floor relative to the data's spread.
        spread = x.std(0, correction=0)[:, None] if len(x) > 1 else torch.ones_like(loc)
        self.loc.copy_(loc)
        self.log_bandwidth.copy_(torch.maximum(h, (1e-3 * spread).clamp_min(self.min_bandwidth)).log())
        self.initialized.fill_(True)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise DataError(f"kernel Gaussianization of {self.num_features} features got {tuple(x.shape)}")

    def _logs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(log F, log(1 − F), log f)`` per value, each ``(N, D)``.

        The three are sums of positive terms (σ(u), σ(−u) and σ(u)σ(−u)/h over the kernels), so summing in
        probability space loses no relative precision, and costs a third of log-sum-exps over the kernels.
        Only where a sum falls below the dtype's normal range (a value beyond every kernel by ~85
        bandwidths in float32) is that value recomputed from logs, ``log σ(±u)`` (the module docstring).
        """
        log_h = self.log_bandwidth.clamp(min=math.log(self.min_bandwidth))
        inv_h = torch.exp(-log_h)
        u = (x[:, :, None] - self.loc) * inv_h
        s, t = torch.sigmoid(u), torch.sigmoid(-u)  # σ(−u) itself, not 1 − σ(u): accurate in the upper tail
        sums = torch.stack([s.sum(-1), t.sum(-1), (s * t * inv_h).sum(-1)])
        log_k = math.log(self.num_kernels)
        # Clamped before the log so that replaced entries below pass a zero (not NaN) gradient.
        floor = torch.finfo(sums.dtype).tiny * 2.0**30
        logs = sums.clamp_min(floor).log() - log_k
        far = (sums < floor).any(0)
        if bool(far.any()):
            n, d = far.nonzero(as_tuple=True)
            # log σ(±u) as logsigmoid, exact for any u (softplus switches to the identity beyond 20).
            log_s, log_t = F.logsigmoid(u[n, d]), F.logsigmoid(-u[n, d])  # (M, K)
            exact = torch.logsumexp(torch.stack([log_s, log_t, log_s + log_t - log_h[d]]), -1) - log_k
            logs = logs.index_put((torch.arange(3, device=x.device)[:, None], n, d), exact)
        log_cdf, log_sf, log_pdf = logs
        return log_cdf, log_sf, log_pdf

    def _gaussianize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_cdf, log_sf, log_pdf = self._logs(x)
        z = normal_icdf_from_log(log_cdf, log_sf)
        return z, (log_pdf - _normal_log_pdf(z)).sum(1)

    def forward(self, x, context=None):
        self._check(x)
        if self.data_init and self.training and not bool(self.initialized) and len(x) > 1:
            self.initialize(x)
        return self._gaussianize(x)

    # ------------------------------------------------------------------ the inverse
    @torch.no_grad()
    def solve(self, z: Tensor) -> tuple[Tensor, int]:
        """``(x, iterations)`` with ``forward(x)[0] == z``: safeguarded bisection in log-CDF space."""
        self._check(z)
        tol = max(self.inverse_tol, 32 * torch.finfo(z.dtype).eps)
        upper = z > 0
        # Match the smaller tail: log F(x) = log Φ(z) below the median, log(1 − F(x)) = log Φ(−z) above.
        target = torch.special.log_ndtr(-z.abs())
        # Where kernel k's own CDF (or survival function) reaches the target; the root lies between them.
        logit = target - torch.log(-torch.expm1(target.clamp(max=-torch.finfo(z.dtype).tiny)))
        c = torch.where(upper, -logit, logit)
        h = torch.exp(self.log_bandwidth.clamp(min=math.log(self.min_bandwidth)))
        ends = self.loc + h * c[:, :, None]
        lo, hi = ends.min(-1).values, ends.max(-1).values
        x = (lo + hi) / 2
        for it in range(1, self.max_iter + 1):
            log_cdf, log_sf, log_pdf = self._logs(x)
            # r(x) increases with x in both branches: log F − target, or target − log(1 − F).
            r = torch.where(upper, target - log_sf, log_cdf - target)
            slope = torch.exp(log_pdf - torch.where(upper, log_sf, log_cdf))
            lo = torch.where(r < 0, x, lo)
            hi = torch.where(r > 0, x, hi)
            newton = x - r / slope
            inside = (newton > lo) & (newton < hi)
            nxt = torch.where(r == 0, x, torch.where(inside, newton, (lo + hi) / 2))
            step = (nxt - x).abs()
            x = nxt
            scale = tol * (1 + x.abs())
            if bool(((step <= scale) | (hi - lo <= scale)).all()):
                return x, it
        worst = (torch.minimum(step, hi - lo) / (1 + x.abs())).max().item()
        warnings.warn(
            f"kernel Gaussianization inverse did not reach tolerance {tol:g} in {self.max_iter} iterations "
            f"(largest relative step {worst:.2g}); raise max_iter",
            RuntimeWarning,
            stacklevel=2,
        )
        return x, self.max_iter

    def inverse_and_log_det(self, z, context=None):
        x, _ = self.solve(z)
        return x, -self._gaussianize(x)[1]  # at the solution, with gradients to the parameters where enabled

    def extra_repr(self) -> str:
        return (
            f"num_features={self.num_features}, num_kernels={self.num_kernels}, "
            f"inverse_tol={self.inverse_tol}, max_iter={self.max_iter}"
        )
