"""Likelihood and gradient estimators on models where the answer is known.

The linear-Gaussian VAE (z ~ N(0, I), x | z ~ N(Wz + b, σ²I)) has log p(x) in closed form: the
importance-sampled estimate must converge to it, and the bounds must be ordered ELBO ≤ IWAE_K ≤ IWAE_2K ≤
log p(x) (Burda et al. 2016, Theorem 1).
"""

import itertools
import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

import dgm
from dgm.models.latent.estimators import (
    chunked_log_mean_exp,
    gradient_samples,
    log_mean_exp,
    vimco_baselines,
)
from tests.models.latent.linear_gaussian import draw_data, exact_log_px, linear_gaussian_vae

torch.set_num_threads(1)


def test_importance_estimate_converges_to_exact_log_px():
    model, W, b, sigma = linear_gaussian_vae(num_dims=6, latent_dim=3, posterior="exact")
    x = draw_data(40, W, b, sigma, seed=int(torch.randint(1000, ())))
    exact = exact_log_px(x, W, b, sigma)
    errors = []
    for k in (1, 10, 100, 1000, 5000):
        est = model.log_prob(x, num_samples=k, generator=torch.Generator().manual_seed(k))
        errors.append((exact - est).abs().mean().item())
    # The diagonal q is a good but imperfect proposal: K = 1 is off by its KL, K = 5000 by almost nothing.
    assert errors[0] > 0.05
    assert all(a > b_ for a, b_ in itertools.pairwise(errors[:4]))
    assert errors[-1] < 0.01


