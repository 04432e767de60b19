"""Dequantised datasets and NLL on the integer scale (DESIGN.md §4)."""

import math

import pytest
import torch

import dgm
from dgm.data.dataset import Dataset
from dgm.data.registry import load_dequantized
from dgm.data.transforms import dequantization_log_det


def test_digits_dequantized_is_fresh_per_training_batch_and_fixed_for_evaluation():
    train = dgm.data.load("digits-dequantized", "train")
    assert (train.support, train.levels, train.event_shape, train.image_shape) == (
        "real",
        17,
        (64,),
        (1, 8, 8),
    )
    raw = dgm.data.load("digits", "train").x
    index = torch.arange(50)
    a, _ = train.get_batch(index, torch.Generator().manual_seed(0))
    b, _ = train.get_batch(index, torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)
    for x in (a, b):
        assert ((x >= 0) & (x < 1)).all()
        assert torch.equal(torch.floor(x * 17), raw[:50])  # each value stays in its own bin
    test = dgm.data.load("digits-dequantized", "test")
    assert test.transform is None and torch.equal(test.x, dgm.data.load("digits-dequantized", "test").x)
    assert ((test.x >= 0) & (test.x < 1)).all()
    assert test.dequantization_log_det == pytest.approx(64 * math.log(17))
    assert test.flat().dequantization_log_det == test.dequantization_log_det  # survives reshaping


def test_evaluate_reports_nll_and_bits_per_dim_on_the_integer_scale():
    base = Dataset("toy", "test", torch.randint(0, 4, (300, 3)).float(), support="categorical(4)")
    data = load_dequantized(base, "toy-dequantized", levels=4)
    model = dgm.build("maf", event_shape=(3,), num_layers=1, hidden_sizes=[8])
    result = dgm.evaluate(model, data)
    with torch.no_grad():
        nll_unit_scale = -model.log_prob(data.x).double().mean().item()
    offset = dequantization_log_det(3, 4)
    assert result["dequantization_log_det"] == pytest.approx(offset)
    assert result["nll"] == pytest.approx(nll_unit_scale + offset)
    assert result["bits_per_dim"] == pytest.approx((nll_unit_scale + offset) / (3 * math.log(2)))
    # A plain tensor carries no dequantisation: nothing is added.
    assert "dequantization_log_det" not in dgm.evaluate(model, data.x)


def test_mnist_dequantized(real_data_dir):
    test = dgm.data.load("mnist-dequantized", "test", data_dir=real_data_dir)
    assert test.event_shape == (1, 28, 28) and test.levels == 256 and test.num_classes == 10
    assert ((test.x >= 0) & (test.x < 1)).all() and test.transform is None
    raw = dgm.data.load("mnist", "test", data_dir=real_data_dir).x
    assert torch.equal(torch.floor(test.x[:100] * 256), raw[:100])
    assert test.dequantization_log_det == pytest.approx(784 * math.log(256))
