"""Burda et al.'s VAE / IWAE table on dynamically binarised MNIST (issue #5): one- and two-stochastic-layer
models trained on the 1-sample ELBO (VAE) and on the K = 50 bound (IWAE), test NLL estimated with K = 5000.

    DGM_DATA_DIR=../shared/data python -m benchmarks.burda --max-minutes 15        (four rows, one thread)
    DGM_DATA_DIR=../shared/data python -m benchmarks.burda --models iwae-1l --max-minutes 15
    DGM_DATA_DIR=../shared/data python -m benchmarks.burda --smoke       (~1 min, RESULTS.md untouched)

Setting (Burda, Grosse & Salakhutdinov 2016, §5 and Table 1): one stochastic layer: 784 → 200 → 200 tanh →
z (50), decoder mirrored; two stochastic layers: 784 → 100 → 100 tanh → z₁ (100) → 50 → 50 tanh → z₂ (50),
generative networks mirrored (`hvae`); Bernoulli decoder; VAE rows train the 1-sample ELBO, IWAE rows the
K = 50 importance-weighted bound (the same model class, ``num_train_samples`` = K). Data: ``mnist-dynamic``
(a fresh Bernoulli draw from the grey levels for every training batch); validation on 1,000 validation
images binarised once; the test split binarised once with a fixed seed. Adam lr 1e-3 (torch's
default ε), batch 20 as in the paper, best validation weights (validation: −IWAE with K = 100).

The paper trains for 3,280 epochs (lr 1e-3·10^(−i/7) for 3^i epochs, i = 0…7); a CPU budget of
``--max-minutes`` buys a few epochs of that, so these rows are the figure the budget reaches, with the
validation curve (``benchmarks/figures/burda_<model>_curve.png``), not the converged figure. Test NLL:
log p(x) ≈ log (1/K) Σ p(x, z_k)/q(z_k|x), K = 5000 (an estimate biased low, i.e. the NLL biased high:
an upper bound in expectation), on ``--test-examples`` test images drawn at random (seed 0): MNIST's test
set is ordered from easier to harder writers, so its first images are not a fair sample.

Anchors (Burda et al. 2016, Table 1, test NLL in nats, K = 5000): VAE 86.76 / IWAE 84.78 (one stochastic
layer), VAE 85.33 / IWAE 82.90 (two).

Also (``--models sbn-nvil,sbn-vimco``): a sigmoid belief network with 200 binary latent units and a
linear-logistic decoder, where the reparameterisation trick does not apply: its inference network is
trained by the score function with a moving-average baseline (K = 1, NVIL-style) or VIMCO (K = 5).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch

import dgm
from benchmarks.common import (
    RUNS,
    epoch_seconds,
    fresh_run_dir,
    peak_rates,
    step_flops,
    table,
    test_subset,
    update_results,
)
from benchmarks.latent import bound
from dgm.training import seed_everything
from dgm.viz import image_grid, training_curves

FIGURES = Path(__file__).with_name("figures")
ONE_LAYER = {"latent_dim": 50, "hidden_sizes": [200, 200], "activation": "tanh"}
TWO_LAYERS = {"latent_dims": [100, 50], "hidden_sizes": [[100, 100], [50, 50]], "activation": "tanh"}
# KL warm-up (Sønderby et al. 2016): the KL's weight rises from 0 to 1 over the first 10 epochs of
# 2,500 steps, against the collapse of the 2-layer model's units onto the prior early in training.
WARMUP = 25_000
# label → (registry name, options, anchor NLL)
MODELS = {
    "vae-1l": ("vae", {**ONE_LAYER, "num_train_samples": 1}, 86.76),
    "iwae-1l": ("iwae", {**ONE_LAYER, "num_train_samples": 50}, 84.78),
    "vae-2l": ("hvae", {**TWO_LAYERS, "num_train_samples": 1}, 85.33),
    "iwae-2l": ("hvae", {**TWO_LAYERS, "num_train_samples": 50}, 82.90),
    "vae-2l-warmup": ("hvae", {**TWO_LAYERS, "num_train_samples": 1, "kl_warmup": WARMUP}, 85.33),
    "iwae-2l-warmup": ("hvae", {**TWO_LAYERS, "num_train_samples": 50, "kl_warmup": WARMUP}, 82.90),
    # Binary latents: no reparameterisation; the inference network learns by REINFORCE with a baseline
    # (NVIL, Mnih & Gregor 2014) or, with K > 1, VIMCO's leave-one-out baselines (Mnih & Rezende 2016).
    "sbn-nvil": ("sbn", {"latent_dim": 200, "hidden_sizes": [], "num_train_samples": 1}, None),
    "sbn-vimco": ("sbn", {"latent_dim": 200, "hidden_sizes": [], "num_train_samples": 5}, None),
}
BURDA = ("vae-1l", "iwae-1l", "vae-2l", "iwae-2l")
BATCH = 20


def stored_run(run_dir: Path):
    """The model, its history and its training counters from an earlier run's directory."""
    with open(run_dir / "metrics.csv") as f:
        history = [
            {k: float(v) if v not in ("", None) else None for k, v in r.items()} for r in csv.DictReader(f)
        ]
    valid = [h["valid_nll"] for h in history if h.get("valid_nll") is not None]
    return dgm.load(run_dir), history, int(history[-1]["step"]), history[-1]["elapsed_s"], min(valid)


