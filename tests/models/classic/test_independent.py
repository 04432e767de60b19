import math

import pytest
import torch

import dgm
from dgm.data.dataset import Dataset


def test_binary_fit_equals_smoothed_frequencies():
    n, d, alpha = 500, 12, 0.5
    p_true = torch.rand(d)
    x = (torch.rand(n, d) < p_true).float()
    x[:, 0] = 0  # a value never seen: smoothing must keep its probability positive
    model = dgm.build("independent", event_shape=(d,), alpha=alpha)
    dgm.train(model, x, progress=False)  # method "auto" uses the closed form
    expected = (x.sum(0) + alpha) / (n + 2 * alpha)
    assert torch.allclose(torch.sigmoid(model.logits), expected, atol=1e-6)
    assert torch.isfinite(model.log_prob(torch.ones(1, d))).all()


def test_categorical_fit_equals_smoothed_frequencies():
    n, d, k, alpha = 300, 5, 17, 1.0
    x = torch.randint(0, k, (n, d)).float()
    model = dgm.build("independent", event_shape=(d,), support=f"categorical({k})", alpha=alpha)
    list(model.fit(x))
    counts = torch.stack([(x == v).sum(0) for v in range(k)], 1).float()
    expected = (counts + alpha) / (n + k * alpha)
    assert torch.allclose(model.logits.softmax(-1), expected, atol=1e-6)
    assert model.num_parameters() == d * (k - 1)


def test_real_fit_is_gaussian_mle():
    x = torch.randn(2000, 3) * torch.tensor([0.5, 2.0, 1.0]) + torch.tensor([1.0, -2.0, 0.0])
    model = dgm.build("independent", event_shape=(3,), support="real")
    list(model.fit(x))
    assert torch.allclose(model.loc, x.mean(0), atol=1e-5)
    assert torch.allclose(model.log_scale.exp(), x.std(0, correction=0), atol=1e-5)
    expected = torch.distributions.Normal(x.mean(0), x.std(0, correction=0)).log_prob(x).sum(1)
    assert torch.allclose(model.log_prob(x), expected, atol=1e-4)


def test_gradient_training_reaches_the_closed_form_fit():
    d = 8
    x = (torch.rand(4000, d) < torch.linspace(0.1, 0.9, d)).float()
    exact = dgm.build("independent", event_shape=(d,), alpha=0.0)
    list(exact.fit(x))
    sgd = dgm.build("independent", event_shape=(d,))
    # Full batches: a constant-step minibatch iterate jitters around the optimum by about the tolerance.
    dgm.train(sgd, x, method="gradient", epochs=150, lr=0.05, batch_size=4000, progress=False)
    assert sgd.loss(x).item() == pytest.approx(exact.loss(x).item(), abs=2e-3)


def test_nll_of_uniform_model_is_d_log_2():
    model = dgm.build("independent", event_shape=(1, 4, 4))
    x = torch.randint(0, 2, (3, 1, 4, 4)).float()
    assert torch.allclose(-model.log_prob(x), torch.full((3,), 16 * math.log(2)))
    assert dgm.evaluate(model, Dataset("t", "test", x))["bits_per_dim"] == pytest.approx(1.0)
