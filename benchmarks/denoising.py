"""Denoising by posterior sampling under a trained prior (issue #7, `dgm.tasks.denoise`).

    DGM_DATA_DIR=../shared/data python -m benchmarks.denoising              # about 6 + 3 min of training
    DGM_DATA_DIR=../shared/data python -m benchmarks.denoising --flow-data digits --max-minutes 3
    DGM_DATA_DIR=../shared/data python -m benchmarks.denoising --smoke      # seconds; RESULTS.md untouched

(a) Gaussian noise, flow prior. A flat RealNVP (8 affine couplings, MLP conditioners of 512 units, logit
preprocessing with α = 0.05 as in the paper) is trained on `mnist-dequantized` (x = (pixel + u)/256 in
[0, 1), fresh u every batch) for `--max-minutes`, Adam 1e-3, batch 100. 100 test images (dequantised once,
fixed seed) get y = x + σε, σ ∈ {0.1, 0.2, 0.3}. Each is denoised with S chains of MALA in the flow's latent
space (`flow-latent`) and, for comparison, MALA in data space (`mala`), `--steps` steps of which the first
half adapt the step size; the estimate is the posterior mean (MMSE). Baseline: a Gaussian blur whose width is
chosen per σ on 100 validation images (the best of 0.3–2.0 pixels by PSNR): a linear filter tuned with the
clean images, so a fair, not a weak, reference.

(b) Flip noise, VAE prior. The registry's `vae` (Bernoulli decoder, z = 10, MLP 300-300) is trained on
`binarized-mnist` for `--vae-minutes`; 100 test images get every pixel flipped with probability
ρ ∈ {0.05, 0.1, 0.2}; `vae-latent` (MALA in z with x summed out, then x | z, y in closed form). Reported: PSNR
of the posterior mean and the pixel error rate of its threshold at 1/2 (the per-pixel MAP), against the
noisy input and a 3×3 median filter (the classic salt-and-pepper filter).

PSNR = 10 log10(1 / MSE) per image on the [0, 1] scale, averaged over images. The figure
`benchmarks/figures/denoising.png` shows clean / noisy / posterior mean / two posterior samples for both.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import dgm
from benchmarks.common import table, update_results
from dgm.tasks.denoising import add_noise, denoise, psnr
from dgm.training import seed_everything
from dgm.viz import image_grid

FIGURE = Path(__file__).with_name("figures") / "denoising.png"
SIGMAS = (0.1, 0.2, 0.3)
RATES = (0.05, 0.1, 0.2)
BLUR_WIDTHS = (0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
FLOW_DATA = {"mnist": "mnist-dequantized", "digits": "digits-dequantized"}


def images(x: torch.Tensor, shape) -> torch.Tensor:
    return x.reshape(len(x), *shape).float()


def subset(data, n: int) -> torch.Tensor:
    """n examples drawn without replacement with a fixed seed (binarized-mnist's test split is sorted by
    digit, so its first images are all zeros)."""
    idx = torch.randperm(len(data.x), generator=torch.Generator().manual_seed(0))[:n]
    return data.x[idx].float()


def to_28(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(len(x), -1).float().cpu()
    side = math.isqrt(x.shape[1])
    x = x.reshape(len(x), 1, side, side)
    return x if side == 28 else F.interpolate(x, size=(28, 28), mode="nearest")


def gaussian_blur(y: torch.Tensor, width: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) images with reflected borders."""
    r = max(1, math.ceil(3 * width))
    t = torch.arange(-r, r + 1, dtype=y.dtype)
    k = torch.exp(-0.5 * (t / width) ** 2)
    k = k / k.sum()
    out = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.reshape(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.reshape(1, 1, -1, 1))


def median3(y: torch.Tensor) -> torch.Tensor:
    """3×3 median filter of (N, 1, H, W) images (replicated borders)."""
    n, c, h, w = y.shape
    patches = F.unfold(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3)  # (N, 9, H·W)
    return patches.median(1).values.reshape(n, c, h, w)


def train(model, train_data, valid_data, minutes: float) -> dict:
    t0 = time.perf_counter()
    res = dgm.train(
        model, train_data, valid_data, epochs=1000, batch_size=100, lr=1e-3, patience=None,
        max_minutes=minutes, progress=False, seed=0,
    )  # fmt: skip
    return {
        "steps": res.steps,
        "minutes": (time.perf_counter() - t0) / 60,
        "epochs": res.steps * 100 / len(train_data),
    }


