"""Denoising as an inverse problem: posterior sampling of clean data x given a noisy observation y.

A trained model is a prior p(x); a noise model gives the likelihood p(y | x); the posterior is

    p(x | y) ∝ p(x) p(y | x).

Its mean E[x | y] is the minimum-mean-squared-error (MMSE) estimate, the one that maximises the expected PSNR
(:func:`psnr`); its samples show what the data leave undetermined.

**Noise models** (:func:`parse_noise`; a spec string or an object):

``gaussian:SIGMA`` (:class:`GaussianNoise`)
    y = x + σ ε, ε ~ N(0, I), for real-valued models (flows over dequantised data in [0, 1), VAEs with a
    Gaussian decoder). σ is in data units, so on data in [0, 1) σ = 0.1 is a noisy input of PSNR 20 dB.
``flip:RATE`` (:class:`FlipNoise`)
    every value of binary data is flipped independently with probability ρ ∈ (0, 0.5) (a binary symmetric
    channel), for binary models (autoregressive models on binarised MNIST, VAEs with a Bernoulli decoder).

**Samplers** (``method``; ``auto`` takes the first that applies, in this order). Each runs S = ``num_samples``
independent chains per image for ``num_steps`` steps; the first ``burn_in`` (default half) adapt step sizes
and are discarded; the samples are the chains' final states, and the posterior mean averages every state
after burn-in over all chains (Rao-Blackwellised where a conditional mean is available).

``flow-latent``
    Flows (``dgm.models.flows``): MALA on the latent z with x = f⁻¹(z). Because the base density already
    is the flow's density pulled back to z, the posterior in z is p(z | y) ∝ p_base(z) p(y | f⁻¹(z)): the
    log|det| of the change of variables cancels (p_X(f⁻¹(z)) |det ∂f⁻¹/∂z| = p_base(z)). The target is
    close to a standard normal in z, so one step size fits all dimensions and the chain mixes far better
    than in data space; x = f⁻¹(z) also always lies in the flow's domain (e.g. [0, 1] behind a logit).
    Each step costs one inverse pass and its gradient (cheap for coupling flows, D passes for MAF).
``vae-latent``
    VAEs (``vae``, ``iwae``) with a Bernoulli decoder and flip noise, or a Gaussian decoder and Gaussian
    noise: MALA on p(z | y) ∝ p(z) p(y | z), x integrated out in closed form per value —
    Bernoulli: p(y_i = 1 | z) = (1 − ρ) π_i + ρ (1 − π_i); Gaussian: p(y | z) = N(y; μ(z), s² + σ²). Chains
    start at draws from the encoder's q(z | y). Then x | z, y per value in closed form (Bernoulli: logit
    π_i ± log((1 − ρ)/ρ); Gaussian: precision-weighted mean of μ(z) and y), which also gives the
    Rao-Blackwellised posterior mean.
``flip-mh``
    Any binary model with a ``log_prob`` (autoregressive models, or any other): Metropolis-within-Gibbs
    with single-value flips. A sweep visits every value in a random order and proposes flipping it,
    accepted with probability min(1, p(x') p(y | x') / p(x) p(y | x)) (one batched ``log_prob`` call per
    value for all chains). Steps are sweeps; the chains start at y. The posterior mean uses the full
    conditional p(x_d = 1 | x_−d, y), which each proposal computes anyway.
``mala``
    Real-valued models with an exact, differentiable ``log_prob``: MALA in data space. Values outside the
    model's domain (e.g. outside [0, 1] behind a flow's logit) have density 0 and are rejected. Mixes
    poorly where the prior is much narrower in some values than in others (e.g. background pixels of
    dequantised MNIST live in [0, 1/256)); prefer ``flow-latent`` for flows.

MALA (Roberts & Tweedie 1996): x' = x + (ε²/2) ∇log π(x) + ε ξ, accepted by the Metropolis-Hastings ratio
with the asymmetric proposal; each chain's ε adapts during burn-in by log ε += (α − 0.574)/√(t + 1) towards
the optimal acceptance 0.574 (Roberts & Rosenthal 1998), then stays fixed so the remaining steps are a valid
Markov chain for the posterior. The reported acceptance is the mean Metropolis-Hastings probability after
burn-in.

>>> y = add_noise(x, "gaussian:0.1", generator=torch.Generator().manual_seed(0))
>>> res = denoise(flow, y, "gaussian:0.1", num_samples=8, num_steps=500)
>>> psnr(x, res.mean).mean, psnr(x, y).mean
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from dgm.core.errors import ConfigError, DataError
from dgm.core.progress import steps as steps_of
from dgm.tasks.imputation import _evaluating, _log_prob, _rand_device, _repeat

METHODS = ("auto", "flow-latent", "vae-latent", "flip-mh", "mala")
DEFAULT_STEPS = {"flow-latent": 500, "vae-latent": 500, "flip-mh": 20, "mala": 500}
MALA_TARGET = 0.574  # optimal MALA acceptance (Roberts & Rosenthal 1998)
DEFAULT_STEP_SIZE = {"flow-latent": 0.1, "vae-latent": 0.1, "mala": 0.01}


# ---------------------------------------------------------------------------- noise models
def _check_number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _gen_randn(shape, generator, device) -> Tensor:
    return torch.randn(shape, generator=generator, device=_rand_device(generator, device)).to(device)


def _gen_rand(shape, generator, device) -> Tensor:
    return torch.rand(shape, generator=generator, device=_rand_device(generator, device)).to(device)


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise y = x + σ ε in data units; for real-valued models."""

    sigma: float
    support: ClassVar[str] = "real"

    def __post_init__(self):
        sigma = _check_number(self.sigma, "Gaussian noise sigma")
        if sigma <= 0:
            raise ConfigError(f"Gaussian noise sigma must be > 0, got {self.sigma!r}")
        object.__setattr__(self, "sigma", sigma)

    @property
    def spec(self) -> str:
        return f"gaussian:{self.sigma:g}"

    def corrupt(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """y ~ p(y | x) for float x of any shape."""
        return x + self.sigma * _gen_randn(x.shape, generator, x.device).to(x.dtype)

    def log_likelihood(self, y: Tensor, x: Tensor) -> Tensor:
        """log p(y | x) of flat (M, D) rows, (M,)."""
        return (-0.5 * ((y - x) / self.sigma) ** 2).sum(1) - y.shape[1] * (
            math.log(self.sigma) + 0.5 * math.log(2 * math.pi)
        )


@dataclass(frozen=True)
class FlipNoise:
    """Each binary value flipped independently with probability ρ ∈ (0, 0.5); for binary models."""

    rate: float
    support: ClassVar[str] = "binary"

    def __post_init__(self):
        rate = _check_number(self.rate, "flip noise rate")
        if not 0 < rate < 0.5:
            raise ConfigError(
                f"flip noise rate must be in (0, 0.5), got {self.rate!r} (at 0.5 y says nothing about x)"
            )
        object.__setattr__(self, "rate", rate)

    @property
    def spec(self) -> str:
        return f"flip:{self.rate:g}"

    @property
    def log_odds(self) -> float:
        """log((1 − ρ)/ρ): how much one observed value shifts the logit of the clean one."""
        return math.log1p(-self.rate) - math.log(self.rate)

    def corrupt(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        flip = _gen_rand(x.shape, generator, x.device) < self.rate
        return torch.where(flip, 1 - x, x)

    def log_likelihood(self, y: Tensor, x: Tensor) -> Tensor:
        """log p(y | x) of flat binary (M, D) rows, (M,)."""
        agree = (y * x + (1 - y) * (1 - x)).sum(1)
        return agree * math.log1p(-self.rate) + (y.shape[1] - agree) * math.log(self.rate)


NoiseModel = GaussianNoise | FlipNoise
_KINDS = {"gaussian": GaussianNoise, "flip": FlipNoise}


def parse_noise(noise) -> NoiseModel:
    """A noise model from ``"gaussian:SIGMA"``, ``"flip:RATE"`` or a :class:`GaussianNoise` /
    :class:`FlipNoise` object (returned unchanged)."""
    if isinstance(noise, GaussianNoise | FlipNoise):
        return noise
    if not isinstance(noise, str):
        raise ConfigError(
            f"noise must be 'gaussian:SIGMA', 'flip:RATE' or a GaussianNoise/FlipNoise, got {noise!r}"
        )
    kind, _, value = noise.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in _KINDS:
        raise ConfigError(f"unknown noise {noise!r}; use 'gaussian:SIGMA' or 'flip:RATE' (e.g. gaussian:0.1)")
    try:
        number = float(value)
    except ValueError:
        what = "sigma" if kind == "gaussian" else "rate"
        raise ConfigError(
            f"noise {noise!r} needs a number after the colon, e.g. {kind}:0.1 ({what})"
        ) from None
    return _KINDS[kind](number)


def _check_data(x, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise DataError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype.is_complex:
        raise DataError(f"{what} has complex dtype {x.dtype}")
    x = x.float() if not x.dtype.is_floating_point else x
    if x.dim() < 1 or x.numel() == 0:
        raise DataError(f"{what} must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise DataError(f"{what} contains {'NaN' if x.isnan().any() else 'inf'} values")
    return x


def add_noise(x: Tensor, noise, generator: torch.Generator | None = None) -> Tensor:
    """Corrupt clean data ``x`` (any shape) with ``noise`` (a spec string or object): y ~ p(y | x).

    Flip noise needs binary x (0./1.); the result has x's shape and a float dtype.
    """
    noise = parse_noise(noise)
    x = _check_data(x, "x")
    if isinstance(noise, FlipNoise) and not ((x == 0) | (x == 1)).all():
        raise DataError(f"flip noise needs binary data (0/1); x has values in [{x.min():g}, {x.max():g}]")
    return noise.corrupt(x, generator)


# ---------------------------------------------------------------------------- PSNR
class PSNR(NamedTuple):
    """Peak signal-to-noise ratio in dB: ``per_image`` (N,) and their ``mean`` (inf where x̂ = x exactly)."""

    per_image: Tensor
    mean: float


def psnr(x: Tensor, x_hat: Tensor, data_range: float = 1.0) -> PSNR:
    """PSNR = 10 log10(data_range² / MSE) per image (first dimension = images) and its mean over images.

    ``data_range`` is the span of the clean data (1 for data in [0, 1], 255 for 8-bit pixels). Higher is
    better; +6 dB halves the root-mean-squared error. A 1-D tensor is one image.
    """
    x, x_hat = _check_data(x, "x"), _check_data(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise DataError(f"x has shape {tuple(x.shape)} but x_hat has shape {tuple(x_hat.shape)}")
    data_range = _check_number(data_range, "data_range")
    if data_range <= 0:
        raise ConfigError(f"data_range must be > 0, got {data_range!r}")
    if x.dim() == 1:
        x, x_hat = x[None], x_hat[None]
    mse = ((x.double() - x_hat.double().to(x.device)) ** 2).reshape(len(x), -1).mean(1)
    per = 10 * torch.log10(data_range**2 / mse)  # mse = 0 → inf
    return PSNR(per.float().cpu(), float(per.mean()))


# ---------------------------------------------------------------------------- result
@dataclass
class Denoising:
    """Posterior samples of the clean data given noisy data, and how they were drawn.

    Attributes:
        samples: ``(N, S, *event_shape)``: the final states of S independent chains per example.
        mean: ``(N, *event_shape)``: the posterior mean E[x | y] (the MMSE estimate), averaged over every
            chain state after burn-in (Rao-Blackwellised: conditional means, where available).
        std: ``(N, *event_shape)``: the posterior standard deviation, estimated the same way.
        noisy: ``(N, *event_shape)``: the observations y.
        noise: the noise model (``noise.spec`` is its string).
        method: ``flow-latent``, ``vae-latent``, ``flip-mh`` or ``mala``.
        steps: steps per chain (MALA: gradient steps; flip-mh: sweeps over every value).
        burn_in: of which the first ones adapted step sizes (MALA) and were left out of the mean.
        acceptance: mean acceptance probability after burn-in.
        step_size: MALA's step size after adaptation, averaged over chains (None for flip-mh).
        note: one line on what was done.
    """

    samples: Tensor
    mean: Tensor
    std: Tensor
    noisy: Tensor
    noise: NoiseModel
    method: str
    steps: int
    burn_in: int
    acceptance: float
    step_size: float | None
    note: str

    def psnr(self, clean: Tensor, data_range: float = 1.0) -> PSNR:
        """PSNR of the posterior mean against the clean data."""
        return psnr(clean, self.mean.to(clean.device), data_range)

    def describe(self) -> str:
        n, s = self.samples.shape[:2]
        unit = "sweeps" if self.method == "flip-mh" else "steps"
        text = f"{self.method}: {self.note}; noise {self.noise.spec}; {self.steps} {unit}"
        if self.burn_in:
            adapt = " adapting the step size," if self.step_size is not None else ""
            text += f" ({self.burn_in} burn-in,{adapt} left out of the mean)"
        if self.step_size is not None:
            text += f"; final step size {self.step_size:.3g}"
        return f"{text}; acceptance {100 * self.acceptance:.1f}%; {s} chain(s) for each of {n} example(s)"


# ---------------------------------------------------------------------------- what applies
def _is_flow(model) -> bool:
    from dgm.models.flows.base import Flow

    return isinstance(model, Flow)


def _vae_likelihood(model) -> str | None:
    """The decoder kind of a single-Gaussian-latent VAE, or None for anything else."""
    if not all(callable(getattr(model, a, None)) for a in ("encode", "decode", "prior")):
        return None
    if not isinstance(getattr(model, "latent_dim", None), int):
        return None
    return getattr(getattr(model, "likelihood", None), "kind", None)


def available_methods(model, noise) -> dict[str, str | None]:
    """For each method, None when it applies to ``model`` with ``noise``, else the reason it does not."""
    noise = parse_noise(noise)
    name = model.name or type(model).__name__
    gaussian = isinstance(noise, GaussianNoise)
    out: dict[str, str | None] = {}
    if not _is_flow(model):
        out["flow-latent"] = f"{name} is not a flow"
    else:
        out["flow-latent"] = None if gaussian else "flows model real values: use Gaussian noise"
    kind = _vae_likelihood(model)
    if kind is None:
        out["vae-latent"] = f"{name} is not a VAE with encode/decode/prior and a single latent"
    elif (kind, gaussian) in (("bernoulli", False), ("gaussian", True)):
        out["vae-latent"] = None
    else:
        out["vae-latent"] = (
            "vae-latent needs a bernoulli decoder with flip noise or a gaussian one with Gaussian noise "
            f"(decoder {kind}, noise {noise.spec})"
        )
    if model.support.kind != "binary":
        out["flip-mh"] = f"flip-mh needs a binary model ({name} models {model.support} data)"
    else:
        out["flip-mh"] = None if not gaussian else "flip-mh takes flip noise"
    if model.support.kind != "real":
        out["mala"] = f"mala needs a real-valued model ({name} models {model.support} data)"
    elif not model.exact:
        out["mala"] = f"mala needs an exact differentiable log_prob; {name}'s is an estimate"
    else:
        out["mala"] = None
    return out


def select_method(model, noise, method: str = "auto") -> str:
    """The sampler :func:`denoise` uses; a ConfigError names the capability that is missing."""
    noise = parse_noise(noise)
    if method not in METHODS:
        raise ConfigError(f"unknown denoising method {method!r}; use one of {', '.join(METHODS)}")
    if noise.support != model.support.kind:
        need = "real-valued" if isinstance(noise, GaussianNoise) else "binary"
        other = {"real": "gaussian:SIGMA", "binary": "flip:RATE"}.get(model.support.kind)
        hint = f"; {model.support} data take {other} noise" if other else ""
        raise ConfigError(
            f"{noise.spec} noise needs a {need} model, but {model.name or type(model).__name__} models "
            f"{model.support} data{hint}"
        )
    if model.conditional:
        raise ConfigError(f"{model.name} is class-conditional: denoising takes unconditional models only")
    options = available_methods(model, noise)
    if method != "auto":
        if options[method] is not None:
            raise ConfigError(f"method {method} does not apply: {options[method]}")
        return method
    for m in METHODS[1:]:
        if options[m] is None:
            return m
    reasons = "; ".join(f"{m}: {options[m]}" for m in METHODS[1:])
    raise ConfigError(f"{model.name} cannot denoise {noise.spec}: {reasons}")


# ---------------------------------------------------------------------------- MALA
def _value_and_grad(f: Callable, theta: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """log π, its gradient (NaN → 0) and the detached extras ``f`` returns next to log π, if any."""
    with torch.enable_grad():
        th = theta.detach().requires_grad_(True)
        out = f(th)
        lp, aux = (out[0], tuple(out[1:])) if isinstance(out, tuple) else (out, ())
        (grad,) = torch.autograd.grad(lp.sum(), th, allow_unused=True)
    grad = torch.zeros_like(theta) if grad is None else grad
    lp = lp.detach().masked_fill(lp.detach().isnan(), -math.inf)
    return lp, grad.detach().nan_to_num(0.0, 0.0, 0.0), tuple(a.detach() for a in aux)


class _Chain(NamedTuple):
    state: Tensor
    aux: tuple[Tensor, ...]
    acceptance: float
    step_size: float


def _keep(accept: Tensor, new: Tensor, old: Tensor) -> Tensor:
    return torch.where(accept.reshape(-1, *([1] * (new.dim() - 1))), new, old)


def _mala(log_target: Callable, theta: Tensor, steps: int, burn_in: int, step_size: float, generator, record):
    """MALA on flat (M, d) states with a per-chain step size adapted during burn-in (module docstring).

    ``log_target(θ)`` returns log π (M,), or a tuple (log π, *extras) of per-chain tensors computed on the
    way (e.g. x = f⁻¹(z)) that follow the accepted states; ``record(θ, extras)`` is called after every step
    past burn-in.
    """
    theta = theta.detach().clone()
    lp, grad, aux = _value_and_grad(log_target, theta)
    log_eps = torch.full((len(theta),), math.log(step_size), device=theta.device, dtype=theta.dtype)
    accepted, count = 0.0, 0
    for t in steps_of(steps, "step"):
        eps = log_eps.exp()[:, None]
        xi = _gen_randn(theta.shape, generator, theta.device).to(theta.dtype)
        prop = theta + 0.5 * eps**2 * grad + eps * xi
        lp_prop, grad_prop, aux_prop = _value_and_grad(log_target, prop)
        back = theta - prop - 0.5 * eps**2 * grad_prop
        log_q_back = -(back**2).sum(1) / (2 * eps[:, 0] ** 2)
        log_q_fwd = -0.5 * (xi**2).sum(1)
        log_alpha = (lp_prop - lp + log_q_back - log_q_fwd).nan_to_num(nan=-math.inf)
        log_alpha = torch.where(torch.isfinite(lp_prop), log_alpha, -math.inf)
        u = _gen_rand((len(theta),), generator, theta.device)
        accept = u.log() < log_alpha
        theta, lp, grad = (
            _keep(accept, prop, theta),
            _keep(accept, lp_prop, lp),
            _keep(accept, grad_prop, grad),
        )
        aux = tuple(_keep(accept, a, b) for a, b in zip(aux_prop, aux, strict=True))
        alpha = log_alpha.clamp(max=0).exp()
        if t < burn_in:
            log_eps = log_eps + (alpha - MALA_TARGET) / math.sqrt(t + 1)
        else:
            accepted += float(alpha.sum())
            count += len(alpha)
            record(theta, aux)
    return _Chain(theta, aux, accepted / max(count, 1), float(log_eps.exp().mean()))


class _Moments:
    """Running sums of a posterior mean and second moment over (chain, step) pairs, per example."""

    def __init__(self, n: int, s: int):
        self.n, self.s, self.count = n, s, 0
        self.sum = self.sq = None

    def add(self, mean: Tensor, second: Tensor | None = None) -> None:
        """Add per-chain (n·s, D) conditional means (and second moments; default mean², a point mass)."""
        second = mean**2 if second is None else second
        m = mean.detach().double().reshape(self.n, self.s, -1).sum(1)
        q = second.detach().double().reshape(self.n, self.s, -1).sum(1)
        self.sum = m if self.sum is None else self.sum + m
        self.sq = q if self.sq is None else self.sq + q
        self.count += self.s

    def result(self) -> tuple[Tensor, Tensor]:
        mean = self.sum / self.count
        var = (self.sq / self.count - mean**2).clamp(min=0)
        return mean.float(), var.sqrt().float()


# ---------------------------------------------------------------------------- domains (flows)
def _logit_layer(model):
    from dgm.models.flows.transforms import Compose, Logit

    t = getattr(model, "transform", None)
    first = t.transforms[0] if isinstance(t, Compose) and len(t) else t
    return first if isinstance(first, Logit) else None


def _inside(model, x: Tensor) -> Tensor:
    """(M,) bool: rows of flat x inside the model's domain (only a leading logit layer restricts it)."""
    logit = _logit_layer(model)
    if logit is None:
        return torch.ones(len(x), dtype=torch.bool, device=x.device)
    s = logit.alpha + (1 - 2 * logit.alpha) * x.to(model._dtype())
    return ((s > 0) & (s < 1)).all(1)


def _start_in_domain(model, y: Tensor) -> Tensor:
    """y moved into the model's domain: clamped to [δ, 1 − δ] behind a logit (δ = 1e-3), else y."""
    if _logit_layer(model) is None:
        return y.clone()
    return y.clamp(1e-3, 1 - 1e-3)


def _safe_log_prob(model, x: Tensor) -> Tensor:
    """Differentiable ``log_prob`` of flat rows, −inf outside the domain instead of a DataError."""
    ev = tuple(model.event_shape)
    ok = _inside(model, x.detach())
    out = torch.full((len(x),), -math.inf, dtype=x.dtype, device=x.device)
    if not ok.any():
        return out + 0 * x.sum(1)
    rows = ok.nonzero()[:, 0]
    try:
        lp = model.log_prob(x[rows].reshape(-1, *ev)).to(x.dtype)
    except DataError:  # some row is outside a domain we could not read off: score rows one by one
        parts = []
        for r in rows.tolist():
            try:
                parts.append(model.log_prob(x[r : r + 1].reshape(-1, *ev)).to(x.dtype))
            except DataError:
                parts.append(x[r : r + 1, 0] * 0 - math.inf)
        lp = torch.cat(parts)
    return out.index_put((rows,), lp)


# ---------------------------------------------------------------------------- samplers
def _run_mala_data(model, yf, noise, s, steps, burn_in, step_size, generator):
    n = len(yf)
    ys = _repeat(yf, s)
    moments = _Moments(n, s)

    def log_target(x):
        return _safe_log_prob(model, x) + noise.log_likelihood(ys, x)

    x0 = _start_in_domain(model, ys)
    chain = _mala(log_target, x0, steps, burn_in, step_size, generator, lambda x, _: moments.add(x))
    note = "MALA in data space, chains started at y" + (
        " (clamped into the logit's domain)" if _logit_layer(model) is not None else ""
    )
    return chain.state, moments, chain, note


def _run_flow_latent(model, yf, noise, s, steps, burn_in, step_size, generator):
    n = len(yf)
    ys = _repeat(yf, s)
    lat = tuple(model.latent_shape)
    dtype = model._dtype()
    moments = _Moments(n, s)

    def log_target(z):
        zl = z.reshape(-1, *lat).to(dtype)
        x = model.transform.inverse(zl, None).reshape(len(z), -1)
        return model.base.log_prob(zl, None) + noise.log_likelihood(ys, x), x

    x0 = _start_in_domain(model, ys)
    try:
        z0, _ = model.to_latent(x0.reshape(-1, *model.event_shape))
        z0 = z0.reshape(len(ys), -1)
        how = "chains started at f(y)" + (
            " (y clamped into the logit's domain)" if _logit_layer(model) else ""
        )
    except DataError:
        z0 = model.base.sample(len(ys), None, generator).reshape(len(ys), -1)
        how = "chains started at base samples"
    z0 = torch.where(torch.isfinite(z0), z0, 0.0)
    chain = _mala(
        log_target, z0.to(dtype), steps, burn_in, step_size, generator, lambda _, a: moments.add(a[0])
    )
    note = f"MALA on the flow's latent z, x = f⁻¹(z), target p_base(z) p(y | f⁻¹(z)); {how}"
    return chain.aux[0].float(), moments, chain, note


def _vae_terms(model, noise, ys: Tensor):
    """A function of z giving (log p(z) + log p(y | z) with x integrated out, E[x | z, y], E[x² | z, y],
    a draw-parameter tensor) and a function drawing x | z, y from those extras."""
    kind = model.likelihood.kind
    prior = model.prior()
    if kind == "bernoulli":
        shift = noise.log_odds * (2 * ys - 1)
        rho = noise.rate

        def target(z):
            logits = model.decode(z).base_dist.logits
            p1 = rho + (1 - 2 * rho) * torch.sigmoid(logits)  # p(y_i = 1 | z) ∈ (ρ, 1 − ρ)
            log_lik = (ys * p1.log() + (1 - ys) * torch.log1p(-p1)).sum(1)
            p = torch.sigmoid(logits + shift)  # p(x_i = 1 | z, y_i)
            return prior.log_prob(z) + log_lik, p, p

        def draw_x(aux, gen):
            p = aux[0]
            return (_gen_rand(p.shape, gen, p.device) < p).to(p.dtype)

        return target, draw_x
    var = noise.sigma**2

    def target(z):
        d = model.decode(z).base_dist
        s2 = d.scale**2
        total = s2 + var
        log_lik = (-0.5 * (ys - d.loc) ** 2 / total - 0.5 * torch.log(2 * math.pi * total)).sum(1)
        mean = (var * d.loc + s2 * ys) / total
        return prior.log_prob(z) + log_lik, mean, mean**2 + s2 * var / total

    def draw_x(aux, gen):
        mean, second = aux
        std = (second - mean**2).clamp(min=0).sqrt()
        return mean + std * _gen_randn(mean.shape, gen, mean.device).to(mean.dtype)

    return target, draw_x


def _run_vae_latent(model, yf, noise, s, steps, burn_in, step_size, generator):
    n = len(yf)
    ys = _repeat(yf, s).to(model.dtype)
    target, draw_x = _vae_terms(model, noise, ys)
    moments = _Moments(n, s)
    q = model.encode(yf.reshape(-1, *model.event_shape))
    loc, scale = _repeat(q.base_dist.loc, s), _repeat(q.base_dist.scale, s)
    z0 = loc + scale * _gen_randn(loc.shape, generator, loc.device).to(loc.dtype)
    chain = _mala(target, z0.detach(), steps, burn_in, step_size, generator, lambda _, a: moments.add(*a))
    x = draw_x(chain.aux, generator).float()
    note = (
        "MALA on the VAE's latent z, target p(z) p(y | z) with x integrated out, chains started at draws "
        "from q(z | y); then x | z, y per value in closed form"
    )
    return x, moments, chain, note


def _run_flip_mh(model, yf, noise, s, steps, burn_in, generator):
    n, d = yf.shape
    ys = _repeat(yf, s)
    cur = ys.clone()
    moments = _Moments(n, s)
    gain = noise.log_odds  # log p(y_d | x_d) rises by this when x_d is set to y_d
    dev = _rand_device(generator, yf.device)
    accepted, proposed = 0.0, 0
    lp_cur = _log_prob(model, cur, None)
    if not torch.isfinite(lp_cur).all():
        bad = int((~torch.isfinite(lp_cur)).sum())
        raise DataError(f"{model.name} gives probability 0 to {bad} noisy input(s); cannot start the chains")
    for sweep in steps_of(steps, "sweep"):
        p_one = torch.empty_like(cur) if sweep >= burn_in else None
        for site in torch.randperm(d, generator=generator, device=dev).tolist():
            prop = cur.clone()
            prop[:, site] = 1 - cur[:, site]
            lp_prop = _log_prob(model, prop, None)
            # +gain if the flip makes x_d agree with y_d, −gain if it makes it disagree
            agree = (prop[:, site] == ys[:, site]).to(lp_prop.dtype)
            delta = (lp_prop - lp_cur + gain * (2 * agree - 1)).nan_to_num(nan=-math.inf)
            u = _gen_rand((len(cur),), generator, cur.device)
            accept = u.log() < delta
            if p_one is not None:
                p_flip = torch.sigmoid(delta)  # full conditional of the flipped value
                p_one[:, site] = torch.where(cur[:, site] == 1, 1 - p_flip, p_flip)
                accepted += float(delta.clamp(max=0).exp().sum())
                proposed += len(cur)
            cur[:, site] = torch.where(accept, prop[:, site], cur[:, site])
            lp_cur = torch.where(accept, lp_prop, lp_cur)
        if p_one is not None:
            # each value's full conditional was taken at a slightly different state within the sweep;
            # every one of them is an unbiased estimate of its marginal, so their average is too
            moments.add(p_one, p_one)
    note = "Metropolis-within-Gibbs single-value flips, chains started at y"
    if not model.exact:
        note += f"; {model.name}'s log_prob is an estimate, so the chain targets the estimated density"
    return cur, moments, _Chain(cur, (), accepted / max(proposed, 1), float("nan")), note


# ---------------------------------------------------------------------------- public API
def denoise(
    model,
    y: Tensor,
    noise,
    num_samples: int = 8,
    num_steps: int | None = None,
    burn_in: int | None = None,
    generator: torch.Generator | None = None,
    method: str = "auto",
    step_size: float | None = None,
) -> Denoising:
    """Posterior samples and mean of the clean data given noisy data ``y`` under ``model`` as the prior.

    Args:
        model: an unconditional ``dgm`` model (see the module docstring for what each kind gets).
        y: ``(N, *event_shape)`` noisy observations (binary for flip noise).
        noise: ``"gaussian:SIGMA"``, ``"flip:RATE"``, or a :class:`GaussianNoise` / :class:`FlipNoise`.
        num_samples: S, chains (and returned samples) per example.
        num_steps: steps per chain (default 500 for the MALA samplers, 20 sweeps for flip-mh).
        burn_in: the first steps, which adapt MALA's step size and are left out of the mean (default half).
        generator: seeds every draw.
        method: ``auto``, ``flow-latent``, ``vae-latent``, ``flip-mh`` or ``mala``.
        step_size: MALA's initial step size (default 0.1 in latent space, 0.01 in data space).

    Returns a :class:`Denoising` with ``samples`` ``(N, S, *event_shape)`` and the posterior ``mean``.
    """
    noise = parse_noise(noise)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"num_samples must be a positive int, got {num_samples!r}")
    chosen = select_method(model, noise, method)
    steps = DEFAULT_STEPS[chosen] if num_steps is None else num_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"num_steps must be a positive int, got {num_steps!r}")
    burn = steps // 2 if burn_in is None else burn_in
    if isinstance(burn, bool) or not isinstance(burn, int) or not 0 <= burn < steps:
        raise ConfigError(f"burn_in must be an int in 0..num_steps-1 ({steps - 1}), got {burn_in!r}")
    if step_size is None:
        step_size = DEFAULT_STEP_SIZE.get(chosen, 0.1)
    elif not (isinstance(step_size, int | float) and not isinstance(step_size, bool) and step_size > 0):
        raise ConfigError(f"step_size must be a positive number, got {step_size!r}")
    y = model.validate(y, "noisy data y")
    n, s = len(y), num_samples
    yf = y.reshape(n, -1).float()
    with _evaluating(model):
        if chosen == "mala":
            x, moments, chain, note = _run_mala_data(model, yf, noise, s, steps, burn, step_size, generator)
        elif chosen == "flow-latent":
            x, moments, chain, note = _run_flow_latent(model, yf, noise, s, steps, burn, step_size, generator)
        elif chosen == "vae-latent":
            x, moments, chain, note = _run_vae_latent(model, yf, noise, s, steps, burn, step_size, generator)
        else:
            x, moments, chain, note = _run_flip_mh(model, yf, noise, s, steps, burn, generator)
    mean, std = moments.result()
    ev = tuple(model.event_shape)
    return Denoising(
        samples=x.float().reshape(n, s, *ev),
        mean=mean.reshape(n, *ev),
        std=std.reshape(n, *ev),
        noisy=y.float().reshape(n, *ev),
        noise=noise,
        method=chosen,
        steps=steps,
        burn_in=burn,
        acceptance=chain.acceptance,
        step_size=None if chosen == "flip-mh" else chain.step_size,
        note=note,
    )
