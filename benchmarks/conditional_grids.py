"""Class-conditional generation grids for every conditional model of the registry (issue #7).

    DGM_DATA_DIR=../shared/data python -m benchmarks.conditional_grids --reuse
    DGM_DATA_DIR=../shared/data python -m benchmarks.conditional_grids --models vae,maf --minutes 2
    DGM_DATA_DIR=../shared/data python -m benchmarks.conditional_grids --smoke  (~1 min)

Which models: every registered model is built with ``num_classes=10`` (vector models on 784 values, image
models on 1×28×28, with the first of its supports among binary, real, categorical); it is in the table
when that works, ``model.conditional`` is True and it is not discriminative (a p(y | x) classifier draws
no samples). Every other model is listed with the reason (the ConfigError it raised). Nothing here names
a model, so the list follows the registry.

Data: binary models on ``mnist-dynamic`` (labelled, fresh binarisation per batch), real-support models on
``mnist-dequantized`` ((x + u) / 256), categorical-only models on ``mnist`` (0..255). With ``--data auto``
(the default) a model whose measured cost on one thread does not fit a short budget on 28×28 images
(one training step on 2 images times 50 over 2 s, the estimated cost of a batch of 100, or one sample
times 100 over 30 s, the estimated cost of the grid: e.g. PixelCNN sampling 784 pixels one at a time)
uses the 8×8 digits instead (``digits-binary``, ``digits-dequantized``, ``digits``); ``--data mnist`` or
``--data digits`` forces one.

Each model: the registry's default architecture, ``dgm.train`` with the trainer's Adam (lr 1e-3, batch
100, no early stopping) within a wall budget of ``--minutes`` per model (validation on 1,000 validation
images included; default: 10 minutes shared by the conditional models, at most 1 minute each), on one
thread; cached under ``runs/benchmarks/conditional_grids/`` (``--reuse`` loads it back). Then one
10×10 grid, row c holding 10 samples of class c, drawn in one batch with context
``arange(10).repeat_interleave(10)`` from a generator seeded 0, written to
``benchmarks/figures/conditional_<model>.png``.

Class agreement: a small CNN (``dgm.tasks.purification.SmallCNN``) trained once per dataset on the same
training data (binarised / dequantised once with a fixed seed; 2 epochs or 1 minute on MNIST, 30 epochs
on digits; cached) labels the 100 grid samples; the agreement is the share of samples of class c
labelled c (chance: 10 %). The classifier's own test accuracy is given as the ceiling. Test NLL:
``dgm.evaluate`` on the first ``--test-subset`` test images (exact, or ≈ an importance estimate with
K = 100 for latent-variable models), in nats on the integer scale of the data.
"""

from __future__ import annotations

import argparse
import inspect
import math
import tempfile
import time
from pathlib import Path

import torch

import dgm
from benchmarks.common import RUNS, cached_train, table, update_results
from dgm.core import checkpoint as ckpt
from dgm.core.errors import DgmError
from dgm.core.registry import get_entry
from dgm.core.support import Support
from dgm.data.registry import dataset_info
from dgm.tasks.purification import SmallCNN, load_classifier, predict, save_classifier, train_classifier
from dgm.training import seed_everything
from dgm.viz import image_grid

FIGURES = Path(__file__).with_name("figures")
STORE = RUNS / "conditional_grids"
NUM_CLASSES = 10
# Datasets by (resolution, support kind): all labelled with the ten digit classes.
DATA = {
    ("mnist", "binary"): "mnist-dynamic",
    ("mnist", "real"): "mnist-dequantized",
    ("mnist", "categorical"): "mnist",
    ("digits", "binary"): "digits-binary",
    ("digits", "real"): "digits-dequantized",
    ("digits", "categorical"): "digits",
}
SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8)}
# --data auto: a model whose estimated cost on 28×28 images exceeds these goes to the 8×8 digits.
MAX_STEP_S, MAX_GRID_S = 2.0, 30.0


