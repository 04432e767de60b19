"""Bayesian networks: normalisation per structure, parameter counts, maximum likelihood, graph checks."""

import math
import random

import pytest
import torch

import dgm
from dgm.models.classic.bayesnet import BayesNet
from tests.models.helpers import all_configurations


def random_dag(num_vars: int, max_parents: int, rng: random.Random) -> list[list[int]]:
    """Parents drawn among earlier variables of a random permutation: always acyclic, rarely in order."""
    perm = list(range(num_vars))
    rng.shuffle(perm)
    parents = [[] for _ in range(num_vars)]
    for pos, var in enumerate(perm):
        parents[var] = rng.sample(perm[:pos], min(pos, rng.randint(0, max_parents)))
    return parents


def mixed_configurations(cards: list[int]) -> torch.Tensor:
    grids = torch.meshgrid(*[torch.arange(c) for c in cards], indexing="ij")
    return torch.stack([g.flatten() for g in grids], 1).float()


@pytest.mark.parametrize("structure", ["independent", "markov(1)", "markov(3)", "full", "dag"])
def test_normalises_over_all_inputs_with_mixed_cardinalities(structure):
    rng = random.Random(torch.randint(1 << 30, ()).item())
    cards = [rng.randint(2, 3) for _ in range(7)]
    s = random_dag(7, 3, rng) if structure == "dag" else structure
    model = BayesNet((7,), "categorical(3)", structure=s, cardinalities=cards)
    with torch.no_grad():
        model.logits.normal_(0, 2)
    total = model.log_prob(mixed_configurations(cards)).double().logsumexp(0).exp()
    assert total.item() == pytest.approx(1.0, abs=1e-5)
    for i in range(7):  # every table row is a distribution
        t = model.table(i)
        assert torch.allclose(t.sum(-1), torch.ones(()), atol=1e-6)


def test_num_parameters_closed_forms():
    D = 9
    cards = [2, 3, 2, 4, 2, 3, 2, 2, 3]
    support = "categorical(4)"
    assert BayesNet((D,), support, "independent", cardinalities=cards).num_parameters() == sum(
        k - 1 for k in cards
    )
    assert BayesNet((D,), support, "full", cardinalities=cards).num_parameters() == math.prod(cards) - 1
    for m in (1, 2, 3):
        expected = sum((cards[i] - 1) * math.prod(cards[max(0, i - m) : i]) for i in range(D))
        assert BayesNet((D,), support, f"markov({m})", cardinalities=cards).num_parameters() == expected
    # Binary Markov(m) chain on 784 pixels: 2^m parameters per pixel once it has m predecessors.
    assert BayesNet((784,), "binary", "markov(2)").num_parameters() == 1 + 2 + 4 * 782


def test_markov_follows_the_given_ordering():
    ordering = [3, 0, 4, 1, 2]
    model = BayesNet((5,), structure="markov(2)", ordering=ordering)
    assert model.parents == [[3], [0, 4], [4, 1], [], [3, 0]]
    assert model.order.index(3) < model.order.index(0) < model.order.index(4)


def test_fit_is_the_empirical_conditional_frequency():
    x = torch.randint(0, 2, (500, 4)).float()
    model = BayesNet((4,), structure=[[], [0], [0, 1], [2]], alpha=0.0)
    list(model.fit(x))
    t = model.table(2)  # p(x2 | x0, x1)
    for a in (0, 1):
        for b in (0, 1):
            rows = (x[:, 0] == a) & (x[:, 1] == b)
            assert t[a, b, 1].item() == pytest.approx(x[rows, 2].mean().item(), abs=1e-5)


def test_fit_recovers_a_known_network():
    rng = random.Random(0)
    parents = random_dag(6, 2, rng)
    truth = BayesNet((6,), structure=parents)
    with torch.no_grad():
        truth.logits.normal_(0, 1.5)
    x = truth.sample(100_000, generator=torch.Generator().manual_seed(1))
    model = BayesNet((6,), structure=parents, alpha=1.0)
    list(model.fit(x))
    configs = all_configurations(6)
    p, q = truth.log_prob(configs).exp(), model.log_prob(configs).exp()
    assert 0.5 * (p - q).abs().sum().item() < 0.02


def test_gradient_training_reaches_the_closed_form():
    truth = BayesNet((5,), structure="markov(1)")
    with torch.no_grad():
        truth.logits.normal_(0, 1.5)
    x = truth.sample(4000, generator=torch.Generator().manual_seed(2))
    closed = BayesNet((5,), structure="markov(1)", alpha=0.0)
    list(closed.fit(x))
    torch.manual_seed(0)
    grad = BayesNet((5,), structure="markov(1)")
    dgm.train(
        grad, x, method="gradient", epochs=60, lr=0.1, lr_schedule="cosine", batch_size=500, progress=False,
        patience=None,
    )  # fmt: skip
    # The cosine anneal removes the minibatch jitter that a constant rate leaves around the optimum.
    with torch.no_grad():
        assert grad.log_prob(x).mean().item() == pytest.approx(closed.log_prob(x).mean().item(), abs=2e-3)


def test_set_tables_checks_and_loads():
    model = BayesNet((2,), structure=[[], [0]])
    model.set_tables([[0.3, 0.7], [[0.9, 0.1], [0.2, 0.8]]])
    lp = model.log_prob(torch.tensor([[1.0, 0.0]]))
    assert lp.exp().item() == pytest.approx(0.7 * 0.2, rel=1e-5)
    with pytest.raises(dgm.ConfigError, match="does not normalise"):
        model.set_tables([[0.3, 0.6], [[0.9, 0.1], [0.2, 0.8]]])
    with pytest.raises(dgm.ConfigError, match="shape"):
        model.set_tables([[0.3, 0.7], [0.9, 0.1]])


def test_graph_and_size_errors():
    with pytest.raises(dgm.ConfigError, match="cycle: 0 -> 1 -> 2 -> 0"):
        BayesNet((3,), structure=[[2], [0], [1]])
    with pytest.raises(dgm.ConfigError, match="out of range"):
        BayesNet((3,), structure=[[], [5], []])
    with pytest.raises(dgm.ConfigError, match="itself"):
        BayesNet((3,), structure=[[0], [], []])
    with pytest.raises(dgm.ConfigError, match="unknown structure"):
        BayesNet((3,), structure="tree")
    with pytest.raises(dgm.ConfigError, match="needs .* table entries"):
        BayesNet((784,), structure="full")
    with pytest.raises(dgm.ConfigError, match="permutation"):
        BayesNet((3,), ordering=[0, 0, 1])
    model = BayesNet((2,), "categorical(3)", "independent", cardinalities=[2, 3])
    with pytest.raises(dgm.DataError, match="variable 0 takes values 0..1"):
        model.log_prob(torch.tensor([[2.0, 0.0]]))
