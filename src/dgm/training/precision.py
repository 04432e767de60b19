"""Mixed-precision training: matrix products in bfloat16, likelihood arithmetic in fp32.

``torch.autocast`` runs products (linear, matmul, convolutions) in bf16, with fp32 accumulation, and
lists the ops it keeps in fp32. On CPU that list holds the loss functions (``cross_entropy``,
``binary_cross_entropy_with_logits``) but not the reductions and normalisations a likelihood is made
of: ``Categorical(logits=...)`` normalises with ``logsumexp`` and a flow sums its log-scales, and on a
bf16 tensor both would run at bf16 precision (8 bits of mantissa: about 0.4 % of a sum of hundreds of
nats). Inside :func:`autocast` those ops upcast a bf16 input to fp32 first, so a model's loss is as
precise as in fp32 up to the rounding of the products themselves.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

PRECISIONS = ("fp32", "bf16")

# Reductions and normalisations whose bf16 result would carry bf16 rounding into the log-likelihood.
_FP32_OPS = {
    torch.sum,
    Tensor.sum,
    torch.mean,
    Tensor.mean,
    torch.cumsum,
    Tensor.cumsum,
    torch.logsumexp,
    Tensor.logsumexp,
    torch.log_softmax,
    Tensor.log_softmax,
    F.log_softmax,
    torch.softmax,
    Tensor.softmax,
    F.softmax,
}


class _Fp32Reductions(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (
            func in _FP32_OPS
            and args
            and isinstance(args[0], Tensor)
            and args[0].dtype == torch.bfloat16
            and kwargs.get("dtype") is None  # an explicit dtype is the caller's choice
        ):
            args = (args[0].float(), *args[1:])
        return func(*args, **kwargs)


@contextlib.contextmanager
def autocast(device_type: str, precision: str = "fp32"):
    """The training loss's precision: a no-op for ``"fp32"``; for ``"bf16"``, bf16 autocast with the
    reductions and normalisations of bf16 tensors done in fp32 (see the module docstring)."""
    if precision == "fp32":
        yield
        return
    if precision != "bf16":
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    with torch.autocast(device_type, dtype=torch.bfloat16), _Fp32Reductions():
        yield
