"""Flow transforms, data → latent (DESIGN.md §3): ``forward(x) -> (z, log|det ∂z/∂x|)``, ``inverse(z) -> x``.

Every transform also has ``inverse_and_log_det(z) -> (x, log|det ∂x/∂z|)``, takes an optional
``context`` (N, context_size), and works on vectors ``(N, D)`` or images ``(N, C, H, W)``.
"""

from dgm.models.flows.transforms.autoregressive import MaskedAffineAutoregressive
from dgm.models.flows.transforms.base import (
    Compose,
    InverseTransform,
    Reshape,
    Transform,
    check_context,
    soft_clamp,
    sum_except_batch,
)
from dgm.models.flows.transforms.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    Coupling,
    MLPConditioner,
    ResNetConditioner,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
)
from dgm.models.flows.transforms.elementwise import ElementwiseAffine, Logit, Sigmoid
from dgm.models.flows.transforms.householder import HouseholderRotation
from dgm.models.flows.transforms.kde import KernelGaussianization, normal_icdf_from_log
from dgm.models.flows.transforms.masked_conv import MaskedInvertibleLayer
from dgm.models.flows.transforms.multiscale import FactorOut, Squeeze
from dgm.models.flows.transforms.normalization import ActNorm, BatchNorm
from dgm.models.flows.transforms.permutation import (
    LULinear,
    Permutation,
    RandomPermutation,
    ReversePermutation,
)

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "BatchNorm",
    "Compose",
    "Coupling",
    "ElementwiseAffine",
    "FactorOut",
    "HouseholderRotation",
    "InverseTransform",
    "KernelGaussianization",
    "LULinear",
    "Logit",
    "MLPConditioner",
    "MaskedAffineAutoregressive",
    "MaskedInvertibleLayer",
    "Permutation",
    "RandomPermutation",
    "ResNetConditioner",
    "Reshape",
    "ReversePermutation",
    "Sigmoid",
    "Squeeze",
    "Transform",
    "alternating_mask",
    "channel_mask",
    "check_context",
    "checkerboard_mask",
    "normal_icdf_from_log",
    "soft_clamp",
    "sum_except_batch",
]
