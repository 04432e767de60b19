"""Imputation: observed values are kept, samples match the exact conditional (computed here by
enumeration), conditional log-likelihoods equal enumeration, and misuse gives one-line errors."""

import itertools
import math

import pytest
import torch

import dgm
from dgm.core.errors import ConfigError, DataError
from dgm.tasks.imputation import (
    _Autoregressive,
    available_methods,
    conditional_log_prob,
    gibbs_impute,
    impute,
    marginal_log_prob,
    metropolis_impute,
)
from tests.models.helpers import perturb_parameters

D = 6
MODELS = {
    "fvsbn": {"ordering": "random"},
    "nade": {"hidden_size": 8, "ordering": "random"},
    "made": {"hidden_sizes": [12], "ordering": "random"},
    "rnn": {"hidden_size": 8, "embedding_dim": 4},
    "transformer-ar": {"dim": 8, "num_layers": 1, "num_heads": 2},
    "bayesnet": {"structure": "markov(2)"},
    "independent": {},
    "mixture-bernoulli": {"components": 3},
    "naive-bayes": {"num_classes": 3},
}
PIXEL = {"channels": 4, "num_layers": 1, "kernel_size": 3, "first_kernel_size": 3, "output_channels": 2}


def build(name, event_shape=(D,), support="binary", scale=1.0, **opts):
    options = {**MODELS.get(name, {}), **opts}
    model = dgm.build(name, event_shape=event_shape, support=support, **options)
    perturb_parameters(model, scale)
    return model.eval()


def ordering_of(model) -> torch.Tensor:
    o = getattr(model, "ordering", None)
    if isinstance(o, torch.Tensor):
        return o
    if hasattr(model, "net"):
        return model.net.ordering(0)
    return torch.arange(model.num_dims)  # raster order (sequence and pixel models, one channel)


def observed_first(model, num_missing: int) -> torch.Tensor:
    """The mask whose missing values are the last ``num_missing`` of the model's ordering."""
    mask = torch.zeros(model.num_dims, dtype=torch.bool)
    mask[ordering_of(model)[-num_missing:]] = True
    return mask.reshape(model.event_shape)


def completions_table(model, x, missing, context=None):
    """Brute force: every completion of one example's missing values and log p(x with it)."""
    k = model.support.num_categories
    miss = missing.reshape(-1).nonzero()[:, 0]
    grid = torch.tensor(list(itertools.product(range(k), repeat=len(miss))), dtype=torch.float32)
    rows = x.reshape(1, -1).repeat(len(grid), 1)
    rows[:, miss] = grid
    ctx = None if context is None else torch.full((len(grid),), context)
    with torch.no_grad():
        lp = model.log_prob(rows.reshape(-1, *model.event_shape), ctx)
    return grid, lp


def total_variation(samples, grid, log_probs) -> float:
    """TV between the empirical distribution of ``samples`` (S, m) and softmax(log_probs) over ``grid``."""
    match = (samples[:, None, :] == grid[None, :, :]).all(-1).float()  # (S, c)
    assert match.sum(1).eq(1).all()
    return 0.5 * (match.mean(0) - log_probs.softmax(0)).abs().sum().item()


def random_x(model, n=1):
    k = model.support.num_categories
    return torch.randint(k, (n, *model.event_shape)).float()


