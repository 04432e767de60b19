"""Shared plumbing of the sequence models (RNN, causal Transformer): tokens, shifting, sampling.

Both read one example as a sequence of D tokens in raster order (characters of text, pixels of an image)
and predict token i from tokens < i. The input sequence is the data shifted right by one behind a
start token, so the network's output at position i is p(x_i | x_<i) (teacher forcing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError, DataError
from dgm.core.model import GenerativeModel
from dgm.core.progress import steps


class SequenceModel(GenerativeModel):
    """Base class: a network mapping start-shifted tokens to next-token logits.

    Subclasses implement :meth:`network` (all positions at once, for ``log_prob``) and :meth:`step`
    (one position given a recurrent state or cache, for sampling without recomputing the prefix).
    """

    def __init__(self, event_shape, support: str, num_classes: int | None):
        super().__init__(event_shape, support)
        if not self.support.discrete:
            raise ConfigError(f"{type(self).__name__} models discrete tokens (binary or categorical(k))")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(f"num_classes must be a positive int or None, got {num_classes!r}")
        self.num_classes = num_classes
        self.vocab_size = self.support.num_categories
        self.start_token = self.vocab_size  # one extra embedding row

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    # ------------------------------------------------------------------ subclass hooks
    def network(self, tokens: Tensor, context: Tensor | None) -> Tensor:
        """Logits ``(N, D, vocab)`` for input tokens ``(N, D)`` (start token first)."""
        raise NotImplementedError

    def step(self, token: Tensor, position: int, state, context: Tensor | None) -> tuple[Tensor, object]:
        """Logits ``(N, vocab)`` at ``position`` given the previous token, and the updated state."""
        raise NotImplementedError

    # ------------------------------------------------------------------ contract
    def shift(self, x: Tensor) -> Tensor:
        """Inputs for teacher forcing: [start, x_0, ..., x_{D-2}]."""
        start = torch.full((len(x), 1), self.start_token, dtype=torch.long, device=x.device)
        return torch.cat([start, x[:, :-1]], 1)

    def conditionals(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(x_i = v | x_<i) for every position and value, shape ``(N, D, vocab)``."""
        x = self.validate(x).reshape(len(x), -1).long()
        return self.network(self.shift(x), self.class_labels(context, len(x))).log_softmax(-1)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.validate(x).reshape(len(x), -1).long()
        logits = self.network(self.shift(x), self.class_labels(context, len(x)))
        return -F.cross_entropy(logits.transpose(1, 2), x, reduction="none").sum(1)

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        prefix: Tensor | None = None,
    ):
        """Ancestral sampling, one position per step with the recurrent state / key-value cache.

        ``temperature`` divides the logits and ``top_k`` keeps the k most probable tokens: both change the
        distribution sampled from (1.0 and None sample the model itself). ``prefix`` ``(n, P)`` fixes the
        first P tokens (a prompt) and continues from them.
        """
        n = self.check_num_samples(num_samples)
        if not temperature > 0:
            raise ConfigError(f"temperature must be positive, got {temperature!r}")
        if top_k is not None and not 1 <= top_k <= self.vocab_size:
            raise ConfigError(f"top_k must be in 1..{self.vocab_size}, got {top_k!r}")
        ctx = self.class_labels(context, n)
        D = self.num_dims
        out = torch.zeros(n, D, dtype=torch.long, device=self.device)
        P = 0
        if prefix is not None:
            if not isinstance(prefix, Tensor) or prefix.dim() != 2 or len(prefix) != n or prefix.shape[1] > D:
                raise DataError(f"prefix must be a tensor of shape ({n}, P) with P <= {D}")
            P = prefix.shape[1]
            out[:, :P] = (
                self.validate(
                    torch.cat([prefix.float(), torch.zeros(n, D - P, device=prefix.device)], 1).reshape(
                        n, *self.event_shape
                    )
                )
                .reshape(n, -1)[:, :P]
                .long()
            )
        token = torch.full((n,), self.start_token, dtype=torch.long, device=self.device)
        state = None
        for i in steps(D, "token"):
            logits, state = self.step(token, i, state, ctx)
            if i < P:
                token = out[:, i]
                continue
            logits = logits / temperature
            if top_k is not None and top_k < self.vocab_size:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            token = draw(Categorical(logits=logits), (), generator)
            out[:, i] = token
        return out.float().reshape(n, *self.event_shape)


def class_embedding(num_classes: int | None, dim: int) -> nn.Embedding | None:
    return None if num_classes is None else nn.Embedding(num_classes, dim)
