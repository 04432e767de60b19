"""Shared checks for the flow tests: parameter perturbation and brute-force log-determinants."""

import torch
from torch.autograd.functional import jacobian


def perturb(module: torch.nn.Module, scale: float = 0.3, generator: torch.Generator | None = None) -> None:
    """Move every parameter off its (often identity) initial value, so that no check passes by symmetry."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def jacobian_log_det(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det ∂fn(x)/∂x| for one example ``x`` (any shape), by the full autograd Jacobian."""
    jac = jacobian(lambda v: fn(v.reshape(1, *x.shape)).reshape(-1), x)
    return torch.linalg.slogdet(jac.reshape(x.numel(), -1))[1]