def flow_part(args, figure_rows: list) -> tuple[list[dict], str]:
    name = FLOW_DATA[args.flow_data]
    seed_everything(0)
    train_data = dgm.data.load(name, "train")
    valid = dgm.data.load(name, "valid")
    test = dgm.data.load(name, "test")
    shape = tuple(test.image_shape)
    model = dgm.build(
        "realnvp", event_shape=tuple(train_data.x.shape[1:]), architecture="flat",
        num_layers=args.flow_layers, hidden_sizes=[args.flow_hidden], logit_alpha=0.05,
    )  # fmt: skip
    fit = train(model, train_data, dgm.data.load(name, "valid").take(1000), args.max_minutes)
    ev = dgm.evaluate(model, test)
    print(
        f"realnvp on {name}: {fit['steps']} steps ({fit['epochs']:.1f} epochs) in {fit['minutes']:.1f} "
        f"min; test bits/dim {ev['bits_per_dim']:.3f} (integer scale)", flush=True,
    )  # fmt: skip
    x, xv = subset(test, args.num_images), subset(valid, args.num_images)
    rows = []
    for sigma in SIGMAS:
        g = torch.Generator().manual_seed(int(1000 * sigma))
        y, yv = add_noise(x, f"gaussian:{sigma}", g), add_noise(xv, f"gaussian:{sigma}", g)
        width = max(
            BLUR_WIDTHS, key=lambda w: psnr(images(xv, shape), gaussian_blur(images(yv, shape), w)).mean
        )
        blur = psnr(images(x, shape), gaussian_blur(images(y, shape), width)).mean
        for method in args.flow_methods.split(","):
            t0 = time.perf_counter()
            res = denoise(
                model, y, f"gaussian:{sigma}", num_samples=args.chains, num_steps=args.steps, method=method,
                generator=torch.Generator().manual_seed(0),
            )  # fmt: skip
            wall = time.perf_counter() - t0
            rows.append(
                {
                    "σ": f"{sigma:g}",
                    "sampler": method,
                    "PSNR noisy": f"{psnr(x, y).mean:.2f}",
                    "PSNR blur": f"{blur:.2f} ({width:g} px)",
                    "PSNR posterior mean": f"{res.psnr(x).mean:.2f}",
                    "PSNR one sample": f"{psnr(x, res.samples[:, 0]).mean:.2f}",
                    "acceptance": f"{100 * res.acceptance:.0f} %",
                    "steps (burn-in)": f"{res.steps} ({res.burn_in})",
                    "chains": args.chains,
                    "time / image": f"{wall / len(x):.3f} s",
                }
            )
            print(rows[-1], flush=True)
            if sigma == 0.2 and method == "flow-latent":
                k = min(8, len(x))
                figure_rows += [
                    x[:k],
                    y[:k].clamp(0, 1),
                    res.mean[:k],
                    res.samples[:k, 0],
                    res.samples[:k, 1 % args.chains],
                ]
    header = (
        f"(a) Gaussian noise, flow prior: `realnvp` flat ({args.flow_layers} affine couplings, MLP "
        f"{args.flow_hidden}, logit α = 0.05) trained on `{name}` for {fit['minutes']:.1f} min "
        f"({fit['steps']:,} steps, {fit['epochs']:.1f} epochs, batch 100, Adam 1e-3, one thread): test "
        f"{ev['bits_per_dim']:.3f} bits/dim (integer scale). {len(x)} random test images, PSNR on [0, 1]. "
        "Baseline: Gaussian blur, width (0.3–2 px) picked per σ on as many validation images."
    )
    return rows, header


