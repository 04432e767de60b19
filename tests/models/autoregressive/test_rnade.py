"""RNADE: normalisation by 2-D numerical integration, autoregressive structure, fast == naive, fitting."""

import math

import pytest
import torch

import dgm
import dgm.models.autoregressive.nade as nade_module
from tests.models.autoregressive.helpers import assert_autoregressive, params_jacobian
from tests.models.helpers import perturb_parameters


def build(D=2, H=5, K=3, **kw):
    model = dgm.build("rnade", event_shape=(D,), hidden_size=H, num_components=K, **kw).double()
    perturb_parameters(model, 0.3)  # moderate: scales stay near 1, so a grid resolves the density
    with torch.no_grad():  # ReLU units grow with |x|; keep the log-scales from following them far out
        model.V[:, 2 * K :] *= 0.1
    return model


def integrate_2d(model, context=None, half_width=12.0, n=601) -> float:
    t = torch.linspace(-half_width, half_width, n, dtype=torch.float64)
    grid = torch.cartesian_prod(t, t)
    labels = None if context is None else torch.full((len(grid),), context)
    with torch.no_grad():
        density = model.log_prob(grid, labels).exp().reshape(n, n)
    return torch.trapezoid(torch.trapezoid(density, t, dim=1), t).item()


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("ordering", ["natural", "reverse"])
def test_integrates_to_one_in_2d(activation, ordering):
    model = build(activation=activation, ordering=ordering)
    assert integrate_2d(model) == pytest.approx(1.0, abs=1e-4)


def test_class_conditional_integrates_to_one_for_every_class():
    model = build(num_classes=3)
    with torch.no_grad():
        model.class_bias.weight.normal_()
    totals = [integrate_2d(model, c) for c in range(3)]
    assert totals == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    x = torch.randn(4, 2, dtype=torch.float64)
    assert not torch.allclose(model.log_prob(x, torch.zeros(4)), model.log_prob(x, torch.ones(4)))


def test_autoregressive_jacobian():
    model = build(D=7, ordering="random", seed=int(torch.randint(99, ())))
    x = torch.randn(7, dtype=torch.float64)
    assert_autoregressive(params_jacobian(lambda v: model.params(v), x), model.ordering)


@pytest.mark.parametrize("ordering, activation", [("random", "relu"), ("natural", "sigmoid")])
def test_fast_equals_naive_with_input_gradient(monkeypatch, ordering, activation):
    monkeypatch.setattr(nade_module, "_REAL_CHUNK_ELEMENTS", 2 * 2 * 5)  # several chunks, a ragged last one
    model = build(D=20, ordering=ordering, activation=activation)
    x = torch.randn(5, 20, dtype=torch.float64, requires_grad=True)
    fast, naive = model.log_prob(x), model.log_prob_naive(x)
    assert torch.allclose(fast, naive, rtol=0, atol=1e-12)
    wrt = [x, *model.parameters()]
    for a, b in zip(torch.autograd.grad(fast.sum(), wrt), torch.autograd.grad(naive.sum(), wrt), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


def test_num_parameters_closed_form():
    D, H, K = 6, 5, 4
    model = dgm.build("rnade", event_shape=(D,), hidden_size=H, num_components=K)
    # Mixture logits are shift-invariant (one redundant row per dimension); W's last column is unused.
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) - H - D * (H + 1)


def test_samples_follow_the_density():
    """Moments of many samples match those of the density integrated on a grid (1-D marginals)."""
    model = build(D=2, H=4, K=2)
    s = model.sample(40_000, generator=torch.Generator().manual_seed(0)).double()
    t = torch.linspace(-12, 12, 601, dtype=torch.float64)
    grid = torch.cartesian_prod(t, t)
    with torch.no_grad():
        density = model.log_prob(grid).exp().reshape(601, 601)
    marginal0 = torch.trapezoid(density, t, dim=1)
    mean0 = torch.trapezoid(marginal0 * t, t).item()
    std0 = math.sqrt(torch.trapezoid(marginal0 * (t - mean0) ** 2, t).item())
    assert s[:, 0].mean().item() == pytest.approx(mean0, abs=4 * std0 / math.sqrt(40_000))
    assert s[:, 0].std().item() == pytest.approx(std0, rel=0.03)


def test_fits_a_correlated_gaussian():
    """Trained with dgm.train on a 2-D Gaussian with correlation 0.8, the held-out NLL nears its entropy
    (2.33 nats; an independent fit would score 2.84)."""
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    x = torch.randn(3000, 2, generator=g) @ torch.linalg.cholesky(cov).T
    torch.manual_seed(0)
    model = dgm.build("rnade", event_shape=(2,), hidden_size=16, num_components=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dgm.train(model, x[:2500], x[2500:], epochs=40, lr=0.02, batch_size=250, patience=8, progress=False)
    finally:
        torch.set_num_threads(threads)
    entropy = 0.5 * torch.logdet(2 * math.pi * math.e * cov).item()
    assert -model.log_prob(x[2500:]).mean().item() < entropy + 0.15
