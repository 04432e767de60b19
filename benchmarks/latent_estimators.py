"""Estimators of a VAE (issue #5): importance sampling vs naive Monte Carlo for log p(x), and the variance of
the reparameterisation vs REINFORCE gradients, on the same model and batch.

    DGM_DATA_DIR=../shared/data python -m benchmarks.latent_estimators
    DGM_DATA_DIR=../shared/data python -m benchmarks.latent_estimators --smoke   (RESULTS.md untouched)

The model: the CS236 VAE (z = 10, MLP 784-300-300, Bernoulli decoder) trained for ``--steps`` Adam steps on
``mnist-dynamic`` (fresh binarisation per batch). Then, on the first ``--examples`` test images (binarised
once):

1. log p(x) estimated with K samples from the encoder q(z | x) (importance sampling) and from the prior
   p(z) (naive Monte Carlo), each repeated with ``--repeats`` seeds: mean −log p̂ and its spread across
   seeds. Both p̂ are unbiased for p(x); the naive one needs K far beyond reach because almost no prior draw
   explains a given digit, so its log is many nats too low (Jensen) and varies wildly from seed to seed.
2. The encoder's gradient of the negative ELBO on one batch of 100 test images, ``--grad-repeats`` times with
   fresh noise, by reparameterisation and by REINFORCE with the model's moving-average baseline: the total
   variance (trace of the covariance over the repeats), the squared norm of the mean gradient, and their ratio
   (the signal-to-noise an optimiser sees).
"""

from __future__ import annotations

import argparse
import math

import torch

import dgm
from benchmarks.common import table, update_results
from dgm.models.latent.estimators import gradient_samples
from dgm.training import seed_everything


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--examples", type=int, default=500)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--grad-repeats", type=int, default=200)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.smoke:
        args.steps, args.examples, args.repeats, args.grad_repeats = 200, 100, 2, 20
    seed_everything(0)
    train = dgm.data.load("mnist-dynamic", "train")
    test = dgm.data.load("mnist-dynamic", "test").take(args.examples)
    model = dgm.build("vae", event_shape=(784,), latent_dim=10, hidden_sizes=[300, 300])
    dgm.train(model, train, epochs=math.ceil(args.steps / 500), max_steps=args.steps, progress=False, seed=0)
    model.eval()
    x = test.x

    rows = []
    for k in (1, 10, 100, 1000, 10000):
        row = {"K": f"{k:,}"}
        for name, fn in (("importance (q)", model.log_prob), ("naive (prior)", model.naive_log_prob)):
            if name.startswith("importance") and k > 1000:
                row[name] = "—"
                continue
            with torch.no_grad():
                nll = [
                    -fn(x, num_samples=k, generator=torch.Generator().manual_seed(s)).mean().item()
                    for s in range(args.repeats)
                ]
            mean = sum(nll) / len(nll)
            spread = (sum((v - mean) ** 2 for v in nll) / max(1, len(nll) - 1)) ** 0.5
            row[name] = f"{mean:.2f} (± {spread:.2f} across seeds)"
        rows.append(row)
        print(row, flush=True)

    batch = x[:100]
    grads = {}
    for est in ("reparam", "reinforce"):
        torch.manual_seed(0)
        g = gradient_samples(model, batch, estimator=est, num_repeats=args.grad_repeats).double()
        grads[est] = g
    grad_rows = []
    for est, g in grads.items():
        mean = g.mean(0)
        var = g.var(0).sum().item()
        signal = mean.pow(2).sum().item()
        grad_rows.append(
            {
                "estimator": est,
                "total variance": f"{var:.3e}",
                "‖mean‖²": f"{signal:.3e}",
                "‖mean‖² / variance": f"{signal / var:.3e}",
            }
        )
    ratio = grads["reinforce"].var(0).sum().item() / grads["reparam"].var(0).sum().item()
    print(table(rows, list(rows[0])))
    print(table(grad_rows, list(grad_rows[0])))
    print(f"REINFORCE / reparameterisation variance: {ratio:.3g}×")
    if args.smoke:
        return
    body = "\n".join(
        [
            "## VAE estimators: importance sampling vs naive Monte Carlo, reparameterisation vs REINFORCE "
            "(issue #5)\n",
            f"CS236 VAE (z = 10, MLP 300-300) after {args.steps:,} Adam steps on `mnist-dynamic`; the first "
            f"{args.examples} test images (binarised once). −log p̂(x) in nats per image, mean over "
            f"{args.repeats} seeds with the spread across seeds. Both estimates of p(x) are unbiased; "
            "their logs are biased low (Jensen), the naive one by far more.\n",
            table(rows, list(rows[0])),
            "",
            f"Encoder gradient of the negative ELBO on one batch of 100 test images, {args.grad_repeats} "
            "independent draws each (REINFORCE with the model's moving-average baseline):\n",
            table(grad_rows, list(grad_rows[0])),
            "",
            f"REINFORCE's gradient variance is {ratio:.3g}× the reparameterisation gradient's on the same "
            "model and batch.",
        ]
    )
    update_results("latent-estimators", body)


if __name__ == "__main__":
    main()
