import math

import pytest
import torch
from torch.autograd.functional import jacobian

from dgm.core.errors import DataError
from dgm.data.transforms import (
    DynamicBinarize,
    Logit,
    Standardize,
    UniformDequantize,
    binarize,
    dequantization_log_det,
)


def autograd_log_det(transform, x):
    """log |det J| of the map on one example, by brute force."""
    jac = jacobian(lambda v: transform(v.reshape(1, *x.shape))[0].reshape(-1), x)
    return torch.linalg.slogdet(jac.reshape(x.numel(), x.numel()))[1]


def make_standardize():
    x = torch.randn(50, 2, 3, dtype=torch.float64) * torch.tensor([[1.0, 2.0, 3.0], [0.5, 4.0, 1.0]]) + 3
    return Standardize.fit(x)


@pytest.mark.parametrize("make", [lambda: Logit(), lambda: Logit(alpha=0.05), make_standardize])
def test_bijections_invert_and_log_det_matches_autograd(make):
    transform = make()
    torch.manual_seed(0)
    x = torch.rand(4, 2, 3, dtype=torch.float64).clamp(1e-3, 1 - 1e-3)
    z, log_det = transform(x)
    assert log_det.shape == (4,) and z.dtype == torch.float64
    torch.testing.assert_close(transform.inverse(z), x, atol=1e-10, rtol=0)
    for i in range(len(x)):
        torch.testing.assert_close(log_det[i], autograd_log_det(transform, x[i]), atol=1e-9, rtol=1e-9)


def test_bijections_float32_and_module_state():
    x = torch.rand(8, 784)
    z, log_det = Logit()(x)
    assert z.dtype == log_det.dtype == torch.float32 and torch.isfinite(z).all()
    assert torch.isfinite(Logit()(torch.tensor([[0.0, 1.0]]))[0]).all()  # the squeeze keeps the ends finite
    s = Standardize.fit(torch.cat([x, torch.ones(8, 1)], 1))  # a constant column gets min_std, not 0
    assert torch.isfinite(s(torch.cat([x, torch.ones(8, 1)], 1))[0]).all()
    assert set(s.state_dict()) == {"mean", "std"}


def test_dynamic_binarize():
    p = torch.rand(200, 784, generator=torch.Generator().manual_seed(0))
    a = DynamicBinarize()(p, torch.Generator().manual_seed(1))
    b = DynamicBinarize()(p, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert abs(a.mean() - p.mean()) < 0.005
    assert not torch.equal(a, DynamicBinarize()(p, torch.Generator().manual_seed(2)))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        DynamicBinarize()(p * 255)


def test_uniform_dequantize():
    x = torch.arange(256.0).repeat(1000)
    y = UniformDequantize()(x, torch.Generator().manual_seed(0))
    assert y.min() >= 0 and y.max() < 1
    assert torch.equal(torch.floor(y * 256), x)  # each value stays in its own bin
    assert dequantization_log_det(784) == pytest.approx(784 * math.log(256))


def test_binarize():
    assert binarize(torch.tensor([0.0, 7.9, 8.0, 16.0]), 8).tolist() == [0.0, 0.0, 1.0, 1.0]
    assert binarize(torch.tensor([0, 200], dtype=torch.uint8), 128).dtype == torch.float32
