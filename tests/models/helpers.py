"""Shared helpers for model property tests."""

import itertools

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
