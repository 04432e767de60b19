"""Classic models (issue #3): parameters vs likelihood, and naive Bayes vs logistic regression.

    DGM_DATA_DIR=../shared/data python -m benchmarks.classic            # both parts
    DGM_DATA_DIR=../shared/data python -m benchmarks.classic --part density
    DGM_DATA_DIR=../shared/data python -m benchmarks.classic --part classifiers

Part "density": for digits-binary and binarized-mnist (static binarisation, exact test NLL in nats), the
independent model, Bayesian networks (Markov chains of order 1 and 2 in raster order, and the DAG whose
parents are each pixel's left and upper neighbours) and mixtures of Bernoullis by EM (K = 10, 50, 500),
each with its number of free parameters, fitting time, and the published anchor. Mixtures stop by
validation likelihood (patience 5 EM iterations) and keep the best iteration; the number of components
is also chosen by validation likelihood on digits-binary.

Part "classifiers": learning curves of naive Bayes (generative) and logistic regression (discriminative)
on the same features, averaged over random training subsets of each size: digits (64 features 0..16;
Gaussian naive Bayes) and MNIST binarised at 128 (784 binary features; Bernoulli naive Bayes). Ng &
Jordan (2002) predict that naive Bayes wins with little data and logistic regression with much.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

import dgm
from benchmarks.common import peak_rates, table, update_results

FIGURES = Path(__file__).with_name("figures")

DENSITY_NOTE = """Static binarisation, fixed test splits, exact NLL in nats per image (± standard error).
Tables and mixtures are fitted by closed form / EM (Dirichlet pseudo-counts: α=1 for tables, α=0.01
for mixtures); EM keeps the iteration with the best validation NLL (patience 5). "share of machine":
EM's arithmetic (E step, statistics, validation) over its whole fit time (k-means++ included) against
the measured matmul peak; for tables, the bytes read over the fit time against the measured
memory-copy bandwidth (fitting is one counting pass, dominated by Python-side setup at these sizes).

"""

CLASSIFIER_NOTE = """Test accuracy, mean ± std over {repeats} class-balanced random training subsets per size
(one at the full size). digits: 64 features 0..16, Gaussian naive Bayes vs logistic regression on
features scaled to [0, 1] (train 1257 / valid 180 / test 360); mnist: pixels binarised at 128, Bernoulli
naive Bayes vs logistic regression (subsets of the 50k train split, valid 10k, test 10k). Per subset,
each model's one hyper-parameter is chosen on the validation split (the value chosen most often is
shown): naive Bayes var_smoothing ∈ {{1e-9, 1e-3, 1e-2, 0.1}} or α ∈ {{0.1, 1}}; logistic regression L2
weight ∈ {{1e-5, 1e-3, 0.1}} on the mean NLL, L-BFGS to convergence. Anchor: Ng & Jordan (2002): the
generative model reaches its (higher) asymptotic error sooner, the discriminative one a lower error.

"""

# Published anchors, static binarized MNIST test NLL in nats.
MIXTURE_ANCHORS = {
    ("binarized-mnist", 10): "168.95 (MoB K=10; Larochelle & Murray 2011 Table 2)",
    ("binarized-mnist", 500): "137.64 (MoB K=500; Germain et al. 2015 Table 2)",
}


def neighbour_dag(height: int, width: int) -> list[list[int]]:
    """Each pixel's parents: the pixel to its left and the one above (a causal 2-D neighbourhood)."""
    parents = []
    for r in range(height):
        for c in range(width):
            pa = []
            if c > 0:
                pa.append(r * width + c - 1)
            if r > 0:
                pa.append((r - 1) * width + c)
            parents.append(pa)
    return parents


def density_rows(name: str, components: list[int], peak: dict) -> list[dict]:
    train, valid, test = (dgm.data.load(name, s) for s in ("train", "valid", "test"))
    side = math.isqrt(train.event_shape[0])
    specs = [
        ("independent", "independent", {}),
        ("bayesnet", "Markov(1) chain", {"structure": "markov(1)"}),
        ("bayesnet", "Markov(2) chain", {"structure": "markov(2)"}),
        ("bayesnet", "DAG: left + up neighbours", {"structure": neighbour_dag(side, side)}),
    ]
    specs += [("mixture-bernoulli", f"mixture of Bernoullis K={k}", {"components": k}) for k in components]
    rows = []
    for model_name, label, opts in specs:
        torch.manual_seed(0)
        model = dgm.build(model_name, event_shape=train.event_shape, support=train.support, **opts)
        t0 = time.perf_counter()
        res = dgm.train(model, train, valid, method="fit", epochs=300, patience=5, progress=False)
        fit_s = time.perf_counter() - t0
        out = dgm.evaluate(model, test)
        iters = res.steps
        N, D = train.x.shape[0], model.num_dims
        if model_name.startswith("mixture"):
            # Per EM iteration: the E-step product x·logitsᵀ and the statistics rᵀx over the training set
            # (2·N·D·K flops each) and the validation pass (2·N_valid·D·K): a share of the matmul peak.
            K = opts["components"]
            flops = (4 * N + 2 * len(valid)) * D * K * iters
            share = f"{100 * flops / fit_s / 1e9 / peak['gflops']:.0f}% of matmul peak"
        else:
            # Counting reads the training set once (float32) and scores the validation set: memory-bound.
            nbytes = 4 * (N + len(valid)) * D
            share = f"{100 * nbytes / fit_s / 1e9 / peak['gbps']:.1f}% of memory bandwidth"
        rows.append(
            {
                "data": name,
                "model": label,
                "params": f"{model.num_parameters():,}",
                "test NLL (nats, exact)": f"{out['nll']:.2f} ± {out['nll_stderr']:.2f}",
                "bits/dim": f"{out['bits_per_dim']:.4f}",
                "fit": f"{iters} EM it." if model_name.startswith("mixture") else "closed form",
                "fit time": f"{fit_s:.1f} s" + (f" ({fit_s / iters:.2f} s/it.)" if iters > 1 else ""),
                "share of machine": share,
                "anchor": MIXTURE_ANCHORS.get((name, opts.get("components")), "—"),
                "_nll": out["nll"],
            }
        )
        print(
            f"{name:16s} {label:28s} params {model.num_parameters():>9,d}  NLL {out['nll']:.2f}  {fit_s:.1f}s"
        )
    return rows


