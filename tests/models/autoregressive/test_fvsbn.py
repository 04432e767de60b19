"""FVSBN: autoregressive structure, exact parameter counts, class-conditional normalisation, fitting."""

import pytest
import torch

import dgm
from tests.models.autoregressive.helpers import (
    assert_autoregressive,
    assert_autoregressive_by_perturbation,
    params_jacobian,
    recovers_target,
)
from tests.models.helpers import all_configurations, perturb_parameters


def logits_fn(model, context=None):
    return lambda x: model.conditionals(x, context).logits.reshape(len(x), model.num_dims, -1)


@pytest.mark.parametrize("ordering", ["natural", "random"])
def test_autoregressive_jacobian(ordering):
    model = dgm.build("fvsbn", event_shape=(8,), ordering=ordering, seed=int(torch.randint(99, ()))).double()
    perturb_parameters(model)
    x = torch.randint(0, 2, (8,)).double()
    assert_autoregressive(params_jacobian(logits_fn(model), x), model.ordering)


def test_categorical_conditionals_ignore_later_values():
    model = dgm.build("fvsbn", event_shape=(6,), support="categorical(4)", ordering="random")
    perturb_parameters(model)
    x = torch.randint(0, 4, (5, 6)).float()
    assert_autoregressive_by_perturbation(logits_fn(model), x, model.ordering, 4)


def test_num_parameters_closed_forms():
    D = 784
    assert dgm.build("fvsbn", event_shape=(D,)).num_parameters() == D * (D + 1) // 2 == 307_720
    # The masked-out weights are exactly the ones left out of the count.
    m = dgm.build("fvsbn", event_shape=(10,))
    assert m.num_parameters() == int(m.linear.mask.sum()) + 10
    k, D, C = 3, 6, 4
    assert dgm.build("fvsbn", event_shape=(D,), support=f"categorical({k})").num_parameters() == (k - 1) * (
        D + (k - 1) * D * (D - 1) // 2
    )
    assert dgm.build("fvsbn", event_shape=(D,), num_classes=C).num_parameters() == C * D + D * (D - 1) // 2


@pytest.mark.parametrize("support", ["binary", "categorical(3)"])
def test_class_conditional_normalises_for_every_class(support):
    k = 2 if support == "binary" else 3
    D = 8 if k == 2 else 5
    model = dgm.build("fvsbn", event_shape=(D,), support=support, num_classes=3)
    perturb_parameters(model)
    x = all_configurations(D, k)
    totals = [model.log_prob(x, torch.full((len(x),), c)).double().logsumexp(0).exp() for c in range(3)]
    assert torch.allclose(torch.stack(totals), torch.ones(3, dtype=torch.float64), atol=1e-5)
    a, b = model.log_prob(x[:4], torch.zeros(4)), model.log_prob(x[:4], torch.ones(4))
    assert not torch.allclose(a, b)  # the class matters
    with pytest.raises(dgm.DataError, match="class-conditional"):
        model.log_prob(x[:4])
    unconditional = dgm.build("fvsbn", event_shape=(D,), support=support)
    with pytest.raises(dgm.DataError, match="takes no context"):
        unconditional.log_prob(x[:4], torch.zeros(4))


def test_training_recovers_an_fvsbn():
    truth = dgm.build("fvsbn", event_shape=(4,))
    with torch.no_grad():
        truth.linear.weight.normal_(0, 2)
        truth.bias.normal_(0, 1)
        target = truth.log_prob(all_configurations(4)).exp()
    assert recovers_target("fvsbn", {}, target) < 0.05


def test_l1_penalty_is_the_map_objective_and_leaves_log_prob_alone():
    D, lam = 7, 0.03
    model = dgm.build("fvsbn", event_shape=(D,), l1=lam, ordering="random").double()
    perturb_parameters(model)
    plain = dgm.build("fvsbn", event_shape=(D,), ordering="random").double()
    plain.load_state_dict(model.state_dict())
    x = torch.randint(0, 2, (16, D)).double()
    kept = model.linear.weight * model.linear.mask
    assert torch.equal(model.log_prob(x), plain.log_prob(x))
    torch.testing.assert_close(plain.loss(x), -plain.log_prob(x).mean())
    torch.testing.assert_close(model.loss(x), -model.log_prob(x).mean() + lam * kept.abs().sum())
    assert model.config["l1"] == lam


def test_l1_shrinks_the_weights_of_independent_pixels_towards_zero():
    """Independent pixels: every true weight is 0. On 200 examples the maximum-likelihood weights pick up
    sampling noise; the Laplace prior's MAP sets them (up to Adam's jitter) to zero."""
    D = 5
    probs = torch.rand(D) * 0.6 + 0.2
    x = torch.bernoulli(probs.expand(200, D))

    def fit(l1):
        model = dgm.build("fvsbn", event_shape=(D,), l1=l1)
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / 1500)
        for _ in range(1500):
            opt.zero_grad()
            model.loss(x).backward()
            opt.step()
            sched.step()
        return model.linear.masked_weight().abs().sum().item()

    free, sparse = fit(0.0), fit(0.05)
    assert free > 0.3  # sampling noise on 200 examples
    assert sparse < 0.1 * free, (sparse, free)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "0.1"])
def test_l1_rejects_bad_values(bad):
    with pytest.raises(dgm.ConfigError, match="l1 must be"):
        dgm.build("fvsbn", event_shape=(4,), l1=bad)
