"""Anomaly / out-of-distribution detection on MNIST with a density model (issue #7).

    DGM_DATA_DIR=../shared/data python -m benchmarks.anomaly             (the full run, ≈ 11 min, 1 thread)
    DGM_DATA_DIR=../shared/data python -m benchmarks.anomaly --reuse     (reuse the trained checkpoints)
    DGM_DATA_DIR=../shared/data python -m benchmarks.anomaly --smoke     (≈ 1 min, RESULTS.md untouched)

Data: MNIST with labels (`mnist-dynamic`: `binarized-mnist` has no labels). The 50,000 training images
are binarised once (x ~ Bernoulli(grey/255), seed 0) so that the model and its background model see the
same inputs; the validation and test images are those of `mnist-dynamic` (binarised once by the loader).

Model: MADE (Germain et al. 2015) with one hidden layer of 500 ReLU units and one mask (natural order),
the fastest exact model here to reach ≈ 90 nats (benchmarks/RESULTS.md: FVSBN is faster per epoch but
stalls near 98). Adam 1e-3, batch 100, best weights on 1,000 validation images, ``--max-minutes`` per model
on one thread. Four models are trained (checkpoints under ``runs/benchmarks/anomaly/``, ``--reuse`` loads
them):

(a) digits 0–8 → 9s: the model and a background model on the training images of digits 0–8 only; the
    in-distribution test set is the test images of 0–8, the out-of-distribution set the test 9s.
(b) MNIST → transformed inputs: the model and a background model on all training digits; the first
    ``--num-test`` test images against: uniform noise (each pixel Bernoulli(½)), inverted images (1 − x),
    images rotated by 90°, and blank (all-black) images — the simplest input there is.

The background model (Ren et al. 2019) is the same architecture trained on the same images with each
pixel replaced, with probability ``--perturb`` (0.2), by a uniform draw from {0, 1}. Two more backgrounds
for the same ratio: independent Bernoulli pixels (closed form), and a *local* model — a PixelCNN whose only
masked layer is one ``--local-kernel`` × ``--local-kernel`` type-A convolution (with 1×1 output layers), so
each pixel's conditional sees only its causal neighbours: smoothness and background level, no global
shape (Schirrmeister et al. 2020). It is trained on the unperturbed images for ``--local-minutes``.

Scores (higher = more anomalous; :mod:`dgm.tasks.anomaly`): NLL (nats), bits/dim, −LLR = −(log p(x) −
log p_background(x)), and the typicality test |mean NLL of a batch of M − Ĥ| with Ĥ the mean NLL of 5,000
training images (M = 1: per image; M = 10: random batches of 10 inputs of one set, Nalisnick et al. 2019b).
AUROC, AUPR (out-of-distribution = positive) and FPR at 95 % TPR per score. A figure of the score
histograms: ``benchmarks/figures/anomaly_histograms.png``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import dgm
from benchmarks.common import RUNS, budget_text, cached_train, table, update_results
from dgm.tasks import detect, log_likelihood, ood_metrics, perturb
from dgm.tasks.sources import select_labels, transform

FIGURES = Path(__file__).with_name("figures")
OPTIONS = {"hidden_sizes": [500]}
TYPICALITY = (1, 10)


def made():
    return dgm.build("made", event_shape=(784,), **OPTIONS)


def data(labels: list[int] | None, perturb_rate: float, num_valid: int = 1000):
    """Statically binarised training images (of ``labels``), their perturbed copy, and validation images."""
    train = dgm.data.load("mnist-dynamic", "train")
    x = torch.bernoulli(train.x, generator=torch.Generator().manual_seed(0))
    train = replace(train, x=x, transform=None, binarization="static (seed 0)")
    valid = dgm.data.load("mnist-dynamic", "valid")
    if labels is not None:
        train, valid = select_labels(train, labels), select_labels(valid, labels)
    noisy = replace(train, x=perturb(train.x, perturb_rate, "binary", torch.Generator().manual_seed(1)))
    return train, noisy, valid.take(num_valid)


def independent_background(train) -> dgm.GenerativeModel:
    """Independent Bernoulli pixels fitted in closed form to the (unperturbed) training images: a
    background that knows only the pixel marginals, the "input complexity" kind of reference of
    Schirrmeister et al. (2020) and Serrà et al. (2020), beside Ren et al.'s perturbed-input one."""
    model = dgm.build("independent", event_shape=train.event_shape, support="binary")
    for _ in model.fit(train):
        pass
    return model


