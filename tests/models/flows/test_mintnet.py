"""MintNet: the masked invertible layer's triangular Jacobian and log-det, its numerical inverse to the stated
tolerance (fixed-point iteration and the sequential fallback), and the model on vectors and images."""

import warnings

import pytest
import torch

import dgm
from dgm.core.errors import ConfigError, DataError
from dgm.models.flows.transforms import MaskedInvertibleLayer, masked_conv
from tests.models.flows.helpers import jacobian_log_det, perturb


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # fresh random inputs, the same in every run


# name: (shape, kernel size, lower)
LAYERS = {
    "image-lower": ((2, 3, 3), 3, True),
    "image-upper": ((2, 3, 3), 3, False),
    "image-1-channel": ((1, 4, 3), 3, True),
    "vector-lower": ((5, 1, 1), 1, True),
    "vector-upper": ((5, 1, 1), 1, False),
    "scalar": ((1, 1, 1), 1, True),
}


def layer(name: str, dtype=torch.float64, scale: float = 0.3, **options):
    shape, k, lower = LAYERS[name]
    t = MaskedInvertibleLayer(shape, latent_size=3, kernel_size=k, lower=lower, **options).to(dtype)
    perturb(t, scale, torch.Generator().manual_seed(len(name)))
    return t, shape


def flat_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    jac = torch.autograd.functional.jacobian(lambda v: fn(v[None])[0].reshape(-1), x)
    return jac.reshape(x.numel(), x.numel())


@pytest.mark.parametrize(
    ("dtype", "tol", "atol"), [(torch.float32, 1e-6, 1e-4), (torch.float64, 1e-12, 1e-9)]
)
@pytest.mark.parametrize("name", list(LAYERS))
def test_fixed_point_inverse_reaches_its_tolerance(name, dtype, tol, atol):
    t, shape = layer(name, dtype, inverse_tol=tol)
    x = torch.randn(8, *shape, dtype=dtype)
    z, log_det = t(x)
    back, passes = t.solve(z)
    assert passes < t.max_iter  # the paper's iteration converged; no fallback needed at this scale
    torch.testing.assert_close(back, x, atol=atol, rtol=0)
    f, _ = t(back)
    assert ((f - z).abs() <= 50 * max(tol, 32 * torch.finfo(dtype).eps) * (1 + z.abs())).all()
    back, inverse_log_det = t.inverse_and_log_det(z)
    torch.testing.assert_close(inverse_log_det, -log_det, atol=1e3 * atol, rtol=0)