# ---------------------------------------------------------------------------- observed values
@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("independent", "closed-form"),
        ("mixture-bernoulli", "closed-form"),
        ("fvsbn", "autoregressive"),
        ("made", "autoregressive"),
        ("rnn", "autoregressive"),
        ("bayesnet", "enumeration"),
        ("nade", "gibbs"),
    ],
)
def test_observed_values_are_untouched_and_missing_ones_never_read(name, method):
    model = build(name)
    mask = observed_first(model, 3) if method == "autoregressive" else torch.rand(4, D) < 0.5
    mask.reshape(-1, D)[..., 0] |= method != "autoregressive"  # at least one missing value per row
    x = random_x(model, 4)
    res = impute(model, x, mask, 5, method=method, sweeps=2, generator=torch.Generator().manual_seed(3))
    assert res.method == method and res.completions.shape == (4, 5, D)
    m = res.mask.reshape(4, 1, D).expand(-1, 5, -1)
    assert torch.equal(res.completions[~m], x[:, None, :].expand(-1, 5, -1)[~m])
    assert set(res.completions.unique().tolist()) <= {0.0, 1.0}
    # Changing the values under the mask changes nothing: the imputer never looks at them.
    other = torch.where(res.mask, 1 - x, x)
    again = impute(model, other, mask, 5, method=method, sweeps=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again.completions, res.completions)


def test_real_valued_observed_values_are_untouched():
    model = build("rnade", (3,), "real", scale=0.3, hidden_size=8, num_components=2, ordering=[2, 0, 1])
    x = torch.randn(3, 3)
    mask = torch.tensor([[True, False, False], [False, True, True], [True, True, False]])
    res = metropolis_impute(model, x, mask, 2, sweeps=4, burn_in=2)
    kept = ~res.mask[:, None].expand(-1, 2, -1)
    assert torch.equal(res.completions[kept], x[:, None].expand(-1, 2, -1)[kept])
    assert res.sweeps == 4 and 0 <= res.acceptance <= 1 and "4 sweeps" in res.describe()


# ---------------------------------------------------------------------------- exact conditionals
@pytest.mark.parametrize("name", ["fvsbn", "nade", "made", "rnn", "transformer-ar", "pixelcnn"])
def test_autoregressive_samples_match_the_enumerated_conditional(name):
    model = build("pixelcnn", (1, 2, 3), **PIXEL) if name == "pixelcnn" else build(name)
    mask = observed_first(model, 3)
    assert available_methods(model, mask)["autoregressive"] is None
    x = random_x(model)
    res = impute(model, x, mask, 4000, method="autoregressive")
    assert res.exact and res.method == "autoregressive"
    grid, lp = completions_table(model, x, mask)
    samples = res.completions[0].reshape(4000, -1)[:, mask.reshape(-1)]
    assert total_variation(samples, grid, lp) < 0.06