# ---------------------------------------------------------------------------- which models
def support_kind(entry) -> str:
    for kind in ("binary", "real", "categorical"):
        if kind in entry.supports:
            return kind
    return entry.supports[0]


def data_support(name: str) -> str:
    return dataset_info(name).support


def event_shape(entry, resolution: str) -> tuple[int, ...]:
    shape = SHAPES[resolution]
    return shape if entry.shape == "image" else (math.prod(shape),)


def make(name: str, resolution: str, kind: str):
    entry = get_entry(name)
    data = DATA[(resolution, kind)]
    return dgm.build(
        name, event_shape=event_shape(entry, resolution), support=data_support(data), num_classes=10
    )


def discover() -> tuple[list[str], dict[str, str]]:
    """(conditional generative models, {other model: why not}) by building each registered model."""
    conditional, others = [], {}
    for row in dgm.list_models():
        name = row["name"]
        entry = get_entry(name)
        kind = support_kind(entry)
        if kind not in ("binary", "real", "categorical"):
            others[name] = f"support {kind} has no labelled image data"
            continue
        try:
            model = make(name, "mnist", kind)
        except DgmError as e:
            others[name] = str(e).splitlines()[0]
            continue
        if not model.conditional:
            others[name] = "built with num_classes=10, but model.conditional is False"
        elif getattr(model, "discriminative", False):
            others[name] = "discriminative (models p(y | x)): it draws no samples"
        else:
            conditional.append(name)
    return conditional, others


