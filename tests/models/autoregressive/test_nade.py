"""NADE: O(HD) evaluation equals the O(HD²) reference, autoregressive structure, counts, fitting."""

import pytest
import torch

import dgm
import dgm.models.autoregressive.nade as nade_module
from dgm.core.checkpoint import save_model
from tests.models.autoregressive.helpers import (
    assert_autoregressive,
    assert_autoregressive_by_perturbation,
    params_jacobian,
    recovers_target,
)
from tests.models.helpers import all_configurations, perturb_parameters


def build(support="binary", D=9, H=6, **kw):
    model = dgm.build("nade", event_shape=(D,), support=support, hidden_size=H, **kw).double()
    perturb_parameters(model)
    return model


def random_x(support, n, D):
    k = 2 if support == "binary" else int(support[12:-1])
    return torch.randint(0, k, (n, D)).double()


@pytest.mark.parametrize("support", ["binary", "categorical(4)"])
@pytest.mark.parametrize("num_classes", [None, 3])
def test_fast_equals_naive_in_value_and_gradient(support, num_classes, monkeypatch):
    monkeypatch.setattr(nade_module, "_CHUNK_ELEMENTS", 3 * 37 * 6)  # several chunks, a ragged last one
    # D = 37: several scan blocks of 16 and a padded last one.
    model = build(support, D=37, ordering="random", num_classes=num_classes, seed=int(torch.randint(99, ())))
    x = random_x(support, 11, 37)
    y = torch.randint(0, 3, (11,)) if num_classes else None
    fast, naive = model.log_prob(x, y), model.log_prob_naive(x, y)
    assert torch.allclose(fast, naive, rtol=0, atol=1e-12)
    params = list(model.parameters())
    g_fast = torch.autograd.grad(fast.sum(), params)
    g_naive = torch.autograd.grad(naive.sum(), params)
    for a, b in zip(g_fast, g_naive, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    with torch.no_grad():  # the evaluation-only path gives the same numbers
        assert torch.allclose(model.log_prob(x, y), naive, rtol=0, atol=1e-12)


def test_binary_segments_route_handles_empty_and_full_rows(monkeypatch):
    # Binary inputs take the per-segment route (one hidden state per run of zeros); rows with no ones
    # (one segment) or only ones (D + 1 segments) are its edge cases, beside rows of random density.
    monkeypatch.setattr(nade_module, "_CHUNK_ELEMENTS", 2 * 40 * 6)
    built = []

    class Counted(nade_module._Segments):
        def __init__(self, *args):
            super().__init__(*args)
            built.append(self.h.shape[0])

    monkeypatch.setattr(nade_module, "_Segments", Counted)
    model = build(D=40, ordering="random", seed=int(torch.randint(99, ())))
    density = torch.rand(7, 1)
    x = (torch.rand(7, 40) < density).double()
    x[0], x[1] = 0, 1
    fast, naive = model.log_prob(x), model.log_prob_naive(x)
    assert len(built) == 4 and built[0] == 48  # 4 chunks of ≤ 2 rows; the full row has 41 segments
    assert torch.allclose(fast, naive, rtol=0, atol=1e-12)
    params = list(model.parameters())
    for a, b in zip(
        torch.autograd.grad(fast.sum(), params), torch.autograd.grad(naive.sum(), params), strict=True
    ):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert len(built) == 8  # the backward pass recomputed each chunk's segments


@pytest.mark.parametrize("ordering", ["natural", "random"])
def test_autoregressive_jacobian(ordering):
    model = build(ordering=ordering, seed=int(torch.randint(99, ())))
    x = random_x("binary", 1, 9)[0]
    jac = params_jacobian(lambda v: model.params(v), x)
    assert_autoregressive(jac, model.ordering)


def test_categorical_conditionals_ignore_later_values():
    model = build("categorical(3)", D=6, ordering="random")
    x = random_x("categorical(3)", 4, 6)
    assert_autoregressive_by_perturbation(lambda v: model.params(v).detach(), x, model.ordering, 3)


def test_num_parameters_closed_forms():
    D, H = 784, 500
    model = dgm.build("nade", event_shape=(D,), hidden_size=H)
    # W (H×D) less its unused last column, c (H), V (D×H), b (D).
    assert model.num_parameters() == H * (D - 1) + H + D * H + D
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) - H
    D, H, k, C = 5, 4, 3, 2
    cat = dgm.build("nade", event_shape=(D,), support=f"categorical({k})", hidden_size=H, num_classes=C)
    assert cat.num_parameters() == H * (D - 1) * k + H + D * (k - 1) * (H + 1) + C * H


def test_last_input_column_is_unused():
    model = build(ordering="random")
    model.log_prob(random_x("binary", 5, 9)).sum().backward()
    last = model.ordering[-1]
    assert torch.all(model.W.grad[:, last] == 0) and model.W.grad.abs().sum() > 0


@pytest.mark.parametrize("support", ["binary", "categorical(3)"])
def test_class_conditional_normalises_for_every_class(support):
    k = 2 if support == "binary" else 3
    D = 8 if k == 2 else 5
    model = build(support, D=D, num_classes=4, ordering="random")
    with torch.no_grad():
        model.class_bias.weight.normal_()
    x = all_configurations(D, k).double()
    totals = torch.stack([model.log_prob(x, torch.full((len(x),), c)).logsumexp(0).exp() for c in range(4)])
    assert torch.allclose(totals, torch.ones(4, dtype=torch.float64), atol=1e-10)
    s = model.sample(7, context=torch.arange(7) % 4, generator=torch.Generator().manual_seed(1))
    assert s.shape == (7, D)
    with pytest.raises(dgm.DataError, match="class-conditional"):
        model.sample(3)


def test_random_ordering_survives_a_checkpoint(tmp_path):
    model = build(ordering="random", seed=5).float()
    assert not torch.equal(model.ordering, torch.arange(9))
    save_model(model, tmp_path)
    loaded = dgm.load(tmp_path)
    assert torch.equal(loaded.ordering, model.ordering)
    x = random_x("binary", 6, 9).float()
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))


def test_sampling_is_exact_for_a_tiny_model():
    """Frequencies of many samples match exp(log_prob) (shared test: D=3; here D=4 with classes)."""
    model = build(D=4, H=5, num_classes=2)
    configs = all_configurations(4).double()
    p = model.log_prob(configs, torch.ones(16)).exp()
    s = model.sample(30_000, context=1, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount((s.long() * torch.tensor([8, 4, 2, 1])).sum(1), minlength=16).double() / 30_000
    assert 0.5 * (freq - p).abs().sum() < 0.02


def test_training_recovers_a_small_distribution():
    assert recovers_target("nade", {"hidden_size": 16, "ordering": "random"}) < 0.06
