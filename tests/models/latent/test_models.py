"""Model-specific properties of the latent-variable family (the shared contract is in test_common.py)."""

import itertools
import math

import pytest
import torch
from torch.distributions import Categorical, MultivariateNormal

import dgm
from dgm.data.dataset import Dataset
from dgm.models.latent.decoders import DiscretizedLogistic, Likelihood
from dgm.models.latent.ssvae import semi_supervised
from tests.models.helpers import all_configurations

torch.set_num_threads(1)


def perturbed(model, scale=0.5):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model


# ------------------------------------------------------------------------------------------ decoders
def test_discretized_logistic_normalises_and_samples_its_probabilities():
    k = 6
    loc = torch.tensor([-3.0, 0.2, 2.5, 5.0, 40.0], dtype=torch.float64)
    scale = torch.tensor([0.3, 1.0, 0.05, 2.0, 0.5], dtype=torch.float64)
    d = DiscretizedLogistic(loc, scale, k)
    values = torch.arange(k, dtype=torch.float64)[:, None].expand(k, 5)
    probs = d.log_prob(values).exp()
    assert torch.allclose(probs.sum(0), torch.ones(5, dtype=torch.float64), atol=1e-12)

    # Against the difference of logistic CDFs computed directly.
    def cdf(t):
        return torch.sigmoid((t - loc) / scale)

    direct = torch.stack([cdf(v + 0.5) - cdf(v - 0.5) for v in torch.arange(k, dtype=torch.float64)])
    direct[0], direct[-1] = cdf(torch.tensor(0.5)), 1 - cdf(torch.tensor(k - 1.5))
    assert torch.allclose(probs, direct, atol=1e-10)
    s = d.sample((50_000,), generator=torch.Generator().manual_seed(0))
    freq = torch.stack([(s == v).double().mean(0) for v in range(k)])
    assert (freq - probs).abs().max() < 0.01


def test_discretized_logistic_is_finite_far_from_its_location():
    d = DiscretizedLogistic(torch.tensor([1e4, -1e4, 3.0]), torch.tensor([1e-4, 1e-4, 1e-5]), 256)
    lp = d.log_prob(torch.tensor([[0.0, 255.0, 128.0]]))
    assert torch.isfinite(lp).all() and (lp < 0).all()


@pytest.mark.parametrize(
    ("support", "kind"),
    [
        ("binary", "bernoulli"),
        ("categorical(4)", "categorical"),
        ("categorical(4)", "discretized-logistic"),
        ("real", "gaussian"),
    ],
)
def test_likelihood_kinds(support, kind):
    model = dgm.build("vae", event_shape=(5,), support=support, decoder=kind, latent_dim=2, hidden_sizes=[4])
    assert model.likelihood.kind == kind
    x = model.sample(7, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(model.log_prob(x)).all()
    assert model.reconstruct(x).shape == x.shape


def test_auto_decoder_and_bad_decoder():
    from dgm.core.support import Support

    assert Likelihood(Support.parse("categorical(256)"), 3).kind == "discretized-logistic"
    assert Likelihood(Support.parse("categorical(17)"), 3).kind == "categorical"
    with pytest.raises(dgm.ConfigError, match="does not model"):
        dgm.build("vae", event_shape=(4,), support="binary", decoder="gaussian")


# ------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"hidden_sizes": [3, -1]}, "hidden_sizes"),
        ({"gradient": "magic"}, "gradient"),
        ({"num_train_samples": 0}, "num_train_samples"),
        ({"beta": -1.0}, "beta"),
        ({"kl_warmup": -3}, "kl_warmup"),
        ({"architecture": "conv"}, "image"),
        ({"activation": "swish"}, "activation"),
    ],
)
def test_bad_options_raise_config_errors(options, match):
    with pytest.raises(dgm.ConfigError, match=match):
        dgm.build("vae", event_shape=(4,), **options)


def test_bad_estimate_arguments_raise_data_errors():
    model = dgm.build("vae", event_shape=(4,), latent_dim=2, hidden_sizes=[4])
    x = torch.zeros(2, 4)
    for kwargs, match in [
        ({"num_samples": 0}, "num_samples"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"prior_fraction": 1.5}, "prior_fraction"),
    ]:
        with pytest.raises(dgm.DataError, match=match):
            model.log_prob(x, **kwargs)
    with pytest.raises(dgm.DataError, match="context"):
        model.log_prob(x, torch.zeros(2, dtype=torch.long))
    with pytest.raises(dgm.DataError, match="shape"):
        model.decode(torch.zeros(3, 5))


