"""Gaussianization flows: the kernel marginal Gaussianization (tails, log-det, bisection inverse to the
stated tolerance), Householder rotations, the model's normalisation and stability, and initialisation from
data."""

import math

import pytest
import torch
from torch.distributions import Normal

import dgm
from dgm.core.errors import ConfigError, DataError
from dgm.models.flows.transforms import HouseholderRotation, KernelGaussianization, normal_icdf_from_log
from tests.models.flows.helpers import jacobian_log_det, perturb


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # fresh random inputs, the same in every run


def kde(dtype=torch.float64, scale: float = 0.5, **options):
    t = KernelGaussianization(3, num_kernels=5, data_init=False, **options).to(dtype)
    perturb(t, scale, torch.Generator().manual_seed(0))
    return t


# ------------------------------------------------------------------------------ the normal quantile
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_normal_quantile_from_logs_is_accurate_in_both_tails(dtype):
    z = torch.tensor(
        [-1e4, -300.0, -40.0, -8.0, -1.0, -1e-3, 0.0, 1e-3, 2.0, 9.0, 50.0, 1e4], dtype=torch.float64
    )
    log_cdf, log_sf = torch.special.log_ndtr(z), torch.special.log_ndtr(-z)
    back = normal_icdf_from_log(log_cdf.to(dtype), log_sf.to(dtype)).double()
    eps = torch.finfo(dtype).eps
    # log Φ has relative precision eps, so z has about eps · |log Φ| / |z φ/Φ| ≈ eps · (|z| / 2 + 1).
    assert ((back - z).abs() <= 20 * eps * (1 + z.abs())).all(), back - z
    w = torch.tensor([-3.0, 0.5], dtype=torch.float64, requires_grad=True)
    out = normal_icdf_from_log(torch.special.log_ndtr(w), torch.special.log_ndtr(-w))
    (grad,) = torch.autograd.grad(out.sum(), w)
    torch.testing.assert_close(grad, torch.ones(2, dtype=torch.float64))  # Φ⁻¹ ∘ Φ = identity


# ------------------------------------------------------------------------------ the marginal layer
@pytest.mark.parametrize(
    ("dtype", "tol", "atol"), [(torch.float32, 1e-6, 1e-4), (torch.float64, 1e-12, 1e-10)]
)
def test_bisection_inverse_reaches_its_tolerance(dtype, tol, atol):
    t = kde(dtype, inverse_tol=tol)
    x = torch.randn(50, 3, dtype=dtype) * 2
    z, log_det = t(x)
    back, iterations = t.solve(z)
    assert iterations < t.max_iter
    torch.testing.assert_close(back, x, atol=atol, rtol=0)
    _, inverse_log_det = t.inverse_and_log_det(z)
    torch.testing.assert_close(inverse_log_det, -log_det, atol=100 * atol, rtol=0)


def test_marginal_log_det_matches_autograd_and_is_elementwise():
    t = kde()
    x = torch.randn(4, 3, dtype=torch.float64) * 2
    z, log_det = t(x)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda v: t(v[None])[0][0], x[i])
        assert torch.equal(jac, torch.diag(jac.diagonal())) and (jac.diagonal() > 0).all()
        torch.testing.assert_close(
            log_det[i], jacobian_log_det(lambda v: t(v)[0], x[i]), atol=1e-10, rtol=1e-10
        )
    # z = Φ⁻¹(F(x)) with F the kernel mixture's CDF
    u = (x[:, :, None] - t.loc) / t.log_bandwidth.exp()
    cdf = torch.sigmoid(u).mean(-1)
    torch.testing.assert_close(Normal(0.0, 1.0).cdf(z), cdf)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_marginal_layer_is_finite_and_invertible_far_in_the_tails(dtype):
    t = kde(dtype)
    x = torch.tensor([[1e4, -1e4, 0.0], [-300.0, 80.0, 1e3]], dtype=dtype)
    z, log_det = t(x)
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    assert (z[0, :2].sign() == x[0, :2].sign()).all() and (z.abs()[0, :2] > 100).all()
    back, _ = t.solve(z)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(back, x, atol=tol, rtol=tol)
    far = torch.tensor([[-40.0, 40.0, 1e3]], dtype=dtype)  # latents whose Φ rounds to 0 or 1
    x_far, _ = t.solve(far)
    assert torch.isfinite(x_far).all()
    torch.testing.assert_close(t(x_far)[0], far, atol=0, rtol=10 * tol)


