"""Imputation and inpainting: fill the missing values of x given the observed ones, p(x_miss | x_obs).

The missing part is a boolean ``mask`` (True = missing), never a sentinel value in the data; the missing
values of ``x`` are overwritten before any method looks at x, so no imputer can peek at them. Every method
returns ``num_samples`` completions per example in which the observed values are copied from x exactly.

Which method a model gets is decided by what it offers (:func:`available_methods`):

``closed-form``
    Models that expose their density as a ``torch.distributions`` object with independent factors per
    value, or a mixture of such (``distribution()``: independent, Bernoulli/categorical mixtures, diagonal
    Gaussian mixtures; ``prior()`` + ``class_conditional()``: naive Bayes), or a mixture of full-covariance
    Gaussians: the posterior over the component given x_obs, then the missing values from that component
    (for Gaussians, the conditional Gaussian). Exact.
``autoregressive``
    Models with an ordering and per-value conditionals p(x_d | x_<d) (fvsbn, nade, rnade, made, pixelcnn,
    gated-pixelcnn, pixelrnn, rnn, transformer-ar). When every observed value precedes every missing one
    in the ordering, p(x_miss | x_obs) = Π_{missing d} p(x_d | x_<d): resample the missing values in
    order with the observed ones clamped. Exact. An order-agnostic MADE (Germain et al. 2015, §4.2)
    reorders each of its masks so that the observed values come first: each (mask, ordering) pair is a
    normalised model, and the completions and likelihoods are exactly those of the uniform mixture of the
    reordered masks (the mask is chosen with probability ∝ p_m(x_obs)). That mixture is the one the model
    was trained to make consistent across orderings, but it is not numerically the same density as the
    model's ``log_prob`` (the mixture of the trained orderings): the note says so.
``enumeration``
    Discrete models with an exact ``log_prob`` and at most ``max_configs`` completions per example: score
    every completion, normalise. Exact.
``gibbs``
    Any discrete model with a ``log_prob``: systematic-scan Gibbs sampling over the missing values, each
    value's full conditional from ``log_prob`` at its k values (one batched call per value). ``sweeps``
    passes over the missing values; each completion is the final state of its own chain.
``metropolis``
    Any real-valued model with a ``log_prob``: Metropolis-within-Gibbs with Gaussian random-walk proposals
    on blocks of ``block_size`` missing values (``block_size`` = all of them is joint random-walk MH).
    Proposal scales adapt per value towards 44% (single values) / 23% (blocks) acceptance during the
    burn-in sweeps only, so the sweeps after it are a valid Markov chain for p(x_miss | x_obs).

The conditional log-likelihood of the true missing part, log p(x_miss | x_obs) = log p(x) − log p(x_obs),
needs the marginal p(x_obs): :func:`conditional_log_prob` computes it with the first three methods and
says which capability is missing otherwise.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
)

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError, DataError
from dgm.core.progress import steps

METHODS = ("auto", "closed-form", "autoregressive", "enumeration", "gibbs", "metropolis")
EXACT_METHODS = ("closed-form", "autoregressive", "enumeration")
MAX_CONFIGS = 4096  # completions an example may have for the enumeration method
DEFAULT_SWEEPS = {"gibbs": 20, "metropolis": 200}
_BATCH = 4096  # rows per log_prob call


@dataclass
class Imputation:
    """Completions of a batch and how they were drawn.

    Attributes:
        completions: ``(N, S, *event_shape)``: S completions per example; observed values equal x's.
        mask: ``(N, *event_shape)`` bool, True where the value was missing.
        method: ``closed-form``, ``autoregressive``, ``enumeration``, ``gibbs`` or ``metropolis``.
        exact: whether the completions are exact draws from the model's conditional (MCMC: False).
        note: one line saying what was done (ordering used, chains, sweeps ...).
        sweeps, burn_in: MCMC sweeps run (each missing value updated once per sweep) and how many of them
            adapted the proposals (Metropolis) — None for exact methods.
        acceptance: Metropolis acceptance rate after burn-in (None otherwise).
    """

    completions: Tensor
    mask: Tensor
    method: str
    exact: bool
    note: str
    sweeps: int | None = None
    burn_in: int | None = None
    acceptance: float | None = None

    def describe(self) -> str:
        n, s = self.completions.shape[:2]
        text = f"{self.method} ({'exact conditional samples' if self.exact else 'MCMC'}): {self.note}"
        if self.sweeps is not None:
            text += f"; {self.sweeps} sweeps"
            if self.burn_in:
                text += f" ({self.burn_in} adapting the proposals)"
        if self.acceptance is not None:
            text += f"; acceptance {100 * self.acceptance:.1f}%"
        return f"{text}; {s} completion(s) for each of {n} example(s)"


# ---------------------------------------------------------------------------- plumbing
@contextlib.contextmanager
def _evaluating(model):
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _check_mask(model, mask, n: int) -> Tensor:
    """A bool mask of shape ``event_shape`` or ``(N, *event_shape)`` → ``(N, D)`` on the model's device."""
    ev = tuple(model.event_shape)
    if not isinstance(mask, Tensor):
        raise DataError(f"mask must be a boolean torch.Tensor (True = missing), got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise DataError(
            f"mask must be a boolean tensor (True = missing), got dtype {mask.dtype}; "
            "missing values are marked by the mask, never by sentinel values in the data"
        )
    if tuple(mask.shape) == ev:
        mask = mask.expand(n, *ev)
    elif tuple(mask.shape) != (n, *ev):
        raise DataError(
            f"mask has shape {tuple(mask.shape)}; this model expects {ev} or ({n}, {', '.join(map(str, ev))})"
        )
    return mask.reshape(n, -1).to(model.device)


