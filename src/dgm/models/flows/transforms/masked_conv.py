"""MintNet's masked invertible layer: masked convolutions with a triangular Jacobian, inverted numerically.

Song, Meng & Ermon (2019), "MintNet: Building Invertible Neural Networks with Masked Convolutions", NeurIPS.
Order the values of an image ``(C, H, W)`` channel by channel, each channel in raster order (the flat index
``c·H·W + h·W + w``). A convolution whose kernel is masked so that output ``(c, h, w)`` reads input
channels ``< c`` anywhere in its window and channel ``c`` only at pixels up to ``(h, w)`` in raster order
has a lower-triangular Jacobian in that order (the paper's masked convolutions, §3.1); so has any
composition of such layers with elementwise nonlinearities (its composition rules). The layer is

    z = t ⊙ x + W₃ ∗ h(W₂ ∗ h(W₁ ∗ x + b₁) + b₂) + b₃,        h = ELU,  t > 0,

with hidden maps in ``latent_size`` groups of C channels (hidden channel m belongs to data channel m mod C).
The diagonal of its Jacobian is

    ∂z_c/∂x_c = t_c + Σ_{m', m} W₃[c, m'] h'(a₂[m']) W₂[m', m] h'(a₁[m]) W₁[m, c]   (centre taps, same group),

and the sign of each centre tap of W₂ is set to that of the W₁ · W₃ taps it multiplies, so every term is
≥ 0 and the diagonal is ≥ t > 0: the layer is invertible and ``log|det J| = Σ log diag``, computed in the
same pass (the official code's construction). ``lower=False`` mirrors every mask: an upper-triangular
Jacobian; MintNet alternates the two so that a pair depends on every input.

Inversion (the paper's Algorithm 1): the fixed-point iteration ``x ← x − α · (f(x) − z) / diag J_f(x)``,
Newton's method with the Jacobian replaced by its diagonal. ``I − diag(J)⁻¹ J`` is strictly triangular at
the solution, so with ``α = 1`` it converges locally superlinearly. Far from the solution a full step can
overshoot into a cycle, so α starts at ``step_size`` and is halved whenever the largest correction has
stopped improving; near-identity or trained layers then converge in a few dozen passes. It stops when
every Newton correction is within ``inverse_tol · (1 + |x|)`` (the tolerance is raised to 32 ulp of the
dtype when smaller). It is only locally convergent: a layer with large off-diagonal weights can make it
wander or diverge, so after ``max_iter`` passes (or on overflow) the layer falls back to an exact
sequential solve, one value at a time in the triangular order, each a bracketed Newton root of a function
with slope ≥ t (at least C·H·W passes: slow but guaranteed). The inverse is computed without gradients:
samples are not differentiable with respect to the noise (use IAF for that).

Vectors are the case ``(D, 1, 1)`` with 1×1 kernels: each layer is then a MADE-like autoregressive map with
two hidden layers (``z_d`` depends on ``x_≤d``, or ``x_≥d`` with ``lower=False``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm.core.errors import ConfigError, DataError
from dgm.models.flows.transforms.base import Transform, sum_except_batch

# Bracketed Newton steps per value in the sequential fallback: bisection alone halves a float64 bracket down
# to its resolution in well under 100 steps.
_SEQUENTIAL_STEPS = 100
# Passes without a smaller largest correction before the fixed-point iteration halves its step.
_STALL = 20


def triangular_mask(out_channels: int, in_channels: int, data_channels: int, kernel_size: int, lower: bool):
    """``(out, in, k, k)`` 0/1 mask of a masked convolution with a (lower or upper) triangular Jacobian.

    Channel m belongs to data channel ``m % data_channels``. Lower: an output reads earlier data channels
    at every tap and its own channel at taps up to the centre in raster order; upper: the mirror image.
    """
    k = kernel_size
    g_out = (torch.arange(out_channels) % data_channels)[:, None]
    g_in = (torch.arange(in_channels) % data_channels)[None, :]
    raster = torch.arange(k * k).reshape(k, k)
    centre = (k * k) // 2
    causal = (raster <= centre) if lower else (raster >= centre)
    before = (g_in < g_out) if lower else (g_in > g_out)
    same = g_in == g_out
    return (before[..., None, None] | (same[..., None, None] & causal)).float()


def _elu_derivative(a: Tensor) -> Tensor:
    # ELU'(a) = 1 for a > 0, exp(a) otherwise (α = 1); positive everywhere, which the diagonal relies on.
    return torch.where(a > 0, torch.ones_like(a), torch.exp(a.clamp(max=0)))


class MaskedInvertibleLayer(Transform):
    """MintNet's layer on inputs of shape ``shape = (C, H, W)`` (see the module docstring).

    Args:
        shape: ``(C, H, W)`` of one input.
        latent_size: hidden channels per data channel (the paper: 45 on MNIST).
        kernel_size: odd size of the three masked kernels (1 for vectors stored as ``(D, 1, 1)``).
        lower: lower- (True) or upper-triangular (False) Jacobian in channel-then-raster order.
        inverse_tol: the fixed-point iteration stops when each correction is within
            ``inverse_tol · (1 + |x|)``.
        max_iter: iterations (each one forward pass) before falling back to the exact sequential solve, one
            value at a time in the triangular order (at least C·H·W passes; a RuntimeWarning only if that
            fails too, on a badly conditioned layer).
        step_size: the starting α of the iteration (1: Newton's step with the diagonal Jacobian), halved
            whenever the largest correction stops improving.
        seed: seeds the initial weights.
    """

    def __init__(
        self,
        shape,
        latent_size: int = 8,
        kernel_size: int = 3,
        lower: bool = True,
        inverse_tol: float = 1e-6,
        max_iter: int = 200,
        step_size: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        if len(shape) != 3:
            raise ConfigError(f"a masked invertible layer takes (C, H, W) inputs, got shape {tuple(shape)}")
        self.shape = tuple(int(s) for s in shape)
        c = self.shape[0]
        if latent_size < 1:
            raise ConfigError(f"latent_size must be positive, got {latent_size}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be a positive odd int, got {kernel_size}")
        if not inverse_tol > 0 or max_iter < 1 or not 0 < step_size <= 1:
            raise ConfigError(
                f"need inverse_tol > 0, max_iter >= 1 and 0 < step_size <= 1; got {inverse_tol}, "
                f"{max_iter}, {step_size}"
            )
        self.latent_size, self.kernel_size, self.lower = int(latent_size), int(kernel_size), bool(lower)
        self.inverse_tol, self.max_iter, self.step_size = float(inverse_tol), int(max_iter), float(step_size)
        hidden, k = self.latent_size * c, self.kernel_size
        g = torch.Generator().manual_seed(seed)

        def weight(out_ch: int, in_ch: int, gain: float) -> nn.Parameter:
            mask = triangular_mask(out_ch, in_ch, c, k, self.lower)
            fan_in = mask.sum((1, 2, 3)).clamp(min=1)[:, None, None, None]
            return nn.Parameter(gain * torch.randn(out_ch, in_ch, k, k, generator=g) / fan_in.sqrt())

        # The hidden maps start as ordinary (fan-in scaled) features, the output map near zero: the layer
        # starts close to z = x and its Jacobian diagonal close to t = 1.
        self.weight1 = weight(hidden, c, 1.0)
        self.weight2 = weight(hidden, hidden, 1.0)
        self.weight3 = weight(c, hidden, 0.01)
        self.bias1 = nn.Parameter(torch.zeros(hidden))
        self.bias2 = nn.Parameter(torch.zeros(hidden))
        self.bias3 = nn.Parameter(torch.zeros(c))
        self.log_t = nn.Parameter(torch.zeros(self.shape))
        for i, (o, n) in enumerate([(hidden, c), (hidden, hidden), (c, hidden)], 1):
            self.register_buffer(f"mask{i}", triangular_mask(o, n, c, k, self.lower), persistent=False)
        # Same-group centre taps: the weights that reach the Jacobian's diagonal.
        self.register_buffer("centre1", self._same(hidden, c, c), persistent=False)
        self.register_buffer("centre2", self._same(hidden, hidden, c), persistent=False)
        self.register_buffer("centre3", self._same(c, hidden, c), persistent=False)
        tap2 = torch.zeros(hidden, hidden, k, k)
        tap2[:, :, k // 2, k // 2] = self.centre2
        self.register_buffer("tap2", tap2, persistent=False)  # W₂'s same-group centre taps, full size

    @staticmethod
    def _same(out_channels: int, in_channels: int, c: int) -> Tensor:
        return ((torch.arange(out_channels) % c)[:, None] == (torch.arange(in_channels) % c)[None, :]).float()

    # ------------------------------------------------------------------ the map and its diagonal
    def _weights(self) -> tuple[Tensor, Tensor, Tensor]:
        k = self.kernel_size // 2
        w1 = self.weight1 * self.mask1
        w3 = self.weight3 * self.mask3
        s1 = torch.sign((w1[:, :, k, k] * self.centre1).sum(1))  # (hidden,): own-channel centre tap's sign
        s3 = torch.sign((w3[:, :, k, k] * self.centre3).sum(0))  # (hidden,): sign of the tap reading it
        w2 = self.weight2 * self.mask2
        signs = (s3[:, None] * s1[None, :])[:, :, None, None]
        w2 = w2 * (1 - self.tap2) + self.tap2 * w2.abs() * signs
        return w1, w2, w3

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            raise DataError(f"masked invertible layer over {self.shape} got input {tuple(x.shape)}")

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        if self.kernel_size > 1:
            return F.conv2d(x, weight, bias, padding=self.kernel_size // 2)
        # 1×1 kernels (vectors): a matrix product per pixel, much cheaper than conv2d's machinery.
        return F.linear(x.movedim(1, -1), weight[:, :, 0, 0], bias).movedim(-1, 1)

    def _map(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(f(x), diag J_f(x))``, both of the input's shape."""
        w1, w2, w3 = self._weights()
        k = self.kernel_size // 2
        a1 = self._conv(x, w1, self.bias1)
        a2 = self._conv(F.elu(a1), w2, self.bias2)
        t = self.log_t.exp()
        z = t * x + self._conv(F.elu(a2), w3, self.bias3)
        q = _elu_derivative(a1) * (w1[:, :, k, k] * self.centre1).sum(1)[:, None, None]
        q = torch.einsum("pm,nmhw->nphw", w2[:, :, k, k] * self.centre2, q) * _elu_derivative(a2)
        diag = t + torch.einsum("cp,nphw->nchw", w3[:, :, k, k] * self.centre3, q)
        return z, diag

    def forward(self, x, context=None):
        self._check(x)
        z, diag = self._map(x)
        return z, sum_except_batch(torch.log(diag))

    # ------------------------------------------------------------------ the inverse
    def _tolerance(self, dtype: torch.dtype) -> float:
        return max(self.inverse_tol, 32 * torch.finfo(dtype).eps)

    @torch.no_grad()
    def solve(self, z: Tensor) -> tuple[Tensor, int]:
        """``(x, passes)`` with ``f(x) = z``: the fixed-point iteration, else the sequential solve."""
        self._check(z)
        tol = self._tolerance(z.dtype)
        x = z * torch.exp(-self.log_t)
        alpha, best, stalled = self.step_size, float("inf"), 0
        for it in range(1, self.max_iter + 1):
            f, diag = self._map(x)
            correction = (f - z) / diag
            x = x - alpha * correction
            if not torch.isfinite(x).all():
                break
            worst = (correction.abs() / (tol * (1 + x.abs()))).max().item()
            if worst <= 1:
                return x, it
            # Far from the solution a full step can overshoot into a cycle (a trained MNIST layer sat in
            # one at |correction| ≈ 13 for 100 passes, then took 12,000 passes of the sequential solve).
            # When the largest correction has not improved for _STALL passes, halve α: any α in (0, 2)
            # keeps the fixed point and its local convergence (the iteration's Jacobian there is
            # triangular with diagonal 1 − α), and a smaller one follows the Newton direction more closely.
            if worst < best:
                best, stalled = worst, 0
            else:
                stalled += 1
                if stalled >= _STALL:
                    alpha, best, stalled = alpha / 2, worst, 0
        x, passes = self._solve_sequentially(z, tol)
        return x, self.max_iter + passes

    def _solve_sequentially(self, z: Tensor, tol: float) -> tuple[Tensor, int]:
        # The guaranteed path: one value at a time in the triangular order, each a 1-D root of a function
        # whose slope is ≥ t > 0 (safeguarded Newton inside the bracket that this slope bound gives).
        n = len(z)
        x = (z * torch.exp(-self.log_t)).reshape(n, -1).clone()
        target = z.reshape(n, -1)
        t = self.log_t.exp().reshape(-1)
        order = range(x.shape[1]) if self.lower else range(x.shape[1] - 1, -1, -1)
        passes, worst = 0, 0.0
        for p in order:
            lo = hi = None
            step = older = torch.full((n,), torch.inf, dtype=x.dtype, device=x.device)
            for _ in range(_SEQUENTIAL_STEPS):
                f, diag = self._map(x.reshape(z.shape))
                passes += 1
                g = f.reshape(n, -1)[:, p] - target[:, p]
                s = x[:, p].clone()
                if lo is None:
                    reach = s - g / t[p]
                    lo, hi = torch.minimum(s, reach), torch.maximum(s, reach)
                lo = torch.where(g < 0, s, lo)
                hi = torch.where(g > 0, s, hi)
                newton = s - g / diag.reshape(n, -1)[:, p]
                # Newton inside the bracket can still cycle between two points near its ends, shrinking it
                # by almost nothing (seen on a layer with weights at scale 2): as in rtsafe (Numerical
                # Recipes §9.4), bisect unless the Newton step is under half the step before last, so the
                # bracket at least halves every other step.
                use = (newton > lo) & (newton < hi) & (2 * (newton - s).abs() < older)
                nxt = torch.where(use, newton, (lo + hi) / 2)
                x[:, p] = torch.where(g == 0, s, nxt)
                older, step = step, (x[:, p] - s).abs()
                if bool((step <= tol * (1 + s.abs())).all()):
                    break
            else:
                worst = max(worst, (step / (1 + s.abs())).max().item())
        if worst > 0:
            warnings.warn(
                f"MintNet inverse did not reach tolerance {tol:g} ({_SEQUENTIAL_STEPS} bracketed Newton "
                f"steps per value; largest relative correction {worst:.2g}); the layer is badly conditioned",
                RuntimeWarning,
                stacklevel=3,
            )
        return x.reshape(z.shape), passes

    def inverse_and_log_det(self, z, context=None):
        x, _ = self.solve(z)
        _, log_det = self.forward(x)  # at the solution, with gradients to the parameters where enabled
        return x, -log_det

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, latent_size={self.latent_size}, kernel_size={self.kernel_size}, "
            f"lower={self.lower}, inverse_tol={self.inverse_tol}, max_iter={self.max_iter}"
        )