def llr_row(task: str, ood: str, model, background, x_in, x_out, label: str) -> dict:
    """The −LLR score of one more background model, as a row of the same table."""
    s_in = log_likelihood(background, x_in) - log_likelihood(model, x_in)
    s_out = log_likelihood(background, x_out) - log_likelihood(model, x_out)
    r = ood_metrics(s_in, s_out)
    return {
        "task": task,
        "out-of-distribution": ood,
        "score (high = anomalous)": label,
        "mean in": f"{float(s_in.mean()):.2f}",
        "mean out": f"{float(s_out.mean()):.2f}",
        "AUROC": f"{r['auroc']:.3f}",
        "AUPR": f"{r['aupr']:.3f}",
        "FPR@95": f"{r['fpr95']:.3f}",
    }


INDEPENDENT = "-llr (vs independent pixels)"


def local_label(kernel: int) -> str:
    return f"-llr (vs local {kernel}×{kernel} PixelCNN)"


def local_model(kernel: int):
    """A PixelCNN with no residual block: its receptive field is the first layer's causal half-window."""
    return lambda: dgm.build(
        "pixelcnn", event_shape=(1, 28, 28), channels=32, num_layers=0, first_kernel_size=kernel
    )


def as_images(ds):
    return replace(ds, x=ds.x.reshape(len(ds), 1, 28, 28))


def metric_rows(task: str, ood: str, report) -> list[dict]:
    rows = []
    for score, r in report.rows.items():
        rows.append(
            {
                "task": task,
                "out-of-distribution": ood,
                "score (high = anomalous)": score,
                "mean in": f"{r['mean_in']:.2f}",
                "mean out": f"{r['mean_out']:.2f}",
                "AUROC": f"{r['auroc']:.3f}",
                "AUPR": f"{r['aupr']:.3f}",
                "FPR@95": f"{r['fpr95']:.3f}",
            }
        )
    return rows


