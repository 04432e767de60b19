"""Causal (decoder-only) Transformer: the modern parameterisation of the same chain rule.

Vaswani et al. (2017), "Attention Is All You Need", with the decoder-only, pre-LayerNorm arrangement of
GPT-2 (Radford et al. 2019). Position i attends to positions ≤ i of the start-shifted input, i.e. to
x_<i, so its output is p(x_i | x_<i); all D conditionals come from one parallel pass (like MADE and
PixelCNN, unlike an RNN), while every conditional can still see the whole prefix (unlike a fixed
receptive field). Sampling keeps each layer's keys and values (a KV cache) so step i costs O(i), not a
full O(i²) recomputation of the prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgm.core.errors import ConfigError
from dgm.core.registry import register
from dgm.models.autoregressive.sequence import SequenceModel, class_embedding


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, t: Tensor) -> Tensor:
        n, length, dim = t.shape
        return t.view(n, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, h: Tensor, cache: dict | None = None) -> Tensor:
        """Full causal attention when ``cache`` is None; with a cache, ``h`` holds the new positions only."""
        n, length, dim = h.shape
        q, k, v = (self._heads(t) for t in self.qkv(h).split(dim, dim=-1))
        if cache is None:
            drop = self.dropout if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
            # One new query attends to every cached position: all are in its past, no mask needed.
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, num_heads, attention_dropout)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, cache: dict | None = None) -> Tensor:
        h = h + self.drop(self.attn(self.ln1(h), cache))
        return h + self.mlp(self.ln2(h))


@register(
    "transformer-ar",
    description="decoder-only causal Transformer over tokens (characters or raster-order pixels)",
    paper="Vaswani et al. 2017, Attention Is All You Need; Radford et al. 2019 (GPT-2)",
    family="autoregressive",
    tiny={"dim": 8, "num_layers": 2, "num_heads": 2},
    supports=("binary", "categorical"),
)
class TransformerAR(SequenceModel):
    """Causal Transformer next-token model.

    Vaswani et al. (2017), "Attention Is All You Need", decoder-only as in GPT-2 (Radford et al. 2019).

    Args:
        event_shape: ``(T,)`` for text, or an image / vector read in raster order (D = its size).
        support: ``"binary"`` or ``"categorical(k)"``.
        dim, num_layers, num_heads: width, depth and heads (dim must be divisible by num_heads).
        dropout: on the embeddings and the residual branches (training only).
        attention_dropout: on the attention weights (training only). Off by default: PyTorch's fused
            CPU attention kernel has no dropout, so any value above 0 falls back to the unfused path,
            which materialises every T×T weight matrix and draws a mask over it (at T = 256 that path
            took about half of a training step, and the whole step ran 1.5–2× slower).
        num_classes: if set, a class embedding is added to every position (p(x | y)).
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        dim: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int | None = None,
    ):
        super().__init__(event_shape, support, num_classes)
        if min(dim, num_layers, num_heads) < 1 or dim % num_heads:
            raise ConfigError(
                f"dim ({dim}) must be a positive multiple of num_heads ({num_heads}); layers >= 1"
            )
        for name, p in (("dropout", dropout), ("attention_dropout", attention_dropout)):
            if not 0 <= p < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {p!r}")
        self.embed = nn.Embedding(self.vocab_size + 1, dim)
        self.position = nn.Parameter(0.02 * torch.randn(self.num_dims, dim))
        self.class_embed = class_embedding(num_classes, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, dropout, attention_dropout) for _ in range(num_layers)
        )
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, self.vocab_size)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        # GPT-2's initialisation: small normal weights keep the residual stream's scale at depth.
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def _inputs(self, tokens: Tensor, start: int, context: Tensor | None) -> Tensor:
        h = self.embed(tokens) + self.position[start : start + tokens.shape[1]]
        if self.class_embed is not None:
            h = h + self.class_embed(context)[:, None, :]
        return self.drop(h)

    def network(self, tokens: Tensor, context: Tensor | None) -> Tensor:
        h = self._inputs(tokens, 0, context)
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln(h))

    def step(self, token: Tensor, position: int, state, context: Tensor | None):
        caches = state if state is not None else [{} for _ in self.blocks]
        h = self._inputs(token[:, None], position, context)
        for block, cache in zip(self.blocks, caches, strict=True):
            h = block(h, cache)
        return self.head(self.ln(h[:, 0])), caches