def test_conv_architecture_on_images():
    model = dgm.build(
        "vae", event_shape=(1, 7, 5), architecture="conv", channels=[4, 8], hidden_sizes=[16], latent_dim=3
    )
    x = torch.randint(0, 2, (6, 1, 7, 5)).float()
    assert model.log_prob(x, num_samples=3).shape == (6,)
    loss = model.loss(x)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.sample(4, generator=torch.Generator().manual_seed(0)).shape == (4, 1, 7, 5)
    assert model.interpolate(x[:2], x[2:4], steps=5).shape == (2, 5, 1, 7, 5)
    assert model.reconstruct(x).shape == x.shape


def test_beta_weights_the_kl_and_elbo_terms_add_up():
    model = perturbed(dgm.build("vae", event_shape=(6,), latent_dim=2, hidden_sizes=[8]))
    x = torch.randint(0, 2, (9, 6)).float()
    e = model.elbo(x)
    assert torch.allclose(e.elbo, e.reconstruction - e.kl) and (e.kl >= 0).all()
    torch.manual_seed(0)
    terms = model.training_terms(x)
    beta0 = dgm.build({**model.config, "beta": 0.0})
    beta0.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    assert torch.allclose(beta0.loss(x), -terms["reconstruction"].mean())
    _, metrics = model.loss_and_metrics(x)
    assert set(metrics) >= {"kl", "rec", "nelbo"}


@pytest.mark.parametrize("name", ["vae", "hvae"])
def test_kl_warmup_raises_the_kl_weight_linearly_then_holds_it(name):
    """Training step t (0-based) weighs the KL by beta · min(1, (t+1)/T); evaluation, the reported ELBO
    and a resumed copy follow the same schedule."""
    T, beta = 4, 0.8
    small = {
        "vae": {"latent_dim": 2, "hidden_sizes": [8]},
        "hvae": {"latent_dims": [3, 2], "hidden_sizes": [[8], [5]]},
    }
    model = perturbed(dgm.build(name, event_shape=(6,), beta=beta, kl_warmup=T, **small[name]))
    x = torch.randint(0, 2, (9, 6)).float()
    for t in range(T + 2):
        if t == 2:  # a copy resumed from the state dict continues the schedule
            copy = dgm.build(model.config)
            copy.load_state_dict(model.state_dict())
            model = copy
        torch.manual_seed(t)
        terms = model.training_terms(x)
        weight = beta * min(1.0, (t + 1) / T)
        expected = terms["reconstruction"] - weight * terms["kl"]
        assert torch.allclose(terms["objective"], expected, atol=1e-6), t
        assert int(model.train_steps) == t + 1
    with torch.no_grad():  # no step is counted without gradients, and the weight stays beta
        terms = model.training_terms(x)
    assert int(model.train_steps) == T + 2
    assert torch.allclose(terms["objective"], terms["reconstruction"] - beta * terms["kl"], atol=1e-6)
    model.eval()
    e = model.elbo(x)
    assert torch.allclose(e.elbo, e.reconstruction - e.kl)


def test_active_units_count_posterior_means_that_move_with_x():
    x = torch.randint(0, 2, (300, 6)).float()
    vae = dgm.build("vae", event_shape=(6,), latent_dim=3, hidden_sizes=[8])
    assert vae.active_units(x) == [0]  # q(z | x) starts as the prior for every x
    assert perturbed(vae).active_units(x) == [3]
    hvae = dgm.build("hvae", event_shape=(6,), latent_dims=[4, 2], hidden_sizes=[[8], [5]])
    assert hvae.active_units(x) == [0, 0]
    perturbed(hvae)
    with torch.no_grad():  # z_1's posterior no longer depends on x: every unit of both layers is dead,
        hvae.encoder[0].net[-1].weight.zero_()  # though q(z_2 | z_1) moves with each draw of z_1
    means = hvae.posterior_means(x, generator=torch.Generator().manual_seed(0))
    assert [m.shape for m in means] == [(300, 4), (300, 2)]
    assert hvae.active_units(x) == [0, 0]  # exactly: every x shares the noise of the means' estimate
    perturbed(hvae)
    with torch.no_grad():
        # z_2's posterior mean is a Monte Carlo average over draws of z_1, which smooths its variation
        # with x: after a bare N(0, 0.25) perturbation it stayed under the 0.01 threshold in about 7 % of
        # draws. Steeper in z_1, it moves with x in every one of 1,000 draws tried.
        hvae.encoder[1][-1].weight.mul_(10)
    alive = hvae.active_units(x)
    assert alive[0] >= 1 and alive[1] >= 1


