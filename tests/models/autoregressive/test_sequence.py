"""RNN and causal Transformer: causality, cached sampling = full pass, conditioning, recovery."""

import pytest
import torch

import dgm
from tests.models.helpers import all_configurations, perturb_parameters

MODELS = {
    "rnn": {"hidden_size": 16, "embedding_dim": 8},
    "rnn-gru": {"hidden_size": 16, "embedding_dim": 8, "cell": "gru", "num_layers": 2},
    "transformer-ar": {"dim": 16, "num_layers": 2, "num_heads": 4},
}


def build(key, d=10, support="categorical(5)", **extra):
    name = key.split("-gru")[0]
    model = dgm.build(name, event_shape=(d,), support=support, **MODELS[key], **extra)
    perturb_parameters(model, 0.3)
    return model.eval()


@pytest.mark.parametrize("key", MODELS)
def test_conditional_i_depends_only_on_earlier_positions(key):
    model = build(key, d=12)
    x = torch.randint(0, 5, (4, 12)).float()
    base = model.conditionals(x)
    for j in torch.randperm(12)[:4].tolist():
        y = x.clone()
        y[:, j] = (y[:, j] + 1 + torch.randint(0, 4, (4,))) % 5
        changed = (model.conditionals(y) - base).abs().amax((0, 2))
        assert (changed[: j + 1] == 0).all(), (j, changed)  # positions <= j never see x_j
        if j + 1 < 12:
            assert changed[j + 1] > 0  # ... and the next one does


@pytest.mark.parametrize("key", MODELS)
def test_incremental_steps_equal_the_parallel_pass(key):
    model = build(key, d=9).double()
    x = torch.randint(0, 5, (3, 9))
    full = model.network(model.shift(x), None).log_softmax(-1)
    token, state, steps = torch.full((3,), model.start_token), None, []
    for i in range(9):
        logits, state = model.step(token, i, state, None)
        steps.append(logits.log_softmax(-1))
        token = x[:, i]
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-10)


@pytest.mark.parametrize("key", MODELS)
def test_class_conditional_normalises_for_each_class(key):
    model = build(key, d=8, support="binary", num_classes=3)
    x = all_configurations(8)
    for c in range(3):
        lp = model.log_prob(x, context=torch.full((len(x),), c)).double()
        assert lp.logsumexp(0).exp().item() == pytest.approx(1.0, abs=1e-5)
    s = model.sample(4, context=torch.tensor([0, 1, 2, 0]))
    assert s.shape == (4, 8)
    with pytest.raises(dgm.DataError, match="class-conditional"):
        model.log_prob(x[:2])


@pytest.mark.parametrize("key", MODELS)
def test_top_k_one_is_greedy_and_prefix_is_kept(key):
    model = build(key, d=7)
    greedy = model.sample(2, top_k=1, generator=torch.Generator().manual_seed(0))
    again = model.sample(2, top_k=1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(greedy, again)
    cond = model.conditionals(greedy)
    assert torch.equal(cond.argmax(-1).float(), greedy)  # every token is its conditional's mode
    prefix = torch.tensor([[4, 4, 0], [1, 2, 3]])
    s = model.sample(2, prefix=prefix, temperature=0.7)
    assert torch.equal(s[:, :3].long(), prefix)
    with pytest.raises(dgm.ConfigError, match="temperature"):
        model.sample(2, temperature=0)
    with pytest.raises(dgm.ConfigError, match="top_k"):
        model.sample(2, top_k=9)


@pytest.mark.parametrize("name", ["rnn", "transformer-ar"])
def test_training_recovers_a_known_distribution(name):
    torch.manual_seed(0)
    probs = torch.rand(16) ** 3
    probs /= probs.sum()
    configs = all_configurations(4)
    data = configs[torch.multinomial(probs, 8000, replacement=True)]
    if name == "rnn":
        opts, train = {"hidden_size": 32, "embedding_dim": 8}, {"epochs": 8, "lr": 1e-2, "batch_size": 200}
    else:
        opts, train = (
            {"dim": 32, "num_layers": 1, "num_heads": 2},
            {"epochs": 30, "lr": 2e-3, "batch_size": 100},
        )
    model = dgm.build(name, event_shape=(4,), **opts)
    dgm.train(model, data, progress=False, **train)
    with torch.no_grad():
        q = model.log_prob(configs).exp()
    assert 0.5 * (q - probs).abs().sum().item() < 0.05


def test_transformer_dropouts_are_causal_and_off_at_evaluation():
    # Dropout on the attention weights removes some of a query's past but can never add its future: with
    # the same dropout masks (same seed), changing x_j moves no conditional at a position <= j.
    model = dgm.build(
        "transformer-ar", event_shape=(10,), support="categorical(5)", **MODELS["transformer-ar"],
        dropout=0.2, attention_dropout=0.3,
    ).train()  # fmt: skip
    perturb_parameters(model, 0.3)
    x = torch.randint(0, 5, (4, 10)).float()
    torch.manual_seed(1)
    base = model.conditionals(x)
    torch.manual_seed(2)
    assert not torch.allclose(model.conditionals(x), base)  # training mode: the masks are random
    j = int(torch.randint(1, 9, ()))
    y = x.clone()
    y[:, j] = (y[:, j] + 1) % 5
    torch.manual_seed(1)
    changed = (model.conditionals(y) - base).abs().amax((0, 2))
    assert (changed[: j + 1] == 0).all() and changed[j + 1 :].max() > 0
    model.eval()
    assert torch.equal(model.conditionals(x), model.conditionals(x))
    with pytest.raises(dgm.ConfigError, match="attention_dropout"):
        dgm.build("transformer-ar", event_shape=(10,), support="categorical(5)", attention_dropout=1.0)
