"""Character models on tiny Shakespeare (issue #4): LSTM char-RNN and a causal Transformer.

    DGM_DATA_DIR=../shared/data python -m benchmarks.sequence --max-minutes 20 --precision bf16
    DGM_DATA_DIR=../shared/data python -m benchmarks.sequence --models transformer-ar --max-minutes 14
    python -m benchmarks.sequence --report                      (redraw RESULTS.md from stored rows)

Each finished model's row is kept under ``benchmarks/rows/sequence/`` (versioned) with its command, and the
RESULTS.md section is redrawn from all of them, so models may run in separate invocations.

Each model trains through `dgm.train` (Adam, batch 32 sequences of 256 characters, validation every
epoch) until its wall-clock budget is spent, with a linear warm-up and a cosine decay to a tenth of the
rate over the steps the budget is expected to hold (from a timed step before training), then reports
the exact test NLL in nats per character and bits per character (each 256-character chunk is scored
from a cold start: its first characters have no context, which costs a little against figures computed
with a sliding window), parameters, time per step and per epoch, the step's share of this machine's
matmul peak, sampling speed, and writes a text sample under `benchmarks/figures/`. ``--precision bf16``
trains under bf16 autocast (`dgm.training.precision`; evaluation stays fp32), and the share is then of
the bf16 peak. Anchor: nanoGPT's
character-level Shakespeare (a 10.7M-parameter Transformer on a GPU) reaches about 1.47 nats/char on its
validation split; the issue's CPU target is ≤ 1.7 nats/char.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch

import dgm
from benchmarks.common import (
    ROWS,
    peak_rates,
    save_row,
    step_flops,
    stored_rows,
    table,
    time_train_step,
    update_results,
)
from dgm.data.sources import decode

FIGURES = Path(__file__).with_name("figures")
STORE = ROWS / "sequence"

# Two networks of about equal cost per step (0.66 and 0.72 s for 32×256 characters on one thread of the
# AMD EPYC, bf16): the comparison is of parameterisations at equal compute, not of parameter counts.
CONFIGS = {
    "rnn": {"cell": "lstm", "hidden_size": 512, "num_layers": 2, "embedding_dim": 64, "dropout": 0.2},
    "transformer-ar": {"dim": 192, "num_layers": 4, "num_heads": 6, "dropout": 0.0},
}
LEARNING_RATES = {"rnn": 3e-3, "transformer-ar": 1e-3}
WARMUP_STEPS = 100


def run(name: str, minutes: float, seq_len: int, batch_size: int, precision: str, peak: dict) -> dict:
    train, valid, test = (
        dgm.data.load("tinyshakespeare", s, seq_len=seq_len) for s in ("train", "valid", "test")
    )
    torch.manual_seed(0)
    model = dgm.build(name, event_shape=train.event_shape, support=train.support, **CONFIGS[name])
    batch = train.x[:batch_size]
    step_s = time_train_step(model, batch, precision=precision)
    flops = step_flops(model, batch)
    share = flops / step_s / 1e9 / peak["bf16_gflops" if precision == "bf16" else "gflops"]
    # The cosine schedule needs its length up front: the steps the budget holds at the timed rate, less
    # a tenth for validation passes and a busy machine (the deadline below still ends training on time).
    max_steps = max(WARMUP_STEPS + 1, int(0.9 * 60 * minutes / step_s))
    lr = LEARNING_RATES[name]
    print(
        f"{name}: {model.num_parameters():,} parameters; {step_s * 1e3:.0f} ms/step, "
        f"{flops / step_s / 1e9:.1f} GFLOP/s = {share:.1%} of the {precision} matmul peak; "
        f"cosine over {max_steps} steps",
        flush=True,
    )
    deadline = time.monotonic() + 60 * minutes
    seen = {}

    def budget(trainer):
        seen["trainer"] = trainer
        if time.monotonic() > deadline:
            trainer.request_stop()  # raises TrainingInterrupted at this step boundary

    t0 = time.perf_counter()
    with contextlib.suppress(dgm.TrainingInterrupted):  # the budget is spent: evaluate the weights so far
        dgm.train(
            model, train, valid, epochs=1000, batch_size=batch_size, lr=lr, grad_clip=1.0, patience=5,
            callbacks=[budget], progress=False, precision=precision, lr_schedule="cosine", lr_min=lr / 10,
            warmup_steps=WARMUP_STEPS, max_steps=max_steps,
        )  # fmt: skip
    train_s = time.perf_counter() - t0
    state = seen["trainer"].state
    model.eval()
    out = dgm.evaluate(model, test, batch_size=64)
    nats_per_char = out["nll"] / seq_len
    t1 = time.perf_counter()
    samples = model.sample(4, generator=torch.Generator().manual_seed(0))
    sample_s = time.perf_counter() - t1
    FIGURES.mkdir(exist_ok=True)
    text = "\n\n----\n\n".join(decode(s.long(), train.vocab) for s in samples)
    (FIGURES / f"sequence_{name}.txt").write_text(text)
    epoch_times = [h["epoch_time_s"] for h in state.history]
    curve = [round(h["valid_nll"] / seq_len, 3) for h in state.history]
    print(f"{name}: valid nats/char per epoch {curve}", flush=True)
    return {
        "model": name,
        "config": ", ".join(f"{k}={v}" for k, v in CONFIGS[name].items()),
        "params": f"{model.num_parameters():,}",
        "train time": f"{train_s / 60:.1f} min",
        "steps": state.step,
        "epochs": f"{state.step * batch_size / len(train):.1f}",
        "ms/step": f"{step_s * 1e3:.0f}",
        "time/epoch": f"{sum(epoch_times) / len(epoch_times):.0f} s" if epoch_times else "—",
        "share of matmul peak": f"{share:.0%} ({precision})",
        "schedule": f"Adam {lr:g}, warm-up {WARMUP_STEPS}, cosine to {lr / 10:g} over {max_steps:,} steps",
        "test nats/char (exact)": f"{nats_per_char:.3f}",
        "bits/char": f"{out['bits_per_dim']:.3f}",
        "sampling": f"{4 * seq_len / sample_s:.0f} chars/s",
        "anchor": "≈1.47 (nanoGPT char, GPU); target ≤ 1.7 on CPU",
        "budget": f"{minutes:g} min, seq {seq_len}, batch {batch_size}, {torch.get_num_threads()} thr, "
        + precision,
        "valid curve": curve,
    }


COLUMNS = ["model", "config", "params", "schedule", "train time", "steps", "epochs", "ms/step", "time/epoch"]
COLUMNS += ["share of matmul peak", "test nats/char (exact)", "bits/char", "sampling", "anchor", "budget"]


HISTORY = (
    "The rows before 2026-11-26 (fp32, a constant rate, one thread of a loaded machine) were a 1×512 LSTM, "
    "1.583 nats/char after 7.0 epochs, and this Transformer with dropout 0.1 on the attention weights as "
    "well, 2.178 after 3.3 epochs at 2.95 s per step. Attention-weight dropout sends PyTorch's CPU "
    "attention to its unfused path (`attention_dropout` in `transformer-ar`, now off by default); without "
    "it the step took 1.33 s in fp32 and, with no dropout at all, 0.71 s under bf16 autocast (this "
    "machine's bf16 matmul peak is about 4.5 times its fp32 one on one thread). With four times the steps "
    "the same 1×512 LSTM would overfit, so its row became a 2×512 LSTM with dropout 0.2, as costly per "
    "step as the Transformer."
)


def report(rows: list[dict]) -> str:
    curves = "\n".join(f"- {r['model']}: validation nats/char per epoch {r['valid curve']}" for r in rows)
    commands = "\n".join(f"- {r['model']}: `{r['command']}`" for r in rows)
    return (
        "## Character models on tiny Shakespeare (issue #4)\n\n"
        "Test split (last 5% of the text) in non-overlapping chunks of the row's sequence length, each "
        "scored from a cold start; exact NLL. Adam, gradient clipping 1.0, a wall-clock budget per model "
        "(training stops at the budget, mid-epoch if need be; the best-validation weights are scored). "
        '"share of matmul peak": FLOPs of one training step (torch\'s FLOP counter, with the fused LSTM '
        "layer and CPU attention kernels added) over the step's measured time, against this machine's "
        "measured matmul peak in the row's precision. Samples: `benchmarks/figures/sequence_*.txt`."
        "\n\n"
        + table(rows, COLUMNS)
        + "\n\n"
        + curves
        + "\n\n"
        + HISTORY
        + "\n\nCommands (each row's own run):\n\n"
        + commands
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="rnn,transformer-ar")
    parser.add_argument("--max-minutes", type=float, default=25.0, help="training budget per model")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="training precision (bf16 autocast)"
    )
    parser.add_argument(
        "--report", action="store_true", help="redraw the RESULTS.md section from stored rows"
    )
    args = parser.parse_args()
    if not args.report:
        torch.set_num_threads(args.threads)
        peak = peak_rates(bf16=args.precision == "bf16")
        for m in args.models.split(","):
            row = run(m, args.max_minutes, args.seq_len, args.batch_size, args.precision, peak)
            save_row(STORE, m, row)
            print(table([row], COLUMNS), flush=True)
    rows = stored_rows(STORE, CONFIGS)
    update_results("sequence", report(rows), rows=rows)


if __name__ == "__main__":
    main()
