"""Encoder and decoder networks shared by the latent-variable models: MLPs and small convolutional nets.

An *encoder* maps an example ``x`` (shape ``(N, *event_shape)``) and an optional conditioning vector
(e.g. a one-hot label) to ``out_features`` numbers; the model turns those into the parameters of
q(z | x). A *decoder* maps a vector (a latent sample, possibly with a one-hot label appended) to
``P`` numbers per data dimension, shape ``(N, D, P)``, which a :class:`dgm.models.latent.decoders.Likelihood`
turns into p(x | z). Both accept any number of leading batch dimensions (importance samples × examples).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dgm.core.errors import ConfigError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}
ARCHITECTURES = ("mlp", "conv")


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(in_features: int, hidden_sizes: Sequence[int], out_features: int, act: str) -> nn.Sequential:
    """Linear layers with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    sizes = [in_features, *hidden_sizes]
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), activation(act)]
    layers.append(nn.Linear(sizes[-1], out_features))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flattens ``x``, appends the conditioning vector, applies an MLP."""

    def __init__(self, event_shape, cond_features, hidden_sizes, out_features, act, input_scale=1.0):
        super().__init__()
        self.event_ndim = len(event_shape)
        self.input_scale = float(input_scale)
        self.net = mlp(math.prod(event_shape) + cond_features, hidden_sizes, out_features, act)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = x.flatten(-self.event_ndim) * self.input_scale
        if cond is not None:
            h = torch.cat([h, cond.expand(*h.shape[:-1], cond.shape[-1])], -1)
        return self.net(h)


class MLPDecoder(nn.Module):
    """An MLP from the input vector to ``D * P`` numbers, returned as ``(..., D, P)``."""

    def __init__(self, in_features, hidden_sizes, num_dims, params_per_dim, act):
        super().__init__()
        self.num_dims, self.params_per_dim = num_dims, params_per_dim
        self.net = mlp(in_features, hidden_sizes, num_dims * params_per_dim, act)

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h).unflatten(-1, (self.num_dims, self.params_per_dim))


def _image_shape(event_shape) -> tuple[int, int, int]:
    if len(event_shape) != 3:
        raise ConfigError(
            f"architecture 'conv' needs image data of event shape (C, H, W), got {tuple(event_shape)}"
        )
    return tuple(event_shape)


class ConvEncoder(nn.Module):
    """Stride-2 3x3 convolutions (each halves H and W, rounding up), then an MLP head.

    The conditioning vector joins after the convolutions, at the first dense layer.
    """

    def __init__(
        self, event_shape, cond_features, hidden_sizes, out_features, act, channels, input_scale=1.0
    ):
        super().__init__()
        c, h, w = _image_shape(event_shape)
        self.event_shape = (c, h, w)
        self.input_scale = float(input_scale)
        layers: list[nn.Module] = []
        for cin, cout in zip([c, *channels[:-1]], channels, strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), activation(act)]
            h, w = (h + 1) // 2, (w + 1) // 2
        self.conv = nn.Sequential(*layers)
        self.head = mlp(channels[-1] * h * w + cond_features, hidden_sizes, out_features, act)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        batch = x.shape[: x.dim() - 3]
        h = self.conv(x.reshape(-1, *self.event_shape) * self.input_scale).flatten(1)
        h = h.reshape(*batch, -1)
        if cond is not None:
            h = torch.cat([h, cond.expand(*h.shape[:-1], cond.shape[-1])], -1)
        return self.head(h)


class ConvDecoder(nn.Module):
    """An MLP to a (channels, ⌈H/2^L⌉, ⌈W/2^L⌉) map, L stride-2 transposed convolutions, cropped to H×W.

    The last layer has ``C * P`` channels: P parameters for every value of every pixel, returned as
    ``(..., D, P)`` with D in the data's (C, H, W) raster order.
    """

    def __init__(self, in_features, hidden_sizes, event_shape, params_per_dim, act, channels):
        super().__init__()
        c, h, w = _image_shape(event_shape)
        self.c, self.h, self.w, self.params_per_dim = c, h, w, params_per_dim
        hs, ws = h, w
        for _ in channels:
            hs, ws = (hs + 1) // 2, (ws + 1) // 2
        rev = list(reversed(channels))
        self.start = (rev[0], hs, ws)
        self.head = nn.Sequential(mlp(in_features, hidden_sizes, rev[0] * hs * ws, act), activation(act))
        layers: list[nn.Module] = []
        outs = [*rev[1:], c * params_per_dim]
        for i, (cin, cout) in enumerate(zip(rev, outs, strict=True)):
            layers.append(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                layers.append(activation(act))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        batch = z.shape[:-1]
        h = self.head(z).reshape(-1, *self.start)
        out = self.deconv(h)[:, :, : self.h, : self.w]  # (B, C*P, H, W)
        out = out.reshape(-1, self.c, self.params_per_dim, self.h, self.w).permute(0, 1, 3, 4, 2)
        return out.reshape(*batch, self.c * self.h * self.w, self.params_per_dim)


def check_architecture(architecture: str, event_shape) -> None:
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
    if architecture == "conv":
        _image_shape(event_shape)


def build_encoder(
    architecture, event_shape, cond_features, hidden_sizes, out_features, act, channels, input_scale=1.0
) -> nn.Module:
    check_architecture(architecture, event_shape)
    if architecture == "mlp":
        return MLPEncoder(event_shape, cond_features, hidden_sizes, out_features, act, input_scale)
    return ConvEncoder(event_shape, cond_features, hidden_sizes, out_features, act, channels, input_scale)


def build_decoder(architecture, in_features, hidden_sizes, event_shape, params_per_dim, act, channels):
    check_architecture(architecture, event_shape)
    if architecture == "mlp":
        return MLPDecoder(in_features, hidden_sizes, math.prod(event_shape), params_per_dim, act)
    return ConvDecoder(in_features, hidden_sizes, event_shape, params_per_dim, act, channels)
