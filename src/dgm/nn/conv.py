"""Causal convolutions for autoregressive image models (PixelCNN and Gated PixelCNN).

Pixels are ordered in raster order (row by row, left to right) and, inside a pixel with C data
channels, channel by channel (R before G before B): the order of van den Oord, Kalchbrenner &
Kavukcuoglu (2016), "Pixel Recurrent Neural Networks", §3.4. A feature map meant to predict data
channel c of a pixel may see data channels < c of that pixel and everything of earlier pixels.

Channel groups. With C > 1 data channels every hidden feature map belongs to one of C groups, and
feature map j belongs to group ``j % C`` (interleaved), so the two halves of a gated layer, the
per-channel logits of the output and the data itself line up without bookkeeping. At the centre tap
of a kernel, a type-"A" mask lets output group g read input groups < g, a type-"B" mask input groups
≤ g; taps of earlier pixels are fully connected. With C = 1 this reduces to the familiar masks: "A"
drops the centre pixel (used once, on the data), "B" keeps it (every later layer).

Gated stacks (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu 2016, "Conditional
Image Generation with PixelCNN Decoders", §2.1–2.3): a stack of masked k×k convolutions has a blind
spot to the upper right that grows with depth; the gated PixelCNN removes it with two stacks. The
*vertical* stack sees every pixel of the rows strictly above (a shifted, cropped convolution, so no
weight is ever masked) and the *horizontal* stack the pixels to the left in the current row (a 1×k
masked convolution). The vertical stack feeds the horizontal one through a 1×1 convolution; both use
the gated activation tanh(W_f * x) ⊙ σ(W_g * x) (eq. 2), the horizontal stack has a residual
connection, and a class label adds a learned bias to every gate (eq. 4 with a one-hot h).

Image conditioning (same paper, eq. 5): a conditioning image h (e.g. a 7×7 low-resolution version of
the target) is mapped by an unmasked network to a spatial representation s = m(h) of the image's
height and width (:class:`ContextNetwork`), and every gate gets the location-dependent bias V ⋆ s, a
1×1 convolution of s. The context is not part of x, so these paths need no mask; they change no
row reach either (s at row r is added at row r), so the sampler's band crop stays exact as long as
s is computed on the full image and cropped to the band's rows.

Masks live in (non-persistent) buffers and multiply the weight inside ``forward``: a forward pass
never mutates a parameter, and the mask is rebuilt from the layer's arguments, so it is not stored
in checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm.core.errors import ConfigError


def _pair(k) -> tuple[int, int]:
    return (int(k), int(k)) if isinstance(k, int) else (int(k[0]), int(k[1]))


def channels_last(y: Tensor) -> Tensor:
    """y in NHWC memory (same values and shape); a no-op when it is already NHWC.

    oneDNN's CPU convolutions run several times faster on NHWC maps than on NCHW ones (a 1×1
    convolution of 64×24×28×28 maps, forward and backward: 7 ms against 43 ms), and a convolution's
    output follows its input's layout, so a stack converted once stays NHWC. It has to be converted
    after its first layer: the data has C = 1 channel, a shape PyTorch reads as NCHW. Splitting the
    channels in two, as the gated units do, is the exception: each half is then strided, and tanh and
    σ on strided halves run several times slower than on contiguous ones. In the gated stack that
    cancels what its convolutions gain in training and made its band-by-band sampler 1.4× slower, so
    the gated PixelCNN stays NCHW.
    """
    return y.contiguous(memory_format=torch.channels_last)


def channel_groups(num_channels: int, data_channels: int) -> Tensor:
    """Group (data channel it may depend on, inclusive at the centre) of each of ``num_channels`` maps."""
    return torch.arange(num_channels) % data_channels


def _check_divisible(name: str, channels: int, data_channels: int) -> None:
    if data_channels > 1 and channels % data_channels:
        raise ConfigError(
            f"{name} ({channels}) must be a multiple of the number of data channels ({data_channels}) "
            "so that every channel group gets the same number of feature maps"
        )


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only pixels before the output pixel in raster order.

    Args:
        in_channels, out_channels: feature maps.
        kernel_size: int or (kh, kw).
        mask_type: ``"A"`` (the centre pixel's own group is excluded: first layer, on the data) or
            ``"B"`` (included: every later layer).
        data_channels: C, the number of channels of the modelled image (channel groups, see module).
        center: the kernel tap aligned with the output pixel; by default the middle (kh//2, kw//2).
            Padding puts it over the output pixel, so the output has the input's height and width.
            The horizontal stack of the gated PixelCNN uses a 1×k kernel centred on its last column.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        mask_type: str = "B",
        data_channels: int = 1,
        center: tuple[int, int] | None = None,
        bias: bool = True,
    ):
        kh, kw = _pair(kernel_size)
        if kh < 1 or kw < 1:
            raise ConfigError(f"kernel size must be positive, got {(kh, kw)}")
        if mask_type not in ("A", "B"):
            raise ConfigError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        ci, cj = (kh // 2, kw // 2) if center is None else (int(center[0]), int(center[1]))
        if not (0 <= ci < kh and 0 <= cj < kw):
            raise ConfigError(f"center {(ci, cj)} lies outside a {kh}x{kw} kernel")
        _check_divisible("in_channels", in_channels, data_channels)
        _check_divisible("out_channels", out_channels, data_channels)
        super().__init__(in_channels, out_channels, (kh, kw), bias=bias)
        self.mask_type = mask_type
        self.data_channels = data_channels
        self.center = (ci, cj)
        # The rows below the centre are masked out entirely, so the convolution runs on the kernel's top
        # ci + 1 rows only: 28 of a 7×7 kernel's 49 taps, 6 of a 3×3's 9 (a third less work, and the
        # same function). F.pad order: left, right, top, bottom; the output keeps the input's H and W.
        self._rows = ci + 1
        self._pad = (cj, kw - 1 - cj, ci, 0)
        # A one-row kernel centred in its row pads symmetrically, which the convolution does itself
        # without the copy F.pad makes.
        self._symmetric = ci == 0 and kw % 2 == 1 and cj == kw // 2
        mask = torch.zeros(out_channels, in_channels, kh, kw)
        mask[:, :, :ci, :] = 1  # rows above
        mask[:, :, ci, :cj] = 1  # left in the current row
        g_out = channel_groups(out_channels, data_channels)[:, None]
        g_in = channel_groups(in_channels, data_channels)[None, :]
        centre = g_in < g_out if mask_type == "A" else g_in <= g_out
        mask[:, :, ci, cj] = centre.float()
        self.register_buffer("mask", mask, persistent=False)

    @property
    def rows_up(self) -> int:
        """How many rows above the output pixel this layer reads."""
        return self.center[0]

    def masked_weight(self) -> Tensor:
        """The weight the convolution applies: masked, and cropped to the rows up to the centre."""
        return self.weight[:, :, : self._rows] * self.mask[:, :, : self._rows]

    def forward(self, x: Tensor) -> Tensor:
        if self._symmetric:
            return F.conv2d(x, self.masked_weight(), self.bias, padding=self.center)
        return F.conv2d(F.pad(x, self._pad), self.masked_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask_type={self.mask_type}, data_channels={self.data_channels}"


class VerticalConv2d(nn.Conv2d):
    """The vertical stack's convolution: an unmasked (k//2+1)×k kernel over the rows above.

    With ``shift=True`` (first layer, on the data) the output at row r sees rows r-k//2-1 .. r-1 of the
    input, strictly above, by padding one extra row on top and cropping the last output row. Later
    layers (``shift=False``) read rows r-k//2 .. r of features that are themselves strictly above, so
    the stack as a whole never sees the current row. Width: columns c-k//2 .. c+k//2.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, shift: bool = False):
        k = int(kernel_size)
        if k < 1 or k % 2 == 0:
            raise ConfigError(f"vertical stack kernel size must be a positive odd int, got {kernel_size}")
        super().__init__(in_channels, out_channels, (k // 2 + 1, k))
        self.shift = shift
        self._pad = (k // 2, k // 2, k // 2 + int(shift), 0)

    @property
    def rows_up(self) -> int:
        return self.kernel_size[0] - 1 + int(self.shift)

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv2d(F.pad(x, self._pad), self.weight, self.bias)
        return y[:, :, :-1] if self.shift else y


class ContextNetwork(nn.Module):
    """m in s = m(h) (eq. 5 of van den Oord et al. 2016b): a conditioning image (N, C', h, w) → (N, S, H, W).

    The context is upsampled to H×W by nearest-neighbour interpolation (each low-resolution cell becomes a
    block of pixels) and two fixed channels are appended: the pixel's position inside its cell, row and
    column, in [-1/2, 1/2). Without them every pixel of a block would get the same bias, and the model
    could not tell where it is in the block it has to make consistent with the cell's value. Then
    3×3 convolution (S maps) → ReLU → 3×3 convolution (S maps), unmasked: s may see the whole context.

    Args:
        context_shape: (C', h, w) of one conditioning image.
        image_size: (H, W) of the modelled image.
        channels: S, the maps of s.
    """

    def __init__(self, context_shape, image_size, channels: int):
        super().__init__()
        cc, h, w = (int(d) for d in context_shape)
        H, W = (int(d) for d in image_size)
        self.context_shape = (cc, h, w)
        self.image_size = (H, W)
        # Nearest interpolation maps output row i to input row floor(i·h/H): the fraction left over is the
        # position inside the cell (centred, so a cell's positions are symmetric about 0).
        rows = (torch.arange(H) * h / H) % 1 + h / (2 * H) - 0.5
        cols = (torch.arange(W) * w / W) % 1 + w / (2 * W) - 0.5
        position = torch.stack([rows[:, None].expand(H, W), cols[None, :].expand(H, W)])
        self.register_buffer("position", position, persistent=False)
        self.net = nn.Sequential(
            nn.Conv2d(cc + 2, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, context: Tensor) -> Tensor:
        up = F.interpolate(context, size=self.image_size, mode="nearest")
        pos = self.position.to(up.dtype).expand(len(up), -1, -1, -1)
        return self.net(torch.cat([up, pos], dim=1))


def gate(x: Tensor) -> Tensor:
    """tanh(a) ⊙ σ(b) for the two halves (a, b) of the channels (eq. 2 of van den Oord et al. 2016b)."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedPixelCNNLayer(nn.Module):
    """One layer of the gated PixelCNN: a vertical and a horizontal stack (Figure 2 of the paper).

    ``first=True`` builds the layer that reads the data (C channels) in both stacks: the vertical
    convolution is shifted one row down and the horizontal one is masked type "A". Later layers read
    ``channels`` feature maps per stack, use type "B" and add the residual in the horizontal stack.

    Args:
        in_channels: channels of the stacks' input (C for the first layer, ``channels`` later).
        channels: feature maps p of each stack.
        kernel_size: odd k: the vertical kernel is (k//2+1)×k, the horizontal one 1×(k//2+1).
        data_channels: C (channel groups of the horizontal stack).
        num_classes: when set, a learned per-class bias is added to both stacks' gates.
        context_channels: when set, the layer takes s (N, S, H, W) from a :class:`ContextNetwork` as
            context instead of labels and adds V ⋆ s (1×1 convolutions) to both stacks' gates (eq. 5).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int,
        data_channels: int = 1,
        first: bool = False,
        num_classes: int | None = None,
        context_channels: int | None = None,
    ):
        super().__init__()
        k = int(kernel_size)
        if k < 1 or k % 2 == 0:
            raise ConfigError(f"kernel size must be a positive odd int, got {kernel_size}")
        _check_divisible("channels", channels, data_channels)
        self.first = first
        self.vertical = VerticalConv2d(in_channels, 2 * channels, k, shift=first)
        self.horizontal = MaskedConv2d(
            in_channels,
            2 * channels,
            (1, k // 2 + 1),
            mask_type="A" if first else "B",
            data_channels=data_channels,
            center=(0, k // 2),
        )
        # The vertical features at row r see only rows < r, so the link needs no mask (eq. 3's V→H 1×1).
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.out = MaskedConv2d(channels, channels, 1, "B", data_channels)
        if num_classes is not None:
            self.class_bias_v = nn.Embedding(num_classes, 2 * channels)
            self.class_bias_h = nn.Embedding(num_classes, 2 * channels)
            nn.init.zeros_(self.class_bias_v.weight)
            nn.init.zeros_(self.class_bias_h.weight)
        self.num_classes = num_classes
        if context_channels is not None:
            self.context_v = nn.Conv2d(context_channels, 2 * channels, 1)
            self.context_h = nn.Conv2d(context_channels, 2 * channels, 1)
        self.context_channels = context_channels

    @property
    def rows_up(self) -> int:
        return self.vertical.rows_up

    def forward(self, v: Tensor, h: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        pre_v = self.vertical(v)
        pre_h = self.horizontal(h) + self.link(pre_v)
        if self.num_classes is not None and context is not None:
            pre_v = pre_v + self.class_bias_v(context)[:, :, None, None]
            pre_h = pre_h + self.class_bias_h(context)[:, :, None, None]
        elif self.context_channels is not None and context is not None:
            # Added after the V→H link: the horizontal gate gets its own V_h ⋆ s.
            pre_v = pre_v + self.context_v(context)
            pre_h = pre_h + self.context_h(context)
        h_out = self.out(gate(pre_h))
        return gate(pre_v), (h_out if self.first else h + h_out)


class PixelCNNResidualBlock(nn.Module):
    """The residual block of the PixelCNN (Figure 5 of van den Oord et al. 2016).

    2h maps → ReLU → 1×1 (h) → ReLU → k×k masked "B" (h) [+ class bias or V ⋆ s] → ReLU → 1×1 (2h),
    added to the input. Every convolution is masked "B" so that, with C > 1, channel groups are
    respected (for C = 1 the 1×1 masks are all ones). With ``context_channels`` the context is s
    (N, S, H, W) from a :class:`ContextNetwork` and the bias is a 1×1 convolution of it.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        data_channels: int = 1,
        num_classes: int | None = None,
        context_channels: int | None = None,
    ):
        super().__init__()
        if channels % 2:
            raise ConfigError(f"residual blocks need an even number of channels, got {channels}")
        half = channels // 2
        _check_divisible("channels // 2", half, data_channels)
        self.reduce = MaskedConv2d(channels, half, 1, "B", data_channels)
        self.conv = MaskedConv2d(half, half, kernel_size, "B", data_channels)
        self.expand = MaskedConv2d(half, channels, 1, "B", data_channels)
        self.class_bias = None if num_classes is None else nn.Embedding(num_classes, half)
        if self.class_bias is not None:
            nn.init.zeros_(self.class_bias.weight)
        self.context_bias = None if context_channels is None else nn.Conv2d(context_channels, half, 1)

    @property
    def rows_up(self) -> int:
        return self.conv.rows_up

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        y = self.conv(F.relu(self.reduce(F.relu(x))))
        if self.class_bias is not None and context is not None:
            y = y + self.class_bias(context)[:, :, None, None]
        elif self.context_bias is not None and context is not None:
            y = y + self.context_bias(context)
        return x + self.expand(F.relu(y))


def receptive_rows(layers) -> int:
    """Rows above a pixel that a stack of layers (each with ``rows_up``) can read in total."""
    return sum(getattr(layer, "rows_up", 0) for layer in layers)


__all__ = [
    "ContextNetwork",
    "GatedPixelCNNLayer",
    "MaskedConv2d",
    "PixelCNNResidualBlock",
    "VerticalConv2d",
    "channel_groups",
    "channels_last",
    "gate",
    "receptive_rows",
]
