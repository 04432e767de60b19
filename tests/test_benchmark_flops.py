"""The benchmarks' FLOP count (their "share of matmul peak") covers fused kernels torch's counter skips."""

import torch

import dgm
from benchmarks.common import step_flops


def test_lstm_and_attention_kernels_are_counted():
    torch.manual_seed(0)
    n, t, vocab, hidden, embed = 3, 12, 7, 16, 5
    x = torch.randint(0, vocab, (n, t)).float()
    rnn = dgm.build(
        "rnn", event_shape=(t,), support=f"categorical({vocab})", hidden_size=hidden, embedding_dim=embed
    )
    # Forward + backward (twice the forward) of the LSTM layer and of the output layer, 2 FLOPs per MAC.
    lstm = 3 * 2 * n * t * 4 * hidden * (embed + hidden)
    head = 3 * 2 * n * t * hidden * vocab
    assert step_flops(rnn, x) == lstm + head

    dim, heads = 8, 2
    tr = dgm.build("transformer-ar", event_shape=(t,), support=f"categorical({vocab})", dim=dim, num_layers=1,
                   num_heads=heads)  # fmt: skip
    # Q·Kᵀ and the weighted sum of V over all T×T pairs: 2 · 2·n·T·T·dim forward, 2.5 times that backward.
    attention = 2 * 2 * n * t * t * dim * (1 + 2.5)
    linear = 3 * 2 * n * t * (dim * 3 * dim + dim * dim + 2 * dim * 4 * dim + dim * vocab)
    assert step_flops(tr, x) == attention + linear
