"""Progress bars of models' sequential loops: off (a plain range) unless a caller asks for them."""

import torch
from tqdm.auto import tqdm

from dgm.core import progress


def test_steps_is_a_plain_range_unless_shown():
    n = int(torch.randint(1, 50, ()))
    assert progress.steps(n) == range(n)
    items = torch.randperm(n).tolist()
    assert progress.steps(items) is items
    with progress.shown("sampling"):
        bar = progress.steps(n, "row")
        assert isinstance(bar, tqdm) and list(bar) == list(range(n))  # (drawn on a terminal only)
        assert list(progress.steps(items)) == items
    assert progress.steps(n) == range(n)  # the block ended
