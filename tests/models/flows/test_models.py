"""The flow models: normalisation on a 2-D grid, sample/density consistency, stability far from the data,
conditioning, and the identities that tie them together (Gaussian AR = one-layer MAF, IAF = MAF inverted)."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal

import dgm
from dgm.core.errors import ConfigError, DataError
from dgm.core.registry import get_entry
from dgm.models.flows.base import GaussianMixture, Logistic, StandardLogistic
from dgm.models.flows.transforms import BatchNorm, InverseTransform, MaskedAffineAutoregressive
from tests.models.flows.helpers import perturb

FLOWS = ("nice", "realnvp", "maf", "iaf")

# Small 2-D models whose densities lie well inside [-30, 30]² (log-scales soft-clamped to ±0.5 per layer).
GRID_MODELS = {
    "nice": ("nice", dict(num_layers=3, hidden_sizes=[8])),
    "nice-normal": ("nice", dict(num_layers=3, hidden_sizes=[8], base="normal")),
    "realnvp": ("realnvp", dict(num_layers=3, hidden_sizes=[8], scale_clamp=0.5)),
    "realnvp-conditional": ("realnvp", dict(num_layers=3, hidden_sizes=[8], scale_clamp=0.5, num_classes=3)),
    "maf": ("maf", dict(num_layers=2, hidden_sizes=[8], scale_clamp=0.5)),
    "maf-batchnorm-mog": (
        "maf",
        dict(num_layers=2, hidden_sizes=[8], scale_clamp=0.5, batch_norm=True, base="mog", num_components=3),
    ),
    "iaf": ("iaf", dict(num_layers=2, hidden_sizes=[8], scale_clamp=0.5)),
    "maf-shift-before": ("maf", dict(num_layers=2, hidden_sizes=[8], scale_clamp=0.5, shift="before")),
    "iaf-shift-after": ("iaf", dict(num_layers=2, hidden_sizes=[8], scale_clamp=0.5, shift="after")),
    "maf-softsign": ("maf", dict(num_layers=2, hidden_sizes=[8], scale_clamp=0.5, scale_clamp_fn="softsign")),
    "realnvp-softsign": (
        "realnvp",
        dict(num_layers=3, hidden_sizes=[8], scale_clamp=0.5, scale_clamp_fn="softsign"),
    ),
    "maf-resmade": ("maf", dict(num_layers=2, hidden_sizes=[8], scale_clamp=0.5, residual_blocks=1)),
    "iaf-resmade": ("iaf", dict(num_layers=2, hidden_sizes=[8], scale_clamp=0.5, residual_blocks=2)),
}


def build(name: str, event_shape=(2,), scale: float = 0.3, **options):
    model = dgm.build(name, event_shape=event_shape, **options).double()
    perturb(model, scale)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def tiny(name: str, num_dims: int, scale: float = 0.7, **options):
    return build(name, (num_dims,), scale, **{**get_entry(name).tiny, **options})


def mass_on_grid(model) -> float:
    """∫∫ p over [-30, 30]² by the trapezoid rule on a 1201 × 1201 grid (class 2 for a conditional model).

    Spacing 0.05: at 0.1 (601 points) the rule's error was ≤ 1.3e-4 over 60 random iaf-resmade models but
    6e-4 for one sharply peaked draw (DGM_TEST_SEED=51935; 9e-5 at 0.05)."""
    grid = torch.linspace(-30, 30, 1201, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid)
    context = torch.full((len(points),), 2) if model.conditional else None
    with torch.no_grad():
        density = model.log_prob(points, context).exp().reshape(len(grid), len(grid))
    return torch.trapezoid(torch.trapezoid(density, grid, dim=1), grid).item()


@pytest.mark.parametrize("case", list(GRID_MODELS))
def test_density_integrates_to_one_on_a_2d_grid(case):
    name, options = GRID_MODELS[case]
    assert mass_on_grid(build(name, **options)) == pytest.approx(1.0, abs=5e-4)


@pytest.mark.parametrize("name", ["maf", "iaf"])
def test_softplus_scaled_density_integrates_to_one_on_a_2d_grid(name):
    # nflows' scale is unbounded and reaches down to 1e-3, so weights moved as far as GRID_MODELS' (0.3)
    # can spread the mass well past the grid; moved by 0.05 from the start (a scaling by ≈ 0.69 per layer)
    # it stays inside.
    model = build(name, scale=0.05, num_layers=2, hidden_sizes=[8], scale_fn="softplus", residual_blocks=1)
    assert mass_on_grid(model) == pytest.approx(1.0, abs=5e-4)


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
@pytest.mark.parametrize("name", FLOWS)
def test_samples_are_scored_like_any_other_point(name, grad):
    model = tiny(name, 5, scale=0.3)
    with torch.set_grad_enabled(grad):
        x, log_prob = model.sample_and_log_prob(64, generator=torch.Generator().manual_seed(0))
        rescored = model.log_prob(x)
    assert x.shape == (64, 5) and x.dtype == torch.float64 and log_prob.requires_grad == grad
    torch.testing.assert_close(log_prob, rescored, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(model.sample(64, generator=torch.Generator().manual_seed(0)), x.float())


@pytest.mark.parametrize(("name", "shift"), [("maf", "before"), ("iaf", "after")])
def test_the_non_default_shift_scores_its_samples_like_any_other_point(name, shift):
    model = tiny(name, 5, scale=0.3, shift=shift)
    x, log_prob = model.sample_and_log_prob(64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(log_prob, model.log_prob(x), atol=1e-8, rtol=1e-8)


def test_iaf_samples_in_one_pass_and_scores_outside_points_in_d():
    model = tiny("iaf", 6, num_layers=3)
    layers = [m for m in model.modules() if isinstance(m, MaskedAffineAutoregressive)]
    assert len(layers) == 3 and any(isinstance(m, InverseTransform) for m in model.modules())
    calls = []
    for layer in layers:
        layer.conditioner.register_forward_hook(lambda *args: calls.append(1))
    model.sample(10)
    assert len(calls) == 3  # one MADE pass per layer
    calls.clear()
    x, _ = model.sample_and_log_prob(10)
    assert len(calls) == 3
    calls.clear()
    model.log_prob(x.detach().requires_grad_())  # with gradients: D full passes per layer
    assert len(calls) == 3 * 6
    assert "D sequential" in type(model).__doc__ + (dgm.models.flows.iaf.__doc__ or "")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("settings", ["tiny", "default"])
@pytest.mark.parametrize("name", FLOWS)
def test_large_inputs_give_finite_log_prob(name, settings, dtype):
    model = tiny(name, 6) if settings == "tiny" else build(name, (6,), 0.1)
    model = model.to(dtype)
    x = torch.cat([torch.randn(8, 6) * 1e4, torch.full((1, 6), 1e4), torch.full((1, 6), -1e4)]).to(dtype)
    with torch.no_grad():
        log_prob = model.log_prob(x)
    assert torch.isfinite(log_prob).all(), log_prob
    assert (log_prob < model.log_prob(torch.zeros(1, 6, dtype=dtype))).all()  # far away is less likely


@pytest.mark.parametrize("name", FLOWS)
def test_logit_preprocessing_refuses_data_outside_the_unit_interval(name):
    model = dgm.build(name, event_shape=(4,), logit_alpha=1e-6, **get_entry(name).tiny)
    assert torch.isfinite(model.log_prob(torch.rand(3, 4))).all()
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        model.log_prob(torch.full((2, 4), 1e4))
    samples = model.sample(50)  # within 1e-6 of [0, 1], the logit's margin: scored like the data
    assert (samples.abs() <= 1 + 2e-6).all() and torch.isfinite(model.log_prob(samples)).all()


@pytest.mark.parametrize("name", FLOWS)
def test_context_changes_the_density_and_every_parameter_learns(name):
    _context_changes_the_density_and_every_parameter_learns(name)


@pytest.mark.parametrize("name", ["maf", "iaf"])
def test_a_residual_made_flow_is_conditional_and_every_parameter_learns(name):
    _context_changes_the_density_and_every_parameter_learns(name, residual_blocks=2)


def _context_changes_the_density_and_every_parameter_learns(name, **options):
    model = tiny(name, 3, scale=0.3, num_classes=3, **options).train()
    x = torch.randn(32, 3, dtype=torch.float64)
    labels = torch.arange(32) % 3
    with torch.no_grad():
        a, b = model.log_prob(x, torch.zeros(32, dtype=torch.long)), model.log_prob(x, torch.ones(32))
    assert (a - b).abs().min() > 1e-6
    model.loss(x, labels).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    assert model.sample(7, context=torch.tensor([0, 1, 2, 0, 1, 2, 0])).shape == (7, 3)
    assert model.sample(4, context=2).shape == (4, 3)
    with pytest.raises(DataError, match="class-conditional"):
        model.log_prob(x)
    with pytest.raises(DataError, match="without num_classes"):
        tiny(name, 3, **options).log_prob(x, labels)


# ------------------------------------------------------------------- Gaussian AR model = one-layer MAF
class RNADEConditioner(nn.Module):
    """(μ, log σ) of a one-component RNADE's Gaussian conditionals, as an autoregressive conditioner."""

    def __init__(self, rnade):
        super().__init__()
        self.rnade = rnade

    def forward(self, x, context=None):
        params = self.rnade.params(x)  # (N, D, 3): mixture logit, mean, log-scale
        return torch.stack([params[..., 1], params[..., 2].clamp(-9.0, 7.0)], 1)