def probe(name: str, kind: str) -> tuple[float, float]:
    """Estimated seconds of one training step on 100 and of the 100-sample grid, on 28×28 images."""
    torch.manual_seed(0)
    model = make(name, "mnist", kind)
    sup = Support.parse(data_support(DATA[("mnist", kind)]))
    x = torch.rand(2, *model.event_shape)
    x = x.round() if sup.kind == "binary" else (x * (sup.num_categories - 1)).round() if sup.discrete else x
    y = torch.arange(2)
    t0 = time.perf_counter()
    model.loss(x, y).backward()
    step = 50 * (time.perf_counter() - t0)
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        model.sample(1, context=torch.zeros(1, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    return step, 100 * (time.perf_counter() - t0)


# ---------------------------------------------------------------------------- classifier
def materialise(data, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples with the dataset's transform (binarisation, dequantisation) applied once."""
    x, y = data.get_batch(torch.arange(len(data)), torch.Generator().manual_seed(seed))
    return x, y


def to_unit_images(x: torch.Tensor, support: str, resolution: str) -> torch.Tensor:
    sup = Support.parse(support)
    x = x.float().reshape(len(x), *SHAPES[resolution])
    if sup.kind == "categorical":
        x = x / (sup.num_categories - 1)
    return torch.nan_to_num(x, nan=0.0).clamp(0, 1)


def classifier_for(data_name: str, resolution: str, store: Path, reuse: bool, minutes: float):
    """A SmallCNN trained on ``data_name`` (cached in ``store``) and its test accuracy."""
    run = store / f"classifier-{data_name}"
    info_file = run / "classifier_info.json"
    if reuse and info_file.exists():
        info = ckpt.read_json(info_file)
        print(f"classifier {data_name}: reusing {run}", flush=True)
        return load_classifier(run), info
    train = dgm.data.load(data_name, "train")
    test = dgm.data.load(data_name, "test")
    x, y = materialise(train, 0)
    xt, yt = materialise(test, 0)
    seed_everything(0)
    clf = SmallCNN(image_shape=SHAPES[resolution], num_classes=NUM_CLASSES)
    epochs = 2 if resolution == "mnist" else 30
    res = train_classifier(clf, (to_unit_images(x, train.support, resolution), y), epochs=epochs,
                           max_minutes=minutes, seed=0)  # fmt: skip
    pred = predict(clf, to_unit_images(xt, test.support, resolution))
    info = {"epochs": res["epochs"], "steps": res["steps"], "minutes": res["seconds"] / 60,
            "test_accuracy": float((pred == yt).double().mean())}  # fmt: skip
    save_classifier(clf, run)
    ckpt.write_json(info_file, info)
    print(f"classifier {data_name}: test accuracy {100 * info['test_accuracy']:.1f} %", flush=True)
    return clf, info


# ---------------------------------------------------------------------------- one model
def run_model(name, resolution, kind, args, store, figures, classifiers) -> dict:
    data_name = DATA[(resolution, kind)]
    train = dgm.data.load(data_name, "train")
    valid = dgm.data.load(data_name, "valid").take(1000)
    test = dgm.data.load(data_name, "test").take(args.test_subset)
    shape = make(name, resolution, kind).event_shape
    train, valid, test = (d.reshape_to(shape) for d in (train, valid, test))
    key = f"{name}-{data_name}-{args.minutes:g}min"
    model, info = cached_train(
        store, key, lambda: make(name, resolution, kind), train, valid, args.minutes, args.reuse
    )
    model.eval()
    options = {}
    if not model.exact and "num_samples" in inspect.signature(model.log_prob).parameters:
        options["num_samples"] = 100
    t0 = time.perf_counter()
    result = dgm.evaluate(model, test, generator=torch.Generator().manual_seed(0), **options)
    eval_s = time.perf_counter() - t0
    context = torch.arange(NUM_CLASSES).repeat_interleave(10)
    t0 = time.perf_counter()
    with torch.no_grad():
        samples = model.sample(len(context), context=context, generator=torch.Generator().manual_seed(0))
    sample_s = time.perf_counter() - t0
    sup = Support.parse(train.support)
    high = 1 if sup.kind != "categorical" else sup.num_categories - 1
    path = image_grid(samples, figures / f"conditional_{name}.png", image_shape=SHAPES[resolution],
                      value_range=(0, high), nrow=10,
                      title=f"{name} on {data_name}: row c = class c")  # fmt: skip
    if data_name not in classifiers:
        classifiers[data_name] = classifier_for(
            data_name, resolution, store, args.reuse, args.classifier_minutes
        )
    clf, _ = classifiers[data_name]
    pred = predict(clf, to_unit_images(samples, train.support, resolution))
    agreement = float((pred == context).double().mean())
    approx = "" if result["exact"] else "≈ "
    grid = path.relative_to(FIGURES.parent) if path.is_relative_to(FIGURES.parent) else path
    row = {
        "model": name,
        "data": f"{data_name} {'×'.join(map(str, SHAPES[resolution][1:]))}",
        "params": f"{model.num_parameters():,}",
        "budget": f"{info['budget_min']:g} min ({info['steps']:,} steps)",
        "epochs": f"{info['epochs']:.2f}",
        "test NLL (nats)": f"{approx}{result['nll']:.2f} ± {result['nll_stderr']:.2f}",
        "class agreement": f"{100 * agreement:.0f} %",
        "grid": f"`{grid}`",
    }
    print(f"{row}  (eval {eval_s:.0f} s, grid {sample_s:.0f} s)", flush=True)
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, help="comma-separated subset of the conditional models")
    p.add_argument("--minutes", type=float, default=None,
                   help="training budget per model (default: min(1, 10 / number of models))")  # fmt: skip
    p.add_argument("--data", choices=("auto", "mnist", "digits"), default="auto")
    p.add_argument("--test-subset", type=int, default=1000, help="test images for the NLL")
    p.add_argument("--classifier-minutes", type=float, default=1.0)
    p.add_argument("--reuse", action="store_true", help="load trained models and classifiers back")
    p.add_argument(
        "--smoke", action="store_true", help="0.05 min for 2 models, runs and figures in a temp dir"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    conditional, others = discover()
    print(f"{len(conditional)} conditional models: {', '.join(conditional)}", flush=True)
    for name, why in others.items():
        print(f"  not conditional: {name}: {why}", flush=True)
    if args.models:
        wanted = args.models.split(",")
        unknown = [m for m in wanted if m not in conditional]
        if unknown:
            p.error(
                f"not conditional generative models: {', '.join(unknown)}; "
                f"choose from {', '.join(conditional)}"
            )
        selected = wanted
    elif args.smoke:  # two models of different supports when there are
        first = conditional[0]
        kind = support_kind(get_entry(first))
        other = [m for m in conditional[1:] if support_kind(get_entry(m)) != kind] or conditional[1:2]
        selected = [first, *other[:1]]
    else:
        selected = conditional
    if args.smoke:
        args.minutes, args.classifier_minutes, args.test_subset = 0.05, 0.05, 200
        tmp = Path(tempfile.mkdtemp(prefix="conditional_grids_"))
        store, figures = tmp / "runs", tmp / "figures"
        args.reuse = False
    else:
        store, figures = STORE, FIGURES
    if args.minutes is None:
        args.minutes = round(min(1.0, 10.0 / len(selected)), 2)
    print(f"training budget {args.minutes:g} min per model, {len(selected)} models", flush=True)
    t_start = time.perf_counter()
    rows, classifiers, resolutions = [], {}, {}
    for name in selected:
        kind = support_kind(get_entry(name))
        resolution = args.data
        if resolution == "auto":
            step_s, grid_s = probe(name, kind)
            resolution = "mnist" if step_s <= MAX_STEP_S and grid_s <= MAX_GRID_S else "digits"
            print(f"{name}: estimated step {step_s:.2f} s, grid {grid_s:.1f} s on 28×28 → {resolution}",
                  flush=True)  # fmt: skip
        resolutions[name] = resolution
        rows.append(run_model(name, resolution, kind, args, store, figures, classifiers))
    total = (time.perf_counter() - t_start) / 60
    columns = list(rows[0])
    print(table(rows, columns))
    print(f"total {total:.1f} min; figures in {figures}")
    clf_lines = "; ".join(
        f"`{d}` {100 * info['test_accuracy']:.1f} % ({info['epochs']} epochs, {info['minutes']:.1f} min)"
        for d, (_, info) in classifiers.items()
    )
    for d, (_, info) in classifiers.items():
        print(f"classifier {d}: test accuracy {100 * info['test_accuracy']:.1f} %")
    if args.smoke:
        return
    not_conditional = "\n".join(f"- `{name}`: {why}" for name, why in others.items())
    update_results(
        "tasks-conditional-grids",
        "## Class-conditional generation grids (issue #7)\n\n"
        f"Every registered model that builds with `num_classes=10` and is a conditional generative model "
        f"({len(conditional)} of {len(conditional) + len(others)}), trained with the registry's default "
        f"architecture for {args.minutes:g} min each on one thread (Adam 1e-3, batch 100), then sampled "
        "as a 10×10 grid whose row c holds 10 samples of class c (generator seed 0). Data: 28×28 MNIST "
        "(`mnist-dynamic` for binary models, `mnist-dequantized` for real ones) unless the model's "
        "measured cost on one thread does not fit the budget (step on 100 images > 2 s or 100 samples > "
        "30 s), then the 8×8 digits. Class agreement: share of the 100 samples that a small CNN trained on "
        f"the same data labels with the row's class (chance 10 %); the classifiers' test accuracy: "
        f"{clf_lines}. Test NLL on the first {args.test_subset} test images, in nats on the data's integer "
        f"scale (≈: importance estimate, K = 100). Total time {total:.0f} min.\n\n"
        + table(rows, columns)
        + "\n\nNot conditional (the reason each gives):\n\n"
        + not_conditional,
    )


if __name__ == "__main__":
    main()
