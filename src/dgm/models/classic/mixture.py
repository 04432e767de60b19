"""Finite mixtures fitted by expectation-maximisation (Dempster, Laird & Rubin 1977; CS236 lecture 5).

    p(x) = Σ_k π_k p(x | z = k)

The latent z is a cluster index. EM alternates the two steps, each written out below:

* E step: the exact posterior over the latent, the *responsibilities*
  r_nk = p(z = k | x_n) = π_k p(x_n | k) / Σ_j π_j p(x_n | j), computed in log space with log-sum-exp.
* M step: maximise Σ_n Σ_k r_nk log [π_k p(x_n | k)] (plus the log-prior with smoothing) in closed form,
  from the sufficient statistics N_k = Σ_n r_nk, Σ_n r_nk x_n (and Σ_n r_nk x_n x_nᵀ for Gaussians).

Each iteration cannot decrease the objective (the log-likelihood, plus the log-prior of the smoothing
pseudo-counts where ``alpha > 0``): the E step makes the ELBO tight, the M step raises it. This is the
VAE's ELBO with the exact posterior as q (see the latent-variable family).

The same parameters are unconstrained tensors, so ``method="gradient"`` trains them by Adam through the
common trainer instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
)

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError, DataError
from dgm.core.model import GenerativeModel
from dgm.core.registry import register

INITS = ("kmeans++", "random")


class Mixture(GenerativeModel):
    """Shared EM machinery; subclasses give the component family's log-density, statistics and M step."""

    def __init__(
        self, event_shape, support, components: int, init: str, tol: float, max_chunk: int = 1 << 24
    ):
        super().__init__(event_shape, support)
        if not isinstance(components, int) or components < 1:
            raise ConfigError(f"components must be a positive int, got {components!r}")
        if init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        if not tol >= 0:
            raise ConfigError(f"tol must be >= 0, got {tol!r}")
        self.components, self.init, self.tol = components, init, float(tol)
        self.max_chunk = max_chunk  # elements per E-step chunk: bounds memory for any N
        self.mixture_logits = nn.Parameter(torch.zeros(components))

    # ------------------------------------------------------------------ per family
    def component_log_prob(self, x: Tensor) -> Tensor:
        """log p(x_n | z = k) for flat examples, shape ``(N, K)``."""
        raise NotImplementedError

    def statistics(self, x: Tensor, r: Tensor) -> dict[str, Tensor]:
        """Responsibility-weighted sufficient statistics of one chunk (summed over chunks)."""
        raise NotImplementedError

    def update_components(self, stats: dict[str, Tensor]) -> None:
        """Closed-form maximisation of the component parameters from the summed statistics."""
        raise NotImplementedError

    def m_step(self, stats: dict[str, Tensor], n: int) -> None:
        """π_k = N_k / N (floored so an emptied component keeps a finite log-weight), then the components."""
        self.mixture_logits.copy_((stats["nk"] / n).clamp_min(1e-12).log().to(self.mixture_logits.dtype))
        self.update_components(stats)

    def summed_statistics(self, pairs) -> dict[str, Tensor]:
        """Sum of :meth:`statistics` over (chunk, responsibilities) pairs."""
        stats: dict[str, Tensor] = {}
        for x, r in pairs:
            for key, value in self.statistics(x, r).items():
                stats[key] = stats[key] + value if key in stats else value
        return stats

    def log_prior(self) -> float:
        """Log-density of the smoothing prior at the current parameters (0 without smoothing)."""
        return 0.0

    def component_distribution(self) -> torch.distributions.Distribution:
        """The K components as one batched ``torch.distributions`` object (batch K, event D)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ contract
    def distribution(self) -> MixtureSameFamily:
        """p(x) over flattened examples as a ``torch.distributions.MixtureSameFamily``."""
        return MixtureSameFamily(Categorical(logits=self.mixture_logits), self.component_distribution())

    def log_joint(self, x: Tensor) -> Tensor:
        """log π_k + log p(x_n | k), shape ``(N, K)``, for validated flat examples."""
        return self.mixture_logits.log_softmax(0) + self.component_log_prob(x)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.validate(x).reshape(len(x), -1)
        self.class_labels(context, len(x))  # refuses a context: a mixture's components are not classes
        return torch.cat([self.log_joint(c).logsumexp(1) for c in self._chunks(x)]) if len(x) else x.sum(1)

    def posterior(self, x: Tensor) -> Tensor:
        """Responsibilities p(z = k | x), shape ``(N, K)``: soft cluster memberships, usable as features."""
        x = self.validate(x).reshape(len(x), -1)
        return torch.cat([self.log_joint(c).softmax(1) for c in self._chunks(x)])

    def predict(self, x: Tensor) -> Tensor:
        """The most probable component of each example (hard clustering), shape ``(N,)``."""
        return self.posterior(x).argmax(1)

    @torch.no_grad()
    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ):
        n = self.check_num_samples(num_samples)
        self.class_labels(context, n)
        z = draw(Categorical(logits=self.mixture_logits), (n,), generator)
        x = self.sample_components(z, generator)
        return x.float().reshape(n, *self.event_shape)

    def sample_components(self, z: Tensor, generator) -> Tensor:
        raise NotImplementedError

    def num_parameters(self) -> int:
        return self.components - 1 + self.components * self.parameters_per_component()

    def parameters_per_component(self) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------------ EM
    def _chunk_rows(self) -> int:
        return max(1, self.max_chunk // self._row_cost())

    def _chunks(self, x: Tensor):
        return x.split(self._chunk_rows())

    def _row_cost(self) -> int:
        """Values materialised per example in an E step (the chunk size divides ``max_chunk`` by it)."""
        return self.components * self.num_dims  # (N, K, D) broadcast, as torch.distributions evaluates it

    def e_step(self, x: Tensor) -> tuple[dict[str, Tensor], float]:
        """Responsibilities chunk by chunk: the summed statistics and the log-likelihood Σ_n log p(x_n)."""
        loglik = 0.0

        def responsibilities():
            nonlocal loglik
            for chunk in self._chunks(x):
                log_joint = self.log_joint(chunk)
                log_px = log_joint.logsumexp(1, keepdim=True)
                loglik += log_px.double().sum().item()
                yield chunk, (log_joint - log_px).exp()  # r_nk = p(z = k | x_n)

        stats = self.summed_statistics(responsibilities())
        return stats, loglik

    @torch.no_grad()
    def fit(self, data, *, initialize: bool = True, generator=None) -> Iterator[dict[str, float]]:
        """EM. Each iteration yields the NLL of the parameters the model holds at that moment.

        The first row scores the initialisation; every later one follows one E+M iteration. Iterations stop
        when the objective (mean log-likelihood + log-prior/N) improves by less than ``tol`` nats.
        """
        x, _ = self.training_arrays(data, generator)
        x = x.reshape(len(x), -1).to(self.mixture_logits.dtype)
        n = len(x)
        if initialize:
            self.initialize(x, generator)
        previous = -math.inf
        while True:
            stats, loglik = self.e_step(x)
            objective = (loglik + self.log_prior()) / n
            yield {"train_loss": -loglik / n, "em_objective": objective}
            if objective - previous < self.tol:
                return
            previous = objective
            self.m_step(stats, n)

    @torch.no_grad()
    def initialize(self, x: Tensor, generator=None) -> None:
        """Centres by k-means++ (D² seeding, Arthur & Vassilvitskii 2007) or uniformly from the data,
        a hard assignment of every example to its nearest centre, and one M step from it."""
        n, k = len(x), self.components
        if n < k:
            raise DataError(f"{k} components need at least {k} training examples, got {n}")
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        if self.init == "random":
            idx = torch.randperm(n, generator=gen)[:k]
        else:
            first = int(torch.randint(n, (1,), generator=gen))
            idx = [first]
            # ‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖²: one matrix-vector product per new centre reads x once,
            # where the direct form would write two (N, D) temporaries (500 centres on MNIST: 10x slower).
            norms = (x * x).sum(1)
            d2 = (norms - 2 * x @ x[first] + norms[first]).clamp_min(0)
            for _ in range(1, k):
                # All distances zero: every point coincides with a centre already, so pick any one.
                probs = d2.double().cpu() if d2.sum() > 0 else torch.ones(n, dtype=torch.float64)
                nxt = int(torch.multinomial(probs, 1, generator=gen))
                idx.append(nxt)
                d2 = torch.minimum(d2, (norms - 2 * x @ x[nxt] + norms[nxt]).clamp_min(0))
            idx = torch.tensor(idx)
        centres = x[idx.to(x.device)]
        hard = ((c, F.one_hot(torch.cdist(c, centres).argmin(1), k).to(x.dtype)) for c in self._chunks(x))
        self.m_step(self.summed_statistics(hard), n)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, components={self.components}"


@register(
    "mixture-bernoulli",
    description="mixture of K product-Bernoulli (or product-categorical) components fitted by EM",
    paper="Dempster, Laird & Rubin 1977; Bishop 2006 §9.3.3 (CS236 lecture 5)",
    family="classic",
    tiny={"components": 3},
    supports=("binary", "categorical"),
)
class MixtureBernoulli(Mixture):
    """Mixture of K independent-Bernoulli components (categorical(k) components for categorical data).

    Dempster, Laird & Rubin (1977); Bishop (2006) §9.3.3.

    Args:
        components: K.
        alpha: Beta/Dirichlet pseudo-count per value added in the M step (MAP-EM), so no pixel probability
            reaches exactly 0 or 1 and the test log-likelihood stays finite. 0 gives plain maximum likelihood.
        init: ``"kmeans++"`` or ``"random"`` (K examples drawn uniformly as centres).
        tol: EM stops when the objective improves by less than this many nats per example.
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        components: int = 10,
        alpha: float = 1e-2,
        init: str = "kmeans++",
        tol: float = 1e-4,
    ):
        super().__init__(event_shape, support, components, init, tol)
        if not self.support.discrete:
            raise ConfigError("mixture-bernoulli needs binary or categorical(k) data; use mixture-gaussian")
        if not alpha >= 0:
            raise ConfigError(f"alpha must be >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.k = self.support.num_categories
        shape = (
            (components, self.num_dims)
            if self.support.kind == "binary"
            else (components, self.num_dims, self.k)
        )
        self.logits = nn.Parameter(0.5 * torch.randn(shape))

    def _row_cost(self) -> int:
        # The matmul form never builds (N, K, D): per example, the (one-hot) input and K log-densities.
        return self.num_dims * (1 if self.support.kind == "binary" else self.k) + self.components

    def _one_hot(self, x: Tensor) -> Tensor:
        return F.one_hot(x.long(), self.k).to(self.logits.dtype).reshape(len(x), -1)

    def component_log_prob(self, x: Tensor) -> Tensor:
        # Σ_d log p(x_d | k) as one matmul: materialising the (N, K, D) terms that MixtureSameFamily's
        # log_prob builds would take N·K·D memory (1.5 GB for a batch of 1000 with K = 500 on MNIST).
        if self.support.kind == "binary":
            x = x.to(self.logits.dtype)
            return x @ self.logits.T + F.logsigmoid(-self.logits).sum(1)
        return self._one_hot(x) @ self.logits.log_softmax(-1).reshape(self.components, -1).T

    def component_distribution(self):
        if self.support.kind == "binary":
            return Independent(Bernoulli(logits=self.logits), 1)
        return Independent(Categorical(logits=self.logits), 1)

    def sample_components(self, z: Tensor, generator) -> Tensor:
        dist = (
            Bernoulli(logits=self.logits[z])
            if self.support.kind == "binary"
            else Categorical(logits=self.logits[z])
        )
        return draw(dist, (), generator)

    def statistics(self, x: Tensor, r: Tensor) -> dict[str, Tensor]:
        counts = r.T @ (x.to(r.dtype) if self.support.kind == "binary" else self._one_hot(x))
        return {"nk": r.sum(0).double(), "counts": counts.double()}

    def update_components(self, stats: dict[str, Tensor]) -> None:
        nk, counts = stats["nk"], stats["counts"]
        live = nk > 1e-8  # a component that lost every example keeps its parameters (no 0/0)
        if self.support.kind == "binary":
            mu = (counts + self.alpha) / (nk[:, None] + 2 * self.alpha).clamp_min(1e-30)  # MAP, Beta(1+α)
            logits = torch.logit(mu.clamp(1e-12, 1 - 1e-12))
        else:
            counts = counts.reshape(self.components, self.num_dims, self.k)
            probs = (counts + self.alpha) / (nk[:, None, None] + self.k * self.alpha).clamp_min(1e-30)
            logits = probs.clamp_min(1e-12).log()
        self.logits[live] = logits[live].to(self.logits.dtype)

    def log_prior(self) -> float:
        if self.alpha == 0:
            return 0.0
        # Dirichlet(1 + α) prior up to its constant: α Σ log μ over every value of every component.
        if self.support.kind == "binary":
            lp = F.logsigmoid(self.logits) + F.logsigmoid(-self.logits)
        else:
            lp = self.logits.log_softmax(-1)
        return self.alpha * lp.double().sum().item()

    def parameters_per_component(self) -> int:
        return self.num_dims * (self.k - 1)


@register(
    "mixture-gaussian",
    description="Gaussian mixture (diagonal or full covariance) fitted by EM",
    paper="Dempster, Laird & Rubin 1977; Bishop 2006 §9.2 (CS236 lecture 5)",
    family="classic",
    tiny={"components": 3},
    supports=("real",),
)
class MixtureGaussian(Mixture):
    """Mixture of K Gaussians with diagonal or full covariance matrices.

    Dempster, Laird & Rubin (1977); Bishop (2006) §9.2.

    Args:
        components: K.
        covariance: ``"diag"`` or ``"full"``.
        reg_covar: added to every variance (the covariance diagonal) in the M step, as scikit-learn's
            GaussianMixture does, so a component collapsing on one point keeps a finite density.
        init: ``"kmeans++"`` or ``"random"``.
        tol: EM stops when the mean log-likelihood improves by less than this many nats per example.
    """

    def __init__(
        self,
        event_shape,
        support: str = "real",
        components: int = 10,
        covariance: str = "diag",
        reg_covar: float = 1e-6,
        init: str = "kmeans++",
        tol: float = 1e-4,
    ):
        super().__init__(event_shape, support, components, init, tol)
        if covariance not in ("diag", "full"):
            raise ConfigError(f"covariance must be 'diag' or 'full', got {covariance!r}")
        if not reg_covar >= 0:
            raise ConfigError(f"reg_covar must be >= 0, got {reg_covar!r}")
        self.covariance, self.reg_covar = covariance, float(reg_covar)
        D = self.num_dims
        self.loc = nn.Parameter(torch.randn(components, D))
        if covariance == "diag":
            self.log_scale = nn.Parameter(torch.zeros(components, D))
        else:
            # Cholesky factor L: strictly-lower part free, diagonal as its log (positive definite Σ = L Lᵀ).
            self.tril = nn.Parameter(torch.zeros(components, D, D))

    def scale_tril(self) -> Tensor:
        lower = self.tril.tril(-1)
        return lower + torch.diag_embed(self.tril.diagonal(dim1=-2, dim2=-1).exp())

    def covariance_matrix(self) -> Tensor:
        """Σ_k, shape ``(K, D, D)`` (diagonal matrices for ``covariance="diag"``)."""
        if self.covariance == "diag":
            return torch.diag_embed((2 * self.log_scale).exp())
        L = self.scale_tril()
        return L @ L.mT

    def component_distribution(self):
        if self.covariance == "diag":
            return Independent(Normal(self.loc, self.log_scale.exp()), 1)
        return MultivariateNormal(self.loc, scale_tril=self.scale_tril())

    def component_log_prob(self, x: Tensor) -> Tensor:
        return self.component_distribution().log_prob(x.to(self.loc.dtype)[:, None, :])

    def sample_components(self, z: Tensor, generator) -> Tensor:
        eps = torch.randn(
            len(z), self.num_dims, generator=generator, device=self.device, dtype=self.loc.dtype
        )
        if self.covariance == "diag":
            return self.loc[z] + self.log_scale[z].exp() * eps
        return self.loc[z] + (self.scale_tril()[z] @ eps[:, :, None])[:, :, 0]

    def statistics(self, x: Tensor, r: Tensor) -> dict[str, Tensor]:
        x, r = x.double(), r.double()
        stats = {"nk": r.sum(0), "sx": r.T @ x}
        if self.covariance == "diag":
            stats["sxx"] = r.T @ (x * x)
        else:
            stats["sxx"] = torch.einsum("nk,nd,ne->kde", r, x, x)
        return stats

    def update_components(self, stats: dict[str, Tensor]) -> None:
        live = stats["nk"] > 1e-8  # a component that lost every example keeps its parameters (no 0/0)
        nk = stats["nk"].clamp_min(1e-30)
        mean = stats["sx"] / nk[:, None]
        self.loc[live] = mean[live].to(self.loc.dtype)
        if self.covariance == "diag":
            var = stats["sxx"] / nk[:, None] - mean**2
            var = var.clamp_min(0) + self.reg_covar
            self.log_scale[live] = (0.5 * var.log())[live].to(self.loc.dtype)
        else:
            eye = torch.eye(self.num_dims, dtype=torch.float64, device=mean.device)
            cov = (
                stats["sxx"] / nk[:, None, None] - mean[:, :, None] * mean[:, None, :] + self.reg_covar * eye
            )
            L, info = torch.linalg.cholesky_ex(cov)
            if info.any():
                # Rounding made a covariance indefinite (a component on fewer than D points): fall back to
                # its diagonal, which is the tightest positive-definite choice with the same variances.
                bad = info > 0
                L[bad] = torch.diag_embed(
                    cov[bad].diagonal(dim1=-2, dim2=-1).clamp_min(self.reg_covar).sqrt()
                )
            raw = L.tril(-1) + torch.diag_embed(L.diagonal(dim1=-2, dim2=-1).log())
            self.tril[live] = raw[live].to(self.loc.dtype)

    def parameters_per_component(self) -> int:
        D = self.num_dims
        return D + (D if self.covariance == "diag" else D * (D + 1) // 2)


def select_components(
    name: str,
    train,
    valid,
    candidates,
    *,
    seed: int = 0,
    max_iterations: int = 200,
    restarts: int = 3,
    **options,
) -> dict:
    """Choose K by validation likelihood: fit one mixture per candidate K by EM, keep the best.

    EM finds a local optimum that depends on its start (two true clusters can end up sharing one
    component), so each K is fitted from ``restarts`` k-means++ starts (seeds ``seed``, ``seed + 1``, …)
    and the fit with the best training likelihood represents it; only the choice of K looks at the
    validation data. Returns ``{"best": K, "model": the fitted best model, "table": [{"components",
    "valid_nll", "train_nll", "iterations", "num_parameters"}, ...]}``. ``options`` go to the model
    (e.g. ``alpha``).
    """
    from dgm.core.registry import build
    from dgm.evaluation.metrics import _as_dataset, evaluate
    from dgm.training.trainer import train as run

    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ConfigError(f"restarts must be a positive int, got {restarts!r}")
    train, valid = _as_dataset(train), _as_dataset(valid)
    support = options.pop("support", train.support)  # a bare tensor's Dataset says "real"
    table, best = [], None
    for k in candidates:
        fits = []
        for r in range(restarts):
            torch.manual_seed(seed + r)
            model = build(name, event_shape=train.event_shape, support=support, components=int(k), **options)
            res = run(model, train, valid, epochs=max_iterations, seed=seed + r, progress=False, method="fit")
            fits.append((res.history[res.best_epoch - 1]["train_loss"], r, model, res))
        train_nll, _, model, res = min(fits, key=lambda fit: fit[:2])
        valid_nll = evaluate(model, valid)["nll"]
        row = {
            "components": int(k),
            "valid_nll": valid_nll,
            "train_nll": train_nll,
            "iterations": res.steps,
            "num_parameters": model.num_parameters(),
        }
        table.append(row)
        if best is None or valid_nll < best[0]:
            best = (valid_nll, int(k), model)
    if best is None:
        raise ConfigError("select_components needs at least one candidate K")
    return {"best": best[1], "model": best[2], "table": table}
