"""PixelCNN and Gated PixelCNN: the chain rule over pixels with masked convolutions.

``pixelcnn`` — van den Oord, Kalchbrenner & Kavukcuoglu (2016), "Pixel Recurrent Neural Networks",
§3.4–3.5: a k0×k0 type-"A" masked convolution on the data, residual blocks of type-"B" masked
convolutions (Figure 5), and two ReLU + 1×1 convolutions to the per-pixel output distribution.

``gated-pixelcnn`` — van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu (2016),
"Conditional Image Generation with PixelCNN Decoders": vertical and horizontal stacks with gated
tanh·σ units (eq. 2), which remove the plain PixelCNN's blind spot, and class-conditional biases (eq. 4).

Both take either a class label (``num_classes``; eq. 4, a learned bias per class) or a conditioning
image (``context_shape``; eq. 5): the image h, e.g. a 7×7 low-resolution version of the target, is
upsampled (nearest neighbour) to H×W and mapped by a small unmasked network to s = m(h), and every
gated unit / residual block gets the location-dependent bias V ⋆ s (a 1×1 convolution); see
:class:`dgm.nn.conv.ContextNetwork`. That is p(x | h) = Π_i p(x_i | x_<i, h): super-resolution
(:mod:`dgm.tasks.superres`) when h is a downsampled x.

Both model p(x) = Π_i p(x_i | x_<i) over the C·H·W values of an image in raster order (rows, then
columns, then channels R→G→B; see :mod:`dgm.nn.conv` for the channel groups that make C > 1 work).
The conditionals are Bernoulli for binary images and categorical(k) (k = 256 for 8-bit images, as in
the paper's softmax output) otherwise; ``log_prob`` is exact, in nats. The network reads the data
rescaled to [-1, 1] (x·2/(k-1) − 1), so zero padding is distinguishable from every pixel value.

Sampling is sequential: C·H·W forward passes, which is what the architecture requires. Each pass
runs only on the rows the current row can see (``receptive_rows`` above it, none below), so a pass
costs O(receptive field) rather than O(image), and only the current row reaches the output layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError, DataError
from dgm.core.model import GenerativeModel
from dgm.core.progress import steps
from dgm.core.registry import register
from dgm.nn.conv import (
    ContextNetwork,
    GatedPixelCNNLayer,
    MaskedConv2d,
    PixelCNNResidualBlock,
    channels_last,
    receptive_rows,
)

# Settings of the shared property tests: small, so that they are fast and the random perturbation of
# every parameter seldom drives the conditionals to 0/1.
_TINY = {"channels": 4, "num_layers": 1, "kernel_size": 3, "first_kernel_size": 3, "output_channels": 2}


def _odd(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or value % 2 == 0:
        raise ConfigError(f"{name} must be an odd int >= {minimum}, got {value!r}")
    return value


def _positive(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _context_shape(value) -> tuple[int, int, int] | None:
    if value is None:
        return None
    ok = isinstance(value, list | tuple) and len(value) == 3
    ok = ok and all(not isinstance(d, bool) and isinstance(d, int) and d >= 1 for d in value)
    if not ok:
        raise ConfigError(
            f"context_shape must be a list [C, h, w] of 3 positive ints (e.g. [1, 7, 7]), got {value!r}"
        )
    return tuple(value)


class _PixelCNNBase(GenerativeModel):
    """What PixelCNN, Gated PixelCNN and PixelRNN share: option checks, input scaling, output
    distributions, context checks and raster-order sampling."""

    def _check(
        self,
        event_shape,
        support: str,
        num_classes: int | None,
        channels: int,
        num_layers: int,
        kernel_size: int,
        first_kernel_size: int,
        min_channels: int = 2,
        context_shape=None,
    ) -> int:
        """Validate the options every image model here shares; returns C, the number of data channels."""
        _positive("channels", channels, min_channels)
        _positive("num_layers", num_layers, 0)
        _odd("kernel_size", kernel_size, 1)
        _odd("first_kernel_size", first_kernel_size, 3)
        if len(self.event_shape) != 3:
            raise ConfigError(
                f"{self.name} models images: event_shape must be (C, H, W), got {tuple(event_shape)}"
            )
        if self.support.kind == "real":
            raise ConfigError(
                f"{self.name} outputs discrete distributions: support must be 'binary' or "
                f"'categorical(k)', got {support!r} (dequantised real data is not supported)"
            )
        if num_classes is not None:
            _positive("num_classes", num_classes)
        self.context_shape = _context_shape(context_shape)
        if num_classes is not None and self.context_shape is not None:
            raise ConfigError(
                f"{self.name}: num_classes and context_shape are exclusive (a model conditions on a class "
                "label or on an image, not both); set one of them"
            )
        self.num_classes = num_classes
        self.data_channels = self.event_shape[0]
        self.num_categories = self.support.num_categories
        return self.data_channels

    def _build_head(self, output_channels: int | None) -> None:
        output_channels = _positive("output_channels", output_channels or self._width)
        # Binary data: one Bernoulli logit per value; categorical(k): k logits, ordered category-major
        # (output map cat·C + c) so that map j belongs to channel group j % C like every hidden map.
        k = 1 if self.support.kind == "binary" else self.num_categories
        C = self.data_channels
        self.head = nn.ModuleList(
            [
                MaskedConv2d(self._width, output_channels, 1, "B", C),
                MaskedConv2d(output_channels, k * C, 1, "B", C),
            ]
        )

    # ---------------------------------------------------------------- network
    @property
    def conditional(self) -> bool:
        return self.num_classes is not None or getattr(self, "context_shape", None) is not None

    def check_image_context(self, context, batch_size: int) -> Tensor:
        """Validate a conditioning image: a float tensor (N, *context_shape), or one image
        (*context_shape) broadcast to the batch; finite. Returns it on the model's device and dtype."""
        shape = self.context_shape
        want = f"(N, {', '.join(map(str, shape))})"
        if context is None:
            raise DataError(f"{self.name} is conditioned on an image (context_shape={list(shape)}): pass "
                            f"context=images of shape {want}")  # fmt: skip
        if not isinstance(context, Tensor):
            raise DataError(f"image context must be a torch.Tensor {want}, got {type(context).__name__}")
        if not context.is_floating_point():
            raise DataError(f"image context must be a float tensor, got dtype {context.dtype}")
        if tuple(context.shape) == shape:
            context = context.expand(batch_size, *shape)
        if context.dim() != 4 or tuple(context.shape[1:]) != shape:
            raise DataError(f"image context has shape {tuple(context.shape)}; this model expects {want}")
        if len(context) != batch_size:
            raise DataError(f"image context has {len(context)} images for a batch of {batch_size}")
        if not torch.isfinite(context).all():
            bad = "NaN" if torch.isnan(context).any() else "inf"
            raise DataError(f"image context contains {bad} values")
        return context.to(device=self.device, dtype=next(self.parameters()).dtype)

    def _context(self, context, batch_size: int) -> Tensor | None:
        """What ``_features`` takes: class labels (N,), s = m(h) (N, S, H, W) for an image, or None."""
        if getattr(self, "context_shape", None) is None:
            return self.class_labels(context, batch_size)
        return self.context_net(self.check_image_context(context, batch_size))

    @staticmethod
    def _band(ctx: Tensor | None, top: int, bottom: int) -> Tensor | None:
        """The context of rows top..bottom-1: s is location-dependent and must be cropped with x."""
        return ctx[:, :, top:bottom] if ctx is not None and ctx.dim() == 4 else ctx

    def context_band(self, context, batch_size: int, top: int, bottom: int) -> Tensor | None:
        """The validated context, ready for ``_features`` on rows top..bottom-1 of a batch (for samplers
        that run the network on a band of rows, e.g. :mod:`dgm.tasks.imputation`)."""
        return self._band(self._context(context, batch_size), top, bottom)

    def _context_net(self) -> ContextNetwork | None:
        if self.context_shape is None:
            return None
        return ContextNetwork(self.context_shape, self.event_shape[1:], self._width)

    @property
    def receptive_rows(self) -> int:
        """Rows above a pixel that its conditional can depend on (the sampler's crop)."""
        raise NotImplementedError

    def _features(self, x: Tensor, context: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _scale(self, x: Tensor) -> Tensor:
        dtype = next(self.parameters()).dtype
        return x.to(dtype) * (2.0 / (self.num_categories - 1)) - 1.0

    def _head(self, h: Tensor) -> Tensor:
        out = self.head[1](F.relu(self.head[0](F.relu(h))))
        if self.support.kind == "binary":
            return out
        n, _, H, W = out.shape
        # (N, k·C, H, W) → (N, C, H, W, k)
        return out.reshape(n, self.num_categories, self.data_channels, H, W).permute(0, 2, 3, 4, 1)

    def logits(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Output logits for every value of ``x``: (N, C, H, W) Bernoulli or (N, C, H, W, k) categorical.

        The logits at a value depend only on the values before it in raster order.
        """
        x = self.validate(x)
        return self._head(self._features(self._scale(x), self._context(context, len(x))))

    def distribution(self, logits: Tensor) -> Distribution:
        # The input was validated already; skipping torch's own checks saves a pass over the data.
        if self.support.kind == "binary":
            return Bernoulli(logits=logits, validate_args=False)
        return Categorical(logits=logits, validate_args=False)

    # ---------------------------------------------------------------- contract
    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.validate(x)
        logits = self._head(self._features(self._scale(x), self._context(context, len(x))))
        value = x.long() if self.support.kind == "categorical" else x.to(logits.dtype)
        return self.distribution(logits).log_prob(value).flatten(1).sum(1)

    @torch.no_grad()
    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ):
        n = self.check_num_samples(num_samples)
        ctx = self._context(context, n)  # s = m(h) once, on the full image, then cropped to each band
        C, H, W = self.event_shape
        x = torch.zeros(n, C, H, W, device=self.device)
        if n == 0:
            return x
        reach = self.receptive_rows
        for r in steps(H, "row"):
            # Row r's conditionals see rows r-reach..r only: run the network on that band and keep
            # its last row, which is exactly what the full image would give (tests/.../test_pixelcnn.py).
            top = max(0, r - reach)
            band = self._band(ctx, top, r + 1)
            for c in range(W):
                for ch in range(C):
                    h = self._features(self._scale(x[:, :, top : r + 1]), band)[:, :, -1:]
                    logits = self._head(h)[:, ch, 0, c]
                    x[:, ch, r, c] = draw(self.distribution(logits), (), generator).to(x.dtype)
        return x

    def num_parameters(self) -> int:
        """Free parameters: weights a mask always zeroes are not counted."""
        masked = sum(int((m.mask == 0).sum()) for m in self.modules() if isinstance(m, MaskedConv2d))
        return super().num_parameters() - masked

    def extra_repr(self) -> str:
        extra = f", context_shape={list(self.context_shape)}" if getattr(self, "context_shape", None) else ""
        return f"{super().extra_repr()}, num_classes={self.num_classes}{extra}"


@register(
    "pixelcnn",
    description="PixelCNN: masked convolutions (type A then residual type-B blocks), exact likelihood",
    paper="van den Oord, Kalchbrenner & Kavukcuoglu 2016, Pixel Recurrent Neural Networks",
    family="autoregressive",
    tiny=_TINY,
    supports=("binary", "categorical"),
    shape="image",
)
class PixelCNN(_PixelCNNBase):
    """PixelCNN with residual blocks of masked convolutions.

    Args:
        event_shape: (C, H, W).
        support: ``"binary"`` (Bernoulli outputs) or ``"categorical(k)"`` (k-way softmax per value).
        channels: width 2h of the residual stream (the blocks' bottleneck has h = channels/2 maps).
        num_layers: residual blocks after the first layer.
        kernel_size: odd size of the blocks' masked convolutions (3 in the paper).
        first_kernel_size: odd size of the type-"A" first layer (7 in the paper).
        output_channels: width of the 1×1 output layers (default: ``channels``).
        num_classes: class-conditional when set: a learned class bias after the first layer and in
            every residual block.
        context_shape: image-conditional when set ([C', h, w], exclusive with ``num_classes``): the
            context is a float image (N, C', h, w); s = m(context) (``channels`` maps) adds V ⋆ s after
            the first layer and in every residual block (eq. 5 of van den Oord et al. 2016b).

    Its receptive field has a blind spot: pixels above and to the right of the current one, beyond a
    45° line, are never seen however deep the stack (van den Oord et al. 2016b, Figure 1).
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        channels: int = 64,
        num_layers: int = 7,
        kernel_size: int = 3,
        first_kernel_size: int = 7,
        output_channels: int | None = None,
        num_classes: int | None = None,
        context_shape: list[int] | None = None,
    ):
        super().__init__(event_shape, support)
        C = self._check(
            event_shape,
            support,
            num_classes,
            channels,
            num_layers,
            kernel_size,
            first_kernel_size,
            context_shape=context_shape,
        )
        self._width = channels
        self.first = MaskedConv2d(C, channels, first_kernel_size, "A", C)
        self.first_class_bias = None if num_classes is None else nn.Embedding(num_classes, channels)
        if self.first_class_bias is not None:
            nn.init.zeros_(self.first_class_bias.weight)
        self.context_net = self._context_net()
        s = None if self.context_net is None else channels
        self.first_context_bias = None if s is None else nn.Conv2d(s, channels, 1)
        self.blocks = nn.ModuleList(
            [PixelCNNResidualBlock(channels, kernel_size, C, num_classes, s) for _ in range(num_layers)]
        )
        self._build_head(output_channels)

    @property
    def receptive_rows(self) -> int:
        return receptive_rows([self.first, *self.blocks])

    def _features(self, x: Tensor, context: Tensor | None) -> Tensor:
        # NHWC from here on: 1.6× faster training steps on CPU (see channels_last); s too, so that its
        # 1×1 biases come out in the layout they are added to.
        h = channels_last(self.first(x))
        if context is not None and context.dim() == 4:
            context = channels_last(context)
        if self.first_class_bias is not None:
            h = h + self.first_class_bias(context)[:, :, None, None]
        elif self.first_context_bias is not None:
            h = h + self.first_context_bias(context)
        for block in self.blocks:
            h = block(h, context)
        return h


@register(
    "gated-pixelcnn",
    description="Gated PixelCNN: vertical + horizontal stacks with tanh·σ gates, no blind spot",
    paper=(
        "van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu 2016, "
        "Conditional Image Generation with PixelCNN Decoders"
    ),
    family="autoregressive",
    tiny=_TINY,
    supports=("binary", "categorical"),
    shape="image",
)
class GatedPixelCNN(_PixelCNNBase):
    """Gated PixelCNN: a first gated layer on the data, then ``num_layers`` gated layers.

    Args:
        event_shape: (C, H, W).
        support: ``"binary"`` or ``"categorical(k)"``.
        channels: feature maps p of each stack (each gate has 2p pre-activations).
        num_layers: gated layers after the first one.
        kernel_size: odd k of the later layers: vertical (k//2+1)×k, horizontal 1×(k//2+1) kernels.
        first_kernel_size: odd k of the first layer (7 as the plain PixelCNN's first layer).
        output_channels: width of the 1×1 output layers on the horizontal stack (default ``channels``).
        num_classes: class-conditional when set: a learned class bias on every gate of both stacks.
        context_shape: image-conditional when set ([C', h, w], exclusive with ``num_classes``): the
            context is a float image (N, C', h, w); s = m(context) (``channels`` maps) adds V ⋆ s to
            every gate of both stacks (eq. 5 of van den Oord et al. 2016b).
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        channels: int = 32,
        num_layers: int = 7,
        kernel_size: int = 3,
        first_kernel_size: int = 7,
        output_channels: int | None = None,
        num_classes: int | None = None,
        context_shape: list[int] | None = None,
    ):
        super().__init__(event_shape, support)
        C = self._check(
            event_shape,
            support,
            num_classes,
            channels,
            num_layers,
            kernel_size,
            first_kernel_size,
            min_channels=1,
            context_shape=context_shape,
        )
        self._width = channels
        self.context_net = self._context_net()
        conditioning = {
            "num_classes": num_classes,
            "context_channels": None if self.context_net is None else channels,
        }
        self.layers = nn.ModuleList(
            [GatedPixelCNNLayer(C, channels, first_kernel_size, C, first=True, **conditioning)]
            + [
                GatedPixelCNNLayer(channels, channels, kernel_size, C, **conditioning)
                for _ in range(num_layers)
            ]
        )
        self._build_head(output_channels)

    @property
    def receptive_rows(self) -> int:
        return receptive_rows(self.layers)

    def _features(self, x: Tensor, context: Tensor | None) -> Tensor:
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, context)
        return h
