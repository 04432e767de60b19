"""How fast a model runs on this machine, and what share of the machine that is.

A training step (forward, backward, Adam update) timed as the trainer runs it, the FLOPs that step
executes (torch's counter), this machine's measured matmul peak, and the rates of scoring
(``log_prob``) and sampling. ``dgm bench`` prints these for any registered model; the scripts in
``benchmarks/`` state them beside every row.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import re
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor


def machine(threads: bool = True) -> str:
    """This machine in one line; ``threads``: with the current process's torch thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    thr = f", {torch.get_num_threads()} threads" if threads else ""
    return f"{cpu}, {os.cpu_count()} cores{mem}{gpu}; torch {torch.__version__}{thr}"


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously), so a timer measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def peak_rates(
    seconds: float = 1.0, bf16: bool = False, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Measured ceilings of this machine: fp32 matmul GFLOP/s, memory-copy GB/s and, with ``bf16``,
    bf16 matmul GFLOP/s (1024 × 1024 products and a 64 MB copy, each repeated for ``seconds``; on a GPU,
    8192 × 8192 products, since 1024 leaves most of a large GPU idle, and fp32 as torch's TF32 setting has
    it)."""
    n = 8192 if torch.device(device).type == "cuda" else 1024

    def rate(work, amount: float) -> float:
        work()
        synchronize(device)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            work()
            reps += 1
            if reps % 16 == 0:
                synchronize(device)
        synchronize(device)
        return amount * reps / (time.perf_counter() - t0) / 1e9

    def matmul_rate(dtype: torch.dtype) -> float:
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        return rate(lambda: torch.mm(a, b), 2 * n**3)

    rates = {"gflops": matmul_rate(torch.float32)}
    if bf16:
        rates["bf16_gflops"] = matmul_rate(torch.bfloat16)
    x = torch.empty(64 * 2**20 // 4, device=device)
    y = torch.empty_like(x)
    rates["gbps"] = rate(lambda: y.copy_(x), 2 * x.numel() * 4)
    return rates


def _rnn_layer_flops(input_shape, w_ih_shape, w_hh_shape) -> int:
    # One fused recurrent layer (oneDNN's LSTM/GRU kernel): every token multiplies its input and the
    # previous hidden state by the gate matrices, 2 * tokens * gates·H * (I + H).
    tokens = math.prod(input_shape[:-1])
    return 2 * tokens * w_ih_shape[0] * (w_ih_shape[1] + w_hh_shape[1])


def extra_flop_formulas() -> dict:
    """Formulas for CPU kernels torch's FLOP counter does not know, so that their models' shares are not
    understated: the fused recurrent layer behind ``nn.LSTM``/``nn.GRU`` (its backward computes the input,
    hidden and weight gradients: twice the forward) and the CPU flash-attention kernel of
    ``scaled_dot_product_attention`` (torch's own formulas for the other attention kernels)."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def rnn_forward(input, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
        return _rnn_layer_flops(input, w_ih, w_hh)

    def rnn_backward(input, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
        return 2 * _rnn_layer_flops(input, w_ih, w_hh)

    def attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    def attention_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out, query, key, value)

    return {
        aten.mkldnn_rnn_layer: rnn_forward,
        aten.mkldnn_rnn_layer_backward: rnn_backward,
        aten._scaled_dot_product_flash_attention_for_cpu: attention,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: attention_backward,
    }


def _on(t: Tensor | None, device) -> Tensor | None:
    return None if t is None else t.to(device)


def trainable(model) -> bool:
    """Whether the model has parameters for gradient training (closed-form models may have none)."""
    return any(p.requires_grad for p in model.parameters())


def time_train_step(
    model,
    batch: Tensor,
    device: torch.device | str = "cpu",
    repeats: int = 5,
    precision: str = "fp32",
    context: Tensor | None = None,
) -> float:
    """Median seconds of one Adam step (forward, backward, update) on a copy of the model in training
    mode, under the trainer's autocast for ``precision`` and its checks (values_checked), with the
    trainer's Adam (fused where torch has the kernel), after two warm-up steps (they allocate and pick
    kernels)."""
    from dgm.core.support import values_checked
    from dgm.training import optim
    from dgm.training.precision import autocast

    m = copy.deepcopy(model).to(device).train()
    opt = optim.make("adam", m.parameters(), lr=1e-3)
    x, c = batch.to(device), _on(context, device)
    times = []
    for i in range(repeats + 2):
        synchronize(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(torch.device(device).type, precision), values_checked():
            loss = m.loss(x) if c is None else m.loss(x, c)
        loss.backward()
        opt.step()
        synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def step_flops(
    model, batch: Tensor, device: torch.device | str = "cpu", context: Tensor | None = None
) -> float:
    """FLOPs of one training forward + backward pass as executed (masked entries are computed, so they
    count), from torch's FLOP counter (matmuls, convolutions, attention and fused recurrent layers;
    elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).to(device)
    with FlopCounterMode(display=False, custom_mapping=extra_flop_formulas()) as counter:
        m.loss(batch.to(device), _on(context, device)).backward()
    return float(counter.get_total_flops())


@contextlib.contextmanager
def _evaluating(model):
    """The model in eval mode inside, its own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def time_log_prob(
    model, x: Tensor, context: Tensor | None = None, batch_size: int = 1000, device="cpu"
) -> float:
    """Seconds for ``log_prob`` of all of ``x`` in eval mode, in batches, after one warm-up batch."""
    with _evaluating(model.to(device)):
        return _time_log_prob(model, x.to(device), _on(context, device), batch_size, device)


def _time_log_prob(model, x: Tensor, c: Tensor | None, batch_size: int, device) -> float:
    def score(lo: int, hi: int):
        model.log_prob(x[lo:hi], None if c is None else c[lo:hi])

    score(0, min(batch_size, len(x)))
    synchronize(device)
    t0 = time.perf_counter()
    for lo in range(0, len(x), batch_size):
        score(lo, lo + batch_size)
    synchronize(device)
    return time.perf_counter() - t0


@torch.no_grad()
def time_sample(model, num_samples: int, context: Tensor | None = None, device="cpu") -> float:
    """Seconds for one ``sample(num_samples)`` call in eval mode (a fixed generator)."""
    with _evaluating(model.to(device)):
        gen = torch.Generator(device=device).manual_seed(0)
        synchronize(device)
        t0 = time.perf_counter()
        model.sample(num_samples, context=_on(context, device), generator=gen)
        synchronize(device)
        return time.perf_counter() - t0


def benchmark(
    model,
    batch: Tensor,
    *,
    context: Tensor | None = None,
    num_train: int | None = None,
    score: Tensor | None = None,
    score_context: Tensor | None = None,
    num_samples: int = 100,
    sample_context: Tensor | None = None,
    precisions=("fp32",),
    peak: dict | None = None,
    repeats: int = 5,
    device: torch.device | str = "cpu",
) -> dict:
    """One model's speed as plain data: parameters; per precision the median training step on ``batch``
    (and the epoch of ``num_train`` examples it implies) with its share of ``peak`` (from
    :func:`peak_rates`); FLOPs per step; ``log_prob`` examples per second over ``score``; samples per
    second of one ``sample(num_samples)`` call. Keys absent where a figure does not apply (a model
    without trainable parameters has no step; a discriminative model draws no samples)."""
    row: dict = {"params": model.num_parameters()}
    if trainable(model):
        flops = step_flops(model, batch, device, context)
        row["gflop_per_step"] = flops / 1e9
        for precision in precisions:
            seconds = time_train_step(model, batch, device, repeats, precision, context)
            row[f"step_s_{precision}"] = seconds
            if num_train:
                row[f"epoch_s_{precision}"] = seconds * math.ceil(num_train / len(batch))
            rate = (peak or {}).get("gflops" if precision == "fp32" else f"{precision}_gflops")
            if rate and flops:
                row[f"peak_share_{precision}"] = flops / seconds / 1e9 / rate
    if score is not None and len(score):
        row["log_prob_per_s"] = len(score) / time_log_prob(model, score, score_context, device=device)
    if num_samples and not getattr(model, "discriminative", False):
        row["samples_per_s"] = num_samples / time_sample(model, num_samples, sample_context, device)
    return row