@pytest.mark.parametrize("name", ["image-lower", "vector-lower", "image-upper"])
def test_step_halving_rescues_an_iteration_that_a_full_step_does_not_converge(name, monkeypatch):
    # Large off-diagonal weights: the undamped iteration (α = 1 throughout) wanders or cycles for all
    # max_iter passes and ends in the sequential solve; halving α when the largest correction stalls
    # converges within max_iter, to the same point.
    t, shape = layer(name, scale=1.5, inverse_tol=1e-10)
    x = torch.randn(16, *shape, dtype=torch.float64)
    z, _ = t(x)
    monkeypatch.setattr(masked_conv, "_STALL", 10**9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, undamped_passes = t.solve(z)
    assert undamped_passes > t.max_iter
    monkeypatch.undo()
    back, passes = t.solve(z)
    assert passes < t.max_iter
    torch.testing.assert_close(back, x, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", ["image-lower", "vector-upper"])
def test_sequential_fallback_when_the_iteration_does_not_converge(name):
    t, shape = layer(name, scale=0.7, inverse_tol=1e-12, max_iter=2)
    x = torch.randn(4, *shape, dtype=torch.float64)
    z, _ = t(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fallback converges: no warning
        back, passes = t.solve(z)
    assert passes > t.max_iter
    torch.testing.assert_close(back, x, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", ["image-upper", "vector-upper"])
def test_sequential_solve_reaches_tolerance_on_badly_conditioned_layers(name):
    # Weights at scale 2 and inputs at scale 3: plain bracketed Newton could cycle between two points
    # inside its bracket and end 100 steps later with residuals of ~10. The solve must still be exact.
    t, shape = layer(name, scale=2.0, inverse_tol=1e-10, max_iter=1)
    for _ in range(8):
        x = 3 * torch.randn(16, *shape, dtype=torch.float64)
        z, _ = t(x)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            back, _ = t._solve_sequentially(z, 1e-10)
        torch.testing.assert_close(t(back)[0], z, atol=1e-8, rtol=1e-8)
        residual = t(back)[0] - z
        # Such layers can be nearly singular (condition numbers of 4e7 occur): a residual of 5e-10 then
        # moves x by 3e-5. Where x is off by more than 1e-6, the miss must be the one the residual explains
        # to first order, J⁻¹·residual: the solve found x, not another point.
        for n in ((back - x).flatten(1).abs().amax(1) > 1e-6).nonzero().flatten().tolist():
            J = flat_jacobian(lambda v: t(v)[0], x[n])
            explained = torch.linalg.solve(J, residual[n].reshape(-1))
            torch.testing.assert_close((back[n] - x[n]).reshape(-1), explained, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_log_det_is_the_log_diagonal_and_matches_autograd(name):
    t, shape = layer(name, scale=0.7)
    x = torch.randn(3, *shape, dtype=torch.float64)
    _, log_det = t(x)
    for i in range(3):
        jac = flat_jacobian(lambda v: t(v)[0], x[i])
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac)[1], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(log_det[i], jac.diagonal().log().sum(), atol=1e-10, rtol=1e-10)
        assert (jac.diagonal() >= t.log_t.exp().reshape(-1) - 1e-12).all()  # diag ≥ t > 0: invertible


@pytest.mark.parametrize("name", ["image-lower", "image-upper", "vector-lower", "vector-upper"])
def test_jacobian_is_triangular_in_channel_then_raster_order(name):
    t, shape = layer(name, scale=0.7)
    x = torch.randn(*shape, dtype=torch.float64)
    jac = flat_jacobian(lambda v: t(v)[0], x)  # rows: z in (c, h, w) order; columns: x likewise
    strictly_upper, strictly_lower = jac.triu(1), jac.tril(-1)
    if LAYERS[name][2]:
        assert torch.equal(strictly_upper, torch.zeros_like(jac)) and (strictly_lower != 0).any()
    else:
        assert torch.equal(strictly_lower, torch.zeros_like(jac)) and (strictly_upper != 0).any()


def test_a_lower_upper_pair_mixes_every_value():
    model = dgm.build("mintnet", event_shape=(1, 4, 4), num_layers=1, latent_size=2, num_squeezes=0).double()
    perturb(model, 0.5, torch.Generator().manual_seed(0))
    x = torch.randn(1, 4, 4, dtype=torch.float64)
    jac = flat_jacobian(lambda v: model.to_latent(v)[0], x)
    assert (jac.triu(1) != 0).any() and (jac.tril(-1) != 0).any()
    _, log_det = model.to_latent(x[None])
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(jac)[1], atol=1e-10, rtol=1e-10)


def build(event_shape=(2,), scale: float = 0.3, **options):
    model = dgm.build("mintnet", event_shape=event_shape, **{"num_layers": 2, "latent_size": 4, **options})
    perturb(model.double(), scale, torch.Generator().manual_seed(3))
    return model.eval()


def test_density_integrates_to_one_on_a_2d_grid():
    model = build(scale=0.2)  # sharper densities need a finer grid than this one (spacing 0.05)
    grid = torch.linspace(-20, 20, 801, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        density = model.log_prob(points).exp().reshape(len(grid), len(grid))
    total = torch.trapezoid(torch.trapezoid(density, grid, dim=1), grid).item()
    assert total == pytest.approx(1.0, abs=5e-4)


@pytest.mark.parametrize("event_shape", [(5,), (2, 4, 4)], ids=["vector", "image"])
def test_model_log_det_and_inverse(event_shape):
    model = build(event_shape, num_squeezes=1, inverse_tol=1e-12)
    x = torch.randn(3, *event_shape, dtype=torch.float64)
    z, log_det = model.to_latent(x)
    assert z.shape == (3, model.num_dims) and model.latent_shape == (model.num_dims,)
    expected = jacobian_log_det(lambda v: model.to_latent(v)[0], x[0])
    torch.testing.assert_close(log_det[0], expected, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(model.transform.inverse(z), x, atol=1e-8, rtol=0)


def test_samples_are_scored_like_any_other_point():
    model = build((4,), inverse_tol=1e-12)
    x, log_prob = model.sample_and_log_prob(50, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(log_prob, model.log_prob(x), atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(model.sample(50, generator=torch.Generator().manual_seed(0)), x.float())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("event_shape", [(6,), (1, 4, 4)], ids=["vector", "image"])
def test_large_inputs_give_finite_log_prob(event_shape, dtype):
    model = build(event_shape, scale=0.1, num_squeezes=1).to(dtype)
    d = model.num_dims
    x = torch.cat([torch.randn(8, d) * 1e4, torch.full((1, d), 1e4), torch.full((1, d), -1e4)]).to(dtype)
    with torch.no_grad():
        log_prob = model.log_prob(x.reshape(-1, *event_shape))
        assert torch.isfinite(log_prob).all(), log_prob
        assert (log_prob < model.log_prob(torch.zeros(1, *event_shape, dtype=dtype))).all()


def test_images_squeezes_and_logit_preprocessing():
    model = dgm.build("mintnet", event_shape=(1, 8, 8), num_layers=3, latent_size=2, logit_alpha=1e-6)
    squeezes = [type(t).__name__ for t in model.transform].count("Squeeze")
    assert squeezes == 2 and model.latent_shape == (64,)
    x = torch.rand(4, 1, 8, 8)
    assert torch.isfinite(model.log_prob(x)).all()
    assert model.sample(3).shape == (3, 1, 8, 8)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        model.log_prob(x + 2)
    with pytest.raises(ConfigError, match="divisible by 4"):
        dgm.build("mintnet", event_shape=(1, 6, 6), num_squeezes=2)
    for options, message in [
        ({"num_layers": 0}, "num_layers"),
        ({"normalization": "batch"}, "normalization"),
        ({"step_size": 1.5}, "step_size"),
        ({"kernel_size": 2}, "odd"),
    ]:
        with pytest.raises(ConfigError, match=message):
            dgm.build("mintnet", event_shape=(1, 4, 4), **options)


def test_learns_by_gradient_descent():
    torch.manual_seed(0)
    x = torch.randn(256, 2) @ torch.tensor([[1.0, 0.9], [0.0, 0.4]]) + torch.tensor([1.0, -2.0])
    for normalization in ("none", "actnorm"):
        model = dgm.build("mintnet", event_shape=(2,), num_layers=2, normalization=normalization)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        before = model.loss(x).item()
        for _ in range(40):
            optimizer.zero_grad()
            model.loss(x).backward()
            optimizer.step()
        assert model.loss(x).item() < before - 0.5, normalization
