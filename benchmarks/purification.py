"""Adversarial purification with a PixelCNN: PixelDefend on MNIST (issue #7).

    DGM_DATA_DIR=../shared/data python -m benchmarks.purification
    DGM_DATA_DIR=../shared/data python -m benchmarks.purification --reuse --num-test 200
    DGM_DATA_DIR=../shared/data python -m benchmarks.purification --device cuda --pixelcnn-minutes 30
    DGM_DATA_DIR=../shared/data python -m benchmarks.purification --smoke          (~2 min on CPU)

Song, Kim, Nowozin, Ermon & Kushman (2018), "PixelDefend". A small CNN classifier (`SmallCNN`, ~94k
parameters, Adam 1e-3, batch 128, `--classifier-minutes`) and a 256-way PixelCNN (`--model`, default
`gated-pixelcnn`, `--channels`/`--layers`, trained with `dgm.train` on the 50k `mnist` training images
for `--pixelcnn-minutes`, best validation NLL on 1,000 validation images kept) are trained once and
cached under `runs/benchmarks/purification/` (safetensors); `--reuse` loads them instead of training.

On the first `--num-test` test images: FGSM and PGD (`--pgd-steps`, step 2.5·ε/steps, random start)
in L∞ at each ε of `--eps`, on the [0, 1] scale, then quantised back to the 256 levels inside the ball.
Reported per (attack, ε): clean accuracy, attacked accuracy, accuracy after PixelDefend purification
with ε_defend = ε (greedy, Algorithm 1), accuracy of clean images purified the same way (the defence's
cost), mean bits/dim of clean / attacked / purified images, the AUROC of bits/dim for telling attacked
from clean images, median p-values against `--num-train-scores` training images, and the purification
time per image. Also: the classifier's accuracy and the PixelCNN's bits/dim on `--num-bpd` test images.
The attacks are non-adaptive (they attack the classifier alone). Athalye, Carlini & Wagner (2018)
broke PixelDefend with adaptive attacks (BPDA through the purifier), so the purified accuracy here is
not a robustness guarantee.

Cost: purification is sequential, 784 PixelCNN passes per batch of images (each on the rows a pixel
can see); on one loaded CPU thread a 5-layer gated PixelCNN needs about 2–3 s per image, so the full
run (9 purifications of each test image) takes hours on a CPU: use `--device cuda`, or lower
`--num-test`. The figure `benchmarks/figures/purification.png` shows clean / attacked / purified rows.
Anchor: PixelDefend raised Fashion-MNIST accuracy under its strongest attack from 63% to 84% (Song et
al. 2018, Table 2; different data and classifier, not comparable number for number).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import dgm
from benchmarks.common import table, update_results
from dgm.core.checkpoint import read_json, write_json
from dgm.tasks.purification import (
    SmallCNN,
    accuracy,
    bits_per_dim,
    defend,
    load_classifier,
    save_classifier,
    train_classifier,
)
from dgm.training import resolve_device, seed_everything
from dgm.viz import image_grid

FIGURES = Path(__file__).with_name("figures")
CACHE = Path("runs/benchmarks/purification")
SECTION = "Adversarial purification, PixelDefend on MNIST (issue #7)"
ANCHOR = (
    "PixelDefend raised Fashion-MNIST accuracy under its strongest attack from 63% to 84% "
    "(Song et al. 2018); "
    "Athalye, Carlini & Wagner (2018) broke it with adaptive (BPDA) attacks"
)


def get_classifier(args, train, cache: Path, device) -> tuple[SmallCNN, dict]:
    directory = cache / "classifier"
    if args.reuse and (directory / "classifier.safetensors").is_file():
        info = read_json(directory / "train.json") if (directory / "train.json").is_file() else {}
        print(f"classifier reused from {directory}", flush=True)
        return load_classifier(directory, device), {**info, "reused": True}
    seed_everything(args.seed)
    model = SmallCNN().to(device)
    info = train_classifier(
        model, train, epochs=args.classifier_epochs, max_minutes=args.classifier_minutes, batch_size=128,
        lr=1e-3, seed=args.seed, progress=False,
    )  # fmt: skip
    save_classifier(model, directory)
    write_json(directory / "train.json", info)
    print(f"classifier trained: {info}", flush=True)
    return model, {**info, "reused": False}


def get_pixelcnn(args, train, valid, cache: Path, device):
    directory = cache / "pixelcnn"
    if args.reuse and (directory / "model.safetensors").is_file():
        info = read_json(directory / "bench.json") if (directory / "bench.json").is_file() else {}
        print(f"PixelCNN reused from {directory}", flush=True)
        return dgm.load(directory, device=device), {**info, "reused": True}
    seed_everything(args.seed)
    model = dgm.build(
        args.model, event_shape=(1, 28, 28), support="categorical(256)", channels=args.channels,
        num_layers=args.layers,
    )  # fmt: skip
    t0 = time.perf_counter()
    res = dgm.train(
        model, train, valid, out=directory, epochs=1000, batch_size=args.pixelcnn_batch, lr=1e-3,
        patience=None, max_minutes=args.pixelcnn_minutes, progress=False, seed=args.seed, device=str(device),
    )  # fmt: skip
    info = {
        "seconds": time.perf_counter() - t0,
        "steps": res.steps,
        "epochs": res.steps * args.pixelcnn_batch / len(train),
        "best_valid_nll": res.best_valid_nll,
    }
    write_json(directory / "bench.json", info)
    print(f"PixelCNN trained: {info}", flush=True)
    return model.to(device).eval(), {**info, "reused": False}


def figure(report, x, attack: str, eps: float, path: Path, columns: int = 10) -> Path:
    adv, pur = report.images[(attack, eps)]
    n = min(columns, len(x))
    rows = torch.cat([x[:n].cpu().float(), adv[:n].float(), pur[:n].float()])
    return image_grid(
        rows, path, value_range=(0, 255), nrow=n,
        title=f"PixelDefend: clean, {attack.upper()} ε={eps:g}, purified with ε={eps:g} (top to bottom)",
    )  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gated-pixelcnn", choices=["gated-pixelcnn", "pixelcnn"])
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--pixelcnn-minutes", type=float, default=15.0)
    p.add_argument("--pixelcnn-batch", type=int, default=64)
    p.add_argument("--classifier-minutes", type=float, default=2.0)
    p.add_argument("--classifier-epochs", type=int, default=5)
    p.add_argument("--num-test", type=int, default=500, help="test images attacked and purified")
    p.add_argument("--num-bpd", type=int, default=10000, help="test images for the PixelCNN's bits/dim")
    p.add_argument("--num-train-scores", type=int, default=2000, help="training images for the p-values")
    p.add_argument("--eps", default="0.1,0.2,0.3")
    p.add_argument("--attacks", default="fgsm,pgd")
    p.add_argument("--pgd-steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=500, help="images purified together")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", action="store_true", help="load the cached classifier and PixelCNN if present")
    p.add_argument("--smoke", action="store_true", help="tiny models and budget, RESULTS.md untouched")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cache = CACHE
    if args.smoke:
        cache = CACHE / "smoke"
        args.channels, args.layers, args.pixelcnn_minutes, args.classifier_minutes = 8, 1, 0.25, 0.15
        args.num_test, args.num_bpd, args.num_train_scores, args.pgd_steps = 6, 100, 100, 5
    device = resolve_device(args.device)
    eps = [float(e) for e in args.eps.split(",")]
    attacks = [a.strip() for a in args.attacks.split(",")]

    train = dgm.data.load("mnist", "train")
    valid = dgm.data.load("mnist", "valid").take(1000 if not args.smoke else 200)
    test = dgm.data.load("mnist", "test")
    classifier, clf_info = get_classifier(args, train, cache, device)
    pixelcnn, pix_info = get_pixelcnn(args, train, valid, cache, device)

    test_acc = accuracy(classifier, test.x / 255, test.y)
    bpd_test = bits_per_dim(pixelcnn, test.x[: args.num_bpd], args.batch_size)
    train_scores = bits_per_dim(pixelcnn, train.x[: args.num_train_scores], args.batch_size)
    print(f"classifier test accuracy {100 * test_acc:.2f}%; PixelCNN test bits/dim {bpd_test.mean():.4f}")

    x, y = test.x[: args.num_test], test.y[: args.num_test]
    t0 = time.perf_counter()
    report = defend(
        classifier, pixelcnn, x, y, attacks=attacks, eps=eps, train_scores=train_scores,
        pgd_steps=args.pgd_steps, generator=torch.Generator(device=device).manual_seed(args.seed),
        batch_size=args.batch_size,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    print(report.table())
    # The smoke run's picture goes to the ignored cache, not next to the real figures.
    fig = figure(report, x, attacks[-1], eps[-1], (cache if args.smoke else FIGURES) / "purification.png")
    print(f"figure written to {fig}")

    rows = [
        {
            "attack": r["attack"].upper(),
            "ε (= ε_defend)": f"{r['eps']:g}",
            "clean acc": f"{100 * r['clean_acc']:.1f} %",
            "attacked acc": f"{100 * r['attacked_acc']:.1f} %",
            "purified acc": f"{100 * r['purified_acc']:.1f} %",
            "clean purified acc": f"{100 * r['purified_clean_acc']:.1f} %",
            "bits/dim clean / attacked / purified": (
                f"{r['bpd_clean']:.3f} / {r['bpd_attacked']:.3f} / {r['bpd_purified']:.3f}"
            ),
            "detection AUROC (bits/dim)": f"{r['auroc']:.3f}",
            "median p-value clean / attacked": f"{r['pvalue_clean']:.3f} / {r['pvalue_attacked']:.3g}",
            "purify s/image": f"{r['purify_seconds']:.2f}",
        }
        for r in report.rows
    ]
    n_clf = sum(q.numel() for q in classifier.parameters())

    def trained(info):
        return "cached (--reuse)" if info.get("reused") else "trained now"

    models = [
        {
            "model": "SmallCNN classifier",
            "parameters": f"{n_clf:,}",
            "training": (
                f"{clf_info.get('seconds', float('nan')) / 60:.1f} min, "
                f"{clf_info.get('epochs', '?')} epochs, {trained(clf_info)}"
            ),
            "test figure": f"accuracy {100 * test_acc:.2f} % (10,000 test images)",
        },
        {
            "model": f"{pixelcnn.name} 256-way ({args.channels} channels, {args.layers} layers)"
            if not pix_info.get("reused")
            else f"{pixelcnn.name} 256-way ({pixelcnn.config.get('channels')} channels, "
            f"{pixelcnn.config.get('num_layers')} layers)",
            "parameters": f"{pixelcnn.num_parameters():,}",
            "training": (
                f"{pix_info.get('seconds', float('nan')) / 60:.1f} min, {pix_info.get('steps', '?')} steps "
                f"({pix_info.get('epochs', float('nan')):.2f} epochs), {trained(pix_info)}"
            ),
            "test figure": f"{bpd_test.mean():.4f} bits/dim ({len(bpd_test):,} test images)",
        },
    ]
    print(table(models, list(models[0])))
    print(table(rows, list(rows[0])))
    print(f"attack + detection + purification: {wall / 60:.1f} min")
    if not args.smoke:
        update_results(
            "purification",
            f"## {SECTION}\n\n"
            f"The first {report.num_examples} `mnist` test images; L∞ attacks on the [0, 1] scale "
            f"(FGSM; PGD with {args.pgd_steps} steps of 2.5·ε/steps and a random start), quantised to the "
            "256 levels inside the ε-ball; PixelDefend greedy purification (Song et al. 2018, Algorithm 1) "
            'with ε_defend = ε; "clean purified" = clean images purified with the same ε (the defence\'s '
            "cost). Detection: bits/dim under the PixelCNN, AUROC of attacked vs clean, and median "
            f"p-values against {args.num_train_scores:,} training images (small = off-distribution). "
            f"Device {device}, {args.threads} thread(s).\n\n"
            "**The attacks are non-adaptive** (they see the classifier only): Athalye, Carlini & Wagner "
            '(2018), "Obfuscated Gradients Give a False Sense of Security", broke PixelDefend with '
            "attacks through the purifier (BPDA), so purified accuracy here is not a robustness "
            "guarantee.\n\n"
            + table(models, list(models[0]))
            + "\n\n"
            + table(rows, list(rows[0]))
            + f"\n\nAnchor: {ANCHOR}. Figure: `benchmarks/figures/{fig.name}` (clean / attacked / purified, "
            f"{attacks[-1].upper()} ε = {eps[-1]:g}). Attack + detection + purification took "
            f"{wall / 60:.1f} min.",
        )


if __name__ == "__main__":
    main()