def test_pixel_models_banded_sampler_equals_full_passes(monkeypatch):
    """The PixelCNN family is sampled from passes over the visible rows only; same draws as full passes."""
    model = build("gated-pixelcnn", (2, 4, 3), "categorical(3)", scale=0.5, **PIXEL)
    x = random_x(model, 2)
    mask = torch.zeros(2 * 4 * 3, dtype=torch.bool)
    mask[torch.arange(24).reshape(2, 4, 3)[:, 2:].reshape(-1)] = True  # bottom half, both channels
    mask = mask.reshape(2, 4, 3)
    banded = impute(model, x, mask, 50, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(_Autoregressive, "_banded_pixel_logits", lambda self: None)
    full = impute(model, x, mask, 50, generator=torch.Generator().manual_seed(1))
    assert banded.method == "autoregressive" and torch.equal(banded.completions, full.completions)


def test_image_conditioned_pixel_model_inpaints_with_its_context(monkeypatch):
    """A gated PixelCNN conditioned on an image (context_shape) crops the context with each band of rows:
    observed pixels are kept, the draws equal those of full passes, and the context changes them."""
    # A seeded model: under some random initialisations (about one in six) the context moves the
    # conditionals by hundredths of a nat, too little to flip any of the 480 draws, and the last check
    # would fail by chance.
    torch.manual_seed(4)
    model = build("gated-pixelcnn", (1, 4, 4), scale=0.5, context_shape=[1, 2, 2], **PIXEL)
    x = random_x(model, 3)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[:, 2:] = True  # bottom half missing
    low = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    res = impute(model, x, mask, 20, context=low, generator=torch.Generator().manual_seed(1))
    assert res.method == "autoregressive" and res.completions.shape == (3, 20, 1, 4, 4)
    kept = ~mask.expand(3, 20, 1, 4, 4)
    assert torch.equal(res.completions[kept], x[:, None].expand(-1, 20, -1, -1, -1)[kept])
    other = impute(model, x, mask, 20, context=1 - low, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(res.completions, other.completions)
    monkeypatch.setattr(_Autoregressive, "_banded_pixel_logits", lambda self: None)
    full = impute(model, x, mask, 20, context=low, generator=torch.Generator().manual_seed(1))
    assert torch.equal(res.completions, full.completions)


@pytest.mark.parametrize(("support", "k", "dims"), [("binary", 2, 6), ("categorical(3)", 3, 4)])
def test_gibbs_samples_match_the_enumerated_conditional(support, k, dims):
    model = build("fvsbn" if k == 2 else "bayesnet", (dims,), support, scale=0.7)
    # The first values in the ordering are missing: no exact autoregressive conditional exists.
    mask = ~observed_first(model, dims - 2) if k == 2 else torch.tensor([True, False, True, False])
    if k == 2:
        assert "observed value first" in available_methods(model, mask)["autoregressive"]
    x = random_x(model)
    res = gibbs_impute(model, x, mask, 3000, sweeps=25)
    assert not res.exact and res.sweeps == 25 and "25 sweeps" in res.describe()
    grid, lp = completions_table(model, x, mask)
    samples = res.completions[0][:, mask]
    assert total_variation(samples, grid, lp) < 0.06


@pytest.mark.parametrize("name", ["mixture-bernoulli", "naive-bayes"])
def test_closed_form_samples_match_the_enumerated_conditional(name):
    model = build(name)
    mask = torch.rand(D) < 0.5
    mask[0] = True
    x = random_x(model)
    res = impute(model, x, mask, 4000)
    assert res.method == "closed-form" and res.exact
    grid, lp = completions_table(model, x, mask)
    assert total_variation(res.completions[0][:, mask], grid, lp) < 0.06


def test_order_agnostic_made_reorders_its_masks_observed_first():
    model = build("made", hidden_sizes=[16, 16], num_masks=3, order_agnostic=True, ordering="natural")
    orders = [model.net.ordering(m) for m in range(3)]
    mask = torch.zeros(D, dtype=torch.bool)
    mask[orders[0][:2]] = True  # the first two of mask 0's ordering are missing: it must be reordered
    obs = ~mask
    x = random_x(model)
    res = impute(model, x, mask, 4000)
    assert res.method == "autoregressive" and "reordered" in res.note
    # Reference: the uniform mixture of the masks, each with its ordering stably moved observed-first.
    reordered = [torch.cat([o[obs[o]], o[~obs[o]]]) for o in orders]
    grid, _ = completions_table(model, x, mask)
    rows = x.repeat(len(grid), 1)
    rows[:, mask] = grid
    with torch.no_grad():
        per_mask = torch.stack(
            [model.conditionals(rows, None, m, o).log_prob(rows).sum(-1) for m, o in enumerate(reordered)], 1
        )
    log_q = per_mask.logsumexp(1) - math.log(3)
    assert total_variation(res.completions[0][:, mask], grid, log_q) < 0.06
    true = (grid == x[0, mask]).all(1).nonzero()[0, 0]
    expected = log_q[true] - log_q.logsumexp(0)
    assert torch.allclose(conditional_log_prob(model, x, mask)[0], expected, atol=1e-4)
    # A MADE trained on one ordering cannot reorder: the reason names order-agnostic training.
    single = build("made", ordering="natural")
    why = available_methods(single, torch.tensor([True] + [False] * (D - 1)))["autoregressive"]
    assert "order_agnostic=False" in why


# ---------------------------------------------------------------------------- conditional likelihood
@pytest.mark.parametrize(
    "name",
    [
        "fvsbn",
        "nade",
        "made",
        "rnn",
        "transformer-ar",
        "pixelcnn",
        "independent",
        "mixture-bernoulli",
        "bayesnet",
    ],
)
def test_conditional_log_likelihood_equals_enumeration(name):
    model = build("pixelcnn", (1, 2, 3), **PIXEL) if name == "pixelcnn" else build(name)
    mask = (
        observed_first(model, 3) if name not in ("independent", "mixture-bernoulli") else torch.rand(D) < 0.5
    )
    mask.reshape(-1)[ordering_of(model)[-1]] = True
    x = random_x(model, 3)
    expected_obs, expected = [], []
    for i in range(3):
        grid, lp = completions_table(model, x[i : i + 1], mask)
        true = (grid == x[i].reshape(-1)[mask.reshape(-1)]).all(1).nonzero()[0, 0]
        expected_obs.append(lp.logsumexp(0))
        expected.append(lp[true] - lp.logsumexp(0))
    got = conditional_log_prob(model, x, mask)
    assert torch.allclose(got, torch.stack(expected), atol=1e-4)
    assert torch.allclose(marginal_log_prob(model, x, mask), torch.stack(expected_obs), atol=1e-4)
    enumerated = conditional_log_prob(model, x, mask, method="enumeration")
    assert torch.allclose(enumerated, torch.stack(expected), atol=1e-4)


def test_naive_bayes_conditional_with_and_without_the_label():
    model = build("naive-bayes")
    mask = torch.tensor([True, False, True, False, False, True])
    x = random_x(model, 2)
    for context in (None, 2):
        got = conditional_log_prob(model, x, mask, context)
        for i in range(2):
            grid, lp = completions_table(model, x[i], mask, context)
            true = (grid == x[i, mask]).all(1).nonzero()[0, 0]
            assert torch.allclose(got[i], lp[true] - lp.logsumexp(0), atol=1e-4)


def test_per_example_masks_are_grouped():
    model = build("fvsbn", ordering="natural")
    x = random_x(model, 4)
    mask = torch.zeros(4, D, dtype=torch.bool)
    for i, start in enumerate([2, 4, 2, 5]):
        mask[i, start:] = True  # prefixes of different lengths: each row has an exact conditional
    res = impute(model, x, mask, 3)
    assert res.method == "autoregressive"
    kept = ~mask[:, None].expand(-1, 3, -1)
    assert torch.equal(res.completions[kept], x[:, None].expand(-1, 3, -1)[kept])
    got = conditional_log_prob(model, x, mask)
    for i in range(4):
        grid, lp = completions_table(model, x[i], mask[i])
        true = (grid == x[i, mask[i]]).all(1).nonzero()[0, 0]
        assert torch.allclose(got[i], lp[true] - lp.logsumexp(0), atol=1e-4)


# ---------------------------------------------------------------------------- real-valued data
def _gaussian_mixture():
    model = dgm.build("mixture-gaussian", event_shape=(2,), components=2, covariance="full")
    with torch.no_grad():
        model.loc.copy_(torch.randn(2, 2))
        model.tril.copy_(0.3 * torch.randn(2, 2, 2))
        model.mixture_logits.copy_(torch.randn(2))
    return model


def _binned_density(model, x0: float, edges: torch.Tensor, missing: int):
    """p(x_missing | x_observed) integrated over bins, by quadrature of log_prob."""
    t = torch.linspace(edges[0].item(), edges[-1].item(), 20001)
    pts = torch.zeros(len(t), 2)
    pts[:, missing], pts[:, 1 - missing] = t, x0
    with torch.no_grad():
        dens = model.log_prob(pts).exp()
    cdf = torch.cat([torch.zeros(1), torch.cumulative_trapezoid(dens, t)])
    return torch.diff(
        torch.interp(edges, t, cdf) if hasattr(torch, "interp") else _interp(edges, t, cdf)
    ), cdf[-1]


def _interp(q, t, f):
    idx = torch.searchsorted(t, q).clamp(1, len(t) - 1)
    w = (q - t[idx - 1]) / (t[idx] - t[idx - 1])
    return f[idx - 1] + w * (f[idx] - f[idx - 1])


def test_gaussian_mixture_closed_form_and_metropolis_match_quadrature():
    model = _gaussian_mixture()
    x = torch.randn(1, 2)
    mask = torch.tensor([False, True])
    mass, total = _binned_density(model, x[0, 0].item(), torch.linspace(-15, 15, 2), 1)
    assert torch.allclose(marginal_log_prob(model, x, mask)[0], total.log(), atol=1e-3)
    exact = impute(model, x, mask, 4000)
    mcmc = metropolis_impute(model, x, mask, 2000, sweeps=80, generator=torch.Generator().manual_seed(1))
    assert exact.method == "closed-form" and mcmc.burn_in == 40
    for res, bound in ((exact, 0.06), (mcmc, 0.1)):
        v = res.completions[0, :, 1]
        edges = torch.quantile(exact.completions[0, :, 1], torch.linspace(0, 1, 11))
        edges[0], edges[-1] = -15.0, 15.0
        mass, total = _binned_density(model, x[0, 0].item(), edges, 1)
        counts = torch.histogram(v.clamp(-15, 15), edges).hist / len(v)
        assert 0.5 * (counts - mass / total).abs().sum() < bound, res.method


def test_rnade_marginal_integrates_the_joint():
    model = build("rnade", (2,), "real", scale=0.3, hidden_size=8, num_components=2, ordering=[0, 1])
    x = torch.randn(1, 2)
    _, total = _binned_density(model, x[0, 0].item(), torch.linspace(-40, 40, 2), 1)
    assert torch.allclose(marginal_log_prob(model, x, torch.tensor([False, True]))[0], total.log(), atol=2e-3)


# ---------------------------------------------------------------------------- errors
def test_misuse_is_a_one_line_error():
    model = build("fvsbn", ordering="natural")
    x = random_x(model, 2)
    cases = [
        (DataError, "boolean", lambda: impute(model, x, torch.ones(D))),
        (DataError, "shape", lambda: impute(model, x, torch.ones(3, D, dtype=torch.bool))),
        (DataError, "shape (2, 5)", lambda: impute(model, x[:, :5], torch.ones(D, dtype=torch.bool))),
        (
            ConfigError,
            "unknown imputation method",
            lambda: impute(model, x, torch.ones(D, dtype=torch.bool), method="x"),
        ),
        (
            ConfigError,
            "needs real-valued data",
            lambda: impute(model, x, torch.ones(D, dtype=torch.bool), method="metropolis"),
        ),
        (
            ConfigError,
            "does not apply",
            lambda: impute(model, x, torch.tensor([True] + [False] * 5), method="autoregressive"),
        ),
        (
            ConfigError,
            "cannot compute the marginal",
            lambda: conditional_log_prob(model, x, torch.tensor([True, False] * 3), max_configs=2),
        ),
        (DataError, "num_samples", lambda: impute(model, x, torch.ones(D, dtype=torch.bool), 0)),
        (ConfigError, "sweeps", lambda: gibbs_impute(model, x, torch.ones(D, dtype=torch.bool), sweeps=0)),
    ]
    for error, message, call in cases:
        with pytest.raises(error) as e:
            call()
        assert message in str(e.value) and "\n" not in str(e.value), (message, str(e.value))


def test_seeded_imputation_is_reproducible():
    model = build("nade")
    x, mask = random_x(model, 2), torch.rand(D) < 0.5
    mask[0] = True
    a = impute(model, x, mask, 3, method="gibbs", sweeps=2, generator=torch.Generator().manual_seed(7))
    b = impute(model, x, mask, 3, method="gibbs", sweeps=2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.completions, b.completions)