def _check_context(model, context, n: int):
    if context is None:
        return None
    if isinstance(context, int) and not isinstance(context, bool):
        return torch.full((n,), context, dtype=torch.long, device=model.device)
    if isinstance(context, Tensor):
        if len(context) != n:
            raise DataError(f"context has {len(context)} entries for {n} examples")
        return context.to(model.device)
    raise DataError(f"context must be an int or a tensor of labels, got {type(context).__name__}")


def _prepare(model, x, mask, context, hide: bool = True):
    """Validated flat (N, D) float values (missing values zeroed when ``hide``), (N, D) mask, context."""
    x = model.validate(x, "x")
    n = len(x)
    mask = _check_mask(model, mask, n)
    x = x.reshape(n, -1).float()
    if hide:
        x = x.masked_fill(mask, 0.0)  # the imputers never see the missing values
    return x, mask, _check_context(model, context, n)


def _repeat(t: Tensor | None, s: int) -> Tensor | None:
    return None if t is None else t.repeat_interleave(s, 0)


def _log_prob(model, x: Tensor, context: Tensor | None, batch_size: int = _BATCH) -> Tensor:
    """model.log_prob of flat rows, in chunks; NaN (e.g. outside a flow's domain) counts as −inf."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].reshape(-1, *model.event_shape)
        cb = None if context is None else context[i : i + batch_size]
        out.append(model.log_prob(xb, cb).float())
    lp = torch.cat(out) if out else x.new_zeros(0)
    return lp.masked_fill(lp.isnan(), -math.inf)


def _rand_device(generator, device):
    return generator.device if generator is not None else device


def _groups(mask: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Rows sharing one mask pattern: [(missing (D,) bool, row indices)]."""
    patterns, inverse = torch.unique(mask, dim=0, return_inverse=True)
    return [(patterns[g], (inverse == g).nonzero()[:, 0]) for g in range(len(patterns))]


def _values_for(dist: Distribution, x: Tensor) -> Tensor:
    """Values in the dtype ``dist.log_prob`` wants: long for categorical, the parameters' float otherwise."""
    if isinstance(dist, Categorical):
        return x.long()
    if isinstance(dist, Bernoulli):
        return x.to(dist.logits.dtype)
    return x.float()


# ---------------------------------------------------------------------------- closed form
def _select_rows(base: Distribution, k: Tensor) -> Distribution | None:
    """The per-value factors of component ``k[i]`` for each row i: batch (K, D) → (N, D)."""
    if isinstance(base, Bernoulli):
        return Bernoulli(logits=base.logits[k])
    if isinstance(base, Categorical):
        return Categorical(logits=base.logits[k])
    if isinstance(base, Normal):
        return Normal(base.loc[k], base.scale[k])
    return None


def _factored(model, context: Tensor | None, n: int):
    """(log weights (n, K), components) when the model's density is a mixture of simple components.

    Components are ``Independent(base, 1)`` with ``base`` Bernoulli/Categorical/Normal of batch (K, D),
    or a ``MultivariateNormal`` of batch (K,). None when the model offers nothing of the kind.
    """
    if callable(getattr(model, "prior", None)) and callable(getattr(model, "class_conditional", None)):
        comp = model.class_conditional()
        log_w = model.prior().logits.float().expand(n, -1)
        if context is not None:  # given the class, the only component is that class's
            y = model.check_classes(context, model.num_classes, n)
            log_w = torch.full_like(log_w, -math.inf).scatter(1, y[:, None], 0.0)
    elif callable(getattr(model, "distribution", None)) and not model.conditional:
        if context is not None:
            raise DataError(f"{model.name} is unconditional: it takes no context")
        try:
            dist = model.distribution()
        except TypeError:
            return None
        if isinstance(dist, MixtureSameFamily):
            comp = dist.component_distribution
            log_w = dist.mixture_distribution.logits.float().expand(n, -1)
        elif isinstance(dist, Independent):
            comp = Independent(dist.base_dist.expand((1, *dist.base_dist.batch_shape)), 1)
            log_w = torch.zeros(n, 1, device=model.device)
        else:
            return None
    else:
        return None
    if isinstance(comp, MultivariateNormal) and comp.batch_shape.numel() == len(comp.loc):
        return log_w, comp
    if (
        isinstance(comp, Independent)
        and comp.reinterpreted_batch_ndims == 1
        and isinstance(comp.base_dist, Bernoulli | Categorical | Normal)
        and len(comp.base_dist.batch_shape) == 2
        and comp.base_dist.batch_shape[1] == model.num_dims
    ):
        return log_w, comp
    return None


