"""Speed of every autoregressive model on MNIST (issue #4): a training epoch, scoring, 100 samples.

    DGM_DATA_DIR=../shared/data python -m benchmarks.ar_speed --threads 1
    DGM_DATA_DIR=../shared/data python -m benchmarks.ar_speed --threads 1 --models pixelrnn,transformer-ar

For each model, at the size of its benchmark row where it has one (the registry's defaults otherwise):
parameters; the time of one Adam step on 100 training images (median of 5 after 2 warm-up steps) and
the epoch it implies (500 such steps cover the 50,000 training images; validation excluded); the step's
share of this machine's fp32 matmul peak (FLOPs as executed, from torch's counter); the same step under
bf16 autocast and its share of the bf16 peak; `log_prob` of 1,000
test images; and one `sample(100)` call. The weights are fresh: every cost here depends on the
architecture only. RNADE models real values, so it runs on dequantised MNIST; every other model on the
fixed binarisation. The pixel models read 1×28×28 images, the rest 784 values in raster order.
"""

from __future__ import annotations

import argparse
import time

import torch

import dgm
from benchmarks.autoregressive_mlp import MADE_1X500, MADE_1X8000_OA
from benchmarks.common import peak_rates, step_flops, table, time_train_step, update_results

PIXELCNN = {"num_layers": 6, "kernel_size": 3, "first_kernel_size": 7}
# name → (registry model, options, image-shaped input, the benchmark row whose network this is)
MODELS = {
    "fvsbn": ("fvsbn", {}, False, "autoregressive-mlp"),
    "nade": ("nade", {"hidden_size": 500}, False, "autoregressive-mlp"),
    "rnade": ("rnade", {"hidden_size": 500, "num_components": 10}, False, "Uria et al.'s MNIST size"),
    "made-1x500": ("made", MADE_1X500, False, "autoregressive-mlp"),
    "made-1x8000-oa": ("made", MADE_1X8000_OA, False, "autoregressive-mlp"),
    "pixelrnn": ("pixelrnn", {}, True, "registry defaults"),
    "pixelcnn": ("pixelcnn", {"channels": 48, **PIXELCNN}, True, "pixelcnn"),
    "gated-pixelcnn": ("gated-pixelcnn", {"channels": 16, **PIXELCNN}, True, "pixelcnn"),
    "rnn": ("rnn", {}, False, "registry defaults"),
    "transformer-ar": ("transformer-ar", {}, False, "registry defaults"),
}
BATCH = 100


def data(name: str, image: bool):
    """Training and test images for ``name``: a few batches' worth is all the timings use."""
    source = "mnist-dequantized" if name == "rnade" else "binarized-mnist"
    train, test = (dgm.data.load(source, split) for split in ("train", "test"))
    if source == "mnist-dequantized":  # the training split dequantises per batch: draw it once here
        gen = torch.Generator().manual_seed(0)
        x = train.transform(train.x[:1000], gen)
        return x.flatten(1), test.x[:1000].flatten(1), (784,), "real"
    if image:
        train, test = (d.reshape_to((1, 28, 28)) for d in (train, test))
    return train.x[:1000], test.x[:1000], train.event_shape, train.support


def measure(label: str, peak: dict) -> dict:
    name, options, image, network = MODELS[label]
    train, test, event_shape, support = data(name, image)
    torch.manual_seed(0)
    model = dgm.build(name, event_shape=event_shape, support=support, **options)
    batch = train[:BATCH]
    step_s = time_train_step(model, batch)
    bf16_s = time_train_step(model, batch, precision="bf16")
    flops = step_flops(model, batch)
    model.eval()
    with torch.no_grad():
        model.log_prob(test[:BATCH])  # allocate once before timing
        t0 = time.perf_counter()
        model.log_prob(test)
        score_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.sample(100, generator=torch.Generator().manual_seed(0))
        sample_s = time.perf_counter() - t0
    row = {
        "model": label,
        "network": network,
        "params": f"{model.num_parameters():,}",
        "ms/step (100)": f"{step_s * 1e3:.1f}",
        "time/epoch": f"{step_s * 50_000 / BATCH:.0f} s",
        "share of matmul peak": f"{flops / step_s / 1e9 / peak['gflops']:.0%}",
        "ms/step, bf16 autocast": f"{bf16_s * 1e3:.1f}",
        "share of bf16 peak": f"{flops / bf16_s / 1e9 / peak['bf16_gflops']:.0%}",
        "log_prob, 1,000 images": f"{score_s:.2f} s",
        "100 samples": f"{sample_s:.2f} s",
        "samples/s": f"{100 / sample_s:.1f}",
    }
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    labels = args.models.split(",")
    unknown = [m for m in labels if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    torch.set_num_threads(args.threads)
    peak = peak_rates(2.0, bf16=True)
    rows = [measure(label, peak) for label in labels]
    body = table(rows, list(rows[0]))
    step_ms = {r["model"]: float(r["ms/step (100)"]) for r in rows}
    ratio = step_ms["transformer-ar"] / step_ms["rnn"] if {"rnn", "transformer-ar"} <= set(step_ms) else None
    print(body)
    update_results(
        "autoregressive-speed",
        "## Autoregressive models: training epoch, scoring and sampling speed on MNIST (issue #4)\n\n"
        f"One thread, fresh weights, batch {BATCH}; the epoch is 500 times the median step (50,000 "
        "training images), validation excluded; share: FLOPs of a step as executed over its time, "
        f"against the {peak['gflops']:.0f} GFLOP/s fp32 matmul peak measured by the same run; the bf16 "
        "columns time the same step under the trainer's bf16 autocast (`--precision bf16`) against the "
        f"{peak['bf16_gflops']:.0f} GFLOP/s bf16 peak. Networks: the "
        "benchmark row named, or the registry's defaults. rnade runs on dequantised MNIST, the others "
        "on the fixed binarisation (see the docstring of `benchmarks/ar_speed.py`).\n\n"
        + body
        + "\n\nSampling costs D = 784 sequential steps in every model; what differs is each step's work. "
        "FVSBN's step is a dot product with all earlier values (O(D²) per sample); NADE and RNADE update "
        "one hidden state (O(HD)); MADE computes each hidden unit once, at its degree (one network "
        "evaluation in all); the RNN advances its state by one token and the Transformer attends from one "
        "new position to its key-value cache; the PixelCNNs recompute the band of rows the current "
        "pixel can see, PixelRNN every row above it (its receptive field reaches the top row). The "
        "Transformer's attention is counted as the dense T×T products "
        "(torch's formula); its causal CPU kernel skips the blocks above the diagonal, so that share is "
        "an upper bound. At T = 784 attention is about half of its counted FLOPs"
        + (f": its step costs {ratio:.1f} times the LSTM's here." if ratio else ".")
        + " Step times depend on the host more than on anything in `dgm`: the fp32-only table this one "
        "replaced (AMD EPYC, 2026-11-25; git history at f4f241d) had steps 1.1 to 3.1 times shorter, e.g. "
        "nade 70.6 ms, pixelrnn 240.5, pixelcnn 260.0, rnn 1534.2, transformer-ar 10850.5, except "
        "made-1x8000-oa's (131.0 ms), whose large products this host runs as fast. Compare within one "
        "table.\n",
    )


if __name__ == "__main__":
    main()
