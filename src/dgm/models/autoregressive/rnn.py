"""Recurrent autoregressive model: an LSTM or GRU reads x_<i and predicts x_i.

The hidden state summarises the whole prefix in a fixed-size vector, so the number of parameters does
not grow with D (unlike FVSBN's D²/2 or NADE's HD) and sequences of any length share them: this is the
char-RNN for text (Karpathy 2015; Graves 2013, "Generating Sequences With Recurrent Neural Networks")
and, over pixels in raster order, the simplest PixelRNN-like image model. Sampling carries the hidden
state forward, one cell update per token.
"""

from __future__ import annotations

from torch import Tensor, nn

from dgm.core.errors import ConfigError
from dgm.core.registry import register
from dgm.models.autoregressive.sequence import SequenceModel, class_embedding


@register(
    "rnn",
    description="LSTM/GRU over tokens in order: char-RNN for text, pixels in raster order for images",
    paper="Graves 2013, Generating Sequences With Recurrent Neural Networks (CS236 lecture 4)",
    family="autoregressive",
    tiny={"hidden_size": 8, "embedding_dim": 4},
    supports=("binary", "categorical"),
)
class RNN(SequenceModel):
    """Recurrent next-token model.

    Graves (2013), "Generating Sequences With Recurrent Neural Networks".

    Args:
        event_shape: ``(T,)`` for text, or an image / vector read in raster order.
        support: ``"binary"`` or ``"categorical(k)"`` (k characters for text).
        cell: ``"lstm"`` or ``"gru"``.
        hidden_size, num_layers: size of the recurrent stack.
        embedding_dim: size of the learned token embedding.
        dropout: between recurrent layers and before the output layer (training only).
        num_classes: if set, a class embedding is added to every input embedding, so every step sees the
            label (p(x | y)).
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        cell: str = "lstm",
        hidden_size: int = 256,
        num_layers: int = 1,
        embedding_dim: int = 64,
        dropout: float = 0.0,
        num_classes: int | None = None,
    ):
        super().__init__(event_shape, support, num_classes)
        if cell not in ("lstm", "gru"):
            raise ConfigError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        if min(hidden_size, num_layers, embedding_dim) < 1 or not 0 <= dropout < 1:
            raise ConfigError("hidden_size, num_layers and embedding_dim must be >= 1 and dropout in [0, 1)")
        self.cell = cell
        self.embed = nn.Embedding(self.vocab_size + 1, embedding_dim)
        self.class_embed = class_embedding(num_classes, embedding_dim)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(
            embedding_dim,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, self.vocab_size)

    def _inputs(self, tokens: Tensor, context: Tensor | None) -> Tensor:
        e = self.embed(tokens)
        if self.class_embed is not None:
            e = e + self.class_embed(context)[:, None, :]
        return e

    def network(self, tokens: Tensor, context: Tensor | None) -> Tensor:
        h, _ = self.rnn(self._inputs(tokens, context))
        return self.head(self.drop(h))

    def step(self, token: Tensor, position: int, state, context: Tensor | None):
        h, state = self.rnn(self._inputs(token[:, None], context), state)
        return self.head(h[:, 0]), state