def _closed_form(model, x, mask, context, s: int, generator):
    """(log p(x_obs) (N,), log p(x) (N,), completions (N·S, D) or None when s == 0)."""
    n = len(x)
    log_w, comp = _factored(model, context, n)
    if isinstance(comp, MultivariateNormal):
        return _closed_form_gaussian(log_w, comp, x, mask, s, generator)
    base = comp.base_dist
    lp = base.log_prob(_values_for(base, x)[:, None, :]).float()  # (N, K, D)
    obs = (~mask).float()[:, None, :]
    joint_obs = log_w + (lp * obs).sum(-1)
    log_marginal = joint_obs.logsumexp(1)
    log_full = (log_w + lp.sum(-1)).logsumexp(1)
    if s == 0:
        return log_marginal, log_full, None
    post = _repeat(joint_obs, s)
    k = draw(Categorical(logits=post), (), generator)
    values = draw(_select_rows(base, k), (), generator).float()
    xs = _repeat(x, s)
    return log_marginal, log_full, torch.where(_repeat(mask, s), values.to(xs.device), xs)


def _closed_form_gaussian(log_w, comp: MultivariateNormal, x, mask, s: int, generator):
    """Mixture of Gaussians: component posterior from N(x_o; μ_o, Σ_oo), then the conditional Gaussian
    μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o), Σ_mm − Σ_mo Σ_oo⁻¹ Σ_om."""
    n = len(x)
    mu, cov = comp.loc.double(), comp.covariance_matrix.double()
    xd = x.double()
    log_marginal = torch.empty(n, dtype=torch.float64, device=x.device)
    log_full = (log_w.double() + MultivariateNormal(mu, cov).log_prob(xd[:, None, :])).logsumexp(1)
    out = _repeat(x, s).clone() if s else None
    for missing, rows in _groups(mask):
        o, m = (~missing).nonzero()[:, 0], missing.nonzero()[:, 0]
        lw = log_w[rows].double()
        xo = xd[rows][:, o]
        if len(o):
            s_oo = cov[:, o][:, :, o]
            joint = lw + MultivariateNormal(mu[:, o], s_oo).log_prob(xo[:, None, :])
            gain = torch.linalg.solve(s_oo, cov[:, o][:, :, m]).mT  # Σ_mo Σ_oo⁻¹, (K, m, o)
            mean = mu[:, m] + torch.einsum("kmo,nko->nkm", gain, xo[:, None, :] - mu[:, o])
            ccov = cov[:, m][:, :, m] - gain @ cov[:, o][:, :, m]
        else:
            joint, mean, ccov = lw, mu[:, m].expand(len(rows), -1, -1), cov[:, m][:, :, m]
        log_marginal[rows] = joint.logsumexp(1)
        if s and len(m):
            k = draw(Categorical(logits=_repeat(joint, s).float()), (), generator)
            scale = torch.linalg.cholesky(
                ccov + 1e-10 * torch.eye(len(m), dtype=ccov.dtype, device=ccov.device)
            )
            eps = torch.randn(len(k), len(m), generator=generator, device=_rand_device(generator, x.device))
            eps = eps.to(x.device, torch.float64)
            value = _repeat(mean, s)[torch.arange(len(k)), k] + (scale[k] @ eps[:, :, None])[..., 0]
            idx = (rows[:, None] * s + torch.arange(s, device=x.device)).reshape(-1)
            out[idx[:, None], m] = value.float()
    return log_marginal.float(), log_full.float(), out


# ---------------------------------------------------------------------------- autoregressive view
class _Unavailable(Exception):
    """A method does not apply to this model/mask; the message says why."""


def _raster_channel_last(shape) -> Tensor:
    """Flat (C, H, W) indices in the image models' order: rows, then columns, then channels."""
    C, H, W = shape
    idx = torch.arange(C * H * W).reshape(C, H, W)
    return idx.permute(1, 2, 0).reshape(-1)


