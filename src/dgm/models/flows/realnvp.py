"""RealNVP: affine coupling layers; flat for vectors, multi-scale and convolutional for images.

Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR. An affine coupling
(§3.3) keeps the values selected by a mask and scales and shifts the others,
``z_b = x_b · exp(s(x_a)) + t(x_a)``, with log|det| = Σ s; ``s`` is soft-clamped here, ``c · tanh(ŝ / c)``.

* ``architecture="flat"`` (vectors; images flattened): ``num_layers`` couplings with alternating
  odd/even masks and MLP conditioners, as in the paper's 2-D toy experiments.
* ``architecture="multiscale"`` (images ``(C, H, W)``, §3.6): at each scale but the last, 3 checkerboard
  couplings, a squeeze ``(C, H, W) → (4C, H/2, W/2)``, 3 channel-wise couplings, then half of the channels
  are factored out to the latent; the last scale has 4 checkerboard couplings. Conditioners are small
  convolutional ResNets. H and W must be divisible by ``2^(num_scales − 1)``.
* ``architecture="auto"``: multiscale for a 3-D event shape, flat otherwise.

For dequantised images the paper models ``logit(α + (1 − 2α) x)`` with α = 0.05 (``logit_alpha``; the
log-det of this preprocessing is part of the reported likelihood).
"""

from __future__ import annotations

from dgm.core.errors import ConfigError
from dgm.core.registry import register
from dgm.models.flows.base import Flow, make_base, preprocessing
from dgm.models.flows.transforms import (
    ActNorm,
    AffineCoupling,
    BatchNorm,
    Compose,
    FactorOut,
    Squeeze,
    Transform,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
)
from dgm.nn.functional import hidden_sizes_list

ARCHITECTURES = ("auto", "flat", "multiscale")
NORMALIZATIONS = ("auto", "actnorm", "batchnorm", "none")


@register(
    "realnvp",
    description="RealNVP: affine coupling layers; flat (vectors) or multi-scale convolutional (images)",
    paper="Dinh, Sohl-Dickstein & Bengio 2017, Density estimation using Real NVP",
    family="flows",
    tiny={"num_layers": 2, "hidden_sizes": [8], "scale_clamp": 1.0},
    supports=("real",),
)
class RealNVP(Flow):
    """RealNVP: Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR.

    Args:
        event_shape: ``(D,)`` or an image ``(C, H, W)``.
        support: ``"real"``.
        architecture: ``"auto"``, ``"flat"`` or ``"multiscale"``.
        num_layers: coupling layers of the flat architecture.
        hidden_sizes: hidden widths of the flat architecture's coupling MLPs.
        activation: nonlinearity of the conditioners.
        num_scales: scales of the multiscale architecture (each but the last halves H and W).
        hidden_channels, num_blocks: width and residual blocks of the multiscale conditioners.
        normalization: ``"actnorm"`` or ``"batchnorm"`` after every coupling, or ``"none"``;
            ``"auto"``: actnorm for multiscale, none for flat.
        scale_clamp: c of the soft clamp on the log-scales (None: unclamped).
        scale_clamp_fn: ``"tanh"`` (``c · tanh(s / c)``) or ``"softsign"`` (``s / (1 + |s| / c)``, zuko's
            bound; :func:`dgm.nn.soft_clamp`).
        base: ``"normal"`` (the paper), ``"logistic"`` or ``"mog"``.
        logit_alpha: if set, data in [0, 1] are first mapped by ``logit(α + (1 − 2α) x)`` (the paper: 0.05).
        num_classes: if set, a one-hot class label conditions every coupling network: p(x | y).
    """

    def __init__(
        self,
        event_shape,
        support: str = "real",
        architecture: str = "auto",
        num_layers: int = 6,
        hidden_sizes=(256, 256),
        activation: str = "relu",
        num_scales: int = 2,
        hidden_channels: int = 64,
        num_blocks: int = 4,
        normalization: str = "auto",
        scale_clamp: float | None = 3.0,
        scale_clamp_fn: str = "tanh",
        base: str = "normal",
        logit_alpha: float | None = None,
        num_classes: int | None = None,
    ):
        super().__init__(event_shape, support, num_classes)
        if architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
        if normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}"
            )
        if architecture == "auto":
            architecture = "multiscale" if len(self.event_shape) == 3 else "flat"
        if normalization == "auto":
            normalization = "actnorm" if architecture == "multiscale" else "none"
        self.architecture, self.normalization = architecture, normalization
        self._coupling_options = dict(
            context_size=self.context_size,
            activation=activation,
            scale_clamp=scale_clamp,
            scale_clamp_fn=scale_clamp_fn,
            hidden_sizes=hidden_sizes_list(hidden_sizes),
            hidden_channels=hidden_channels,
            num_blocks=num_blocks,
        )
        if architecture == "flat":
            if num_layers < 1:
                raise ConfigError(f"num_layers must be positive, got {num_layers}")
            layers = self._flat(self.num_dims, num_layers)
        else:
            layers = [self._scale(self._image_shape(num_scales), 0, num_scales)]
        front = preprocessing(self.event_shape, logit_alpha, flatten=architecture == "flat")
        self.transform = Compose([*front, *layers])
        self.base = make_base(base, self.latent_shape)

    def _image_shape(self, num_scales: int) -> tuple[int, int, int]:
        if len(self.event_shape) != 3:
            raise ConfigError(f"the multiscale architecture needs images (C, H, W), got {self.event_shape}")
        if num_scales < 1:
            raise ConfigError(f"num_scales must be positive, got {num_scales}")
        c, h, w = self.event_shape
        k = 2 ** (num_scales - 1)
        if h % k or w % k:
            raise ConfigError(
                f"{num_scales} scales need H and W divisible by {k}, got {h}×{w}; use fewer scales"
            )
        return c, h, w

    def _norm(self, num_features: int) -> list[Transform]:
        if self.normalization == "actnorm":
            return [ActNorm(num_features)]
        if self.normalization == "batchnorm":
            return [BatchNorm(num_features)]
        return []

    def _coupling(self, mask) -> list[Transform]:
        return [AffineCoupling(mask, **self._coupling_options), *self._norm(mask.shape[0])]

    def _flat(self, d: int, num_layers: int) -> list[Transform]:
        return [t for i in range(num_layers) for t in self._coupling(alternating_mask(d, i % 2))]

    def _scale(self, shape, level: int, num_scales: int) -> Compose:
        c, h, w = shape
        if level == num_scales - 1:
            return Compose([t for i in range(4) for t in self._coupling(checkerboard_mask(shape, i % 2))])
        layers = [t for i in range(3) for t in self._coupling(checkerboard_mask(shape, i % 2))]
        squeezed = (4 * c, h // 2, w // 2)
        layers.append(Squeeze(2))
        layers += [t for i in range(3) for t in self._coupling(channel_mask(squeezed, i % 2))]
        rest = (squeezed[0] - squeezed[0] // 2, *squeezed[1:])
        layers.append(FactorOut(squeezed, self._scale(rest, level + 1, num_scales)))
        return Compose(layers)