def test_iwae_bound_is_tighter_than_the_elbo_on_average():
    vae = perturbed(dgm.build("vae", event_shape=(8,), latent_dim=2, hidden_sizes=[8]))
    iwae = dgm.build({**vae.config, "num_train_samples": 20})
    iwae.load_state_dict(vae.state_dict())
    x = torch.randint(0, 2, (64, 8)).float().repeat(20, 1)
    with torch.no_grad():
        assert iwae.loss(x) < vae.loss(x)
    assert dgm.build("iwae", event_shape=(8,)).num_train_samples == 50


def test_training_lowers_the_negative_elbo_and_logs_kl_and_rec():
    g = torch.Generator().manual_seed(0)
    centres = (torch.rand(4, 16, generator=g) < 0.5).float() * 0.8 + 0.1
    x = torch.bernoulli(centres[torch.randint(0, 4, (400,), generator=g)], generator=g)
    model = dgm.build("vae", event_shape=(16,), latent_dim=2, hidden_sizes=[32])
    before = -model.elbo(x).elbo.mean().item()
    res = dgm.train(model, x, epochs=8, batch_size=50, lr=1e-2, progress=False)
    after = -model.elbo(x).elbo.mean().item()
    assert after < before - 1.0
    assert {"kl", "rec", "nelbo"} <= set(res.history[-1])


def test_reinforce_training_also_learns():
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((300, 10), 0.8), generator=g)
    model = dgm.build("vae", event_shape=(10,), latent_dim=2, hidden_sizes=[16], gradient="reinforce")
    before = -model.elbo(x).elbo.mean().item()
    dgm.train(model, x, epochs=5, batch_size=50, lr=1e-2, progress=False)
    assert -model.elbo(x).elbo.mean().item() < before - 0.5
    assert model.baseline.item() != 0.0  # the moving-average baseline followed the integrand


# ------------------------------------------------------------------------------------------ cvae
def test_cvae_marginal_sums_out_the_label():
    model = perturbed(dgm.build("cvae", event_shape=(5,), num_classes=3, latent_dim=2, hidden_sizes=[8]))
    x = torch.randint(0, 2, (6, 5)).float()
    # With the default seeded draws, estimates on the same batch use the same noise, so the enumeration
    # inside log_prob can be compared exactly with explicit per-class estimates on the repeated batch.
    xs, ys = x.repeat(3, 1), torch.arange(3).repeat_interleave(6)
    per_class = model.log_prob(xs, ys, num_samples=500).reshape(3, 6)
    marginal = model.log_prob(x, num_samples=500)
    assert torch.allclose(marginal, per_class.logsumexp(0) - math.log(3), atol=1e-6)
    # Rows with a label of −1 are summed out, the others conditioned on, from one stream of draws
    # (unlabelled rows first): the same two calls on one generator reproduce it.
    labels = torch.tensor([0, -1, 2, -1, 1, 1])
    mixed = model.log_prob(x, labels, num_samples=500)
    g = torch.Generator().manual_seed(model.eval_seed)
    known = [0, 2, 4, 5]
    unknown_rows = model.log_prob(x[[1, 3]], num_samples=500, generator=g)
    known_rows = model.log_prob(x[known], labels[known], num_samples=500, generator=g)
    assert torch.allclose(mixed[[1, 3]], unknown_rows, atol=1e-6)
    assert torch.allclose(mixed[known], known_rows, atol=1e-6)
    with pytest.raises(dgm.DataError, match="out of range"):
        model.log_prob(x, torch.full((6,), 3))


