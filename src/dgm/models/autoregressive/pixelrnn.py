"""PixelRNN's Row LSTM: the chain rule over pixels with a recurrence that runs down the image, row by row.

van den Oord, Kalchbrenner & Kavukcuoglu (2016), "Pixel Recurrent Neural Networks", §3.1 and §3.4:
a k0×k0 type-"A" masked convolution on the data, then Row LSTM layers with residual connections, then
two ReLU + 1×1 convolutions to the per-pixel output distribution (shared with :mod:`.pixelcnn`).

A Row LSTM layer processes the image one row at a time, every column of a row in parallel. With the
layer input x (2h maps, already causal: its value at a pixel depends only on earlier pixels) and the
previous row's hidden and cell states h_{r-1}, c_{r-1} (h maps each), eq. (3) of the paper reads

    [o, f, i, g] = σ(K_ss ⊛ h_{r-1} + K_is ⊛ x_r),    c_r = f ⊙ c_{r-1} + i ⊙ g,    h_r = o ⊙ tanh(c_r)

with σ the logistic sigmoid for o, f, i and tanh for g. The input-to-state K_is is a 1×k convolution
masked type "B" over the current row (columns c-k//2 .. c, see :class:`dgm.nn.conv.MaskedConv2d`),
computed for all rows at once; the state-to-state K_ss is an unmasked width-k convolution over the
previous row's hidden states (columns c-k//2 .. c+k//2), which is what makes the layer recurrent. A 1×1
convolution maps h_r back to 2h maps and adds it to x (the residual connection of §3.4).

Why this is causal: x_r at column c' ≤ c sees only pixels before (r, c'), hence before (r, c); every
value of rows < r precedes (r, c) in raster order, whatever its column. The receptive field is a
triangle widening upwards by k//2 columns per row; it misses part of the current row's left context
and the pixels beyond that triangle (the paper's Figure 4), never a current or later pixel.

The conditionals are Bernoulli for binary images and categorical(k) otherwise, in raster order over
rows, columns and channels (channel groups as in :mod:`dgm.nn.conv`: the gates are elementwise, so
hidden map j keeps group j % C when h is a multiple of C). ``log_prob`` is exact, in nats; sampling
is sequential, one forward pass per value.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dgm.core.errors import ConfigError
from dgm.core.registry import register
from dgm.models.autoregressive.pixelcnn import _PixelCNNBase
from dgm.nn.conv import MaskedConv2d

# Small and shallow, as for the PixelCNNs: the shared tests perturb every parameter by N(0, 0.7²) and
# saturated logits would make seeded samples coincide across seeds.
_TINY = {"channels": 4, "num_layers": 1, "kernel_size": 3, "first_kernel_size": 3, "output_channels": 2}


class RowLSTMLayer(nn.Module):
    """One Row LSTM layer with its residual connection: (N, 2h, H, W) → (N, 2h, H, W).

    Args:
        channels: 2h, the maps of the layer's input and output.
        kernel_size: odd k of both the input-to-state (masked, left half and centre) and state-to-state
            (full width, on the row above) convolutions.
        data_channels: C (channel groups of the masked convolutions).
        num_classes: when set, a learned per-class bias on the four gates' pre-activations.
    """

    def __init__(
        self, channels: int, kernel_size: int, data_channels: int = 1, num_classes: int | None = None
    ):
        super().__init__()
        hidden = channels // 2
        self.hidden = hidden
        k = kernel_size
        # K_is, the input-to-state convolution: columns c-k//2 .. c of the current row (mask "B").
        self.in_row = MaskedConv2d(channels, 4 * hidden, (1, k), "B", data_channels, center=(0, k // 2))
        # K_ss, the state-to-state convolution over the row above: every value of that row precedes every
        # pixel of the current row, so it needs no mask.
        self.row_to_row = nn.Conv1d(hidden, 4 * hidden, k, padding=k // 2, bias=False)
        self.out = MaskedConv2d(hidden, channels, 1, "B", data_channels)
        self.class_bias = None if num_classes is None else nn.Embedding(num_classes, 4 * hidden)
        if self.class_bias is not None:
            nn.init.zeros_(self.class_bias.weight)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        n, _, H, W = x.shape
        pre = self.in_row(x)  # (N, 4h, H, W): row-local, so all rows in one convolution
        if self.class_bias is not None and context is not None:
            pre = pre + self.class_bias(context)[:, :, None, None]
        h = pre.new_zeros(n, self.hidden, W)
        c = pre.new_zeros(n, self.hidden, W)
        rows = []
        for r in range(H):
            o, f, i, g = (pre[:, :, r] + self.row_to_row(h)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            rows.append(h)
        return x + self.out(torch.stack(rows, dim=2))


@register(
    "pixelrnn",
    description="PixelRNN (Row LSTM): a masked conv, then LSTM layers run row by row; exact likelihood",
    paper="van den Oord, Kalchbrenner & Kavukcuoglu 2016, Pixel Recurrent Neural Networks",
    family="autoregressive",
    tiny=_TINY,
    supports=("binary", "categorical"),
    shape="image",
)
class PixelRNN(_PixelCNNBase):
    """PixelRNN with Row LSTM layers (§3.1 of van den Oord et al. 2016).

    Args:
        event_shape: (C, H, W).
        support: ``"binary"`` (Bernoulli outputs) or ``"categorical(k)"`` (k-way softmax per value).
        channels: width 2h of the residual stream; each LSTM has h = channels/2 hidden and cell maps.
        num_layers: Row LSTM layers after the first convolution (the paper uses up to 12).
        kernel_size: odd width k of the LSTMs' input-to-state and state-to-state convolutions (3 in the
            paper).
        first_kernel_size: odd size of the type-"A" first convolution (7 in the paper).
        output_channels: width of the 1×1 output layers (default: ``channels``).
        num_classes: class-conditional when set: a learned class bias after the first layer and on the
            gates of every LSTM layer.
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        channels: int = 32,
        num_layers: int = 2,
        kernel_size: int = 3,
        first_kernel_size: int = 7,
        output_channels: int | None = None,
        num_classes: int | None = None,
    ):
        super().__init__(event_shape, support)
        C = self._check(
            event_shape, support, num_classes, channels, num_layers, kernel_size, first_kernel_size
        )
        if channels % (2 * C):
            raise ConfigError(
                f"channels ({channels}) must be a multiple of twice the number of data channels ({2 * C}): "
                "the residual stream and the LSTM's hidden state (channels/2) are split into channel groups"
            )
        self._width = channels
        self.first = MaskedConv2d(C, channels, first_kernel_size, "A", C)
        self.first_class_bias = None if num_classes is None else nn.Embedding(num_classes, channels)
        if self.first_class_bias is not None:
            nn.init.zeros_(self.first_class_bias.weight)
        self.layers = nn.ModuleList(
            [RowLSTMLayer(channels, kernel_size, C, num_classes) for _ in range(num_layers)]
        )
        self._build_head(output_channels)

    @property
    def receptive_rows(self) -> int:
        # The recurrence carries information from the top row down: the sampler must run on every row
        # above the current one (rows below are never needed, the recurrence only runs downwards).
        return self.event_shape[1]

    def _features(self, x: Tensor, context: Tensor | None) -> Tensor:
        h = self.first(x)
        if self.first_class_bias is not None:
            h = h + self.first_class_bias(context)[:, :, None, None]
        for layer in self.layers:
            h = layer(h, context)
        return h
