"""Denoising by posterior sampling: the samplers match closed-form or enumerated posteriors, PSNR is right on
known inputs, the VAE path improves on the noisy input, and misuse gives one-line errors."""

import itertools
import math

import pytest
import torch

import dgm
from dgm.core.errors import ConfigError, DataError
from dgm.models.flows.base import Flow, StandardNormal
from dgm.models.flows.transforms import Compose, ElementwiseAffine, Logit
from dgm.tasks.denoising import (
    FlipNoise,
    GaussianNoise,
    add_noise,
    available_methods,
    denoise,
    parse_noise,
    psnr,
    select_method,
)
from tests.models.helpers import perturb_parameters


class GaussianFlow(Flow):
    """x ~ N(μ, diag s²) as a flow: z = x / s − μ / s, one ElementwiseAffine, normal base (optionally
    behind a logit, to exercise the domain handling)."""

    def __init__(self, event_shape, support: str = "real", logit: bool = False):
        super().__init__(event_shape, support)
        layers = [Logit(0.05)] if logit else []
        self.transform = Compose([*layers, ElementwiseAffine(event_shape)])
        self.base = StandardNormal(event_shape)

    def set_prior(self, mu: torch.Tensor, s: torch.Tensor) -> None:
        affine = self.transform.transforms[-1]
        with torch.no_grad():
            affine.log_scale.copy_(-s.log())
            affine.shift.copy_(-mu / s)


def gaussian_problem(seed: int, n: int = 3, d: int = 4, sigma: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(d, generator=g)
    s = 0.5 + torch.rand(d, generator=g)
    model = GaussianFlow((d,))
    model.set_prior(mu, s)
    x = mu + s * torch.randn(n, d, generator=g)
    y = add_noise(x, GaussianNoise(sigma), g)
    post_mean = (s**2 * y + sigma**2 * mu) / (s**2 + sigma**2)
    post_var = (s**2 * sigma**2 / (s**2 + sigma**2)).expand_as(y)
    return model.eval(), y, post_mean, post_var


@pytest.mark.parametrize("method", ["mala", "flow-latent"])
def test_gaussian_posterior_matches_closed_form(method):
    torch.manual_seed(0)
    seed = int(torch.randint(0, 2**31, ()).item())  # fresh problem each run; the seed is in the message
    model, y, post_mean, post_var = gaussian_problem(seed)
    s = 400
    gen = torch.Generator().manual_seed(seed)
    res = denoise(model, y, "gaussian:0.5", num_samples=s, num_steps=160, method=method, generator=gen)
    assert res.method == method and res.steps == 160 and res.burn_in == 80
    assert res.samples.shape == (len(y), s, y.shape[1])
    assert 0.4 < res.acceptance < 0.8, res.describe()
    # final states of s independent chains: the mean is within 4.5 standard errors, the variance within
    # 4.5 standard errors of a sample variance (√(2/(s−1)) relative), per value
    samples = res.samples
    se = (post_var / s).sqrt()
    assert ((samples.mean(1) - post_mean).abs() < 4.5 * se).all(), (seed, samples.mean(1), post_mean)
    rel = samples.var(1) / post_var - 1
    assert (rel.abs() < 4.5 * math.sqrt(2 / (s - 1))).all(), (seed, rel)
    # the running posterior mean and std (every state after burn-in) agree as well
    assert ((res.mean - post_mean).abs() < 4.5 * se).all()
    assert ((res.std / post_var.sqrt() - 1).abs() < 0.2).all()


def test_flow_latent_keeps_samples_in_the_logit_domain():
    g = torch.Generator().manual_seed(1)
    model = GaussianFlow((5,), logit=True).eval()
    perturb_parameters(model, 0.5)
    x = torch.rand(2, 5, generator=g)
    y = add_noise(x, "gaussian:0.2", g)
    for method in ("flow-latent", "mala"):
        res = denoise(model, y, "gaussian:0.2", num_samples=4, num_steps=40, method=method, generator=g)
        m = 0.05 / 0.9
        assert res.samples.min() > -m and res.samples.max() < 1 + m, method
        assert torch.isfinite(res.mean).all() and res.acceptance > 0, res.describe()


def enumerated_posterior(model, y: torch.Tensor, rate: float) -> torch.Tensor:
    """p(x | y) over all 2^D configurations (rows in itertools.product order), shape (N, 2^D)."""
    d = y.shape[1]
    grid = torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)))
    with torch.no_grad():
        log_prior = model.log_prob(grid)
    log_lik = FlipNoise(rate).log_likelihood(
        y[:, None, :].expand(-1, len(grid), -1).reshape(-1, d), grid.repeat(len(y), 1)
    )
    return torch.softmax(log_prior + log_lik.reshape(len(y), -1), 1)


