"""A class-label context is checked with one read back in the valid case, and each mistake is a one-line
DataError naming it."""

import pytest
import torch

import dgm
from tests.models.helpers import HostReads


@pytest.fixture
def model():
    return dgm.build("fvsbn", event_shape=(4,), num_classes=3)


def test_bad_labels_are_named(model):
    x = torch.randint(0, 2, (3, 4)).float()
    for context, message in [
        (torch.tensor([0.0, float("nan"), 1.0]), "contains NaN or inf"),
        (torch.tensor([0.0, 1.5, 1.0]), "non-integer labels"),
        (torch.tensor([0, -1, 2]), r"out of range: labels must be in 0..2, got -1..2"),
        (torch.tensor([0, 3, 2]), r"out of range: labels must be in 0..2, got 0..3"),
        (torch.tensor([0.0, 4.0, 1.0]), r"got 0..4"),
        (torch.tensor([True, False, True]), "integer labels, got dtype torch.bool"),
        (torch.zeros(3, 1, dtype=torch.long), r"shape \(N,\)"),
        (torch.zeros(2, dtype=torch.long), "2 labels for a batch of 3"),
    ]:
        with pytest.raises(dgm.DataError, match=message):
            model.log_prob(x, context)


def test_valid_labels_cost_one_read(model):
    n = int(torch.randint(1, 50, ()))
    for labels in (torch.randint(0, 3, (n,)), torch.randint(0, 3, (n,)).double()):
        reads = HostReads()
        with reads:
            out = model.check_classes(labels, 3, n)
        assert reads.count == 1 and out.dtype == torch.long and torch.equal(out, labels.long())