def histograms(panels: list[tuple[str, str, dict[str, np.ndarray]]], path: Path) -> None:
    """One panel per (title, x label, {set name: scores}), the first set being the in-distribution one.

    The x range is that of the in-distribution scores (1st–99th percentile) widened by 60 % of it; a set
    whose median lies outside it is named in the legend with its median instead of drawn, and a set whose
    scores are all equal (blank images) is a vertical line.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = (len(panels) + 1) // 2
    fig = Figure(figsize=(12, 4 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, (title, xlabel, sets) in enumerate(panels):
        ax = fig.add_subplot(rows, 2, i + 1)
        lo, hi = np.percentile(next(iter(sets.values())), [1, 99])
        lo, hi = lo - 0.6 * (hi - lo), hi + 0.6 * (hi - lo)
        if all(v.min() >= 0 for v in sets.values()):  # NLL cannot be negative
            lo = max(lo, 0.0)
        bins = np.linspace(lo, hi, 80)
        for j, (name, v) in enumerate(sets.items()):
            colour = f"C{j}"
            median = float(np.median(v))
            if not lo <= median <= hi:
                ax.plot([], [], color=colour, label=f"{name}: off scale, median {median:,.0f}")
            elif v.min() == v.max():
                ax.axvline(median, color=colour, lw=2, label=f"{name}: all equal, {median:.1f}")
            else:
                ax.hist(np.clip(v, lo, hi), bins=bins, alpha=0.5, color=colour, density=True,
                        label=f"{name} (n={len(v)})")  # fmt: skip
        ax.set_xlim(lo, hi)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-minutes", type=float, default=2.5, help="wall budget per model (4 models)")
    p.add_argument("--perturb", type=float, default=0.2, help="background model's perturbation rate")
    p.add_argument("--section", default="tasks-anomaly", help="RESULTS.md section to write")
    p.add_argument("--local-kernel", type=int, default=3, help="odd window of the local background model")
    p.add_argument("--local-minutes", type=float, default=1.5, help="wall budget of each local background")
    p.add_argument("--num-test", type=int, default=2000, help="test images of part (b), and of each OOD set")
    p.add_argument("--reuse", action="store_true", help="load the checkpoints of an earlier run")
    p.add_argument("--smoke", action="store_true", help="tiny budgets; RESULTS.md and figures untouched")
    args = p.parse_args()
    torch.set_num_threads(1)
    store = RUNS / "anomaly"
    num_reference = 5000
    if args.smoke:
        args.max_minutes, args.local_minutes, args.num_test, num_reference = 0.1, 0.1, 300, 500
        store = RUNS / "anomaly-smoke"
    t_start = time.perf_counter()
    test = dgm.data.load("mnist-dynamic", "test")
    gen = torch.Generator().manual_seed(0)
    rows, budgets, panels = [], [], []

    # (a) digits 0-8 against 9s
    digits = list(range(9))
    train, noisy, valid = data(digits, args.perturb)
    model, info = cached_train(store, "made-0to8", made, train, valid, args.max_minutes, args.reuse)
    background, binfo = cached_train(
        store, f"background-0to8-{args.perturb:g}", made, noisy, valid, args.max_minutes, args.reuse
    )
    k = args.local_kernel
    local, linfo = cached_train(store, f"local-0to8-k{k}", local_model(k), as_images(train),
                                as_images(valid), args.local_minutes, args.reuse)  # fmt: skip
    budgets += [
        {"model": "made, digits 0–8", "budget": budget_text(info)},
        {"model": f"background (perturbed {args.perturb:g}), digits 0–8", "budget": budget_text(binfo)},
        {"model": f"local {k}×{k} PixelCNN background, digits 0–8", "budget": budget_text(linfo)},
    ]
    x_in, x_out = select_labels(test, digits).x, select_labels(test, [9]).x
    if args.smoke:
        x_in, x_out = x_in[: args.num_test], x_out[: args.num_test]
    reference = train.x[:num_reference]
    report = detect(
        model, x_in, x_out, background=background, reference=reference, typicality_batches=TYPICALITY,
        generator=gen,
    )  # fmt: skip
    print("(a) 0-8 vs 9\n" + report.table(), flush=True)
    rows += metric_rows("(a) train 0–8", "test 9s", report)
    rows.append(
        llr_row("(a) train 0–8", "test 9s", model, independent_background(train), x_in, x_out, INDEPENDENT)
    )
    rows.append(llr_row("(a) train 0–8", "test 9s", model, local, x_in, x_out, local_label(k)))
    x_in_a, x_out_a = x_in, x_out
    nll_in, nll_out = -log_likelihood(model, x_in), -log_likelihood(model, x_out)
    llr_in = -(-nll_in - log_likelihood(background, x_in))
    llr_out = -(-nll_out - log_likelihood(background, x_out))
    panels.append(
        ("(a) trained on 0–8: NLL", "NLL (nats)", {"test 0–8": nll_in.numpy(), "test 9s": nll_out.numpy()})
    )
    panels.append(("(a) trained on 0–8: −LLR vs background", "−LLR (nats)",
                   {"test 0–8": llr_in.numpy(), "test 9s": llr_out.numpy()}))  # fmt: skip

    # (b) all digits against noise, inverted, rotated and blank images
    train, noisy, valid = data(None, args.perturb)
    model, info = cached_train(store, "made-all", made, train, valid, args.max_minutes, args.reuse)
    background, binfo = cached_train(
        store, f"background-all-{args.perturb:g}", made, noisy, valid, args.max_minutes, args.reuse
    )
    local, linfo = cached_train(store, f"local-all-k{k}", local_model(k), as_images(train), as_images(valid),
                                args.local_minutes, args.reuse)  # fmt: skip
    budgets += [
        {"model": "made, all digits", "budget": budget_text(info)},
        {"model": f"background (perturbed {args.perturb:g}), all digits", "budget": budget_text(binfo)},
        {"model": f"local {k}×{k} PixelCNN background, all digits", "budget": budget_text(linfo)},
    ]
    ref = test.take(args.num_test)
    independent = independent_background(train)
    ood = {
        "uniform noise": transform("noise", ref, "binary", {}, torch.Generator().manual_seed(2)).x,
        "inverted (1 − x)": transform("inverted", ref, "binary", {}, None).x,
        "rotated 90°": transform("rotated", ref, "binary", {"angle": "90"}, None, (1, 28, 28)).x,
        "blank (all 0)": torch.zeros_like(ref.x),
    }
    nll_sets = {"test digits": -log_likelihood(model, ref.x)}
    llr_sets = {"test digits": nll_sets["test digits"] + log_likelihood(background, ref.x)}
    local_sets = {"test digits": nll_sets["test digits"] + log_likelihood(local, ref.x)}
    for name, x_out in ood.items():
        report = detect(
            model, ref.x, x_out, background=background, reference=train.x[:num_reference],
            typicality_batches=TYPICALITY, generator=gen,
        )  # fmt: skip
        print(f"(b) MNIST vs {name}\n" + report.table(), flush=True)
        rows += metric_rows("(b) train all digits", name, report)
        rows.append(llr_row("(b) train all digits", name, model, independent, ref.x, x_out, INDEPENDENT))
        rows.append(llr_row("(b) train all digits", name, model, local, ref.x, x_out, local_label(k)))
        nll_sets[name] = -log_likelihood(model, x_out)
        llr_sets[name] = nll_sets[name] + log_likelihood(background, x_out)
        local_sets[name] = nll_sets[name] + log_likelihood(local, x_out)
    entropy = report.entropy
    panels.append(
        ("(b) trained on all digits: NLL", "NLL (nats)", {name: v.numpy() for name, v in nll_sets.items()})
    )
    panels.append(("(b) trained on all digits: −LLR vs background", "−LLR (nats)",
                   {name: v.numpy() for name, v in llr_sets.items()}))  # fmt: skip
    panels.append((f"(b) trained on all digits: −LLR vs local {k}×{k} PixelCNN", "−LLR (nats)",
                   {name: v.numpy() for name, v in local_sets.items()}))  # fmt: skip
    figure = "anomaly_histograms.png" if args.section == "tasks-anomaly" else f"{args.section}_histograms.png"
    histograms(panels, (store if args.smoke else FIGURES) / figure)

    cols = ["task", "out-of-distribution", "score (high = anomalous)", "mean in", "mean out"]
    cols += ["AUROC", "AUPR", "FPR@95"]
    print(table(rows, cols))
    blank = float(nll_sets["blank (all 0)"][0])
    digit_nll = nll_sets["test digits"]
    share = float((digit_nll > blank).double().mean())
    summary = (
        f"Blank image: NLL {blank:.1f} nats under the MNIST model, below the NLL of {100 * share:.1f} % of "
        f"the test digits (their mean {digit_nll.mean():.1f}; training-data entropy estimate Ĥ = "
        f"{entropy:.1f} nats); its −LLR is {float(llr_sets['blank (all 0)'][0]):.1f} nats against "
        f"{llr_sets['test digits'].mean():.1f} for the test digits; against the local {k}×{k} background "
        f"{float(local_sets['blank (all 0)'][0]):.1f} nats against {local_sets['test digits'].mean():.1f}."
    )
    print(summary)
    print(f"total wall time {(time.perf_counter() - t_start) / 60:.1f} min")
    if args.smoke:
        return
    body = (
        "## Anomaly detection on MNIST (issue #7)"
        + ("" if args.section == "tasks-anomaly" else f", background perturbation rate {args.perturb:g}")
        + "\n\n"
        "MADE (one hidden layer of 500 ReLU units, one mask, natural order) trained on the 50,000 MNIST "
        "training images binarised once (seed 0), or on the 0–8 digits among them; the background model "
        f"is the same MADE trained on the same images with each pixel replaced, with probability "
        f"{args.perturb:g}, by a uniform draw from {{0, 1}} (Ren et al. 2019); a second background, "
        "'independent pixels', is the closed-form fit of independent Bernoulli pixels to the same images (a "
        "low-level-statistics reference); a third, 'local', is a PixelCNN whose only masked layer is one "
        f"{k}×{k} type-A convolution (32 maps, 1×1 output layers), trained on the unperturbed images, so "
        "each pixel sees only its causal neighbours (Schirrmeister et al. 2020). Adam 1e-3, batch 100, best "
        "weights on 1,000 validation images, one thread:\n\n"
        + table(budgets, ["model", "budget"])
        + f"\n\n(a): {len(x_in_a)} test images of digits 0–8 against the {len(x_out_a)} test "
        f"9s. (b): the first {args.num_test} test images (binarised once by `mnist-dynamic`) against as many "
        "uniform-noise, inverted, 90°-rotated and blank images. Scores oriented high = anomalous; "
        "out-of-distribution is the positive class; −LLR = log p_background(x) − log p(x); typicality(M) = "
        f"|mean NLL of M inputs − Ĥ|, Ĥ the mean NLL of {num_reference} training images, M = 10 on random "
        "batches of one set.\n\n" + table(rows, cols) + "\n\n" + summary + "\n\n"
        f"![score histograms](figures/{figure})\n"
    )
    update_results(args.section, body)


if __name__ == "__main__":
    main()
