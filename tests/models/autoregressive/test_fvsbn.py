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
