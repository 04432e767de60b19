"""Fused optimizer updates: chosen where torch has them, and the same updates as the multi-tensor ones."""

import pytest
import torch

import dgm
from dgm.training import optim

CLASSES = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}


def test_update_kind():
    assert optim.update_kind([torch.zeros(3, requires_grad=True)]) == {"fused": True}
    assert optim.update_kind([]) == {"foreach": True}
    with pytest.raises(ValueError, match="unknown optimizer"):
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
