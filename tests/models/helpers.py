"""Shared helpers for model property tests."""

import itertools
import traceback

import torch


def all_configurations(num_dims: int, num_categories: int = 2) -> torch.Tensor:
    """Every point of {0..k-1}^D as a float tensor of shape (k^D, D)."""
    grid = itertools.product(range(num_categories), repeat=num_dims)
    return torch.tensor(list(grid), dtype=torch.float32)


def perturb_parameters(model, scale: float = 1.0) -> None:
    """Move every parameter off its initial value so that tests do not pass by symmetry."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))


class HostReads(torch.overrides.TorchFunctionMode):
    """Counts the calls that read a tensor's values back to Python (``.item()``, ``bool(t)``, ``int(t)``,
    ``.tolist()``, ``torch.equal``, ``nonzero``, ``.cpu()``, …). On a GPU each one waits for the device's
    queue to drain; counting them on the CPU tells how often a step would wait there. ``paused`` leaves
    out reads of tensors that are meant to be on the host (the trainer's check of a batch before it moves)."""

    READS = frozenset(
        {
            torch.Tensor.item,
            torch.Tensor.tolist,
            torch.Tensor.__bool__,
            torch.Tensor.__int__,
            torch.Tensor.__float__,
            torch.Tensor.__index__,
            torch.Tensor.numpy,
            torch.Tensor.cpu,
            torch.Tensor.nonzero,
            torch.nonzero,
            torch.equal,
        }
    )

    def __init__(self):
        super().__init__()
        self.count = 0
        self.where: list[str] = []
        self._paused = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.READS and not self._paused:
            self.count += 1
            caller = traceback.extract_stack(limit=2)[0]
            self.where.append(f"{func.__name__} at {caller.filename.split('/')[-1]}:{caller.lineno}")
        return func(*args, **(kwargs or {}))

    def paused(self, fn):
        def wrapper(*args, **kwargs):
            self._paused += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._paused -= 1

        return wrapper
