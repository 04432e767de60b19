import pytest
import torch

from dgm.core.errors import ConfigError
from dgm.data import load
from dgm.data.toys import TOYS


@pytest.mark.parametrize("name", list(TOYS))
def test_toy_splits(name):
    sizes = {"train": 24000, "valid": 3000, "test": 3000}
    splits = {split: load(name, split) for split in sizes}
    for split, ds in splits.items():
        assert ds.x.shape == (sizes[split], 2) and ds.x.dtype == torch.float32
        assert torch.isfinite(ds.x).all() and ds.x.abs().max() < 10
        assert (ds.support, ds.kind, ds.y, ds.event_shape) == ("real", "points", None, (2,))
    assert torch.equal(load(name, "train").x, splits["train"].x)  # deterministic
    assert not torch.equal(splits["valid"].x, splits["test"].x)
    assert not torch.equal(splits["train"].x[:3000], splits["valid"].x)


def test_num_examples_option():
    assert load("pinwheel", "test", num_examples=7).x.shape == (7, 2)
    with pytest.raises(ConfigError, match="num_examples"):
        load("pinwheel", "test", num_examples=0)


def test_toys_are_distinct_densities():
    means = {name: load(name, "valid").x.abs().mean(0) for name in TOYS}
    assert len({tuple(m.tolist()) for m in means.values()}) == len(TOYS)