def test_cvae_conditional_samples_and_grid():
    model = perturbed(dgm.build("cvae", event_shape=(3,), num_classes=2, latent_dim=2, hidden_sizes=[8]), 1.0)
    n = 20_000
    y = torch.ones(n, dtype=torch.long)
    s = model.sample(n, context=y, generator=torch.Generator().manual_seed(0))
    configs = all_configurations(3)
    p = model.log_prob(configs, torch.ones(8, dtype=torch.long), num_samples=5000, prior_fraction=0.5).exp()
    freq = torch.bincount((s.long() * torch.tensor([4, 2, 1])).sum(1), minlength=8).float() / n
    assert 0.5 * (freq - p).abs().sum() < 0.03
    grid = model.sample_grid(4, generator=torch.Generator().manual_seed(0))
    assert grid.shape == (2, 4, 3) and ((grid >= 0) & (grid <= 1)).all()
    with pytest.raises(dgm.ConfigError, match="num_classes"):
        dgm.build("vae", event_shape=(3,)).sample_grid(2)


# ------------------------------------------------------------------------------------------ gmvae
def test_gmvae_prior_is_the_mixture_density():
    model = perturbed(
        dgm.build("gmvae", event_shape=(4,), latent_dim=3, num_components=5, learn_weights=True)
    )
    z = torch.randn(13, 3) * 2
    comp = model._components().base_dist
    log_pi = torch.log_softmax(model.prior_logits, 0)
    by_hand = torch.stack(
        [
            log_pi[k] + MultivariateNormal(comp.loc[k], torch.diag(comp.scale[k] ** 2)).log_prob(z)
            for k in range(5)
        ]
    ).logsumexp(0)
    assert torch.allclose(model.prior().log_prob(z), by_hand, atol=1e-5)


def test_gmvae_prior_samples_follow_the_mixture():
    model = perturbed(
        dgm.build("gmvae", event_shape=(4,), latent_dim=1, num_components=3, learn_weights=True), 1.0
    )
    z = model.sample_latent(40_000, generator=torch.Generator().manual_seed(0))[:, 0]
    grid = torch.linspace(-80, 80, 16001)
    density = model.prior().log_prob(grid[:, None]).exp()
    cdf = torch.cat([torch.zeros(1), torch.cumulative_trapezoid(density, grid)])
    empirical = (z[None, :] <= grid[:, None]).float().mean(1)
    assert (cdf - empirical).abs().max() < 0.015  # Kolmogorov–Smirnov distance
    assert isinstance(Categorical(logits=model.prior_logits), Categorical)


# ------------------------------------------------------------------------------------------ hvae
def test_hvae_estimate_matches_quadrature():
    torch.manual_seed(5)
    model = perturbed(
        dgm.build("hvae", event_shape=(3,), latent_dims=[1, 1], hidden_sizes=[[4], [4]]).double(), 0.7
    )
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    g = torch.linspace(-12, 12, 801, dtype=torch.float64)
    z1, z2 = (t.reshape(-1, 1, 1).expand(-1, 3, 1) for t in torch.meshgrid(g, g, indexing="ij"))
    log_lik, log_prior = model._log_joint(x, None, (z1, z2))
    exact = (log_lik + log_prior).logsumexp(0) + 2 * (g[1] - g[0]).log()
    est = model.log_prob(x, num_samples=20_000, prior_fraction=0.5)
    assert torch.allclose(est, exact, atol=0.03)
    naive = model.naive_log_prob(x, num_samples=20_000)
    assert torch.allclose(naive, exact, atol=0.03)
    assert model.encode(x).batch_shape == (3,) and model.decode(torch.zeros(2, 1)).batch_shape == (2,)


def test_hvae_layerwise_options():
    with pytest.raises(dgm.ConfigError, match="one list"):
        dgm.build("hvae", event_shape=(4,), latent_dims=[3, 2], hidden_sizes=[[4]])
    model = dgm.build("hvae", event_shape=(4,), latent_dims=[4, 3, 2], hidden_sizes=[[5], [5], []])
    x = torch.randint(0, 2, (3, 4)).float()
    assert model.log_prob(x, num_samples=5).shape == (3,)
    assert [z.shape for z in model.sample_latent(2)] == [(2, 4), (2, 3), (2, 2)]


