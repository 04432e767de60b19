"""Layers shared by several model families: masked linear and convolutional layers, MADE degrees, and the
soft clamp put on log-scales."""

from dgm.nn.conv import GatedPixelCNNLayer, MaskedConv2d, PixelCNNResidualBlock, VerticalConv2d
from dgm.nn.functional import soft_clamp
from dgm.nn.masked import (
    MaskedLinear,
    MaskedMLP,
    ResidualMaskedMLP,
    check_ordering,
    hidden_degrees,
    input_degrees,
    made_degrees,
    made_masks,
    make_ordering,
    natural_ordering,
    random_ordering,
)

__all__ = [
    "GatedPixelCNNLayer",
    "MaskedConv2d",
    "MaskedLinear",
    "MaskedMLP",
    "PixelCNNResidualBlock",
    "ResidualMaskedMLP",
    "VerticalConv2d",
    "check_ordering",
    "hidden_degrees",
    "input_degrees",
    "made_degrees",
    "made_masks",
    "make_ordering",
    "natural_ordering",
    "random_ordering",
    "soft_clamp",
]