def choose_components(candidates: list[int]) -> tuple[int, list[dict]]:
    from dgm.models.classic.mixture import select_components

    train, valid = dgm.data.load("digits-binary", "train"), dgm.data.load("digits-binary", "valid")
    out = select_components("mixture-bernoulli", train, valid, candidates, max_iterations=300)
    return out["best"], out["table"]


NB_GRID = {
    "real": [("var_smoothing", v) for v in (1e-9, 1e-3, 1e-2, 1e-1)],
    "binary": [("alpha", v) for v in (0.1, 1.0)],
}
LR_GRID = [("l2", v) for v in (1e-5, 1e-3, 1e-1)]


def balanced_subset(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n examples with n // 10 of each class (the remainder drawn at random), so no class is missing."""
    gen = torch.Generator().manual_seed(seed)
    per = n // 10
    idx = [
        w[torch.randperm(len(w), generator=gen)[:per]] for w in ((y == c).nonzero()[:, 0] for c in range(10))
    ]
    chosen = torch.cat(idx)
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[chosen] = False
    extra = rest.nonzero()[:, 0]
    return torch.cat([chosen, extra[torch.randperm(len(extra), generator=gen)[: n - len(chosen)]]])


def fit_best(name: str, grid, x, y, xv, yv, **options):
    """Fit one model per hyper-parameter value and keep the most accurate on the validation split."""
    best = None
    for key, value in grid:
        model = dgm.build(name, num_classes=10, **options, **{key: value})
        for _ in model.fit((x, y)):
            pass
        with torch.no_grad():
            acc = (model.predict(xv) == yv).double().mean().item()
        if best is None or acc > best[0]:
            best = (acc, model, value)
    return best[1], best[2]


def features(name: str):
    """(train x, y), (valid x, y), (test x, y) and the naive-Bayes / logistic-regression supports."""
    splits = [dgm.data.load(name, s) for s in ("train", "valid", "test")]
    if name == "mnist":
        # Both classifiers see the same binary features: pixels thresholded at 128.
        xs = [(d.x.reshape(len(d), -1) >= 128).float() for d in splits]
        return [(x, d.y.long()) for x, d in zip(xs, splits, strict=True)], "binary", "binary"
    return [(d.x.reshape(len(d), -1), d.y.long()) for d in splits], "real", splits[0].support


def learning_curve(name: str, sizes: list[int], repeats: int) -> list[dict]:
    """Test accuracy of naive Bayes and logistic regression at each training-set size (mean ± std).

    Hyper-parameters (naive Bayes smoothing, the logistic-regression L2 weight) are chosen per subset on
    the validation split, so neither model is handicapped by a fixed setting that suits only one size.
    """
    ((xtr, ytr), (xv, yv), (xte, yte)), nb_support, lr_support = features(name)
    D = xtr.shape[1]
    rows = []
    for n in [s for s in sizes if s <= len(xtr)]:
        acc = {"naive Bayes": [], "logistic regression": []}
        chosen = {"naive Bayes": [], "logistic regression": []}
        for rep in range(repeats if n < len(xtr) else 1):
            idx = balanced_subset(ytr, n, 1000 * n + rep)
            nb, nb_value = fit_best(
                "naive-bayes",
                NB_GRID[nb_support],
                xtr[idx],
                ytr[idx],
                xv,
                yv,
                event_shape=(D,),
                support=nb_support,
            )
            lr, lr_value = fit_best(
                "logistic-regression",
                LR_GRID,
                xtr[idx],
                ytr[idx],
                xv,
                yv,
                event_shape=(D,),
                support=lr_support,
            )
            with torch.no_grad():
                acc["naive Bayes"].append((nb.predict(xte) == yte).double().mean().item())
                acc["logistic regression"].append((lr.predict(xte) == yte).double().mean().item())
            chosen["naive Bayes"].append(nb_value)
            chosen["logistic regression"].append(lr_value)
        row = {"data": name, "n": n}
        for k, v in acc.items():
            t = torch.tensor(v)
            row[k] = (t.mean().item(), t.std().item() if len(v) > 1 else 0.0)
            row[k + " chosen"] = max(set(chosen[k]), key=chosen[k].count)
        rows.append(row)
        nbm, lrm = row["naive Bayes"][0], row["logistic regression"][0]
        print(
            f"{name:8s} n={n:6d}  naive Bayes {100 * nbm:5.1f}%  logistic regression {100 * lrm:5.1f}%",
            flush=True,
        )
    return rows


def plot_curves(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4))
    for ax, (name, rows) in zip(axes, curves.items(), strict=True):
        n = [r["n"] for r in rows]
        for key, colour in (("naive Bayes", "tab:orange"), ("logistic regression", "tab:blue")):
            mean = torch.tensor([1 - r[key][0] for r in rows])
            std = torch.tensor([r[key][1] for r in rows])
            ax.plot(n, mean, "o-", color=colour, label=key)
            ax.fill_between(n, mean - std, mean + std, color=colour, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("training examples")
        ax.set_ylabel("test error")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Generative (naive Bayes) vs discriminative (logistic regression), Ng & Jordan 2002")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def crossover(rows: list[dict]) -> str:
    for r in rows:
        if r["logistic regression"][0] > r["naive Bayes"][0]:
            return f"n = {r['n']}"
    return "none in range"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("density", "classifiers", "all"), default="all")
    parser.add_argument("--components", default="10,50,500", help="mixture sizes for the density table")
    parser.add_argument("--repeats", type=int, default=5, help="random subsets per training-set size")
    args = parser.parse_args()
    components = [int(k) for k in args.components.split(",")]

    if args.part in ("density", "all"):
        best_k, selection = choose_components([5, 10, 20, 50, 100, 200])
        peak = peak_rates(3.0)
        rows = density_rows("digits-binary", components, peak) + density_rows(
            "binarized-mnist", components, peak
        )
        cols = ["data", "model", "params", "test NLL (nats, exact)", "bits/dim", "fit", "fit time"]
        cols += ["share of machine", "anchor"]
        sel = table(
            [
                {
                    "K": r["components"],
                    "params": f"{r['num_parameters']:,}",
                    "valid NLL": f"{r['valid_nll']:.2f}",
                    "train NLL": f"{r['train_nll']:.2f}",
                    "EM iterations": r["iterations"],
                }
                for r in selection
            ],
            ["K", "params", "valid NLL", "train NLL", "EM iterations"],
        )
        body = (
            "## Parameters vs likelihood (issue #3)\n\n"
            + f"Measured peaks: {peak['gflops']:.0f} GFLOP/s fp32 matmul, "
            + f"{peak['gbps']:.1f} GB/s memory copy.\n\n"
            + DENSITY_NOTE
            + table(rows, cols)
            + "\n\nNumber of mixture components chosen by validation likelihood on digits-binary: "
            + f"**K = {best_k}**\n\n"
            + sel
            + "\n"
        )
        update_results("classic-density", body)
        print(table(rows, cols))

    if args.part in ("classifiers", "all"):
        curves = {
            "digits": learning_curve("digits", [10, 20, 50, 100, 200, 500, 1257], args.repeats),
            "mnist": learning_curve("mnist", [10, 30, 100, 300, 1000, 3000, 10000, 50000], args.repeats),
        }
        path = FIGURES / "nb_vs_lr.png"
        plot_curves(curves, path)
        rows = []
        for name, cur in curves.items():
            for r in cur:
                nb, lr = r["naive Bayes"], r["logistic regression"]
                rows.append(
                    {
                        "data": name,
                        "training examples": r["n"],
                        "naive Bayes acc.": f"{100 * nb[0]:.1f} ± {100 * nb[1]:.1f} %",
                        "NB smoothing": f"{r['naive Bayes chosen']:g}",
                        "logistic regression acc.": f"{100 * lr[0]:.1f} ± {100 * lr[1]:.1f} %",
                        "LR l2": f"{r['logistic regression chosen']:g}",
                    }
                )
        cols = [
            "data",
            "training examples",
            "naive Bayes acc.",
            "NB smoothing",
            "logistic regression acc.",
            "LR l2",
        ]
        body = (
            "## Naive Bayes vs logistic regression (issue #3)\n\n"
            + CLASSIFIER_NOTE.format(repeats=args.repeats)
            + table(rows, cols)
            + "\n\nLogistic regression first beats naive Bayes at: "
            + ", ".join(f"{name} {crossover(cur)}" for name, cur in curves.items())
            + f".\n\n![learning curves](figures/{path.name})\n"
        )
        update_results("classic-classifiers", body)
        print(table(rows, cols))


if __name__ == "__main__":
    main()