# ------------------------------------------------------------------------------------------ sbn
def test_sbn_exact_likelihood_normalises_and_the_estimate_converges_to_it():
    model = perturbed(dgm.build("sbn", event_shape=(8,), latent_dim=4, hidden_sizes=[6]), 1.0)
    x = all_configurations(8)
    exact = model.exact_log_prob(x)
    assert exact.double().logsumexp(0).exp().item() == pytest.approx(1.0, abs=1e-5)
    est = model.log_prob(x[::17], num_samples=20_000, prior_fraction=0.5)
    assert torch.allclose(est, exact[::17], atol=0.15)  # largest error over 20 seeds: 0.074
    with pytest.raises(dgm.DataError, match="enumerates"):
        dgm.build("sbn", event_shape=(4,), latent_dim=21).exact_log_prob(torch.zeros(1, 4))


def test_sbn_has_no_reparameterisation_gradient():
    with pytest.raises(dgm.ConfigError, match="reparameteri"):
        dgm.build("sbn", event_shape=(4,), gradient="reparam")
    model = dgm.build("sbn", event_shape=(4,), latent_dim=3)
    with pytest.raises(dgm.ConfigError, match="reparameteri"):
        model.loss(torch.zeros(2, 4), estimator="reparam")


def test_sbn_trains_with_reinforce_and_vimco():
    g = torch.Generator().manual_seed(2)
    centres = torch.tensor([[0.9] * 6 + [0.1] * 6, [0.1] * 6 + [0.9] * 6])
    x = torch.bernoulli(centres[torch.randint(0, 2, (400,), generator=g)], generator=g)
    for k in (1, 4):
        model = dgm.build("sbn", event_shape=(12,), latent_dim=3, num_train_samples=k)
        before = -model.exact_log_prob(x).mean().item()
        dgm.train(model, x, epochs=10, batch_size=50, lr=3e-2, progress=False)
        assert -model.exact_log_prob(x).mean().item() < before - 1.0