def test_importance_estimate_converges_from_the_prior_as_proposal():
    # q = p(z): a poor proposal (the naive estimate) still converges, only more slowly.
    model, W, b, sigma = linear_gaussian_vae(num_dims=3, latent_dim=2, sigma=1.0, posterior="prior")
    x = draw_data(30, W, b, sigma, seed=int(torch.randint(1000, ())))
    exact = exact_log_px(x, W, b, sigma)
    error = (model.log_prob(x, num_samples=20_000, generator=torch.Generator().manual_seed(0)) - exact).abs()
    coarse = (model.log_prob(x, num_samples=200, generator=torch.Generator().manual_seed(0)) - exact).abs()
    # Typical points are close; an outlying x, whose likely z the prior rarely proposes, can stay a nat or
    # two low (Jensen) even at 20,000 draws, so no bound on the worst point. Checked over all 1,000 data
    # seeds this test can draw: median error <= 0.019, mean <= 0.078, mean / mean at 200 draws <= 0.25.
    assert error.median().item() < 0.03 and error.mean().item() < 0.1
    assert error.mean().item() < 0.4 * coarse.mean().item()  # converging: ~1/sqrt(100) of the error
    # With q = p(z) the importance weights are p(x | z): the naive estimate, draw for draw.
    naive = model.naive_log_prob(x, num_samples=2000, generator=torch.Generator().manual_seed(0))
    same = model.log_prob(x, num_samples=2000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(naive, same, atol=1e-8)


def test_bounds_are_ordered():
    model, W, b, sigma = linear_gaussian_vae(num_dims=6, latent_dim=3, posterior="exact", seed=3)
    x = draw_data(8, W, b, sigma, seed=int(torch.randint(1000, ())))
    exact = exact_log_px(x, W, b, sigma)
    g = torch.Generator().manual_seed(0)
    elbo = model.elbo(x, num_samples=20_000).elbo.detach()
    means, errs = [elbo], [torch.zeros_like(elbo)]
    for k in (1, 4, 8, 16):
        # IWAE_K = E[log p̂_K]: the mean of 2000 independent K-sample estimates per example.
        lw = model.log_weights(x, num_samples=2000 * k, generator=g).reshape(2000, k, len(x))
        est = log_mean_exp(lw, 1)
        means.append(est.mean(0))
        errs.append(est.std(0) / math.sqrt(2000))
    means.append(exact)
    errs.append(torch.zeros_like(exact))
    # With one sample the IWAE bound is the ELBO itself (the analytic-KL ELBO, up to Monte Carlo error).
    assert torch.allclose(means[1], elbo, atol=float(4 * errs[1].max() + 1e-3))
    for lo, hi, e_lo, e_hi in zip(means[1:], means[2:], errs[1:], errs[2:], strict=False):
        tolerance = 4 * (e_lo**2 + e_hi**2).sqrt()
        assert (lo <= hi + tolerance).all()
    # The gaps are real (the diagonal q is not the posterior): the bounds strictly increase on average.
    assert means[1].mean() < means[2].mean() < means[4].mean() < exact.mean()


def test_elbo_is_tight_with_the_exact_posterior():
    # With orthogonal columns of W the posterior is a diagonal Gaussian, which q represents exactly:
    # every importance weight is p(x), the ELBO equals log p(x), and the estimate has zero variance.
    model, W, b, sigma = linear_gaussian_vae(num_dims=5, latent_dim=2, orthogonal=True, posterior="exact")
    x = draw_data(10, W, b, sigma, seed=int(torch.randint(1000, ())))
    exact = exact_log_px(x, W, b, sigma)
    lw = model.log_weights(x, num_samples=50)
    assert torch.allclose(lw, exact.expand_as(lw), atol=1e-8)
    assert torch.allclose(model.log_prob(x, num_samples=3), exact, atol=1e-8)
    # The single-sample ELBO with a Monte Carlo KL is exact too; with the analytic KL only in expectation
    # (the reconstruction term alone still varies with z).
    mc_model = dgm.build({**model.config, "analytic_kl": False}).double()
    mc_model.load_state_dict(model.state_dict())
    assert torch.allclose(mc_model.elbo(x).elbo, exact, atol=1e-8)
    assert torch.allclose(model.elbo(x, num_samples=20_000).elbo, exact, atol=0.05)


def test_analytic_kl_matches_monte_carlo_kl():
    model, W, b, sigma = linear_gaussian_vae(num_dims=4, latent_dim=3, posterior="exact", seed=5)
    x = draw_data(5, W, b, sigma, seed=int(torch.randint(1000, ())))
    q = model.encode(x)
    z = q.sample((200_000,))
    mc = q.log_prob(z) - model.prior().log_prob(z)
    analytic = model.elbo(x).kl
    se = mc.std(0) / math.sqrt(len(z))
    assert ((mc.mean(0) - analytic).abs() < 4 * se + 1e-4).all()
    # The MC-KL variant of the same model agrees too (its KL is the estimate; its ELBO matches in mean).
    mc_model = dgm.build({**model.config, "analytic_kl": False}).double()
    mc_model.load_state_dict(model.state_dict())
    assert torch.allclose(mc_model.elbo(x, num_samples=100_000).kl, analytic, atol=0.05)  # ≈ 8 s.e.


def test_diagonal_gaussian_log_density_matches_torch():
    model, W, b, sigma = linear_gaussian_vae(num_dims=4, latent_dim=3, posterior="exact", seed=2)
    x = draw_data(7, W, b, sigma)
    q = model.encode(x)
    z = torch.randn(11, 7, 3, dtype=torch.float64)
    full = MultivariateNormal(q.base_dist.loc, covariance_matrix=torch.diag_embed(q.base_dist.scale**2))
    assert torch.allclose(q.log_prob(z), full.log_prob(z), atol=1e-10)
    by_hand = (
        -0.5 * ((z - q.base_dist.loc) / q.base_dist.scale) ** 2
        - q.base_dist.scale.log()
        - 0.5 * math.log(2 * math.pi)
    ).sum(-1)
    assert torch.allclose(q.log_prob(z), by_hand, atol=1e-10)


def test_chunked_estimate_equals_unchunked():
    model = dgm.build("vae", event_shape=(12,), latent_dim=3, hidden_sizes=[16])
    x = torch.randint(0, 2, (6, 12)).float()
    whole = model.log_prob(x, num_samples=5000, chunk_size=5000)
    for chunk in (999, None):  # None: the default, from the memory budget
        part = model.log_prob(x, num_samples=5000, chunk_size=chunk)
        assert torch.allclose(whole, part, atol=1e-5, rtol=0)
    small = model.log_prob(x, num_samples=200, chunk_size=200)
    for chunk in (1, 7):
        assert torch.allclose(small, model.log_prob(x, num_samples=200, chunk_size=chunk), atol=1e-5, rtol=0)


def test_k5000_runs_in_bounded_chunks():
    # The decoder never sees more rows than the chunk budget allows, whatever K is.
    model = dgm.build("vae", event_shape=(784,), latent_dim=4, hidden_sizes=[8])
    seen = []
    model.decoder.register_forward_hook(lambda m, inp, out: seen.append(out.numel()))
    x = torch.randint(0, 2, (10, 784)).float()
    lp = model.log_prob(x, num_samples=5000)
    assert lp.shape == (10,) and torch.isfinite(lp).all()
    assert max(seen) <= model.chunk_budget
    assert len(seen) > 1


def test_chunked_log_mean_exp_is_log_mean_exp():
    t = torch.randn(100, 4, dtype=torch.float64) * 50
    chunks = iter(t.split(7))
    assert torch.allclose(chunked_log_mean_exp(lambda m: next(chunks), 100, 7), log_mean_exp(t, 0))


def test_log_prob_is_deterministic_and_seedable():
    model = dgm.build("vae", event_shape=(8,), latent_dim=2, hidden_sizes=[8])
    x = torch.randint(0, 2, (5, 8)).float()
    assert torch.equal(model.log_prob(x), model.log_prob(x))
    a = model.log_prob(x, generator=torch.Generator().manual_seed(1))
    b = model.log_prob(x, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(a, b)


@pytest.mark.parametrize("support", ["binary", "categorical(5)", "real"])
def test_log_prob_is_finite_far_from_the_data(support):
    model = dgm.build("vae", event_shape=(10,), support=support, latent_dim=3, hidden_sizes=[16])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    if support == "real":
        x = torch.cat([torch.full((2, 10), 1e4), torch.full((2, 10), -1e4), 1e3 * torch.randn(4, 10)])
    else:
        top = 1 if support == "binary" else 4
        x = torch.cat([torch.full((2, 10), float(top)), torch.zeros(2, 10)])
    for k in (1, 100):
        lp = model.log_prob(x, num_samples=k)
        assert torch.isfinite(lp).all(), lp
    assert torch.isfinite(model.loss(x))
    assert torch.isfinite(model.naive_log_prob(x, num_samples=10)).all()


def test_naive_estimate_fails_where_importance_sampling_works():
    # In 40 dimensions almost no prior draw explains x: the naive estimate is far below log p(x).
    model, W, b, sigma = linear_gaussian_vae(num_dims=40, latent_dim=4, sigma=0.3, posterior="exact")
    x = draw_data(10, W, b, sigma, seed=int(torch.randint(1000, ())))
    exact = exact_log_px(x, W, b, sigma)
    g = torch.Generator().manual_seed(0)
    is_error = (exact - model.log_prob(x, num_samples=1000, generator=g)).abs().mean().item()
    naive_error = (exact - model.naive_log_prob(x, num_samples=1000, generator=g)).abs().mean().item()
    assert is_error < 0.1 and naive_error > 10 * is_error


def test_vimco_baselines_are_leave_one_out():
    log_w = torch.randn(5, 3, dtype=torch.float64)
    b = vimco_baselines(log_w)
    for k in range(5):
        others = torch.cat([log_w[:k], log_w[k + 1 :]])
        replaced = torch.cat([others, others.mean(0, keepdim=True)])
        assert torch.allclose(b[k], log_mean_exp(replaced, 0))


def _gradient_blocks(model, x, estimator, blocks, per_block):
    # A batch of the same example repeated: the gradient of the mean loss is the average of independent
    # single-sample gradient estimates.
    rows = []
    for _ in range(blocks):
        rows.append(gradient_samples(model, x.expand(per_block, -1), estimator=estimator, num_repeats=1)[0])
    return torch.stack(rows)


@pytest.mark.parametrize("num_train_samples", [1, 3])
def test_reinforce_and_reparameterisation_gradients_agree(num_train_samples):
    torch.manual_seed(0)
    model = dgm.build(
        "vae",
        event_shape=(4,),
        latent_dim=2,
        hidden_sizes=[6],
        num_train_samples=num_train_samples,
        analytic_kl=num_train_samples == 1,
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
        model.baseline.fill_(-3.0)  # a rough baseline; any constant keeps REINFORCE unbiased
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    reparam = _gradient_blocks(model, x, "reparam", 20, 2000)
    reinforce = _gradient_blocks(model, x, "reinforce", 20, 2000)
    diff = reparam.mean(0) - reinforce.mean(0)
    se = ((reparam.var(0) + reinforce.var(0)) / 20).sqrt()
    assert (diff.abs() < 5 * se + 1e-3).all(), (diff, se)
    # …and the score function's variance is the larger one (by a wide margin for one sample; VIMCO's
    # leave-one-out baselines narrow the gap for K > 1).
    assert reinforce.var(0).sum() > (5 if num_train_samples == 1 else 1) * reparam.var(0).sum()


def test_gradient_samples_rows_are_independent_estimates():
    model = dgm.build("vae", event_shape=(5,), latent_dim=2, hidden_sizes=[4])
    x = torch.randint(0, 2, (3, 5)).float()
    g = gradient_samples(model, x, estimator="reinforce", num_repeats=4)
    assert g.shape == (4, sum(p.numel() for p in model.encoder_parameters()))
    assert not torch.equal(g[0], g[1])
    assert model.training  # restored


def test_kl_divergence_of_independent_normals_is_torchs():
    q = Independent(Normal(torch.randn(3, 4), torch.rand(3, 4) + 0.5), 1)
    p = Independent(Normal(torch.zeros(4), torch.ones(4)), 1)
    by_hand = (0.5 * (q.base_dist.scale**2 + q.base_dist.loc**2 - 1) - q.base_dist.scale.log()).sum(-1)
    assert torch.allclose(kl_divergence(q, p), by_hand, atol=1e-6)
