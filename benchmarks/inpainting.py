"""Inpainting on binarized MNIST (issue #7): completions and the conditional likelihood of the missing part.

    DGM_DATA_DIR=../shared/data python -m benchmarks.inpainting             (the full run, ≈ 12 min, 1 thread)
    DGM_DATA_DIR=../shared/data python -m benchmarks.inpainting --reuse     (reuse the trained checkpoints)
    DGM_DATA_DIR=../shared/data python -m benchmarks.inpainting --smoke     (≈ 1.5 min, RESULTS.md untouched)

Three models are trained on the 50,000 `binarized-mnist` training images (Adam 1e-3, batch 100, best
weights on 1,000 validation images, each within its own wall budget on one thread; checkpoints are kept
under ``runs/benchmarks/inpainting/<model>/`` and ``--reuse`` loads them instead of training again):

- ``made``: an order-agnostic MADE (Germain et al. 2015, §4.2): one hidden layer of 500 ReLU units,
  8 masks with random hidden degrees cycled one per step, each step under a fresh random ordering
  (``train_orderings="random"``, Uria et al. 2014: without it only the 8 masks' own orderings are trained,
  and the observed-first orderings inpainting uses would be untrained). For any mask of missing
  pixels each of its masks is reordered with the observed pixels first, so every mask gets exact
  conditional samples and an exact log p(x_miss | x_obs) — of the uniform mixture of the reordered masks,
  the mixture the order-agnostic training makes agree with the model (:mod:`dgm.tasks.imputation`).
- ``pixelcnn``: a small PixelCNN (van den Oord et al. 2016; 32 channels, 5 residual blocks) in raster
  order: exact for ``bottom-half`` only (the observed top half precedes it). The other masks would need a
  Gibbs sampler with a full network pass per pixel update, too slow on one CPU thread: not run.
- ``vae``: the registry's VAE (z = 10, MLP 784-300-300); it has no exact marginal, so its completions come
  from Gibbs sampling (:func:`dgm.tasks.gibbs_impute`) on its importance-sampled log-likelihood
  (K = ``--vae-k`` samples per evaluation), ``--vae-sweeps`` sweeps, chains started from model samples.

Masks (True = missing): ``bottom-half``, ``left-half``, ``center`` (the middle 14x14 square) and
``random:0.5`` (one fixed random mask, seed 0). Reported per model and mask: the method, whether it is
exact, the mean log p(x_miss | x_obs) of the true missing pixels on the first ``--eval`` test images
(nats per image ± standard error, and nats per missing pixel), the share of missing pixels that the
completions set to their true value, and the wall time per image of drawing ``--completions``
completions (for ``--examples`` test images: every 1000th).
Figures: ``benchmarks/figures/inpainting_<model>.png`` (per mask, three images: original | masked in
red | completions).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import dgm
from benchmarks.common import RUNS, budget_text, cached_train, table, update_results
from dgm.core.errors import ConfigError
from dgm.tasks import conditional_log_prob, impute, parse_mask
from dgm.tasks.imputation import select_method
from dgm.viz import image_grid

FIGURES = Path(__file__).with_name("figures")
SHOW_STRIDE = 1000
MASKS = ("bottom-half", "left-half", "center", "random:0.5")

# name → (registry model, options, event shape, wall budget in minutes)
MODELS = {
    "made": (
        "made",
        {
            "hidden_sizes": [500],
            "num_masks": 8,
            "order_agnostic": True,
            "connectivity_agnostic": True,
            "train_orderings": "random",
        },
        (784,),
        3.0,
    ),
    "pixelcnn": ("pixelcnn", {"channels": 32, "num_layers": 5}, (1, 28, 28), 2.0),
    "vae": ("vae", {"latent_dim": 10, "hidden_sizes": [300, 300]}, (784,), 1.5),
}


def grid_rows(x: torch.Tensor, completions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(n, S + 2, 3, 28, 28): original, masked (missing pixels red), S completions, in RGB."""
    n, s = completions.shape[:2]
    images = torch.cat([x.reshape(n, 1, -1).float().cpu(), completions.reshape(n, s, -1).float().cpu()], 1)
    images = images.reshape(n, s + 1, 1, 28, 28).expand(-1, -1, 3, -1, -1)
    missing = mask.reshape(n, 1, 28, 28).cpu().expand(-1, 3, -1, -1)
    red = torch.tensor([0.85, 0.15, 0.15])[:, None, None].expand(3, 28, 28)
    masked = torch.where(missing, red, images[:, 0])
    return torch.cat([images[:, :1], masked[:, None], images[:, 1:]], 1)