# ------------------------------------------------------------------------------------------ ssvae
def _two_class_data(n=400, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    centres = torch.tensor([[0.85] * (d // 2) + [0.15] * (d // 2), [0.15] * (d // 2) + [0.85] * (d // 2)])
    x = torch.bernoulli(centres[y], generator=g)
    return Dataset(name="two-class", split="train", x=x, y=y, support="binary", num_classes=2)


def test_semi_supervised_keeps_balanced_labels_and_oversamples_them():
    data = _two_class_data()
    semi = semi_supervised(data, labels_per_class=3, seed=0)
    labelled = semi.y >= 0
    original = semi.y[: len(data)]
    assert (original >= 0).sum() == 6 and torch.bincount(original[original >= 0]).tolist() == [3, 3]
    assert torch.equal(data.y[original >= 0], original[original >= 0])
    assert abs(labelled.sum().item() - (~labelled).sum().item()) <= 6  # about half of every batch
    plain = semi_supervised(data, labels_per_class=3, seed=0, oversample=False)
    assert len(plain) == len(data) and torch.equal(plain.y, original)
    with pytest.raises(dgm.DataError, match="fewer"):
        semi_supervised(data, labels_per_class=1000)


def test_ssvae_learns_to_classify_from_few_labels():
    torch.manual_seed(0)
    data = _two_class_data(seed=1)
    test = _two_class_data(n=300, seed=2)
    model = dgm.build(
        "ssvae",
        event_shape=(16,),
        num_classes=2,
        latent_dim=2,
        hidden_sizes=[32],
        classifier_hidden_sizes=[32],
    )
    dgm.train(
        model, semi_supervised(data, labels_per_class=2), epochs=3, batch_size=50, lr=1e-2, progress=False
    )
    result = dgm.evaluate(model, test, num_samples=20)
    assert result["accuracy"] > 0.9
    proba = model.predict_proba(test.x)
    assert torch.allclose(proba.sum(1), torch.ones(300)) and torch.equal(
        proba.argmax(1), model.predict(test.x)
    )


def test_ssvae_unlabelled_bound_uses_the_classifier():
    model = perturbed(
        dgm.build(
            "ssvae",
            event_shape=(5,),
            num_classes=3,
            latent_dim=2,
            hidden_sizes=[6],
            classifier_hidden_sizes=[6],
        )
    )
    x = torch.randint(0, 2, (4, 5)).float()
    # U(x) = Σ_y q(y|x) (−L(x, y)) + H(q(y|x)) with −L including log p(y), computed by hand.
    torch.manual_seed(0)
    unlabelled = model.training_terms(x, torch.full((4,), -1))["objective"]
    torch.manual_seed(0)
    xs = x.repeat(3, 1)
    ys = torch.arange(3).repeat_interleave(4)
    per = model._terms(xs, ys, 1, "reparam", 1.0, importance_weighted=False)["objective"].reshape(3, 4)
    q = model.predict_proba(x).T
    by_hand = (q * (per - math.log(3))).sum(0) - (q * q.log()).sum(0)
    assert torch.allclose(unlabelled, by_hand, atol=1e-5)
    labelled = model.training_terms(x, torch.tensor([0, 1, 2, 0]))
    assert (labelled["class_nll"] > 0).all()
    only_classifier = dgm.build({**model.config, "generative": False})
    loss, metrics = only_classifier.loss_and_metrics(x, torch.tensor([0, -1, 2, -1]))
    assert metrics["labelled_fraction"] == 0.5 and loss > 0


def test_ssvae_labelled_bound_weight():
    options = dict(
        event_shape=(5,), num_classes=3, latent_dim=2, hidden_sizes=[6], classifier_hidden_sizes=[6]
    )
    x = torch.randint(0, 2, (6, 5)).float()
    y = torch.tensor([0, -1, 2, -1, 1, -1])
    known = y >= 0
    # Weight 0 (the default): a labelled row is −α CE only, and no generative parameter hears from it.
    model = perturbed(dgm.build("ssvae", **options))
    t = model.training_terms(x, y)
    ce = torch.nn.functional.cross_entropy(model._class_logits(x[known]), y[known], reduction="none")
    assert torch.allclose(t["objective"][known], -model.alpha * ce)
    assert (t["reconstruction"][known] == 0).all() and (t["kl"][known] == 0).all()
    torch.manual_seed(0)
    alone = model.training_terms(x[~known], y[~known])["objective"]
    torch.manual_seed(0)
    assert torch.allclose(model.training_terms(x, y)["objective"][~known], alone, atol=1e-6)
    model.zero_grad()
    model.training_terms(x[known], y[known])["objective"].sum().backward()
    assert all(p.grad is None or (p.grad == 0).all() for p in model.decoder.parameters())
    assert all(p.grad is None or (p.grad == 0).all() for p in model.encoder.parameters())
    # Weight w: w (ELBO(x, y) + log p(y)) − α CE, eq. 9 scaled.
    weighted = dgm.build({**model.config, "labelled_bound_weight": 0.25})
    weighted.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    only = weighted.training_terms(x[known], y[known])["objective"]
    torch.manual_seed(0)
    bound = weighted._terms(x[known], y[known], 1, "reparam", 1.0, importance_weighted=False)["objective"]
    assert torch.allclose(only, 0.25 * (bound - math.log(3)) - weighted.alpha * ce, atol=1e-6)
    with pytest.raises(dgm.ConfigError, match="labelled_bound_weight"):
        dgm.build("ssvae", **options, labelled_bound_weight=-1.0)
    relu = dgm.build("ssvae", **options, activation="elu", classifier_activation="relu")
    assert any(isinstance(m, torch.nn.ReLU) for m in relu.encoder_y.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in relu.encoder.modules())


def test_every_latent_model_is_registered_as_an_estimate():
    names = {m["name"]: m for m in dgm.list_models()}
    for name in ("vae", "iwae", "cvae", "gmvae", "hvae", "ssvae", "sbn"):
        assert names[name]["family"] == "latent" and names[name]["exact"] == "estimate"


@pytest.mark.parametrize("name", ["vae", "hvae", "sbn", "gmvae"])
def test_naive_estimate_equals_all_prior_proposal(name):
    model = dgm.build(name, event_shape=(6,), **dgm.core.registry.get_entry(name).tiny)
    x = torch.randint(0, 2, (4, 6)).float()
    a = model.naive_log_prob(x, num_samples=50)
    b = model.log_prob(x, num_samples=50, prior_fraction=1.0)
    assert torch.equal(a, b)
    assert list(itertools.islice(model.encoder_parameters(), 1))