@pytest.mark.parametrize("name", ["fvsbn", "nade"])
def test_flip_sampler_matches_enumeration(name):
    torch.manual_seed(0)
    check_flip_sampler(name, int(torch.randint(0, 2**31, ()).item()))


def check_flip_sampler(name: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    d, rate, s = 8, 0.2, 1000
    options = {"nade": {"hidden_size": 8}}.get(name, {})
    model = dgm.build(name, event_shape=(d,), support="binary", **options)
    torch.manual_seed(seed)
    perturb_parameters(model, 1.0)
    model.eval()
    x = model.sample(2, generator=g)
    y = add_noise(x, f"flip:{rate}", g)
    res = denoise(model, y, f"flip:{rate}", num_samples=s, num_steps=25, burn_in=5, generator=g)
    assert res.method == "flip-mh" and res.steps == 25 and res.step_size is None
    exact = enumerated_posterior(model, y, rate)
    radix = 2 ** torch.arange(d - 1, -1, -1)
    for i in range(len(y)):
        idx = (res.samples[i].long() * radix).sum(1)
        empirical = torch.bincount(idx, minlength=2**d).float() / s
        tv = 0.5 * (empirical - exact[i]).abs().sum().item()
        # the total variation of s exact draws, for scale (its mean over 20 repetitions)
        draws = torch.multinomial(exact[i], s * 20, replacement=True, generator=g).reshape(20, s)
        ref = torch.stack([torch.bincount(r, minlength=2**d).float() / s for r in draws])
        tv_exact = 0.5 * (ref - exact[i]).abs().sum(1)
        assert tv < tv_exact.mean() + 4 * tv_exact.std() + 0.02, (seed, tv, tv_exact.mean())
        marginal = (exact[i][:, None] * (idx.new_tensor(range(2**d))[:, None] // radix % 2)).sum(0)
        assert (res.mean[i] - marginal).abs().max() < 0.05, (seed, res.mean[i], marginal)


def hand_set_vae(decoder: str, pattern: torch.Tensor, log_scale: float = 0.0):
    """A VAE whose decoder ignores z and outputs ``pattern`` (logits or means): p(x) is then exactly the
    decoder's distribution, so the posterior of x given y is known in closed form per value."""
    d = len(pattern)
    support = "binary" if decoder == "bernoulli" else "real"
    model = dgm.build(
        "vae", event_shape=(d,), support=support, latent_dim=2, hidden_sizes=[8], decoder=decoder
    )
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.zero_()
        last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.copy_(pattern)
        if decoder == "gaussian":
            model.likelihood.log_scale.fill_(log_scale)
    return model.eval()


def test_vae_bernoulli_posterior_is_exact_and_improves_accuracy():
    g = torch.Generator().manual_seed(2)
    d, rate = 16, 0.15
    logits = 3.0 * (2 * (torch.arange(d) % 2).float() - 1)  # a strong prior: alternate 0 / 1
    model = hand_set_vae("bernoulli", logits)
    x = torch.bernoulli(torch.sigmoid(logits).expand(20, d), generator=g)
    y = add_noise(x, FlipNoise(rate), g)
    res = denoise(model, y, f"flip:{rate}", num_samples=4, num_steps=30, generator=g)
    assert res.method == "vae-latent" and res.samples.shape == (20, 4, d)
    exact = torch.sigmoid(logits + math.log((1 - rate) / rate) * (2 * y - 1))
    assert torch.allclose(res.mean, exact, atol=1e-4)
    assert set(res.samples.unique().tolist()) <= {0.0, 1.0}
    error_noisy = (y != x).float().mean()
    error_post = ((res.mean > 0.5).float() != x).float().mean()
    assert error_post < error_noisy
    assert psnr(x, res.mean).mean > psnr(x, y).mean


def test_vae_gaussian_posterior_is_exact():
    g = torch.Generator().manual_seed(3)
    d, sigma, s_dec = 6, 0.4, 0.3
    mu = torch.randn(d, generator=g)
    model = hand_set_vae("gaussian", mu, math.log(s_dec))
    x = mu + s_dec * torch.randn(10, d, generator=g)
    y = add_noise(x, f"gaussian:{sigma}", g)
    res = denoise(model, y, f"gaussian:{sigma}", num_samples=300, num_steps=20, generator=g)
    assert res.method == "vae-latent"
    s_dec = model.decode(torch.zeros(1, 2)).base_dist.scale[0, 0].item()  # log-scales are soft-clamped
    assert s_dec == pytest.approx(0.3, rel=1e-2)
    exact_mean = (s_dec**2 * y + sigma**2 * mu) / (s_dec**2 + sigma**2)
    exact_std = s_dec * sigma / math.sqrt(s_dec**2 + sigma**2)
    assert torch.allclose(res.mean, exact_mean, atol=1e-4)
    assert torch.allclose(res.std, torch.full_like(res.std, exact_std), atol=1e-3)
    se = exact_std / math.sqrt(300)
    assert ((res.samples.mean(1) - exact_mean).abs() < 4.5 * se).all()
    assert psnr(x, res.mean).mean > psnr(x, y).mean


def test_vae_trained_prior_denoises():
    """A VAE trained briefly on two prototype patterns (plus a little noise) removes flip noise."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    d = 16
    protos = torch.stack([(torch.arange(d) < d // 2).float(), (torch.arange(d) % 2).float()])
    data = protos[torch.randint(2, (400,), generator=g)]
    data = torch.where(torch.rand(data.shape, generator=g) < 0.02, 1 - data, data)
    model = dgm.build("vae", event_shape=(d,), support="binary", latent_dim=2, hidden_sizes=[32])
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(80):
        batch = data[torch.randint(len(data), (64,), generator=g)]
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    model.eval()
    x = protos[torch.randint(2, (40,), generator=g)]
    y = add_noise(x, "flip:0.2", g)
    res = denoise(model, y, "flip:0.2", num_samples=4, num_steps=60, generator=g)
    error_noisy = (y != x).float().mean().item()
    error_post = ((res.mean > 0.5).float() != x).float().mean().item()
    assert error_post < 0.5 * error_noisy, (error_post, error_noisy)
    # pooled over the batch: a 16-value image often has no flipped value at all (PSNR = inf)
    assert (
        psnr(x.reshape(1, -1), res.mean.reshape(1, -1)).mean
        > psnr(x.reshape(1, -1), y.reshape(1, -1)).mean + 3
    )


def test_psnr_on_known_inputs():
    x = torch.zeros(2, 1, 4, 4)
    x_hat = x.clone()
    x_hat[0] += 0.1  # MSE 0.01 → 20 dB
    x_hat[1, 0, 0, 0] = 1.0  # MSE 1/16 → 10 log10(16) dB
    out = psnr(x, x_hat)
    assert torch.allclose(out.per_image, torch.tensor([20.0, 10 * math.log10(16)]), atol=1e-4)
    assert out.mean == pytest.approx((20.0 + 10 * math.log10(16)) / 2, abs=1e-4)
    assert psnr(255 * x, 255 * x_hat, data_range=255).per_image[0].item() == pytest.approx(20.0, abs=1e-4)
    assert math.isinf(psnr(x, x).mean)
    # Gaussian noise of σ on data in [0, 1]: PSNR ≈ −20 log10 σ
    g = torch.Generator().manual_seed(5)
    clean = torch.rand(50, 100, generator=g)
    assert psnr(clean, add_noise(clean, "gaussian:0.1", g)).mean == pytest.approx(20.0, abs=0.3)


def test_noise_specs_and_add_noise():
    assert parse_noise("gaussian:0.1") == GaussianNoise(0.1)
    assert parse_noise(" Flip:0.05 ") == FlipNoise(0.05)
    assert parse_noise(FlipNoise(0.2)).spec == "flip:0.2"
    g = torch.Generator().manual_seed(6)
    x = torch.bernoulli(torch.full((200, 50), 0.3), generator=g)
    y = add_noise(x, "flip:0.1", g)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert (y != x).float().mean().item() == pytest.approx(0.1, abs=0.01)
    y2 = add_noise(x, "flip:0.1", torch.Generator().manual_seed(6))
    y3 = add_noise(x, "flip:0.1", torch.Generator().manual_seed(6))
    assert torch.equal(y2, y3)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("gaussian:0", "sigma must be > 0"),
        ("gaussian:-1", "sigma must be > 0"),
        ("gaussian:nan", "finite"),
        ("flip:0.5", r"in \(0, 0.5\)"),
        ("flip:0", r"in \(0, 0.5\)"),
        ("flip:1.2", r"in \(0, 0.5\)"),
        ("poisson:1", "unknown noise"),
        ("gaussian", "needs a number"),
        ("gaussian:abc", "needs a number"),
        (0.1, "noise must be"),
    ],
)
def test_bad_noise_specs(spec, match):
    with pytest.raises(ConfigError, match=match) as e:
        parse_noise(spec)
    assert "\n" not in str(e.value)


def test_errors_are_one_line():
    flow, y, _, _ = gaussian_problem(7)
    binary = dgm.build("fvsbn", event_shape=(4,), support="binary").eval()
    bad = y.clone()
    bad[0, 0] = float("nan")
    cases = [
        (lambda: denoise(flow, bad, "gaussian:0.1"), DataError, "NaN"),
        (lambda: denoise(flow, y[:, :3], "gaussian:0.1"), DataError, "shape"),
        (lambda: denoise(binary, y, "gaussian:0.1"), ConfigError, "needs a real-valued model"),
        (lambda: denoise(flow, y, "flip:0.1"), ConfigError, "needs a binary model"),
        (lambda: denoise(binary, torch.full((2, 4), 0.5), "flip:0.1"), DataError, "non-integer"),
        (lambda: denoise(flow, y, "gaussian:0.1", method="vae-latent"), ConfigError, "not a VAE"),
        (lambda: denoise(flow, y, "gaussian:0.1", method="gibbs"), ConfigError, "unknown denoising method"),
        (lambda: denoise(flow, y, "gaussian:0.1", num_steps=0), ConfigError, "num_steps"),
        (lambda: denoise(flow, y, "gaussian:0.1", num_steps=10, burn_in=10), ConfigError, "burn_in"),
        (lambda: denoise(flow, y, "gaussian:0.1", num_samples=0), ConfigError, "num_samples"),
        (lambda: add_noise(torch.full((2, 3), 0.5), "flip:0.1"), DataError, "binary"),
        (lambda: psnr(torch.zeros(2, 3), torch.zeros(2, 4)), DataError, "shape"),
        (lambda: psnr(torch.zeros(2, 3), torch.zeros(2, 3), data_range=0), ConfigError, "data_range"),
    ]
    for fn, err, match in cases:
        with pytest.raises(err, match=match) as e:
            fn()
        assert "\n" not in str(e.value), str(e.value)


def test_method_selection():
    assert select_method(gaussian_problem(8)[0], "gaussian:0.1") == "flow-latent"  # what auto picks
    flow, _, _, _ = gaussian_problem(8)
    assert select_method(flow, "gaussian:0.1") == "flow-latent"
    binary = dgm.build("fvsbn", event_shape=(4,), support="binary")
    assert select_method(binary, "flip:0.1") == "flip-mh"
    vae = dgm.build("vae", event_shape=(4,), support="binary", latent_dim=2, hidden_sizes=[8])
    assert select_method(vae, "flip:0.1") == "vae-latent"
    assert select_method(vae, "flip:0.1", "flip-mh") == "flip-mh"
    maf = dgm.build("maf", event_shape=(4,), num_layers=1, hidden_sizes=[8])
    options = available_methods(maf, "gaussian:0.1")
    assert options["mala"] is None and options["flow-latent"] is None and options["flip-mh"] is not None


def test_seeded_runs_are_reproducible():
    flow, y, _, _ = gaussian_problem(9)
    a = denoise(
        flow, y, "gaussian:0.5", num_samples=3, num_steps=10, generator=torch.Generator().manual_seed(0)
    )
    b = denoise(
        flow, y, "gaussian:0.5", num_samples=3, num_steps=10, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(a.samples, b.samples) and torch.equal(a.mean, b.mean)
    assert "flow-latent" in a.describe() and "10 steps" in a.describe()