def run_model(name: str, args, store: Path, train, valid, test) -> tuple[list[dict], dict]:
    model_name, options, shape, minutes = MODELS[name]
    minutes = args.minutes.get(name, minutes)
    tr, va = train.reshape_to(shape), valid.reshape_to(shape)
    model, info = cached_train(
        store, name, lambda: dgm.build(model_name, event_shape=shape, **options), tr, va, minutes, args.reuse,
        **({"eval_num_samples": 10} if name == "vae" else {}),
    )  # fmt: skip
    model.eval()
    if name == "vae":
        model.default_num_samples = args.vae_k  # importance samples per log_prob call of the Gibbs chain
    x_eval = test.x[: args.eval].reshape(-1, *shape)
    # Every 1000th test image: the first ones of the file are all zeros (its rows are not in MNIST order).
    x_show = test.x[torch.arange(args.examples) * SHOW_STRIDE].reshape(-1, *shape)
    rows, pictures = [], []
    for spec in MASKS:
        mask = parse_mask(spec, shape, (1, 28, 28), torch.Generator().manual_seed(0))
        missing = int(mask.sum())
        row = {"model": name, "mask": spec, "missing pixels": missing}
        try:
            method = select_method(model, mask, "auto", "likelihood")
            t0 = time.perf_counter()
            clp = conditional_log_prob(model, x_eval, mask).double().cpu()
            clp_s = (time.perf_counter() - t0) / len(x_eval)
            se = clp.std().item() / math.sqrt(len(clp))
            row["log p(x_miss | x_obs) (nats/image)"] = f"{clp.mean():.2f} ± {se:.2f}"
            row["nats / missing pixel"] = f"{clp.mean() / missing:.4f}"
            row["likelihood time/image"] = f"{1000 * clp_s:.1f} ms"
        except ConfigError as e:
            method = None
            row["log p(x_miss | x_obs) (nats/image)"] = "— (no exact marginal)"
            print(f"{name} {spec}: no conditional likelihood ({e})", flush=True)
        if name == "pixelcnn" and method is None:
            row["method"] = "not run: raster order is exact for bottom-half only"
            rows.append(row)
            print(row, flush=True)
            continue
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        sweeps = args.vae_sweeps if name == "vae" else None
        res = impute(model, x_show, mask, args.completions, sweeps=sweeps, generator=gen)
        impute_s = (time.perf_counter() - t0) / len(x_show)
        truth = x_show.reshape(len(x_show), 1, -1).float()
        comp = res.completions.reshape(len(x_show), args.completions, -1)
        sel = res.mask.reshape(len(x_show), 1, -1).expand_as(comp)
        row["method"] = res.method + (" (exact)" if res.exact else f" ({res.sweeps} sweeps, K={args.vae_k})")
        row["missing pixels recovered"] = f"{100 * (comp == truth)[sel].double().mean():.1f} %"
        row[f"imputation time/image ({args.completions} completions)"] = f"{impute_s:.2f} s"
        rows.append(row)
        pictures.append(grid_rows(x_show[:3], res.completions[:3], res.mask[:3]))
        print(row, "|", res.describe(), flush=True)
    if pictures:
        args.figures.mkdir(parents=True, exist_ok=True)
        grid = torch.cat(pictures)
        image_grid(
            grid.reshape(-1, 3, 28, 28), args.figures / f"inpainting_{name}.png", value_range=(0.0, 1.0),
            nrow=grid.shape[1],
            title=f"{name}: original | masked | completions",
        )  # fmt: skip
    return rows, {"model": name, "config": json.dumps(options), "budget": budget_text(info)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument(
        "--max-minutes", type=float, default=None, help="wall budget per model (default: per model)"
    )
    p.add_argument("--eval", type=int, default=1000, help="test images for the conditional likelihood")
    p.add_argument("--examples", type=int, default=8, help="test images completed (every 1000th)")
    p.add_argument("--completions", type=int, default=5)
    p.add_argument("--vae-sweeps", type=int, default=6, help="Gibbs sweeps of the VAE imputer")
    p.add_argument("--vae-k", type=int, default=5, help="importance samples per VAE log_prob in the chain")
    p.add_argument("--reuse", action="store_true", help="load the checkpoints of an earlier run")
    p.add_argument("--smoke", action="store_true", help="tiny budgets; RESULTS.md and figures untouched")
    args = p.parse_args()
    torch.set_num_threads(1)
    names = args.models.split(",")
    args.minutes = {n: args.max_minutes for n in names} if args.max_minutes else {}
    store = RUNS / "inpainting"
    args.figures = FIGURES
    train, valid, test = (dgm.data.load("binarized-mnist", s) for s in ("train", "valid", "test"))
    valid = valid.take(1000)
    if args.smoke:
        args.minutes = {n: 0.15 for n in names}
        args.eval, args.examples, args.completions, args.vae_sweeps, args.vae_k = 100, 3, 3, 2, 5
        store = args.figures = RUNS / "inpainting-smoke"  # the smoke figures stay out of the repository
    t_start = time.perf_counter()
    rows, models = [], []
    for name in names:
        r, m = run_model(name, args, store, train, valid, test)
        rows += r
        models.append(m)
    cols = ["model", "mask", "missing pixels", "method", "log p(x_miss | x_obs) (nats/image)"]
    cols += ["nats / missing pixel", "likelihood time/image", "missing pixels recovered"]
    cols += [f"imputation time/image ({args.completions} completions)"]
    print(table(rows, cols))
    print(f"total wall time {(time.perf_counter() - t_start) / 60:.1f} min")
    if args.smoke:
        return
    body = (
        "## Inpainting on binarized MNIST (issue #7)\n\n"
        "Models trained on the 50,000 `binarized-mnist` training images (Adam 1e-3, batch 100, best "
        "weights on 1,000 validation images), each within its wall budget on one thread:\n\n"
        + table(models, ["model", "config", "budget"])
        + "\n\nlog p(x_miss | x_obs): exact, of the true missing pixels of the first "
        f"{args.eval} test images (mean ± standard error; per missing pixel = divided by the number of "
        "missing pixels); for the "
        "order-agnostic MADE (trained on a fresh random ordering every step) it is that of the uniform "
        "mixture of its 8 masks each reordered with the observed pixels first. 'missing pixels recovered': "
        "the share of missing pixels that the "
        f"{args.completions} completions of each of {args.examples} test images (every 1000th) set to the "
        "true value (a completion is a sample, not a reconstruction: a perfect model does not reach 100 %). "
        f"The VAE has no exact marginal: Gibbs sampling, {args.vae_sweeps} sweeps over the missing pixels, "
        f"each full conditional from its importance-sampled log p with K = {args.vae_k}, chains started "
        "from model samples. Masks: bottom/left half, the central 14x14 square, one random mask "
        "(each pixel missing with probability 0.5, seed 0).\n\n"
        + table(rows, cols)
        + "\n\nFigures: "
        + ", ".join(f"`benchmarks/figures/inpainting_{m['model']}.png`" for m in models)
        + " (rows: three test images for each mask in the order of the table; columns: original | masked "
        "in red | completions).\n"
    )
    update_results("tasks-inpainting", body)


if __name__ == "__main__":
    main()
