"""The transform contract (DESIGN.md §3) and the pieces every flow is assembled with.

A :class:`Transform` is a bijection in the direction **data → latent**:

* ``forward(x, context=None) -> (z, log_abs_det)`` with ``log_abs_det = log |det ∂z/∂x|`` of shape ``(N,)``,
  summed over every non-batch dimension;
* ``inverse_and_log_det(z, context=None) -> (x, log |det ∂x/∂z|)``, the other direction with its own
  log-det (the negative of the forward one at the same point);
* ``inverse(z, context=None) -> x``.

A flow's density is then ``log p(x) = log p_base(z) + log_abs_det``. Tensors are ``(N, D)`` for vectors and
``(N, C, H, W)`` for images; a transform's per-feature parameters live along dimension 1. ``context`` is an
optional ``(N, context_size)`` conditioning tensor (e.g. one-hot class labels) that conditional transforms
read and the others ignore. Every transform works in float32 and float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from torch import Tensor, nn

from dgm.core.errors import ConfigError, DataError
from dgm.nn.functional import soft_clamp  # noqa: F401  (re-exported: the transforms' import point)


def sum_except_batch(t: Tensor) -> Tensor:
    """Sum over every dimension but the first: per-element log-dets → one value per example ``(N,)``."""
    return t.reshape(len(t), -1).sum(1)


def check_context(context: Tensor | None, context_size: int) -> Tensor | None:
    """The context a conditioner with ``context_size`` inputs should use: None when it takes none (an
    unconditional layer in a conditional flow ignores the context), else the checked ``(N, context_size)``
    tensor; a DataError when it is missing or misshapen."""
    if not context_size:
        return None
    if context is None:
        raise DataError("this transform is conditional: pass a context")
    if context.dim() != 2 or context.shape[1] != context_size:
        raise DataError(f"context must have shape (N, {context_size}), got {tuple(context.shape)}")
    return context


class Transform(nn.Module):
    """A bijection data → latent with a tractable log|det J| (DESIGN.md §3); see the module docstring.

    Subclasses implement :meth:`forward` and :meth:`inverse_and_log_det`; shape-changing transforms
    (squeeze, reshape, factor-out) also override :meth:`output_shape` and :meth:`input_shape`.
    """

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(z, log|det ∂z/∂x|)`` with the log-det of shape ``(N,)``."""
        raise NotImplementedError

    def inverse_and_log_det(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(x, log|det ∂x/∂z|)``: the inverse map and its own log-det."""
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``x`` such that ``forward(x)[0] == z``."""
        return self.inverse_and_log_det(z, context)[0]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one latent ``z`` for one input of ``input_shape`` (identity unless overridden)."""
        return tuple(input_shape)

    def input_shape(self, output_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one input for one latent of ``output_shape`` (identity unless overridden)."""
        return tuple(output_shape)


class Compose(Transform):
    """``t_K ∘ … ∘ t_1``: ``forward`` runs the transforms in order and adds their log-dets; ``inverse``
    runs them backwards. Indexable and iterable like a list."""

    def __init__(self, transforms: Iterable[Transform]):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        for t in self.transforms:
            if not isinstance(t, Transform):
                raise ConfigError(f"Compose takes Transforms, got {type(t).__name__}")

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(len(x))
        for t in self.transforms:
            x, log_det = t(x, context)
            total = total + log_det
        return x, total

    def inverse_and_log_det(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = z.new_zeros(len(z))
        for t in reversed(self.transforms):
            z, log_det = t.inverse_and_log_det(z, context)
            total = total + log_det
        return z, total

    def output_shape(self, input_shape):
        for t in self.transforms:
            input_shape = t.output_shape(input_shape)
        return tuple(input_shape)

    def input_shape(self, output_shape):
        for t in reversed(self.transforms):
            output_shape = t.input_shape(output_shape)
        return tuple(output_shape)

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i):
        return self.transforms[i]

    def __iter__(self):
        return iter(self.transforms)


class InverseTransform(Transform):
    """``t⁻¹`` as a transform: its ``forward`` is ``t``'s inverse and vice versa, log-dets included.

    This is how one class serves both directions: IAF is ``InverseTransform`` of MAF's autoregressive
    layers (DESIGN.md §3), so the pass that is cheap for one is the expensive one for the other.
    """

    def __init__(self, transform: Transform):
        super().__init__()
        self.transform = transform

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse_and_log_det(x, context)

    def inverse_and_log_det(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(z, context)

    def output_shape(self, input_shape):
        return self.transform.input_shape(input_shape)

    def input_shape(self, output_shape):
        return self.transform.output_shape(output_shape)


class Reshape(Transform):
    """Reshape each example from ``in_shape`` to ``out_shape`` (same number of values); log-det 0.

    E.g. ``Reshape((1, 28, 28), (784,))`` lets a flat flow (MAF, NICE) model images.
    """

    def __init__(self, in_shape, out_shape):
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        if math.prod(self.in_shape) != math.prod(self.out_shape):
            raise ConfigError(f"cannot reshape {self.in_shape} to {self.out_shape}: sizes differ")

    def forward(self, x, context=None):
        return x.reshape(len(x), *self.out_shape), x.new_zeros(len(x))

    def inverse_and_log_det(self, z, context=None):
        return z.reshape(len(z), *self.in_shape), z.new_zeros(len(z))

    def output_shape(self, input_shape):
        if tuple(input_shape) != self.in_shape:
            raise ConfigError(f"Reshape expects inputs of shape {self.in_shape}, got {tuple(input_shape)}")
        return self.out_shape

    def input_shape(self, output_shape):
        if tuple(output_shape) != self.out_shape:
            raise ConfigError(f"Reshape outputs shape {self.out_shape}, got {tuple(output_shape)}")
        return self.in_shape

    def extra_repr(self) -> str:
        return f"{self.in_shape} -> {self.out_shape}"