def test_a_gaussian_autoregressive_model_is_a_one_layer_maf():
    # RNADE with one component is the Gaussian autoregressive model p(x_d | x_<d) = N(μ_d, σ_d²); as the
    # conditioner of MAF's layer (no clamp) with a standard normal base it gives the same density.
    rnade = dgm.build("rnade", event_shape=(5,), hidden_size=8, num_components=1, ordering="random").double()
    perturb(rnade, 0.5)
    layer = MaskedAffineAutoregressive(5, conditioner=RNADEConditioner(rnade), scale_clamp=None)
    x = torch.randn(20, 5, dtype=torch.float64)
    z, log_det = layer(x)
    flow_log_prob = Normal(0.0, 1.0).log_prob(z).sum(1) + log_det
    torch.testing.assert_close(flow_log_prob, rnade.log_prob(x), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(layer.inverse(z), x, atol=1e-10, rtol=1e-10)  # D passes, any conditioner

    # And the other way round: a one-layer MAF is a Gaussian AR model, in density and in sampling.
    maf = build("maf", (4,), 0.5, num_layers=1, hidden_sizes=[16], orderings="random")
    (made,) = [m for m in maf.modules() if isinstance(m, MaskedAffineAutoregressive)]

    def conditionals(v):
        mu, alpha = made._params(v, None)
        return Normal(mu, alpha.exp())

    torch.testing.assert_close(maf.log_prob(x[:, :4]), conditionals(x[:, :4]).log_prob(x[:, :4]).sum(1))
    noise = torch.randn(50, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ancestral = torch.zeros(50, 4, dtype=torch.float64)
    for d in made.ordering.tolist():
        cond = conditionals(ancestral)
        ancestral[:, d] = cond.loc[:, d] + cond.scale[:, d] * noise[:, d]
    samples = maf.sample(50, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(samples, ancestral.float())


def test_maf_jacobian_is_triangular_per_layer_and_full_after_an_order_reversal():
    x = torch.randn(4, dtype=torch.float64)
    one = build("maf", (4,), 0.5, num_layers=1, hidden_sizes=[16], orderings="random")
    (layer,) = [m for m in one.modules() if isinstance(m, MaskedAffineAutoregressive)]
    jac = torch.autograd.functional.jacobian(lambda v: one.to_latent(v[None])[0][0], x)
    order = layer.ordering
    assert torch.equal(jac[order][:, order].triu(1), torch.zeros(4, 4))  # z_d depends on x_≤d only
    two = build("maf", (4,), 0.5, num_layers=2, hidden_sizes=[16])
    jac = torch.autograd.functional.jacobian(lambda v: two.to_latent(v[None])[0][0], x)
    assert (jac.triu(1) != 0).any() and (jac.tril(-1) != 0).any()


# ---------------------------------------------------------------------------------- RealNVP images
def test_multiscale_realnvp_on_images():
    model = dgm.build(
        "realnvp", event_shape=(1, 4, 4), num_scales=2, hidden_channels=4, num_blocks=1, logit_alpha=0.05
    )
    assert model.architecture == "multiscale" and model.latent_shape == (16,)
    x = torch.rand(32, 1, 4, 4)
    model.train()
    log_prob = model.log_prob(x)  # the first training batch initialises the actnorm layers
    assert log_prob.shape == (32,) and torch.isfinite(log_prob).all()
    samples = model.eval().sample(5)
    assert samples.shape == (5, 1, 4, 4) and ((samples > -0.06) & (samples < 1.06)).all()
    assert torch.isfinite(model.log_prob(samples)).all()  # α = 0.05: (−α/(1−2α), 1 + α/(1−2α)) is the support
    flat = dgm.build("realnvp", event_shape=(1, 4, 4), architecture="flat", hidden_sizes=[8])
    assert flat.latent_shape == (16,) and flat.log_prob(x).shape == (32,)
    with pytest.raises(ConfigError, match="divisible by 2"):
        dgm.build("realnvp", event_shape=(1, 3, 3), num_scales=2)
    with pytest.raises(ConfigError, match="needs images"):
        dgm.build("realnvp", event_shape=(6,), architecture="multiscale")


def test_every_flow_learns_by_gradient_descent():
    torch.manual_seed(0)
    x = torch.randn(256, 2) @ torch.tensor([[1.0, 0.9], [0.0, 0.4]]) + torch.tensor([1.0, -2.0])
    for name in FLOWS:
        model = dgm.build(name, event_shape=(2,), num_layers=2, hidden_sizes=[16])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        before = model.loss(x).item()
        for _ in range(40):
            optimizer.zero_grad()
            model.loss(x).backward()
            optimizer.step()
        assert model.loss(x).item() < before - 0.5, name


@pytest.mark.parametrize("base, std", [("logistic", math.pi / math.sqrt(3)), ("normal", 1.0)])
def test_nice_starts_its_scaling_from_the_first_training_batch(base, std):
    # Pixel-like data: most values always within 1/256 of 0, a few spread over [0, 1].
    torch.manual_seed(0)
    x = torch.rand(300, 6) * torch.tensor([1 / 256] * 4 + [1.0] * 2)
    model = dgm.build("nice", event_shape=(6,), num_layers=2, hidden_sizes=[8], base=base)
    identity = dgm.build("nice", event_shape=(6,), num_layers=2, hidden_sizes=[8], base=base, data_init=False)
    identity.load_state_dict({k: v for k, v in model.state_dict().items() if k in identity.state_dict()})
    model.train()
    first = model.loss(x).item()  # initialises
    z, _ = model.transform(x)
    torch.testing.assert_close(z.square().mean(0).sqrt(), torch.full((6,), std), rtol=1e-4, atol=0)
    assert first < identity.loss(x).item() - 4  # the narrow values start far denser
    model.eval()
    scale = model.transform.transforms[-1].log_scale.detach().clone()
    model.train()
    model.loss(2 * x)
    assert torch.equal(model.transform.transforms[-1].log_scale, scale)  # once only


def test_nice_default_width_follows_the_data():
    """The paper's 5 × 1000 coupling MLPs for image-sized data; 2 × 256 for vectors such as the toys."""

    def linear_shapes(model):
        return [tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear)]

    D = int(torch.randint(256, 800, ()))
    image = linear_shapes(dgm.build("nice", event_shape=(D,)))
    assert len(image) == 4 * 6
    assert image[0][0] == 1000 and image[1:5] == [(1000, 1000)] * 4 and image[5][1] == 1000
    assert image[0][1] + image[5][0] == D  # the kept half in, the shifted half out
    d = int(torch.randint(2, 256, ()))
    toy = linear_shapes(dgm.build("nice", event_shape=(d,)))
    assert len(toy) == 4 * 3 and toy[1] == (256, 256)
    explicit = dgm.build("nice", event_shape=(d,), hidden_sizes=[1000] * 5)
    assert linear_shapes(explicit)[1] == (1000, 1000)


def test_options_are_checked():
    with pytest.raises(ConfigError, match="dequantise"):
        dgm.build("maf", event_shape=(4,), support="binary")
    assert dgm.build("maf", event_shape=(3,), hidden_sizes=8).config["hidden_sizes"] == 8  # the CLI's form
    for name, options, message in [
        ("maf", {"base": "cauchy"}, "unknown base"),
        ("iaf", {"orderings": "sideways"}, "orderings"),
        ("realnvp", {"architecture": "deep"}, "architecture"),
        ("realnvp", {"normalization": "layer"}, "normalization"),
        ("nice", {"num_layers": 0}, "num_layers"),
        ("nice", {"hidden_sizes": [8, 0]}, "positive"),
        ("nice", {"hidden_sizes": "wide"}, "'auto'"),
        ("maf", {"logit_alpha": 0.7}, "alpha"),
        ("maf", {"residual_blocks": 1, "hidden_sizes": [8, 8]}, "one hidden width"),
        ("iaf", {"residual_blocks": -1}, "residual_blocks"),
        ("maf", {"residual_blocks": 1.5}, "residual_blocks"),
        ("iaf", {"scale_fn": "tanh"}, "scale_fn must be one of exp, softplus"),
        ("realnvp", {"scale_clamp_fn": "sigmoid"}, "scale_clamp_fn must be one of tanh, softsign"),
        ("maf", {"scale_clamp_fn": "atan"}, "scale_clamp_fn must be one of tanh, softsign"),
    ]:
        with pytest.raises(ConfigError, match=message):
            dgm.build(name, event_shape=(4,), **options)


# --------------------------------------------------------------------------------------- bases
def test_logistic_distribution_is_accurate_in_the_tails():
    d = Logistic(torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))
    v = torch.tensor([-3.0, 0.0, 1.0, 5.0], dtype=torch.float64)
    y = (v - 1) / 2
    torch.testing.assert_close(d.log_prob(v), torch.log(torch.sigmoid(y) * torch.sigmoid(-y) / 2))
    torch.testing.assert_close(d.icdf(d.cdf(v)), v)
    far = d.log_prob(torch.tensor([1e4, -1e4], dtype=torch.float64))
    # log p ≈ −|y| − log scale far out: y = (±1e4 − 1) / 2
    torch.testing.assert_close(far, -torch.tensor([9999.0, 10001.0], dtype=torch.float64) / 2 - math.log(2))
    base = StandardLogistic((3,))
    a, b = (base.sample(1000, generator=torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(a, b) and abs(a.var().item() - math.pi**2 / 3) < 0.5


def test_gaussian_mixture_base():
    base = GaussianMixture((2, 2), num_components=3, seed=1).double()
    perturb(base)
    z = torch.randn(10, 2, 2, dtype=torch.float64)
    flat = z.reshape(10, 1, 4)
    per_component = Normal(base.loc, base.log_scale.exp()).log_prob(flat).sum(-1)
    expected = torch.logsumexp(per_component + torch.log_softmax(base.logits, 0), 1)
    torch.testing.assert_close(base.log_prob(z), expected)
    g = torch.Generator().manual_seed(2)
    assert base.sample(6, generator=g).shape == (6, 2, 2)


def test_maf_defaults_to_the_shift_after_the_scale_and_old_checkpoints_keep_the_papers_form(tmp_path):
    from dgm.core import checkpoint

    assert dgm.build("maf", event_shape=(3,)).config["shift"] == "after"
    assert dgm.build("iaf", event_shape=(3,)).config["shift"] == "before"
    # A run saved before MAF had a ``shift`` option: its config lacks the key, and its weights were
    # trained as (x − μ)·exp(−α). It must load as that model, not as today's default.
    old = build("maf", (4,), 0.5, num_layers=2, hidden_sizes=[16], shift="before")
    checkpoint.save_model(old, tmp_path)
    config = checkpoint.read_json(tmp_path / checkpoint.CONFIG)
    del config["shift"]
    checkpoint.write_json(tmp_path / checkpoint.CONFIG, config)
    loaded = dgm.load(tmp_path).double()
    assert loaded.config["shift"] == "before"
    x = torch.randn(16, 4, dtype=torch.float64)
    # The run's weights were float64; a loaded model is built in float32 and rounds them (≈1e-7).
    torch.testing.assert_close(loaded.log_prob(x), old.log_prob(x), rtol=1e-5, atol=1e-5)
    # The same weights read in the other form give another density: the key is not cosmetic.
    config["shift"] = "after"
    checkpoint.write_json(tmp_path / checkpoint.CONFIG, config)
    assert not torch.allclose(dgm.load(tmp_path).double().log_prob(x), old.log_prob(x), rtol=1e-3, atol=1e-3)
