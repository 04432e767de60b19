"""Super-resolution with an image-conditioned Gated PixelCNN on static binarized MNIST (issue #7).

    DGM_DATA_DIR=../shared/data python -m benchmarks.superres                (~20 min on one CPU thread)
    DGM_DATA_DIR=../shared/data python -m benchmarks.superres --factor 2 --device cuda
    DGM_DATA_DIR=../shared/data python -m benchmarks.superres --smoke        (~1.5 min on CPU)

Model: ``gated-pixelcnn`` (van den Oord et al. 2016b) built with ``context_shape=[1, 28/f, 28/f]``: the
conditioning image h = the f×f average pooling of x (fraction of ones per block; f = 4 gives 7×7,
f = 2 gives 14×14) is upsampled to 28×28, mapped by a small unmasked network to s = m(h), and every
gate gets the bias V ⋆ s (eq. 5). Trained with ``dgm.train`` on ``low_resolution(train, f)`` (y = h,
passed as context), and an unconditional ``gated-pixelcnn`` of the same width and depth trained the same
way, each within ``--max-minutes`` of wall time (validation on the first ``--valid-subset`` images, best
weights kept). Reported per model: free parameters, steps, training time; exact test NLL in nats (static
binarisation; the conditional model's is −log p(x | h)); the consistency error, mean |downsample(sample)
− h| over the h values (a difference of fractions of ones per block), of ``--num-samples`` samples for
each of ``--consistency-examples`` test images evenly spaced in the split (for the unconditional model:
its samples against the same h, i.e. the error of images that ignore h); and the sampling time. The grid
``benchmarks/figures/superres_grid.png`` has one column per test image; rows: h upsampled, the
conditional samples, the true image, then the unconditional model's samples (``superres_grid_f2.png``
for ``--factor 2``).

Cost on a CPU: sampling is 784 sequential steps per batch, each a pass over the rows a pixel can see, so
drawing 48 images takes minutes on one thread (hence the defaults: 24 test images × 2 samples, test NLL
on 2,000 evenly spaced test images); a GPU run can raise them.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

import dgm
from benchmarks.common import synchronize, table, update_results
from dgm.tasks.superres import consistency_error, low_resolution, super_resolve, upsample
from dgm.training.trainer import resolve_device
from dgm.viz import image_grid

FIGURES = Path(__file__).with_name("figures")


def build(args, context_shape) -> dgm.GenerativeModel:
    return dgm.build(
        "gated-pixelcnn",
        event_shape=(1, 28, 28),
        support="binary",
        channels=args.channels,
        num_layers=args.layers,
        kernel_size=3,
        first_kernel_size=7,
        context_shape=context_shape,
    )


def subset(d, n: int):
    """n examples evenly spaced over the split (0: all): its stored order is not random (runs of a digit)."""
    if not n or n >= len(d):
        return d
    idx = torch.arange(n) * (len(d) // n)
    return dataclasses.replace(d, x=d.x[idx], y=None if d.y is None else d.y[idx])


def train(model, train_ds, valid_ds, args, device: torch.device) -> tuple[int, float]:
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    res = dgm.train(
        model, train_ds, valid_ds, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        patience=args.patience, max_minutes=args.max_minutes, seed=args.seed, device=str(device),
        eval_batch_size=args.eval_batch_size, progress=not args.quiet,
    )  # fmt: skip
    return res.steps, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factor", type=int, default=4, help="downsampling factor: 4 → 7×7, 2 → 14×14")
    p.add_argument("--max-minutes", type=float, default=6.0, help="wall budget of each model's training")
    p.add_argument("--epochs", type=int, default=1000, help="upper bound; the wall budget usually binds")
    p.add_argument("--channels", type=int, default=32, help="width p of both models")
    p.add_argument("--layers", type=int, default=7, help="gated layers after the first")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--eval-batch-size", type=int, default=500)
    p.add_argument("--train-subset", type=int, default=0, help="train on N images, evenly spaced (0: all)")
    p.add_argument(
        "--valid-subset", type=int, default=2000, help="validate on N images, evenly spaced (0: all)"
    )
    p.add_argument(
        "--test-subset", type=int, default=2000, help="test NLL on N images, evenly spaced (0: all)"
    )
    p.add_argument("--consistency-examples", type=int, default=24, help="test images given samples")
    p.add_argument("--num-samples", type=int, default=2, help="samples per test image")
    p.add_argument("--grid-examples", type=int, default=8, help="columns of the PNG grid")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--smoke", action="store_true", help="tiny run of the whole pipeline; RESULTS.md untouched"
    )
    p.add_argument("--figures", type=Path, default=None, help=f"figure directory (default {FIGURES})")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.smoke:
        args.channels, args.layers, args.max_minutes = min(args.channels, 8), min(args.layers, 2), 0.25
        args.train_subset = args.train_subset or 2000
        args.valid_subset = min(args.valid_subset, 200) or 200
        args.test_subset = args.test_subset or 200
        args.consistency_examples = min(args.consistency_examples, 8)
        args.num_samples = min(args.num_samples, 2)
        args.grid_examples = min(args.grid_examples, 8)
        args.quiet = True
    if 28 % args.factor:
        raise SystemExit(f"--factor must divide 28 (1, 2, 4, 7, 14, 28), got {args.factor}")
    out = args.figures or (Path("/tmp/dgm-superres-smoke") if args.smoke else FIGURES)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    f, low_size = args.factor, 28 // args.factor
    context_shape = [1, low_size, low_size]

    data = {}
    for split, n in (("train", args.train_subset), ("valid", args.valid_subset), ("test", args.test_subset)):
        d = dgm.data.load("binarized-mnist", split).reshape_to((1, 28, 28))
        data[split] = low_resolution(subset(d, n), f)

    models = {"conditional": build(args, context_shape), "unconditional": build(args, None)}
    # The unconditional model trains on the same images without y (it takes no context).
    plain = {k: dataclasses.replace(d, y=None) for k, d in data.items()}
    n_c, s = args.consistency_examples, args.num_samples
    # Test images spread over the split (its order is not random: the first images are mostly one digit).
    pick = torch.arange(n_c) * (len(data["test"]) // n_c)
    test_x = data["test"].x[pick]
    low = data["test"].y[pick]
    rows, samples = [], {}
    for name, model in models.items():
        cond = name == "conditional"
        steps, train_s = train(model, data["train"] if cond else plain["train"],
                               data["valid"] if cond else plain["valid"], args, device)  # fmt: skip
        model.eval()
        ev = dgm.evaluate(model, data["test"] if cond else plain["test"], args.eval_batch_size)
        gen = torch.Generator(device=model.device).manual_seed(args.seed)
        synchronize(model.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            if cond:
                draws = super_resolve(model, low.to(model.device), s, generator=gen)
            else:
                draws = model.sample(n_c * s, generator=gen).reshape(n_c, s, 1, 28, 28)
        synchronize(model.device)
        sample_s = time.perf_counter() - t0
        samples[name] = draws.cpu()
        err = consistency_error(draws.cpu(), low, f, per_example=True)
        test_what = f"{ev['num_examples']:,} of 10,000" if ev["num_examples"] < 10_000 else "10,000"
        rows.append(
            {
                "model": f"gated-pixelcnn, {'conditional on h' if cond else 'unconditional'}",
                "context": f"{low_size}×{low_size} (f={f})" if cond else "none",
                "free params": f"{model.num_parameters():,}",
                "steps": f"{steps:,}",
                "train time": f"{train_s / 60:.1f} min",
                "test NLL (nats, exact)": f"{ev['nll']:.2f} ± {ev['nll_stderr']:.2f}",
                "test images": test_what,
                "consistency error": f"{err.mean().item():.4f} ± {err.std().item() / len(err) ** 0.5:.4f}",
                "sampling": f"{sample_s:.1f} s for {n_c * s} images",
            }
        )
        print(rows[-1], flush=True)

    g = args.grid_examples
    grid = out / ("superres_grid.png" if f == 4 else f"superres_grid_f{f}.png")
    # dgm.tasks.superres.superres_grid draws the first rows; the unconditional samples are appended below
    # the same columns, for the eye's comparison.
    full = torch.cat(
        [
            upsample(low[:g], f),
            *[samples["conditional"][:g, j] for j in range(s)],
            test_x[:g].float(),
            *[samples["unconditional"][:g, j] for j in range(s)],
        ]
    )
    title = f"rows: h ({low_size}x{low_size}), {s} x p(x|h), true x, {s} x p(x)"
    image_grid(full, grid, value_range=(0, 1), nrow=g, title=title)
    cols = list(rows[0])
    body_table = table(rows, cols)
    print(body_table)
    cond_nll = float(rows[0]["test NLL (nats, exact)"].split()[0])
    uncond_nll = float(rows[1]["test NLL (nats, exact)"].split()[0])
    summary = (
        f"The {low_size}×{low_size} image is worth {uncond_nll - cond_nll:.1f} nats per image: "
        f"−log p(x | h) = {cond_nll:.2f} vs −log p(x) = {uncond_nll:.2f}. Consistency error = mean "
        f"|downsample_{f}(sample) − h| over the {low_size}×{low_size} values (fraction of ones per {f}×{f} "
        f"block), {s} samples for each of {n_c} test images evenly spaced in the split; the unconditional "
        "model's samples are compared with the same h (the error of samples that ignore it)."
    )
    print(summary)
    print(f"grid written to {grid}")
    if args.smoke:
        print("smoke run: RESULTS.md left unchanged")
        return
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU, 1 thread"
    update_results(
        f"Super-resolution: PixelCNN conditioned on {low_size}×{low_size} MNIST (issue #7)",
        f"## Super-resolution: Gated PixelCNN conditioned on {low_size}×{low_size} MNIST (issue #7)\n\n"
        f"Static binarized MNIST; h = {f}×{f} average pooling of x. Both models: `gated-pixelcnn`, p = "
        f"{args.channels}, 1+{args.layers} layers, Adam {args.lr:g}, batch {args.batch_size}, "
        f"{args.max_minutes:g} min of training each on {device_name} (validation on "
        f"{args.valid_subset or 10_000:,} images, best weights kept). The conditional model adds "
        "s = m(h) (nearest upsampling + two 3×3 convolutions) and V ⋆ s on every gate (van den Oord et al. "
        "2016b, eq. 5).\n\n"
        + body_table
        + "\n\n"
        + summary
        + f"\n\n![super-resolution grid](figures/{grid.name})",
    )


if __name__ == "__main__":
    main()
