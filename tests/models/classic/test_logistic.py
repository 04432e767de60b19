"""Logistic regression: the discriminative baseline; agreement with scikit-learn and its interface."""

import numpy as np
import pytest
import torch

import dgm
from dgm.models.classic.logistic import LogisticRegression


def blobs(n=400, d=5, c=3):
    y = torch.randint(0, c, (n,))
    # Fixed, well-separated centres (distance 3·√2): random ones sometimes overlap and no classifier
    # reaches the accuracy the tests ask for.
    x = torch.randn(n, d, dtype=torch.float64) + 3 * torch.eye(c, d, dtype=torch.float64)[y]
    return x, y


def test_agrees_with_sklearn():
    from sklearn.linear_model import LogisticRegression as SkLR

    x, y = blobs()
    l2 = 1e-2
    model = LogisticRegression((5,), num_classes=3, l2=l2, tol=1e-12).double()
    list(model.fit((x, y)))
    # Same objective: sklearn minimises C Σ CE + ½‖W‖², ours mean CE + (l2/2)‖W‖², so C = 1 / (l2 N).
    sk = SkLR(C=1 / (l2 * len(x)), tol=1e-10, max_iter=10_000).fit(x.numpy(), y.numpy())
    xt, _ = blobs(200)
    ours = model.predict_proba(xt).detach().numpy()
    assert np.allclose(ours, sk.predict_proba(xt.numpy()), atol=1e-4)
    assert (model.predict(xt).numpy() == sk.predict(xt.numpy())).mean() > 0.99


def test_log_prob_is_the_label_likelihood_and_normalises_over_labels():
    model = LogisticRegression((4,), num_classes=5)
    with torch.no_grad():
        model.linear.weight.normal_()
        model.linear.bias.normal_()
    x = torch.randn(7, 4)
    total = torch.stack([model.log_prob(x, torch.full((7,), c)) for c in range(5)]).logsumexp(0)
    assert torch.allclose(total, torch.zeros(7), atol=1e-6)
    labels = model.sample(7, context=x, generator=torch.Generator().manual_seed(0))
    assert labels.shape == (7, 1) and labels.max() < 5


def test_trains_through_the_common_trainer_and_reports_accuracy():
    x, y = blobs(600)
    x = x.float()
    model = dgm.build("logistic-regression", event_shape=(5,), num_classes=3)
    res = dgm.train(
        model, (x[:500], y[:500]), (x[500:], y[500:]), method="gradient", epochs=20, lr=0.05, progress=False
    )
    assert res.method == "gradient"
    out = dgm.evaluate(
        model, dgm.data.Dataset(name="blobs", split="test", x=x[500:], y=y[500:], num_classes=3)
    )
    assert out["accuracy"] > 0.8 and out["bits_per_dim"] is None
    assert out["likelihood_of"].startswith("labels given inputs")


def test_discriminative_model_refuses_what_it_cannot_do():
    model = LogisticRegression((4,), num_classes=3)
    with pytest.raises(dgm.DataError, match="needs the labels"):
        model.log_prob(torch.zeros(2, 4))
    with pytest.raises(dgm.ConfigError, match="discriminative"):
        model.sample(3)
    with pytest.raises(dgm.DataError, match="no labels"):
        list(model.fit(torch.zeros(3, 4)))
    with pytest.raises(dgm.DataError, match="shape"):
        model.predict(torch.zeros(2, 5))