def _logs_from_logs(t, x):
    """The reference: (log F, log(1 − F), log f) as log-sum-exps of log σ(±u) over the kernels."""
    log_h = t.log_bandwidth.clamp(min=math.log(t.min_bandwidth))
    u = (x[:, :, None] - t.loc) * torch.exp(-log_h)
    log_s, log_t = torch.nn.functional.logsigmoid(u), torch.nn.functional.logsigmoid(-u)
    terms = torch.stack([log_s, log_t, log_s + log_t - log_h])
    return torch.logsumexp(terms, -1) - math.log(t.num_kernels)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_probability_space_sums_equal_the_log_space_reference_with_their_gradients(dtype):
    t = kde(dtype)
    # Values near the anchors, in the tails, and beyond every kernel by 1e2–1e4 bandwidths (the logs'
    # fallback), mixed in one batch so that both paths meet in one tensor.
    scale = torch.tensor([1.0, 5.0, 30.0, 300.0, 3e3], dtype=dtype)[torch.randint(5, (40, 3))]
    x = (torch.randn(40, 3, dtype=dtype) * scale).requires_grad_()
    got = torch.stack(t._logs(x))
    want = _logs_from_logs(t, x)
    assert torch.isfinite(got).all()
    eps = torch.finfo(dtype).eps
    # Each log is of a sum of K positive terms: a few eps, relative to 1 + |log| (softplus, which turns into
    # the identity beyond 20, would be 2e-9 off here in float64).
    assert ((got - want).abs() <= 10 * eps * (1 + want.abs())).all(), (got - want).abs().max()
    w = torch.randn_like(got)
    grads = torch.autograd.grad((got * w).sum(), [x, t.loc, t.log_bandwidth])
    grads_ref = torch.autograd.grad((want * w).sum(), [x, t.loc, t.log_bandwidth])
    for g, r in zip(grads, grads_ref, strict=True):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, r, atol=1e3 * eps, rtol=1e3 * eps)


def test_initialize_puts_anchors_at_quantiles_and_gaussianizes_the_marginals():
    t = KernelGaussianization(2, num_kernels=40).double()
    g = torch.Generator().manual_seed(0)
    bimodal = torch.randn(4000, generator=g, dtype=torch.float64) * 0.5 + 3 * (
        torch.rand(4000, generator=g) < 0.3
    )
    x = torch.stack([torch.rand(4000, generator=g, dtype=torch.float64) * 6, bimodal], 1)
    t.initialize(x)
    assert bool(t.initialized)
    torch.testing.assert_close(t.loc[0], torch.quantile(x[:, 0], (torch.arange(40).double() + 0.5) / 40))
    z, _ = t(x)
    assert z.mean(0).abs().max() < 0.05 and (z.std(0) - 1).abs().max() < 0.05