class _Autoregressive:
    """What an autoregressive model offers, read from its attributes: orderings and conditionals."""

    def __init__(self, model):
        self.model = model
        name = model.name or type(model).__name__
        self.made = callable(getattr(model, "sample_ordered", None)) and hasattr(model, "num_masks")
        if self.made:
            net = getattr(model, "net", None)
            self.orderings = [net.ordering(m).cpu() for m in range(model.num_masks)]
            self.order_agnostic = bool(model.config.get("order_agnostic", False))
        elif isinstance(getattr(model, "ordering", None), Tensor) and callable(
            getattr(model, "conditionals", None)
        ):
            self.orderings = [model.ordering.cpu()]
        elif callable(getattr(model, "logits", None)) and hasattr(model, "receptive_rows"):
            self.orderings = [_raster_channel_last(model.event_shape)]  # PixelCNN family
        elif callable(getattr(model, "conditionals", None)) and callable(getattr(model, "shift", None)):
            self.orderings = [torch.arange(model.num_dims)]  # next-token sequence models
        else:
            raise _Unavailable(f"{name} exposes no autoregressive ordering and conditionals")
        self.name = name
        params = inspect.signature(model.sample).parameters
        self.prefix_sampler = not self.made and "prefix" in params

    def conditionals(self, x: Tensor, context, mask_index: int = 0, ordering=None) -> Distribution:
        """p(x_d | x_<d) for every d, batch (N, D), in dimension order."""
        m = self.model
        xs = x.reshape(-1, *m.event_shape)
        if self.made:
            return m.conditionals(xs, context, mask_index, ordering)
        if callable(getattr(m, "logits", None)) and hasattr(m, "receptive_rows"):
            logits = m.logits(xs, context)
            if logits.dim() == xs.dim():
                return Bernoulli(logits=logits.reshape(len(x), -1))
            return Categorical(logits=logits.reshape(len(x), m.num_dims, -1))
        out = m.conditionals(xs, context)
        return Categorical(logits=out) if isinstance(out, Tensor) else out

    def plan(self, missing: Tensor) -> tuple[list[Tensor], bool]:
        """Orderings (one per mask) that put the observed values first, and whether any was reordered."""
        observed = ~missing.cpu()
        num_obs = int(observed.sum())
        first = [bool(observed[o][:num_obs].all()) for o in self.orderings]
        if all(first):
            return list(self.orderings), False
        if self.made and self.order_agnostic:
            return [torch.cat([o[observed[o]], o[~observed[o]]]) for o in self.orderings], True
        o = self.orderings[next(i for i, f in enumerate(first) if not f)]
        pos = torch.argsort(o)
        first_missing = int(o[(~observed[o]).nonzero()[0, 0]])
        later = int(o[observed[o].nonzero()[-1, 0]])
        why = (
            f"{self.name}'s ordering puts missing value {first_missing} (position {int(pos[first_missing])}) "
            f"before observed value {later} (position {int(pos[later])}); exact conditionals need every "
            "observed value first"
        )
        if self.made:
            why += " and this MADE was not trained order-agnostically (order_agnostic=False)"
        elif len(self.model.event_shape) == 3 or not hasattr(self.model, "ordering"):
            why += " (raster order: e.g. --mask bottom-half)"
        raise _Unavailable(why)

    def _per_value(self, x: Tensor, context, orderings: list[Tensor]) -> list[Tensor]:
        """log p(x_d | x_<d) (N, D) under each planned mask (one entry for single-ordering models)."""
        out = []
        for i, o in enumerate(orderings):
            dist = (
                self.conditionals(x, context, i, o.to(x.device))
                if self.made
                else self.conditionals(x, context)
            )
            out.append(dist.log_prob(_values_for(dist, x)).float())
        return out

    def observed_log_probs(self, x: Tensor, context, orderings: list[Tensor], missing: Tensor) -> Tensor:
        """log p_m(x_obs) under each planned mask, (N, M): the observed values' conditionals."""
        obs = (~missing).float()
        return torch.stack([(lp * obs).sum(-1) for lp in self._per_value(x, context, orderings)], 1)

    def log_probs(
        self, x: Tensor, context, orderings: list[Tensor], missing: Tensor
    ) -> tuple[Tensor, Tensor]:
        """log p(x_obs), log p(x) under the plan (for MADE, the uniform mixture of the planned masks)."""
        obs = (~missing).float()
        per_value = self._per_value(x, context, orderings)
        log_m = math.log(len(orderings))
        return (
            torch.stack([(lp * obs).sum(-1) for lp in per_value], 1).logsumexp(1) - log_m,
            torch.stack([lp.sum(-1) for lp in per_value], 1).logsumexp(1) - log_m,
        )

    def sample(self, x: Tensor, context, orderings, missing: Tensor, s: int, generator) -> Tensor:
        """S completions of every row of x (rows share ``missing``), (n·S, D)."""
        m = self.model
        n, D = x.shape
        xs, cs = _repeat(x, s), _repeat(context, s)
        num_obs = int((~missing).sum())
        if self.made:
            if len(orderings) > 1:
                log_w = self.observed_log_probs(x, context, orderings, missing)
                choice = draw(Categorical(logits=_repeat(log_w, s)), (), generator).to(x.device)
            else:
                choice = torch.zeros(n * s, dtype=torch.long, device=x.device)
            out = xs.clone()
            for i, o in enumerate(orderings):
                rows = (choice == i).nonzero()[:, 0]
                if len(rows):
                    out[rows] = (
                        m.sample_ordered(
                            len(rows),
                            None if cs is None else cs[rows],
                            i,
                            o.to(x.device),
                            observed=xs[rows].reshape(-1, *m.event_shape),
                            num_observed=num_obs,
                            generator=generator,
                        )
                        .reshape(len(rows), D)
                        .float()
                    )
            return out
        order = orderings[0]
        if self.prefix_sampler and torch.equal(order, torch.arange(D)):
            prefix = xs[:, :num_obs].long()
            return m.sample(len(xs), cs, generator=generator, prefix=prefix).reshape(len(xs), D).float()
        out = xs.clone()
        banded = self._banded_pixel_logits()
        for d in order[num_obs:].tolist():
            if banded is not None:
                out[:, d] = banded(out, cs, d, generator)
            else:
                out[:, d] = _draw_column(self.conditionals(out, cs), d, generator).to(out.dtype)
        return out

    def _banded_pixel_logits(self):
        """For the PixelCNN family: draw pixel d from a pass over the rows its conditional can see only,
        as the models' own samplers do (O(receptive field) per pixel instead of O(image)). Uses their
        internal ``_features`` / ``_scale`` / ``_head``; None (full passes) when they are absent."""
        m = self.model
        if not all(hasattr(m, a) for a in ("receptive_rows", "_features", "_scale", "_head")):
            return None
        C, H, W = m.event_shape
        reach = m.receptive_rows

        def draw_pixel(out: Tensor, context, d: int, generator) -> Tensor:
            ch, r, c = d // (H * W), d // W % H, d % W
            img = out.reshape(len(out), C, H, W)
            top = max(0, r - reach)
            # An image context (context_shape) is location-dependent: crop it to the band like the pixels.
            if hasattr(m, "context_band"):
                ctx = m.context_band(context, len(out), top, r + 1)
            else:
                ctx = m.class_labels(context, len(out))
            logits = m._head(m._features(m._scale(img[:, :, top : r + 1]), ctx)[:, :, -1:])[:, ch, 0, c]
            dist = Bernoulli(logits=logits) if m.support.kind == "binary" else Categorical(logits=logits)
            return draw(dist, (), generator).to(out.dtype)

        return draw_pixel


