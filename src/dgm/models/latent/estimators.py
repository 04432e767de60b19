"""Likelihood and gradient estimators for latent-variable models (CS236 lectures 5–6).

**Likelihood.** p(x) = ∫ p(x | z) p(z) dz has no closed form. With a proposal q(z | x),

    p̂_K(x) = (1/K) Σ_k w_k,   w_k = p(x, z_k) / q(z_k | x),   z_k ~ q(z | x),

is an *unbiased* estimate of p(x). Its log is not unbiased: by Jensen's inequality
E[log p̂_K] ≤ log E[p̂_K] = log p(x), so ``log_prob`` (= log p̂_K) is biased low, i.e. a stochastic lower
bound. E[log p̂_K] is the IWAE bound L_K (Burda, Grosse & Salakhutdinov 2016, eq. 8); L_1 is the ELBO,
L_K ≤ L_2K, and L_K → log p(x) as K → ∞ when the weights are bounded (their Theorem 1). A reported NLL
from ``log_prob`` is therefore an *upper* estimate of the true NLL ("≤" in reports). The log-weights are
combined with ``logsumexp``, never with ``exp``, so no input overflows.

The *naive* Monte Carlo estimate draws z from the prior instead, p̂(x) = (1/K) Σ p(x | z_k). It is unbiased
too, but for high-dimensional x almost every z from the prior explains x terribly: the sum is dominated by
rare draws that K = 5000 never sees, and the estimate is off by hundreds of nats on MNIST. The posterior
q(z | x) as proposal is what makes the estimate usable (:func:`naive_log_prob`).

**Gradients** of E_q[f(z)] with respect to the parameters φ of q:

- reparameterisation (Kingma & Welling 2014, §2.4): z = g_φ(ε), ε ~ p(ε), so ∇φ E[f] = E[∇φ f(g_φ(ε))].
  Needs a continuous z and a differentiable f; low variance.
- the score function / REINFORCE (Williams 1992): ∇φ E[f] = E[(f(z) − b) ∇φ log q_φ(z)] for any b not
  depending on z (a *baseline*, a control variate: E[∇ log q] = 0 so it adds no bias). Works for discrete z
  and non-differentiable f, at a variance often orders of magnitude larger. With K > 1 samples the
  leave-one-out baseline of VIMCO (Mnih & Rezende 2016) is used for the multi-sample bound.

Both are written as *surrogates*: tensors whose value is the objective and whose gradient is the
estimator, so the training loop calls ``backward`` on either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def log_mean_exp(t: Tensor, dim: int = 0) -> Tensor:
    """log((1/K) Σ_k exp(t_k)) along ``dim``, computed stably."""
    return torch.logsumexp(t, dim) - math.log(t.shape[dim])


def chunked_log_mean_exp(log_weights: Callable[[int], Tensor], num_samples: int, chunk_size: int) -> Tensor:
    """log (1/K) Σ_k exp(ℓ_k) with the K log-weights produced ``chunk_size`` at a time.

    ``log_weights(m)`` returns the next ``m`` log-weights, shape ``(m, N)``. Only one chunk is alive at a
    time (a running logsumexp), so memory does not grow with K.
    """
    acc = None
    done = 0
    while done < num_samples:
        m = min(chunk_size, num_samples - done)
        part = torch.logsumexp(log_weights(m), 0)
        acc = part if acc is None else torch.logaddexp(acc, part)
        done += m
    return acc - math.log(num_samples)


def importance_log_prob(model, x, context=None, num_samples: int = 1000, generator=None, chunk_size=None):
    """The importance-sampled estimate log (1/K) Σ_k p(x, z_k)/q(z_k | x), z_k ~ q: ``model.log_prob``."""
    return model.log_prob(x, context, num_samples=num_samples, generator=generator, chunk_size=chunk_size)


def naive_log_prob(model, x, context=None, num_samples: int = 1000, generator=None, chunk_size=None):
    """The naive Monte Carlo estimate log (1/K) Σ p(x | z_k), z_k ~ p(z): unbiased in p, useless in practice
    for images (see the module docstring); kept to show why a proposal is needed."""
    return model.naive_log_prob(
        x, context, num_samples=num_samples, generator=generator, chunk_size=chunk_size
    )


def score_function_term(f: Tensor, log_q: Tensor, baseline: Tensor | float) -> Tensor:
    """A zero-valued tensor whose gradient is the REINFORCE estimate (f − b) ∇ log q(z).

    ``f`` (the integrand at the sampled z) and ``baseline`` are treated as constants; ``log_q`` must carry
    the gradient to the proposal's parameters, with z itself detached.
    """
    weight = (f - baseline).detach()
    return weight * (log_q - log_q.detach())


def vimco_baselines(log_w: Tensor) -> Tensor:
    """VIMCO's leave-one-out baselines b_k = log (1/K)(Σ_{j≠k} w_j + ŵ_{−k}), ŵ_{−k} the geometric mean of
    the other K − 1 weights (Mnih & Rezende 2016, eq. 7); ``log_w`` has shape ``(K, N)``, K ≥ 2."""
    k = log_w.shape[0]
    others_mean = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)  # log of the geometric mean of the others
    # Replace sample k's weight by that geometric mean, one k at a time: a (K, K, N) table of log-weights.
    table = log_w.unsqueeze(0).expand(k, k, -1).clone()
    idx = torch.arange(k, device=log_w.device)
    table[idx, idx] = others_mean
    return log_mean_exp(table, 1)


def vimco_term(log_w: Tensor, log_q: Tensor) -> Tensor:
    """A zero-valued ``(N,)`` tensor whose gradient is VIMCO's score-function part,
    Σ_k (L̂ − b_k) ∇ log q(z_k), for the K-sample bound L̂ = log (1/K) Σ w_k."""
    log_w = log_w.detach()
    bound = log_mean_exp(log_w, 0)
    return score_function_term(bound.unsqueeze(0), log_q, vimco_baselines(log_w)).sum(0)


def gradient_samples(
    model,
    x: Tensor,
    context: Tensor | None = None,
    estimator: str = "reparam",
    num_repeats: int = 100,
    parameters: Sequence[torch.nn.Parameter] | None = None,
) -> Tensor:
    """``num_repeats`` independent gradient estimates of the loss on one batch, shape ``(R, P)`` flattened.

    The model's own training objective is used with ``estimator`` forced to ``"reparam"`` or
    ``"reinforce"``; by default over the encoder's parameters (the ones the two estimators treat
    differently). Their per-coordinate variance across repeats is the figure to compare.
    """
    params = list(model.encoder_parameters() if parameters is None else parameters)
    was_training = model.training
    model.eval()  # the moving-average baseline stays fixed while sampling
    try:
        rows = []
        for _ in range(num_repeats):
            loss = model.loss(x, context, estimator=estimator)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            flat = [
                (torch.zeros_like(p) if g is None else g).flatten()
                for g, p in zip(grads, params, strict=True)
            ]
            rows.append(torch.cat(flat))
    finally:
        model.train(was_training)
    return torch.stack(rows)