# ------------------------------------------------------------------------------ rotations
def test_householder_rotation_is_orthogonal_and_volume_preserving():
    t = HouseholderRotation(4, seed=3).double()
    q = t.matrix()
    torch.testing.assert_close(q @ q.T, torch.eye(4, dtype=torch.float64))
    for n in (3, 10):
        x = torch.randn(n, 4, dtype=torch.float64)
        z, log_det = t(x)
        torch.testing.assert_close(z, x @ q.T)
        assert torch.equal(log_det, torch.zeros(n, dtype=torch.float64))
        torch.testing.assert_close(t.inverse(z), x)
    assert len(HouseholderRotation(5, num_reflections=2).vectors) == 2
    with pytest.raises(DataError, match="rotation of 4"):
        t(torch.zeros(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("D,K", [(1, 1), (5, 2), (6, 6), (8, 13)])
def test_householder_product_in_one_piece_equals_the_reflections_one_by_one(D, K):
    """The UT transform (I − U T⁻¹ Uᵀ) against H(v_1) ⋯ H(v_K) multiplied out, fresh vectors each run;
    one vector set to zero (it must reflect nothing) and one repeated (H(v) H(v) = I)."""
    t = HouseholderRotation(D, num_reflections=K).double()
    with torch.no_grad():
        t.vectors.copy_(torch.randn(K, D, dtype=torch.float64) * torch.rand(K, 1, dtype=torch.float64) * 3)
        if K > 1:
            t.vectors[1] = 0
        if K > 3:
            t.vectors[3] = t.vectors[2]
    q = torch.eye(D, dtype=torch.float64)
    for v in t.vectors.detach():
        if v.norm() > 0:
            q = q @ (torch.eye(D, dtype=torch.float64) - 2 * torch.outer(v, v) / v.dot(v))
    torch.testing.assert_close(t.matrix(), q, rtol=0, atol=1e-12)
    x = torch.randn(7, D, dtype=torch.float64)
    torch.testing.assert_close(t(x)[0], x @ q.T, rtol=0, atol=1e-12)
    torch.testing.assert_close(t.inverse(x), x @ q, rtol=0, atol=1e-12)
    # Gradients reach every vector (a zero vector's gradient is zero: H(v) is flat in |v| there).
    t(x)[0].square().mul(torch.randn(7, D, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(t.vectors.grad).all()


# ------------------------------------------------------------------------------ the model
def build(event_shape=(2,), scale: float = 0.3, **options):
    options = {"num_layers": 2, "num_kernels": 8, "data_init": False, **options}
    model = dgm.build("gaussianization-flow", event_shape=event_shape, **options).double()
    perturb(model, scale, torch.Generator().manual_seed(1))
    return model.eval()


def test_density_integrates_to_one_on_a_2d_grid():
    model = build()
    grid = torch.linspace(-30, 30, 601, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        density = model.log_prob(points).exp().reshape(len(grid), len(grid))
    total = torch.trapezoid(torch.trapezoid(density, grid, dim=1), grid).item()
    assert total == pytest.approx(1.0, abs=5e-4)


def test_model_log_det_inverse_and_sample_consistency():
    model = build((4,), inverse_tol=1e-12)
    x = torch.randn(3, 4, dtype=torch.float64)
    z, log_det = model.to_latent(x)
    for i in range(3):
        expected = jacobian_log_det(lambda v: model.to_latent(v)[0], x[i])
        torch.testing.assert_close(log_det[i], expected, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(model.transform.inverse(z), x, atol=1e-9, rtol=0)
    samples, log_prob = model.sample_and_log_prob(100, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(log_prob, model.log_prob(samples), atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_large_inputs_give_finite_log_prob(dtype):
    model = build((6,)).to(dtype)
    x = torch.cat([torch.randn(8, 6) * 1e4, torch.full((1, 6), 1e4), torch.full((1, 6), -1e4)]).to(dtype)
    with torch.no_grad():
        log_prob = model.log_prob(x)
        assert torch.isfinite(log_prob).all(), log_prob
        assert (log_prob < model.log_prob(torch.zeros(1, 6, dtype=dtype))).all()
        assert torch.isfinite(model.transform.inverse(torch.full((2, 6), 30.0, dtype=dtype))).all()


def toy(n: int, seed: int) -> torch.Tensor:
    """Two moons (as scikit-learn's make_moons, noise 0.05), in float64."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(
        upper[:, None], torch.stack([t.cos(), t.sin()], 1), torch.stack([1 - t.cos(), 0.5 - t.sin()], 1)
    )
    return x + 0.05 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def test_initialisation_from_data_beats_random_initialisation():
    train, test = toy(2000, 0), toy(1000, 1)
    nll = {}
    for init in ("random", "data"):
        model = dgm.build("gaussianization-flow", event_shape=(2,), num_layers=4, num_kernels=20).double()
        if init == "data":
            model.initialize(train)
            assert model.initialized
        model.eval()
        with torch.no_grad():
            nll[init] = -model.log_prob(test).mean().item()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(20):  # and it stays ahead after a few steps of training
            optimizer.zero_grad()
            model.loss(train).backward()
            optimizer.step()
        with torch.no_grad():
            nll[init + "-trained"] = -model.log_prob(test).mean().item()
    assert nll["data"] < nll["random"] - 1.0, nll
    assert nll["data-trained"] < nll["random-trained"] - 0.3, nll
    assert nll["data-trained"] < nll["data"], nll


def test_first_training_batch_initialises_unless_initialised_or_evaluating():
    x = toy(500, 2).float()
    model = dgm.build("gaussianization-flow", event_shape=(2,), num_layers=2, num_kernels=10)
    model.eval()
    model.log_prob(x)
    assert not model.initialized  # evaluation never initialises
    model.train()
    model.log_prob(x)
    assert model.initialized and all("initialized" in k for k in model.state_dict() if "init" in k)
    loc = model.transform[0].loc.detach().clone()
    model.log_prob(x * 3)
    assert torch.equal(model.transform[0].loc, loc)  # once only
    lazy = dgm.build("gaussianization-flow", event_shape=(2,), num_layers=2, data_init=False).train()
    lazy.log_prob(x)
    assert not lazy.initialized


def test_options_are_checked():
    for options, message in [
        ({"num_layers": 0}, "num_layers"),
        ({"num_kernels": 0}, "num_kernels"),
        ({"num_reflections": 0}, "num_reflections"),
        ({"min_bandwidth": 0.0}, "min_bandwidth"),
    ]:
        with pytest.raises(ConfigError, match=message):
            dgm.build("gaussianization-flow", event_shape=(3,), **options)
    image = dgm.build(
        "gaussianization-flow", event_shape=(1, 2, 2), num_layers=1, num_kernels=4, logit_alpha=0.05
    )
    assert image.latent_shape == (4,) and image.sample(3).shape == (3, 1, 2, 2)