def run(label: str, args, train, valid, test) -> dict:
    name, options, anchor = MODELS[label]
    seed_everything(0)
    model = dgm.build(name, event_shape=(784,), support="binary", **options)
    x0 = train.get_batch(torch.arange(BATCH), torch.Generator().manual_seed(0))[0]
    flops = step_flops(model, x0)
    run_dir = RUNS / ("burda-smoke" if args.smoke else "burda") / label
    if args.reuse and (run_dir / "metrics.csv").exists():
        print(f"{label}: reusing {run_dir}", flush=True)
        model, history, steps, wall, best_valid = stored_run(run_dir)
    else:
        fresh_run_dir(run_dir)
        t0 = time.perf_counter()
        res = dgm.train(
            model, train, valid, epochs=10_000, batch_size=BATCH, lr=1e-3, patience=None,
            max_minutes=args.max_minutes, eval_num_samples=100, progress=not args.quiet, seed=0,
            out=run_dir,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        history, steps, best_valid = res.history, res.steps, res.best_valid_nll
    steps_per_epoch = math.ceil(len(train) / BATCH)
    epoch_s = epoch_seconds(history, steps_per_epoch)
    model.eval()
    t1 = time.perf_counter()
    nll = -bound(model, test_subset(test, args.test_examples), args.k, batch=10)
    eval_s = time.perf_counter() - t1
    active = model.active_units(test_subset(test, args.test_examples).float())
    sizes = options.get("latent_dims", [options.get("latent_dim")])
    figures = RUNS / "burda-smoke" if args.smoke else FIGURES
    figures.mkdir(parents=True, exist_ok=True)
    training_curves(history, figures / f"burda_{label}_curve.png", f"{label}: nats per image")
    samples = model.sample(100, generator=torch.Generator().manual_seed(0))
    image_grid(samples, figures / f"burda_{label}_samples.png", (1, 28, 28), (0, 1), 10, f"{label}: samples")
    row = {
        "model": label,
        "registry": f"`{name}` K={options['num_train_samples']}"
        + (f", KL warm-up {options['kl_warmup']:,} steps" if options.get("kl_warmup") else ""),
        "params": f"{model.num_parameters():,}",
        "time/epoch": f"{epoch_s:.0f} s",
        "share of matmul peak": f"{flops * steps_per_epoch / epoch_s / 1e9 / args.peak['gflops']:.0%}",
        "epochs": f"{steps / steps_per_epoch:.1f} of 3,280",
        "train wall": f"{wall / 60:.1f} min",
        "best valid −IWAE-100": f"{best_valid:.2f}",
        f"test NLL (K={args.k})": f"{nll.mean():.2f} ± {nll.std() / math.sqrt(len(nll)):.2f}",
        "anchor": "—" if anchor is None else f"{anchor}",
        "met": "—" if anchor is None else ("yes" if nll.mean() <= anchor else "no"),
        "active units": " / ".join(f"{a} of {d}" for a, d in zip(active, sizes, strict=True)),
        "eval time": f"{eval_s:.0f} s",
    }
    print(row, flush=True)
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(BURDA), help=f"any of {', '.join(MODELS)}")
    p.add_argument("--max-minutes", type=float, default=15.0, help="training wall budget per model")
    p.add_argument("--k", type=int, default=5000, help="importance samples of the test NLL estimate")
    p.add_argument(
        "--test-examples", type=int, default=1000, help="random test images scored (N·K passes; seeded)"
    )
    p.add_argument("--reuse", action="store_true", help="score the models of an earlier run again")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--section", default="latent-burda", help="RESULTS.md section to write")
    p.add_argument("--smoke", action="store_true", help="0.2 min per model, K = 50 on 50 test images")
    args = p.parse_args()
    unknown = sorted(set(args.models.split(",")) - set(MODELS))
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    torch.set_num_threads(args.threads)
    args.peak = peak_rates(2.0)
    if args.smoke:
        args.max_minutes, args.k, args.test_examples = 0.2, 50, 50
    train = dgm.data.load("mnist-dynamic", "train")
    valid = dgm.data.load("mnist-dynamic", "valid").take(1000)
    test = dgm.data.load("mnist-dynamic", "test")
    rows = [run(m, args, train, valid, test) for m in args.models.split(",")]
    cols = list(rows[0])
    print(table(rows, cols))
    if args.smoke:
        return
    update_results(
        args.section,
        "\n".join(
            [
                f"## {', '.join(r['model'] for r in rows)} on dynamically binarised MNIST (issue #5), "
                "CPU budget\n",
                "Settings: the docstring of `benchmarks/burda.py` (Burda et al. 2016 architectures, batch "
                f"{BATCH}, Adam 1e-3). Each row trained for a {args.max_minutes:g}-minute wall budget on one "
                "thread, a "
                "small fraction of the paper's 3,280 epochs: the figures are what that budget reaches, not "
                f"converged figures. Test NLL: importance-sampled with K = {args.k} on "
                f"{args.test_examples:,} test images drawn at random (seed 0; binarised once, fixed seed), "
                "± its standard error "
                "across images; an estimate, biased high for the NLL (Jensen).\n",
                table(rows, cols),
                "",
                "Curves and samples: `benchmarks/figures/burda_<model>_{curve,samples}.png`.",
            ]
        ),
    )


if __name__ == "__main__":
    main()