def _draw_column(dist: Distribution, d: int, generator) -> Tensor:
    """A draw of value d of every row from conditionals with batch (N, D) (seeded where torch allows)."""
    if isinstance(dist, Bernoulli):
        return draw(Bernoulli(logits=dist.logits[:, d]), (), generator)
    if isinstance(dist, Categorical):
        return draw(Categorical(logits=dist.logits[:, d]), (), generator).float()
    if isinstance(dist, Normal):
        return draw(Normal(dist.loc[:, d], dist.scale[:, d]), (), generator)
    if isinstance(dist, MixtureSameFamily) and isinstance(dist.component_distribution, Normal):
        k = draw(Categorical(logits=dist.mixture_distribution.logits[:, d]), (), generator)[:, None]
        comp = dist.component_distribution
        loc, scale = comp.loc[:, d].gather(1, k)[:, 0], comp.scale[:, d].gather(1, k)[:, 0]
        return draw(Normal(loc, scale), (), generator)
    return dist.sample()[:, d]


# ---------------------------------------------------------------------------- enumeration
def _enumerate(model, x, mask, context, max_configs: int, batch_size: int):
    """For each mask group: (rows, missing indices, every completion (c, m), log p(x with it) (rows, c))."""
    k = model.support.num_categories
    for missing, rows in _groups(mask):
        m_idx = missing.nonzero()[:, 0]
        m = len(m_idx)
        c = k**m
        if c > max_configs:
            raise _Unavailable(f"{m} missing values have {k}^{m} completions, more than {max_configs}")
        radix = k ** torch.arange(m - 1, -1, -1, device=x.device)
        grid = (torch.arange(c, device=x.device)[:, None] // radix % k).float()  # (c, m)
        xr = x[rows][:, None, :].expand(-1, c, -1).clone()
        xr[:, :, m_idx] = grid
        ctx = None if context is None else context[rows].repeat_interleave(c)
        lp = _log_prob(model, xr.reshape(-1, x.shape[1]), ctx, batch_size).reshape(len(rows), c)
        yield rows, m_idx, grid, lp, radix


# ---------------------------------------------------------------------------- method choice
def available_methods(model, mask: Tensor, max_configs: int = MAX_CONFIGS) -> dict[str, str | None]:
    """For each method, None when it applies to ``model`` and ``mask`` (event-shape or per-example bool
    mask), else the reason it does not."""
    n = 1 if isinstance(mask, Tensor) and tuple(mask.shape) == tuple(model.event_shape) else len(mask)
    return _available(model, _check_mask(model, mask, n), max_configs)


def _available(model, mask: Tensor, max_configs: int) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    name = model.name or type(model).__name__
    out["closed-form"] = (
        None
        if _has_closed_form(model)
        else f"{name} offers no closed-form distribution (distribution() or prior() + class_conditional())"
    )
    try:
        ar = _Autoregressive(model)
        for missing, _ in _groups(mask):
            ar.plan(missing)
        out["autoregressive"] = None
    except _Unavailable as e:
        out["autoregressive"] = str(e)
    k = model.support.num_categories
    if not model.support.discrete:
        out["enumeration"] = "enumeration needs discrete data"
    elif not model.exact:
        out["enumeration"] = f"{name}'s log_prob is an estimate, not exact"
    else:
        m = int(mask.sum(1).max())
        out["enumeration"] = (
            None if k**m <= max_configs else f"{m} missing values have {k}^{m} completions (> {max_configs})"
        )
    out["gibbs"] = None if model.support.discrete else "Gibbs sampling here needs discrete data"
    out["metropolis"] = (
        None if not model.support.discrete else "random-walk Metropolis needs real-valued data"
    )
    return out


def _has_closed_form(model) -> bool:
    try:
        return _factored(model, None, 1) is not None
    except (DataError, ConfigError, NotImplementedError):
        return False


def select_method(
    model, mask: Tensor, method: str = "auto", purpose: str = "sample", max_configs: int = MAX_CONFIGS
) -> str:
    """The method ``impute`` (purpose "sample") or ``conditional_log_prob`` ("likelihood") will use.

    ``auto`` takes the first that applies of closed-form, autoregressive, enumeration and (sampling only)
    gibbs / metropolis. A method that does not apply is a ConfigError naming why.
    """
    n = 1 if isinstance(mask, Tensor) and tuple(mask.shape) == tuple(model.event_shape) else len(mask)
    return _select(model, _check_mask(model, mask, n), method, purpose, max_configs)


def _select(model, mask: Tensor, method: str, purpose: str, max_configs: int) -> str:
    if method not in METHODS:
        raise ConfigError(f"unknown imputation method {method!r}; use one of {', '.join(METHODS)}")
    options = _available(model, mask, max_configs)
    candidates = EXACT_METHODS if purpose == "likelihood" else METHODS[1:]
    if method != "auto":
        if method not in candidates:
            raise ConfigError(f"{method} gives samples, not the likelihood log p(x_miss | x_obs)")
        if options[method] is not None:
            raise ConfigError(f"method {method} does not apply: {options[method]}")
        return method
    for m in candidates:
        if options[m] is None:
            return m
    reasons = "; ".join(f"{m}: {options[m]}" for m in candidates)
    what = "the marginal p(x_obs) (for log p(x_miss | x_obs))" if purpose == "likelihood" else "imputation"
    raise ConfigError(f"{model.name} cannot compute {what}: {reasons}")


# ---------------------------------------------------------------------------- public API
def impute(
    model,
    x: Tensor,
    mask: Tensor,
    num_samples: int = 1,
    *,
    method: str = "auto",
    context: Tensor | int | None = None,
    sweeps: int | None = None,
    burn_in: int | None = None,
    block_size: int = 1,
    step_size: float = 0.5,
    init: str = "sample",
    max_configs: int = MAX_CONFIGS,
    batch_size: int = _BATCH,
    generator: torch.Generator | None = None,
) -> Imputation:
    """Draw ``num_samples`` completions of each example of ``x`` from p(x_miss | x_obs).

    Args:
        model: any ``dgm`` model (see the module docstring for what each kind gets).
        x: ``(N, *event_shape)``; its missing values are ignored (overwritten before use).
        mask: bool, ``event_shape`` (one mask for all) or ``(N, *event_shape)``; True = missing.
        num_samples: S, completions per example.
        method: ``auto`` or one of the methods; a method that does not apply is a ConfigError.
        context: class labels for class-conditional models (an int or ``(N,)``).
        sweeps, burn_in, block_size, step_size, init: MCMC settings (see :func:`gibbs_impute`,
            :func:`metropolis_impute`).
        max_configs: the enumeration method's limit on completions per example.
        generator: seeds every draw.

    Returns an :class:`Imputation` whose ``completions`` are ``(N, S, *event_shape)``.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise DataError(f"num_samples must be a positive int, got {num_samples!r}")
    xf, maskf, ctx = _prepare(model, x, mask, context)
    chosen = _select(model, maskf, method, "sample", max_configs)
    if chosen == "gibbs":
        return gibbs_impute(
            model, x, mask, num_samples, sweeps=sweeps, context=context, init=init, generator=generator,
            batch_size=batch_size,
        )  # fmt: skip
    if chosen == "metropolis":
        return metropolis_impute(
            model, x, mask, num_samples, sweeps=sweeps, burn_in=burn_in, block_size=block_size,
            step_size=step_size, context=context, init=init, generator=generator, batch_size=batch_size,
        )  # fmt: skip
    s = num_samples
    with _evaluating(model):
        if chosen == "closed-form":
            _, _, out = _closed_form(model, xf, maskf, ctx, s, generator)
            note = "component posterior given the observed values, then the missing values from it"
        elif chosen == "autoregressive":
            ar = _Autoregressive(model)
            out = _repeat(xf, s).clone()
            notes = set()
            for missing, rows in _groups(maskf):
                orderings, reordered = ar.plan(missing)
                idx = (rows[:, None] * s + torch.arange(s, device=xf.device)).reshape(-1)
                c = None if ctx is None else ctx[rows]
                out[idx] = ar.sample(xf[rows], c, orderings, missing, s, generator)
                notes.add(reordered)
            note = "observed values first in the ordering; missing values resampled in order"
            if ar.made and len(ar.orderings) > 1:
                note += f"; mask drawn ∝ p_m(x_obs) among {len(ar.orderings)} masks"
            if True in notes:
                note += (
                    "; order-agnostic MADE: masks reordered with the observed values first (exact for the "
                    "mixture of the reordered masks, which the model was trained to agree with)"
                )
        else:
            out = _repeat(xf, s).clone()
            for rows, m_idx, grid, lp, _ in _enumerate(model, xf, maskf, ctx, max_configs, batch_size):
                pick = draw(Categorical(logits=_repeat(lp, s)), (), generator).to(xf.device)
                idx = (rows[:, None] * s + torch.arange(s, device=xf.device)).reshape(-1)
                out[idx[:, None], m_idx] = grid[pick]
            note = f"every completion scored (at most {max_configs} per example)"
    return _finish(model, xf, maskf, out, s, chosen, True, note)


def _finish(model, xf, maskf, out, s, method, exact, note, **extra) -> Imputation:
    n = len(xf)
    # Observed values are copied, not trusted to the sampler: they are exactly x's.
    out = torch.where(_repeat(maskf, s), out, _repeat(xf, s))
    return Imputation(
        completions=out.reshape(n, s, *model.event_shape),
        mask=maskf.reshape(n, *model.event_shape),
        method=method,
        exact=exact,
        note=note,
        **extra,
    )


def _initial_state(model, xf, maskf, ctx, init: str, generator) -> tuple[Tensor, str]:
    """Starting values of the missing entries: a model sample's, or uniform (discrete) / zero (real)."""
    if init not in ("sample", "uniform"):
        raise ConfigError(f"init must be 'sample' or 'uniform', got {init!r}")
    if init == "sample":
        try:
            start = model.sample(len(xf), ctx, generator=generator).reshape(len(xf), -1).float().to(xf.device)
            return torch.where(maskf, start, xf), "chains started from model samples"
        except NotImplementedError:
            pass
    if model.support.discrete:
        k = model.support.num_categories
        dev = _rand_device(generator, xf.device)
        start = torch.randint(k, xf.shape, generator=generator, device=dev).to(xf.device).float()
        return torch.where(maskf, start, xf), "chains started uniformly at random"
    return xf.clone(), "chains started at 0"


def gibbs_impute(
    model,
    x: Tensor,
    mask: Tensor,
    num_samples: int = 1,
    *,
    sweeps: int | None = None,
    context: Tensor | int | None = None,
    init: str = "sample",
    batch_size: int = _BATCH,
    generator: torch.Generator | None = None,
) -> Imputation:
    """Gibbs sampling of the missing values of a discrete model using only ``log_prob``.

    One chain per completion. A sweep visits every missing value once, in a fresh random order, and
    redraws it from its full conditional p(x_d | x_−d) ∝ p(x with x_d = v), v = 0..k−1, scored in one
    batched ``log_prob`` call over all chains and values. The completions are the chains' states after
    ``sweeps`` sweeps (default 20); the chains start from model samples (``init="sample"``) or uniform
    values. The stationary distribution is p(x_miss | x_obs); how close ``sweeps`` gets is not checked.
    """
    if not model.support.discrete:
        raise ConfigError("Gibbs sampling needs discrete data; use metropolis_impute for real-valued data")
    sweeps = DEFAULT_SWEEPS["gibbs"] if sweeps is None else sweeps
    if isinstance(sweeps, bool) or not isinstance(sweeps, int) or sweeps < 1:
        raise ConfigError(f"sweeps must be a positive int, got {sweeps!r}")
    xf, maskf, ctx = _prepare(model, x, mask, context)
    s = num_samples
    k = model.support.num_categories
    xs, ms, cs = _repeat(xf, s), _repeat(maskf, s), _repeat(ctx, s)
    dev = _rand_device(generator, xf.device)
    with _evaluating(model):
        cur, how = _initial_state(model, xs, ms, cs, init, generator)
        sites = ms.any(0).nonzero()[:, 0]
        values = torch.arange(k, device=xf.device, dtype=cur.dtype)
        for _ in steps(sweeps, "sweep"):
            for d in sites[
                torch.randperm(len(sites), generator=generator, device=dev).to(sites.device)
            ].tolist():
                rows = ms[:, d].nonzero()[:, 0]
                cand = cur[rows].repeat(k, 1)  # value-major: block v holds every row with x_d = v
                cand[:, d] = values.repeat_interleave(len(rows))
                c = None if cs is None else cs[rows].repeat(k)
                lp = _log_prob(model, cand, c, batch_size).reshape(k, len(rows)).T
                stuck = torch.isinf(lp).all(1)  # every value impossible given the rest: stay uniform
                lp[stuck] = 0.0
                cur[rows, d] = draw(Categorical(logits=lp), (), generator).to(cur.dtype)
    note = f"{how}, one chain per completion"
    if not model.exact:
        note += f"; {model.name}'s log_prob is an estimate, so the chain targets the estimated density"
    return _finish(model, xf, maskf, cur, s, "gibbs", False, note, sweeps=sweeps)


def metropolis_impute(
    model,
    x: Tensor,
    mask: Tensor,
    num_samples: int = 1,
    *,
    sweeps: int | None = None,
    burn_in: int | None = None,
    block_size: int = 1,
    step_size: float = 0.5,
    context: Tensor | int | None = None,
    init: str = "sample",
    batch_size: int = _BATCH,
    generator: torch.Generator | None = None,
) -> Imputation:
    """Metropolis-within-Gibbs for real-valued models using only ``log_prob``.

    One chain per completion. A sweep splits the missing values into random blocks of ``block_size`` and
    proposes, for each block, x' = x + σ ⊙ ε on its values (ε ~ N(0, I)), accepted with probability
    min(1, p(x') / p(x)) (the proposal is symmetric). σ starts at ``step_size`` for every value and, during
    the first ``burn_in`` sweeps (default half of ``sweeps``, default 200), adapts per value by
    log σ += (accepted − target) / √t towards 44% acceptance for single values and 23% for blocks; after
    that it is fixed, so the remaining sweeps are a valid Markov chain with stationary distribution
    p(x_miss | x_obs). The reported acceptance is over the sweeps after burn-in.
    """
    if model.support.discrete:
        raise ConfigError("random-walk Metropolis needs real-valued data; use gibbs_impute for discrete data")
    sweeps = DEFAULT_SWEEPS["metropolis"] if sweeps is None else sweeps
    if isinstance(sweeps, bool) or not isinstance(sweeps, int) or sweeps < 1:
        raise ConfigError(f"sweeps must be a positive int, got {sweeps!r}")
    burn_in = sweeps // 2 if burn_in is None else burn_in
    if not 0 <= burn_in < sweeps:
        raise ConfigError(f"burn_in must be in 0..sweeps-1 ({sweeps - 1}), got {burn_in!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ConfigError(f"block_size must be a positive int, got {block_size!r}")
    if not step_size > 0:
        raise ConfigError(f"step_size must be positive, got {step_size!r}")
    xf, maskf, ctx = _prepare(model, x, mask, context)
    s = num_samples
    xs, ms, cs = _repeat(xf, s), _repeat(maskf, s), _repeat(ctx, s)
    dev = _rand_device(generator, xf.device)
    target = 0.44 if block_size == 1 else 0.234
    accepted = proposed = 0.0
    with _evaluating(model):
        cur, how = _initial_state(model, xs, ms, cs, init, generator)
        lp_cur = _log_prob(model, cur, cs, batch_size)
        log_step = torch.full_like(cur, math.log(step_size))
        sites = ms.any(0).nonzero()[:, 0]
        for sweep in steps(sweeps, "sweep"):
            perm = sites[torch.randperm(len(sites), generator=generator, device=dev).to(sites.device)]
            for block in perm.split(block_size):
                active = ms[:, block].any(1).nonzero()[:, 0]
                move = ms[active][:, block].float()
                eps = torch.randn(len(active), len(block), generator=generator, device=dev).to(cur.device)
                prop = cur[active].clone()
                prop[:, block] += log_step[active][:, block].exp() * eps * move
                c = None if cs is None else cs[active]
                lp_prop = _log_prob(model, prop, c, batch_size)
                u = torch.rand(len(active), generator=generator, device=dev).to(cur.device)
                accept = u.log() < lp_prop - lp_cur[active]
                cur[active] = torch.where(accept[:, None], prop, cur[active])
                lp_cur[active] = torch.where(accept, lp_prop, lp_cur[active])
                if sweep < burn_in:
                    rate = (accept.float() - target)[:, None] * move / math.sqrt(sweep + 1)
                    log_step[active[:, None], block[None, :]] += rate
                else:
                    accepted += float(accept.sum())
                    proposed += len(active)
    note = f"{how}, one chain per completion, blocks of {block_size}"
    if not model.exact:
        note += f"; {model.name}'s log_prob is an estimate, so the chain targets the estimated density"
    return _finish(
        model, xf, maskf, cur, s, "metropolis", False, note, sweeps=sweeps, burn_in=burn_in,
        acceptance=accepted / max(proposed, 1.0),
    )  # fmt: skip


def _log_probs_exact(model, x, mask, context, method, max_configs, batch_size) -> tuple[Tensor, Tensor]:
    """(log p(x_obs), log p(x)) by the chosen exact method, for validated flat x."""
    chosen = _select(model, mask, method, "likelihood", max_configs)
    with _evaluating(model):
        if chosen == "closed-form":
            log_obs, log_full, _ = _closed_form(model, x, mask, context, 0, None)
            return log_obs, log_full
        if chosen == "autoregressive":
            ar = _Autoregressive(model)
            log_obs = torch.empty(len(x), device=x.device)
            log_full = torch.empty(len(x), device=x.device)
            for missing, rows in _groups(mask):
                orderings, _ = ar.plan(missing)
                c = None if context is None else context[rows]
                log_obs[rows], log_full[rows] = ar.log_probs(x[rows], c, orderings, missing)
            return log_obs, log_full
        log_obs = torch.empty(len(x), device=x.device)
        log_full = torch.empty(len(x), device=x.device)
        for rows, m_idx, _, lp, radix in _enumerate(model, x, mask, context, max_configs, batch_size):
            log_obs[rows] = lp.logsumexp(1)
            true = (x[rows][:, m_idx].long() * radix).sum(1)
            log_full[rows] = lp.gather(1, true[:, None])[:, 0]
        return log_obs, log_full


def marginal_log_prob(
    model,
    x: Tensor,
    mask: Tensor,
    context: Tensor | int | None = None,
    *,
    method: str = "auto",
    max_configs: int = MAX_CONFIGS,
    batch_size: int = _BATCH,
) -> Tensor:
    """log p(x_obs) in nats, shape (N,): the missing values summed (integrated) out.

    Uses the closed form, an observed-first autoregressive ordering, or enumeration (see the module
    docstring); a ConfigError names what is missing when none applies. The missing values of ``x`` are
    not read.
    """
    xf, maskf, ctx = _prepare(model, x, mask, context)
    return _log_probs_exact(model, xf, maskf, ctx, method, max_configs, batch_size)[0]


def conditional_log_prob(
    model,
    x: Tensor,
    mask: Tensor,
    context: Tensor | int | None = None,
    *,
    method: str = "auto",
    max_configs: int = MAX_CONFIGS,
    batch_size: int = _BATCH,
) -> Tensor:
    """log p(x_miss | x_obs) = log p(x) − log p(x_obs) of the true missing values, in nats, shape (N,).

    For an autoregressive model with the observed values first this is the sum of the missing values'
    conditionals; for a reordered order-agnostic MADE it is that of the mixture of reordered masks.
    """
    xf, maskf, ctx = _prepare(model, x, mask, context, hide=False)
    log_obs, log_full = _log_probs_exact(model, xf, maskf, ctx, method, max_configs, batch_size)
    return log_full - log_obs