def vae_part(args, figure_rows: list) -> tuple[list[dict], str]:
    seed_everything(0)
    train_data = dgm.data.load("binarized-mnist", "train")
    test = dgm.data.load("binarized-mnist", "test")
    shape = tuple(test.image_shape)
    model = dgm.build("vae", event_shape=tuple(train_data.x.shape[1:]), support="binary")
    fit = train(model, train_data, dgm.data.load("binarized-mnist", "valid").take(1000), args.vae_minutes)
    ev = dgm.evaluate(model, test.take(1000))
    print(
        f"vae: {fit['steps']} steps in {fit['minutes']:.1f} min; test NLL ≈ {ev['nll']:.1f} nats", flush=True
    )
    x = subset(test, args.num_images)
    rows = []
    for rate in RATES:
        g = torch.Generator().manual_seed(int(1000 * rate))
        y = add_noise(x, f"flip:{rate}", g)
        med = median3(images(y, shape)).reshape(x.shape)
        t0 = time.perf_counter()
        res = denoise(
            model, y, f"flip:{rate}", num_samples=args.chains, num_steps=args.steps,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        wall = time.perf_counter() - t0
        rows.append(
            {
                "ρ": f"{rate:g}",
                "error noisy": f"{100 * (y != x).float().mean():.2f} %",
                "error median 3×3": f"{100 * (med != x).float().mean():.2f} %",
                "error posterior (mean > ½)": f"{100 * ((res.mean > 0.5).float() != x).float().mean():.2f} %",
                "PSNR noisy": f"{psnr(x, y).mean:.2f}",
                "PSNR median": f"{psnr(x, med).mean:.2f}",
                "PSNR posterior mean": f"{res.psnr(x).mean:.2f}",
                "acceptance": f"{100 * res.acceptance:.0f} %",
                "steps (burn-in)": f"{res.steps} ({res.burn_in})",
                "time / image": f"{wall / len(x):.3f} s",
            }
        )
        print(rows[-1], flush=True)
        if rate == 0.1:
            k = min(8, len(x))
            figure_rows += [x[:k], y[:k], res.mean[:k], res.samples[:k, 0], res.samples[:k, 1 % args.chains]]
    header = (
        "(b) Flip noise, VAE prior: `vae` (registry defaults: Bernoulli decoder, z = 10, MLP 300-300) "
        f"trained on `binarized-mnist` for {fit['minutes']:.1f} min ({fit['steps']:,} steps, "
        f"{fit['epochs']:.1f} epochs): test NLL ≈ {ev['nll']:.1f} nats (first 1,000 test images). {len(x)} "
        "random test images; `vae-latent` sampler; error = fraction of pixels wrong."
    )
    return rows, header


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flow-data", choices=tuple(FLOW_DATA), default="mnist")
    p.add_argument("--max-minutes", type=float, default=6.0, help="flow training budget")
    p.add_argument("--vae-minutes", type=float, default=3.0, help="VAE training budget")
    p.add_argument("--flow-layers", type=int, default=8)
    p.add_argument("--flow-hidden", type=int, default=512)
    p.add_argument("--flow-methods", default="flow-latent,mala")
    p.add_argument("--num-images", type=int, default=100)
    p.add_argument("--chains", type=int, default=4, help="chains (posterior samples) per image")
    p.add_argument("--steps", type=int, default=400, help="MALA steps per chain (half burn-in)")
    p.add_argument("--smoke", action="store_true", help="tiny budget; RESULTS.md and the figure untouched")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.smoke:
        args.max_minutes = args.vae_minutes = 0.05
        args.num_images, args.chains, args.steps = 8, 2, 10
        args.flow_layers, args.flow_hidden = 2, 64
    figure_rows: list[torch.Tensor] = []
    flow_rows, flow_header = flow_part(args, figure_rows)
    vae_rows, vae_header = vae_part(args, figure_rows)
    flow_table, vae_table = table(flow_rows, list(flow_rows[0])), table(vae_rows, list(vae_rows[0]))
    print(flow_table)
    print(vae_table)
    path = Path(tempfile.mkdtemp()) / "denoising.png" if args.smoke else FIGURE
    # digits (8×8) rows are enlarged to MNIST's 28×28 so both priors share one grid
    grid = torch.cat([to_28(r) for r in figure_rows])
    image_grid(
        grid, path, value_range=(0.0, 1.0), nrow=len(figure_rows[0]),
        title="clean | noisy | posterior mean | 2 samples: RealNVP σ=0.2, then VAE ρ=0.1",
    )  # fmt: skip
    print(f"figure: {path}")
    if not args.smoke:
        update_results(
            "denoising",
            "## Denoising by posterior sampling (issue #7)\n\n"
            + flow_header + "\n\n" + flow_table + "\n\n" + vae_header + "\n\n" + vae_table
            + "\n\nFigure: `benchmarks/figures/denoising.png` (rows: clean, noisy, posterior mean, two "
            "posterior samples; RealNVP at σ = 0.2, then the VAE at ρ = 0.1).",
        )  # fmt: skip


if __name__ == "__main__":
    main()
