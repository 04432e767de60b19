"""What every latent-variable model shares: importance-sampled likelihood, bounds, labels, sampling.

A subclass defines its latent variables through a few hooks (see :class:`LatentVariableModel`); this class
turns them into the contract of DESIGN.md §1 for models whose ``log_prob`` is an estimate:

- ``log_prob(x, context=None, num_samples=K)``: the importance-sampled estimate log (1/K) Σ p(x,z_k)/q(z_k|x)
  (:mod:`dgm.models.latent.estimators`), chunked over K so that K = 5000 runs in bounded memory. Without a
  ``generator`` its draws are seeded with ``eval_seed``, so the same inputs give the same value.
- ``elbo(x)``: the evidence lower bound with its reconstruction and KL terms separately.
- ``loss(x)``: the negative training bound (the β-ELBO for K = 1, the IWAE bound for K > 1).

**Labels as latent variables.** Class-conditional models (``num_classes`` set: the CVAE and the
semi-supervised M2 model) define p(x | y). A label of −1 (or no context at all) marks it unobserved; then
y is summed out under a uniform p(y): ``log_prob`` enumerates the C classes, log p(x) = log Σ_y p(y) p̂(x|y),
and the bound becomes Σ_y r(y|x) B(x, y) − KL(r(y|x) ‖ p(y)) for a distribution r over labels
(Kingma, Rezende, Mohamed & Welling 2014, eq. 7): the M2 model's classifier q(y | x), or for the CVAE the
exact posterior r ∝ p(y) exp B(x, y), which makes the bound log Σ_y p(y) exp B(x, y).

This is the E step of EM done by an encoder instead of exactly: for a mixture (``dgm.models.classic.mixture``)
the posterior over the discrete latent is computed exactly and the bound is tight; here q is a network
shared across examples (amortised inference) and the bound is loose by KL(q(z|x) ‖ p(z|x)).
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from dgm.core.errors import ConfigError, DataError
from dgm.core.model import GenerativeModel
from dgm.models.latent.decoders import draw
from dgm.models.latent.estimators import chunked_log_mean_exp, log_mean_exp, score_function_term, vimco_term


class ELBO(NamedTuple):
    """Per-example terms (shape ``(N,)``, nats): ``elbo = reconstruction − kl``.

    ``reconstruction`` is E_q[log p(x | z)] (≤ 0 for discrete data); ``kl`` is KL(q(z | x) ‖ p(z)) (≥ 0),
    analytic where it exists, else a Monte Carlo estimate.
    """

    elbo: Tensor
    reconstruction: Tensor
    kl: Tensor


ESTIMATORS = ("reparam", "reinforce")
_DRAW = {"normal": torch.randn, "uniform": torch.rand}
BASELINE_DECAY = 0.9  # of the REINFORCE moving-average baseline (a buffer ``baseline`` of every model)


class LatentVariableModel(GenerativeModel):
    """Base class of the latent-variable models. Subclasses implement:

    - ``_noise_spec(n)``: the randomness of one importance sample for n examples, as ``(shape, kind)`` pairs
      with kind ``"normal"`` or ``"uniform"``;
    - ``_posterior_sample(x, labels, noise)``: (z, log q(z | x)) for the z ~ q that the noise gives;
    - ``_log_q(x, labels, z)`` and ``_log_joint(x, labels, z)`` = (log p(x | z), log p(z)), each (S, N);
    - ``_prior_noise_spec(n)`` and ``_prior_from_noise(noise, labels)``: z ~ p(z) as a function of noise;
    - ``_decode_latent(latent, labels)``: p(x | z) for latents with any leading shape;
    - ``_terms(x, labels, num_samples, estimator, beta, importance_weighted)``: a dict with the per-example
      ``objective`` (value: the bound; gradient: the chosen estimator), ``reconstruction`` and ``kl``;
    - ``encode(x, context)`` and ``decode(z, context)``.

    ``labels`` passed to the hooks are None (unconditional) or a long tensor of observed labels.
    """

    exact: ClassVar[bool] = False
    default_num_samples: ClassVar[int] = 100  # importance samples of log_prob when none are given
    eval_seed: ClassVar[int] = 0
    chunk_budget: ClassVar[int] = 2**23  # values in the largest tensor of one chunk (≈ 32 MB in float32)

    num_classes: int | None = None
    kl_warmup: int = 0  # training steps of KL warm-up (see _setup_kl_warmup)

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _check_common(self, num_train_samples, beta, estimator) -> None:
        if (
            isinstance(num_train_samples, bool)
            or not isinstance(num_train_samples, int)
            or num_train_samples < 1
        ):
            raise ConfigError(f"num_train_samples must be a positive int, got {num_train_samples!r}")
        if not (isinstance(beta, int | float) and beta >= 0):
            raise ConfigError(f"beta must be a number >= 0, got {beta!r}")
        if estimator not in ESTIMATORS:
            raise ConfigError(f"gradient must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")

    def _setup_kl_warmup(self, kl_warmup) -> None:
        """KL warm-up (Sønderby et al. 2016, "Ladder Variational Autoencoders", §2.3; Bowman et al. 2016):
        the KL's weight rises linearly from 1/T to ``beta`` over the first T = ``kl_warmup`` training steps.

        Early in training the KL term pulls every q(z | x) onto the prior faster than the decoder learns
        to use z, and units that reach the prior rarely leave it (posterior collapse; measured here as 5 of
        100 active units in z_1 of a 2-layer model). A step counter buffer keeps a resumed run on schedule;
        evaluation and the reported bounds always use the full weight.
        """
        if isinstance(kl_warmup, bool) or not isinstance(kl_warmup, int) or kl_warmup < 0:
            raise ConfigError(f"kl_warmup must be an int >= 0 (training steps), got {kl_warmup!r}")
        self.kl_warmup = kl_warmup
        if kl_warmup:  # only then: checkpoints of models without warm-up keep their buffers
            self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))

    def training_beta(self) -> float:
        """The KL weight of the current training step: ``beta`` after the warm-up."""
        if not self.kl_warmup:
            return self.beta
        return self.beta * min(1.0, (int(self.train_steps) + 1) / self.kl_warmup)

    # ------------------------------------------------------------------ labels
    def _labels(self, context, n: int) -> Tensor | None:
        """None for an unconditional model; else labels (N,) with −1 where the label is unobserved."""
        if self.num_classes is None:
            return self.class_labels(context, n)  # refuses a context
        if context is None:
            return torch.full((n,), -1, dtype=torch.long, device=self.device)
        if isinstance(context, Tensor) and context.dim() == 1 and not context.is_complex():
            unknown = context == -1
            if unknown.any():
                labels = self.check_classes(torch.where(unknown, 0, context), self.num_classes, n)
                return torch.where(unknown.to(labels.device), -1, labels)
        return self.check_classes(context, self.num_classes, n)

    def class_log_prior(self) -> Tensor:
        """log p(y): uniform over the C classes."""
        c = self.num_classes
        return torch.full((c,), -math.log(c), dtype=self.dtype, device=self.device)

    def _label_log_posterior(self, x: Tensor, bounds: Tensor) -> Tensor:
        """log r(y | x), shape (N, C), used to sum out an unobserved label; ``bounds`` (C, N) are B(x, y).

        The default is the exact posterior given the bounds, r ∝ p(y) exp B(x, y) (the CVAE); the
        semi-supervised model uses its classifier q(y | x).
        """
        return torch.log_softmax(self.class_log_prior()[:, None] + bounds, 0).T

    def _enumerate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x repeated once per class (class-major) and the matching labels."""
        c, n = self.num_classes, len(x)
        xs = x.repeat(c, *([1] * (x.dim() - 1)))
        ys = torch.arange(c, device=x.device).repeat_interleave(n)
        return xs, ys

    def _per_row(self, x: Tensor, labels: Tensor | None, known_fn, unknown_fn) -> Tensor:
        """Apply ``known_fn(x, y)`` where the label is observed (or the model is unconditional) and
        ``unknown_fn(x)`` where it is not; returns the (N,) results in order."""
        if labels is None:
            return known_fn(x, None)
        unknown = labels < 0
        if not unknown.any():
            return known_fn(x, labels)
        if unknown.all():
            return unknown_fn(x)
        out = torch.empty(len(x), dtype=self.dtype, device=x.device)
        out = out.index_put((unknown,), unknown_fn(x[unknown]))
        return out.index_put((~unknown,), known_fn(x[~unknown], labels[~unknown]))

    # ------------------------------------------------------------------ likelihood estimates
    def _generator(self, generator: torch.Generator | None) -> torch.Generator:
        if generator is not None:
            return generator
        return torch.Generator(device=self.device).manual_seed(self.eval_seed)

    def _num_samples(self, num_samples) -> int:
        if num_samples is None:
            return self.default_num_samples
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise DataError(f"num_samples must be a positive int, got {num_samples!r}")
        return num_samples

    def _row_values(self) -> int:
        """Values per (sample, example) row in the largest tensor of a chunk: the decoder's output."""
        return self.num_dims * self.likelihood.params_per_dim

    def _chunk(self, n: int, chunk_size) -> int:
        if chunk_size is not None:
            if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
                raise DataError(f"chunk_size must be a positive int, got {chunk_size!r}")
            return chunk_size
        return max(1, self.chunk_budget // max(1, n * self._row_values()))

    def _prior_latent(self, n: int, labels, generator):
        """One draw z ~ p(z) per example (a tensor, or a tuple of tensors for a hierarchy)."""
        noise = self._draw_noise(n, 1, generator, self._prior_noise_spec(n))
        return self._prior_from_noise(tuple(t[0] for t in noise), labels)

    def _draw_noise(self, n: int, m: int, generator, spec=None) -> tuple:
        """The noise of ``m`` samples for ``n`` examples (of q by default, of p(z) with the prior's
        ``spec``): tensors of shape (m, n, ...)."""
        dtype, device = self.dtype, self.device
        gen_device = self._gen_device(generator)
        spec = self._noise_spec(n) if spec is None else spec
        if generator is None:  # training: the global generator, all samples at once
            return tuple(_DRAW[kind]((m, *shape), device=device, dtype=dtype) for shape, kind in spec)
        # One importance sample at a time, so that the draws do not depend on how K is chunked.
        parts = [
            [_DRAW[kind](shape, generator=generator, device=gen_device, dtype=dtype) for shape, kind in spec]
            for _ in range(m)
        ]
        return tuple(torch.stack(p).to(device) for p in zip(*parts, strict=True))

    def _log_weights(self, x: Tensor, labels, noise) -> Tensor:
        """log p(x, z) − log q(z | x) at the z ~ q(z | x) that ``noise`` gives, shape (S, N)."""
        latent, log_q = self._posterior_sample(x, labels, noise)
        log_lik, log_prior = self._log_joint(x, labels, latent)
        return log_lik + log_prior - log_q

    def _importance(self, x, labels, num_samples, generator, chunk_size, prior_fraction=0.0) -> Tensor:
        """log (1/K) Σ_k p(x, z_k) / r(z_k), chunked over K.

        r = q(z | x), or with ``prior_fraction`` = α > 0 the defensive mixture r = (1 − α) q(z | x) + α p(z)
        sampled deterministically: the first αK draws from p(z), the rest from q (Hesterberg 1995; Owen &
        Zhou 2000). Every weight is then at most p(x | z) / α, so a proposal that misses part of the
        posterior cannot make the variance infinite. Still unbiased for p(x); α = 1 is the naive estimate.
        """
        n = len(x)
        if n == 0:
            return torch.zeros(0, dtype=self.dtype, device=self.device)
        chunk = self._chunk(n, chunk_size)
        n_prior = round(prior_fraction * num_samples)
        alpha = n_prior / num_samples
        done = [0]

        def weights(latent, log_q):
            log_lik, log_prior = self._log_joint(x, labels, latent)
            if alpha == 0:
                return log_lik + log_prior - log_q
            if alpha == 1:
                return log_lik
            log_r = torch.logaddexp(math.log1p(-alpha) + log_q, math.log(alpha) + log_prior)
            return log_lik + log_prior - log_r

        def next_weights(m):
            start = done[0]
            done[0] += m
            from_prior = max(0, min(m, n_prior - start))
            parts = []
            if from_prior:
                noise = self._draw_noise(n, from_prior, generator, self._prior_noise_spec(n))
                latent = self._prior_from_noise(noise, labels)
                log_q = None if alpha == 1 else self._log_q(x, labels, latent)
                parts.append(weights(latent, log_q))
            if m > from_prior:
                parts.append(
                    weights(
                        *self._posterior_sample(x, labels, self._draw_noise(n, m - from_prior, generator))
                    )
                )
            return torch.cat(parts)

        return chunked_log_mean_exp(next_weights, num_samples, chunk)

    def _marginal_over_labels(self, x: Tensor, estimate) -> Tensor:
        """log Σ_y p(y) exp(estimate(x, y)), enumerating every class."""
        xs, ys = self._enumerate(x)
        per_class = estimate(xs, ys).reshape(self.num_classes, len(x))
        return torch.logsumexp(per_class + self.class_log_prior()[:, None], 0)

    def log_prob(
        self,
        x: Tensor,
        context: Tensor | None = None,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
        prior_fraction: float = 0.0,
    ) -> Tensor:
        """Importance-sampled estimate of log p(x) (or log p(x | y) with labels), shape ``(N,)``.

        log (1/K) Σ_k p(x, z_k) / q(z_k | x) with z_k ~ q(z | x), K = ``num_samples`` (default
        ``default_num_samples``). Its exponential is unbiased for p(x); the log is biased low (Jensen),
        so the NLL it gives is an upper estimate. Draws come from ``generator``, or from a fresh generator
        seeded with ``eval_seed``: the same inputs give the same value. ``chunk_size`` importance samples
        are evaluated at a time (default: as many as fit ``chunk_budget``); the value does not depend on it.
        ``prior_fraction`` = α draws a fraction α of the samples from p(z) instead (a defensive mixture
        proposal, see :meth:`_importance`): bounded weights, at some cost in precision where q is good.
        """
        x = self.validate(x)
        labels = self._labels(context, len(x))
        k = self._num_samples(num_samples)
        gen = self._generator(generator)
        if isinstance(prior_fraction, bool) or not isinstance(prior_fraction, int | float):
            raise DataError(f"prior_fraction must be a number in [0, 1], got {prior_fraction!r}")
        if not 0 <= prior_fraction <= 1:
            raise DataError(f"prior_fraction must be in [0, 1], got {prior_fraction!r}")

        def known(xx, yy):
            return self._importance(xx, yy, k, gen, chunk_size, prior_fraction)

        return self._per_row(x, labels, known, lambda xx: self._marginal_over_labels(xx, known))

    @torch.no_grad()
    def log_weights(
        self, x: Tensor, context: Tensor | None = None, num_samples: int = 1, generator=None
    ) -> Tensor:
        """All K log importance weights log p(x, z_k) − log q(z_k | x), shape ``(K, N)`` (for diagnostics:
        effective sample size, bound comparisons). Labels must be observed for a conditional model."""
        x = self.validate(x)
        labels = self._labels(context, len(x))
        if labels is not None and (labels < 0).any():
            raise DataError("log_weights needs every label observed; log_prob sums unobserved ones out")
        k = self._num_samples(num_samples)
        return self._log_weights(x, labels, self._draw_noise(len(x), k, self._generator(generator)))

    def naive_log_prob(
        self,
        x: Tensor,
        context: Tensor | None = None,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
    ) -> Tensor:
        """The naive Monte Carlo estimate log (1/K) Σ_k p(x | z_k), z_k ~ p(z) (no proposal).

        Unbiased in p(x) like :meth:`log_prob`, but with a variance so large for images that it is
        useless; see :mod:`dgm.models.latent.estimators`.
        """
        return self.log_prob(x, context, num_samples, generator, chunk_size, prior_fraction=1.0)

    def _log_likelihood(self, x: Tensor, latent, labels) -> Tensor:
        """log p(x | z) for latents with leading shape (S, N), shape (S, N)."""
        dist = self._decode_latent(latent, labels)
        return dist.log_prob(self.likelihood.values(x, self.dtype))

    # ------------------------------------------------------------------ bounds and training
    def _combine_over_labels(self, x: Tensor, labels, fn) -> dict[str, Tensor]:
        """Per-example terms, with unobserved labels summed out: Σ_y r(y) T(x, y) − KL(r ‖ p(y))."""

        def known(xx, yy):
            return fn(xx, yy)

        def unknown(xx):
            xs, ys = self._enumerate(xx)
            terms = fn(xs, ys)
            c, n = self.num_classes, len(xx)
            per = {k: v.reshape(c, n) for k, v in terms.items()}
            log_r = self._label_log_posterior(xx, per["objective"])
            r = log_r.exp().T  # (C, N)
            label_kl = (r * (log_r.T - self.class_log_prior()[:, None])).sum(0)
            out = {k: (r * v).sum(0) for k, v in per.items()}
            out["objective"] = out["objective"] - label_kl
            out["kl"] = out["kl"] + label_kl
            out["label_kl"] = label_kl
            return out

        if labels is None or not (labels < 0).any():
            return known(x, labels)
        if (labels < 0).all():
            return unknown(x)
        m = labels < 0
        a, b = unknown(x[m]), known(x[~m], labels[~m])
        out = {}
        for k in a.keys() & b.keys():
            t = torch.empty(len(x), dtype=a[k].dtype, device=x.device)
            out[k] = t.index_put((m,), a[k]).index_put((~m,), b[k])
        return out

    def _bound(
        self, log_lik, log_prior, log_q, estimator, beta, importance_weighted, kl=None
    ) -> dict[str, Tensor]:
        """Per-example training terms from K draws z_k ~ q: ``log_lik`` = log p(x | z_k), ``log_prior`` =
        log p(z_k), ``log_q`` = log q(z_k | x), each (K, N); ``kl`` the closed-form KL (N,) or None.

        The objective's value is the β-ELBO (K draws averaged) or, with ``importance_weighted``, the K-sample
        bound. Its gradient is the reparameterisation gradient when the z_k carry it, or with
        ``estimator="reinforce"`` (z_k detached) the score-function estimator: a moving-average baseline
        for the ELBO (only the reconstruction term needs it when the KL is closed-form), VIMCO's
        leave-one-out baselines for the K-sample bound.
        """
        mc_kl = log_q - log_prior
        rec = log_lik.mean(0)
        if importance_weighted:
            log_w = log_lik - beta * mc_kl
            objective = log_mean_exp(log_w, 0)
            if estimator == "reinforce":
                objective = objective + vimco_term(log_w, log_q)
            return {"objective": objective, "reconstruction": rec, "kl": mc_kl.mean(0)}
        analytic = kl is not None
        if not analytic:
            kl = mc_kl.mean(0)
        objective = rec - beta * kl
        if estimator == "reinforce":
            f = log_lik if analytic else log_lik - beta * mc_kl
            objective = objective + score_function_term(f, log_q, self.baseline).mean(0)
            if self.training and torch.is_grad_enabled():
                self.baseline.mul_(BASELINE_DECAY).add_((1 - BASELINE_DECAY) * f.detach().mean())
        return {"objective": objective, "reconstruction": rec, "kl": kl}

    def elbo(self, x: Tensor, context: Tensor | None = None, num_samples: int = 1) -> ELBO:
        """The evidence lower bound log p(x) ≥ E_q[log p(x | z)] − KL(q(z | x) ‖ p(z)), per example.

        Reconstruction and KL are returned separately (:class:`ELBO`); the expectation uses
        ``num_samples`` reparameterised draws; the KL is analytic where the model has it.
        """
        x = self.validate(x)
        labels = self._labels(context, len(x))
        k = self._num_samples(num_samples)
        t = self._combine_over_labels(
            x, labels, lambda xx, yy: self._terms(xx, yy, k, "reparam", 1.0, importance_weighted=False)
        )
        return ELBO(t["reconstruction"] - t["kl"], t["reconstruction"], t["kl"])

    def training_terms(self, x, context=None, estimator: str | None = None) -> dict[str, Tensor]:
        """Per-example training objective (value: the bound; gradient: ``estimator``) and its terms."""
        x = self.validate(x)
        labels = self._labels(context, len(x))
        est = self.gradient if estimator is None else estimator
        if est not in ESTIMATORS:
            raise ConfigError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {est!r}")
        k = self.num_train_samples
        beta = self.beta
        if self.training and torch.is_grad_enabled():
            beta = self.training_beta()
            if self.kl_warmup:
                self.train_steps.add_(1)
        return self._combine_over_labels(
            x, labels, lambda xx, yy: self._terms(xx, yy, k, est, beta, importance_weighted=k > 1)
        )

    def loss(self, x: Tensor, context: Tensor | None = None, estimator: str | None = None) -> Tensor:
        """Negative training bound, mean over the batch: −(β-)ELBO for K = 1, −IWAE_K for K > 1."""
        return -self.training_terms(x, context, estimator)["objective"].mean()

    def loss_and_metrics(self, x: Tensor, context: Tensor | None = None):
        t = self.training_terms(x, context)
        loss = -t["objective"].mean()
        # 0-dim tensors, not floats: the trainer reads a step's figures back from a GPU in one go.
        with torch.no_grad():
            metrics = {"kl": t["kl"].mean(), "rec": -t["reconstruction"].mean()}
            metrics["nelbo"] = metrics["rec"] + metrics["kl"]
            for k, v in t.items():
                if k not in ("objective", "kl", "reconstruction"):
                    metrics[k] = v.mean()
        return loss, metrics

    # ------------------------------------------------------------------ sampling and the latent space
    def _sample_labels(self, context, n: int, generator) -> Tensor | None:
        if self.num_classes is None:
            return self.class_labels(context, n)
        if context is None:
            return torch.randint(
                self.num_classes, (n,), generator=generator, device=self._gen_device(generator)
            )
        labels = self.check_classes(context, self.num_classes, n)
        return labels

    def _gen_device(self, generator) -> torch.device:
        return generator.device if generator is not None else self.device

    @torch.no_grad()
    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ):
        """Ancestral sampling: (y ~ p(y) when no labels are given,) z ~ p(z), x ~ p(x | z)."""
        n = self.check_num_samples(num_samples)
        labels = self._sample_labels(context, n, generator)
        if labels is not None:
            labels = labels.to(self.device)
        latent = self._prior_latent(n, labels, generator)
        x = draw(self._decode_latent(latent, labels), (), generator)
        return x.float().reshape(n, *self.event_shape)

    def sample_latent(self, num_samples: int, context=None, generator=None):
        """z ~ p(z) (the latent structure of the model: a tensor, or a tuple for hierarchies)."""
        n = self.check_num_samples(num_samples)
        labels = self._sample_labels(context, n, generator)
        return self._prior_latent(n, None if labels is None else labels.to(self.device), generator)

    @torch.no_grad()
    def posterior_means(
        self, x: Tensor, context: Tensor | None = None, num_samples: int = 500, generator=None
    ):
        """E_q[z | x] for each stochastic layer, a list of (N, d_l) tensors (one layer here; hierarchies
        override it)."""
        return [self.encode(x, context).mean]

    @torch.no_grad()
    def active_units(
        self, x: Tensor, context: Tensor | None = None, threshold: float = 1e-2, num_samples: int = 500
    ) -> list[int]:
        """Active units per stochastic layer (Burda et al. 2016, §5.2): unit u counts when
        Cov_x(E_q[u | x]) > ``threshold`` (0.01 in the paper). A unit whose posterior mean does not move
        with x carries no information about it: the posterior collapse that KL warm-up counters.
        ``num_samples``: draws behind the Monte Carlo means of higher layers."""
        means = self.posterior_means(x, context, num_samples, torch.Generator().manual_seed(0))
        return [int((m.var(0) > threshold).sum()) for m in means]

    def encoder_parameters(self):
        """Parameters of the inference network(s) q (where the gradient estimators differ)."""
        return [p for n, p in self.named_parameters() if n.startswith("encoder")]
