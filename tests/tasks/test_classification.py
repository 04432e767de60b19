"""Generative classification: Bayes' rule posteriors sum to one and equal a hand computation on naive
Bayes; per-class models; priors; telling sources apart by likelihood."""

import math

import pytest
import torch

import dgm
from dgm.core.errors import ConfigError, DataError
from dgm.tasks.classification import (
    best_threshold,
    class_log_likelihoods,
    class_log_prior,
    classify,
    log_posterior,
    score_text,
    source_test,
)


def _naive_bayes(C=3, D=5):
    model = dgm.build("naive-bayes", event_shape=(D,), num_classes=C).eval()
    with torch.no_grad():
        model.logits.normal_()
        model.class_logits.normal_()
    return model


def test_naive_bayes_posteriors_equal_bayes_rule_by_hand():
    C, D = 3, 5
    model = _naive_bayes(C, D)
    x = torch.randint(2, (7, D)).float()
    y = torch.randint(C, (7,))
    res = classify(model, x, y)
    assert torch.allclose(res.log_posterior.exp().sum(1), torch.ones(7, dtype=torch.float64))
    # By hand: p(y) Π_d p(x_d | y), normalised over y.
    prior = model.class_logits.detach().softmax(0).double()
    p1 = model.logits.detach().sigmoid().double()  # (C, D)
    lik = torch.stack([(p1[c] ** x.double() * (1 - p1[c]) ** (1 - x.double())).prod(1) for c in range(C)], 1)
    joint = prior * lik
    assert torch.allclose(res.log_posterior.exp(), joint / joint.sum(1, keepdim=True), atol=1e-6)
    assert torch.allclose(res.log_posterior.exp().float(), model.predict_proba(x), atol=1e-5)
    assert torch.equal(res.predictions, joint.argmax(1))
    assert math.isclose(res.accuracy, float((joint.argmax(1) == y).double().mean()))
    assert math.isclose(
        res.mean_log_posterior,
        float((joint / joint.sum(1, keepdim=True)).log()[range(7), y].mean()),
        rel_tol=1e-6,
    )


def test_one_model_per_class_with_a_label_frequency_prior():
    D = 4
    models = [dgm.build("independent", event_shape=(D,)).eval() for _ in range(2)]
    with torch.no_grad():
        for m in models:
            m.logits.normal_()
    x = torch.randint(2, (6, D)).float()
    labels = torch.tensor([0, 0, 0, 1])
    prior = class_log_prior(2, labels, alpha=0.0)
    assert torch.allclose(prior.exp(), torch.tensor([0.75, 0.25], dtype=torch.float64))
    res = classify(models, x, log_prior=prior)
    ll = torch.stack([m.log_prob(x) for m in models], 1).double()
    expected = (ll + prior).log_softmax(1)
    assert torch.allclose(res.log_posterior, expected, atol=1e-6)
    assert torch.allclose(res.log_posterior.exp().sum(1), torch.ones(6, dtype=torch.float64))
    assert res.accuracy is None


def test_a_conditional_model_scores_every_label():
    model = dgm.build("fvsbn", event_shape=(5,), num_classes=4).eval()
    with torch.no_grad():
        model.bias.normal_()
    x = torch.randint(2, (3, 5)).float()
    ll = class_log_likelihoods(model, x, batch_size=2)
    for c in range(4):
        assert torch.allclose(ll[:, c].float(), model.log_prob(x, torch.full((3,), c)), atol=1e-6)
    post = classify(model, x).log_posterior
    assert torch.allclose(post, log_posterior(ll, class_log_prior(4)))


def test_what_cannot_classify_says_so():
    unconditional = dgm.build("independent", event_shape=(5,))
    x = torch.zeros(2, 5)
    with pytest.raises(ConfigError, match="not class-conditional"):
        classify(unconditional, x)
    with pytest.raises(ConfigError, match="discriminative"):
        classify(dgm.build("logistic-regression", event_shape=(5,), num_classes=2), x)
    with pytest.raises(DataError, match="different event shapes"):
        classify([unconditional, dgm.build("independent", event_shape=(6,))], x)
    with pytest.raises(DataError, match="labels must lie"):
        classify(_naive_bayes(), x, torch.tensor([0, 7]))
    with pytest.raises(DataError, match="do not match"):
        log_posterior(torch.zeros(2, 3), torch.zeros(2))


def test_sources_are_told_apart_by_likelihood():
    model = dgm.build("independent", event_shape=(40,)).eval()
    with torch.no_grad():
        model.logits.fill_(-3.0)  # mostly zeros
    a = torch.distributions.Bernoulli(probs=torch.full((60, 40), 0.02)).sample()
    b = torch.distributions.Bernoulli(probs=torch.full((60, 40), 0.7)).sample()
    res = source_test(model, a, b, generator=torch.Generator().manual_seed(0))
    assert res["accuracy"] == 1.0 and res["auroc"] == 1.0
    assert res["nll_per_dim_a"] < res["threshold"] < res["nll_per_dim_b"]
    assert best_threshold(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])) == 2.5


def test_score_text_chunks_a_string():
    vocab = "ab "
    model = dgm.build("independent", event_shape=(4,), support="categorical(3)").eval()
    scores = score_text(model, "ab ba abab", vocab)
    assert scores.shape == (2,)
    ids = torch.tensor([[0, 1, 2, 1], [0, 2, 0, 1]]).float()
    assert torch.allclose(scores.float(), model.log_prob(ids), atol=1e-6)
    with pytest.raises(DataError, match="not in the vocabulary"):
        score_text(model, "abcd", vocab)
    with pytest.raises(DataError, match="scores sequences of 4"):
        score_text(model, "ab", vocab)
