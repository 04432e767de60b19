"""Fused optimizer updates: chosen where torch has them, and the same updates as the multi-tensor ones."""

import pytest
import torch

import dgm
from dgm.training import optim

CLASSES = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}


def test_update_kind():
    assert optim.update_kind([torch.zeros(3, requires_grad=True)]) == {"fused": True}
    assert optim.update_kind([]) == {"foreach": True}
    assert optim.update_kind([torch.zeros(3, requires_grad=True)], "rmsprop") == {"foreach": True}
    with pytest.raises(dgm.ConfigError, match="optimizer must be one of"):
        optim.make("lbfgs", [torch.zeros(3, requires_grad=True)], 0.1)


@pytest.mark.parametrize(
    "name, options",
    [("adam", {}), ("adam", {"weight_decay": 1e-2}), ("adagrad", {}), ("sgd", {"momentum": 0.9})],
)
def test_fused_updates_equal_multi_tensor_updates(name, options):
    shapes = [(int(torch.randint(1, 9, ())), 5), (5,), (3, 2, 4)]
    start = [torch.randn(s, dtype=torch.float64) for s in shapes]
    grads = [[torch.randn(s, dtype=torch.float64) for s in shapes] for _ in range(6)]
    finals = []
    for fused in (True, False):
        params = [torch.nn.Parameter(s.clone()) for s in start]
        if fused:
            opt = optim.make(name, params, 0.05, **options)
        else:
            opt = CLASSES[name](params, lr=0.05, foreach=True, **options)
        assert bool(opt.defaults.get("fused")) == fused
        for g in grads:
            for p, gp in zip(params, g, strict=True):
                p.grad = gp.clone()
            opt.step()
        finals.append([p.detach() for p in params])
    for a, b, s in zip(*finals, start, strict=True):
        assert (a - s).abs().max() > 1e-3  # the parameters moved
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_trainer_steps_with_fused_updates_on_cpu():
    model = dgm.build("made", event_shape=(6,), hidden_sizes=[8])
    x = (torch.rand(64, 6) < 0.4).float()
    seen = []
    res = dgm.train(model, x, epochs=1, batch_size=32, progress=False, callbacks=[seen.append])
    assert res.steps == 2
    assert seen and seen[0].optimizer.defaults["fused"] is True


def test_rmsprop_with_momentum_and_a_floor_on_the_root():
    """RMSProp's ε added to the root mean square: gradients far below ε take SGD-like steps of lr·g/ε."""
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = optim.make("rmsprop", [p], 0.1, momentum=0.5, rms_decay=0.95, eps=1e-2)
    g = torch.tensor([1e-6, -1e-6, 10.0, -10.0], dtype=torch.float64)
    p.grad = g.clone()
    opt.step()
    rms = (0.05 * g**2).sqrt()
    torch.testing.assert_close(p.detach(), -0.1 * g / (rms + 1e-2))
    assert p[0].item() == pytest.approx(-0.1 * 1e-6 / 1e-2, rel=1e-3)  # small gradient: plain step, lr/ε
    assert abs(p[2].item()) == pytest.approx(0.1 / 0.05**0.5, rel=1e-2)  # large one: normalised
    before = p.detach().clone()
    opt.step()  # same gradient again: the momentum buffer adds half of the first step
    assert ((p.detach() - before).abs() > 0.5 * before.abs()).all()


def test_cli_offers_every_optimizer():
    from dgm.cli import _parser

    train = next(a for a in _parser()._actions if a.dest == "command").choices["train"]
    choices = next(a.choices for a in train._actions if a.dest == "optimizer")
    assert tuple(choices) == optim.NAMES
