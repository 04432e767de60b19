"""Semi-supervised VAE (Kingma et al. 2014, M2) on MNIST with 100 labels (issue #5).

    DGM_DATA_DIR=../shared/data python -m benchmarks.ssvae --max-minutes 60
    DGM_DATA_DIR=../shared/data python -m benchmarks.ssvae --variants classifier-only --max-minutes 20
    DGM_DATA_DIR=../shared/data python -m benchmarks.ssvae --variants m2-cs236 --max-minutes 30
    DGM_DATA_DIR=../shared/data python -m benchmarks.ssvae --report        (redraw from stored rows)

Training data: `mnist-dynamic` (50k images, fresh Bernoulli binarisation per batch) with 10 labels per class
kept (drawn with a fixed seed) and the rest marked −1 (unobserved); the labelled examples are repeated so
about half of every batch is labelled (`dgm.models.latent.ssvae.semi_supervised`). Model: the registry's
`ssvae` defaults (z = 50, one hidden layer of 500 softplus units in the encoder, decoder and classifier,
α = 50). Adam 1e-3, batch 100, within a wall budget; validation on 1,000 validation images (importance
estimate with K = 10, used to keep the best weights). Reported: test accuracy of q(y | x) on the 10,000
test images binarised once, and two readings of the same classifier on the grey-level test images: q(y | x)
averaged over 20 fresh binarisations of each image (p(y | grey image) under dynamic binarisation), and
q(y | grey levels) fed directly, outside the binary data the model was trained on (the CS236 homework's
evaluation, which classifies the grey-level test set). The variant "classifier-only" switches the
generative term off (`generative=False`): the same classifier trained on the 100 labels alone, the
paper's baseline. The ``-cs236`` variants swap in the networks of the Stanford CS236 homework the
issue's reference figures come from (z = 64, two layers of 300 in every network, ELU in the encoder and
decoder, ReLU in the classifier, classifier weight 100). Every variant uses the model's default
``labelled_bound_weight=0``: with the labelled images oversampled to half of every batch, their own bound
would otherwise outweigh the unlabelled data (see `dgm.models.latent.ssvae`). Each variant's row is
kept under ``benchmarks/rows/ssvae/`` (versioned) and its weights under ``runs/benchmarks/ssvae/``, so
variants run separately make one table.

Anchors: M2 with 100 labels 88.0 % (Kingma et al. 2014, Table 1; M1+M2: 96.7 %); the issue's reference
figures: 92–93.5 % with the generative term, 73.5 % without.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import dgm
from benchmarks.common import ROWS, RUNS, _command, save_row, stored_rows, table, update_results
from dgm.core.checkpoint import save_model
from dgm.models.latent.ssvae import semi_supervised
from dgm.training import seed_everything

FIGURES = Path(__file__).with_name("figures")
STORE = RUNS / "ssvae"  # trained weights (not versioned)
ROW_STORE = ROWS / "ssvae"  # finished rows (versioned)
# The Stanford CS236 homework's networks (the 92–93.5 % reference): z = 64, two layers of 300 in
# the encoder, decoder (ELU) and classifier (ReLU), classifier weight 100.
CS236 = {
    "latent_dim": 64,
    "hidden_sizes": [300, 300],
    "classifier_hidden_sizes": [300, 300],
    "activation": "elu",
    "classifier_activation": "relu",
    "alpha": 100.0,
}
VARIANTS = {
    "m2": {"generative": True},
    "classifier-only": {"generative": False},
    "m2-cs236": {"generative": True, **CS236},
    "classifier-only-cs236": {"generative": False, **CS236},
    # Eq. 9's labelled bound at weight 1 under the oversampling: what the m2 rows measured before it was
    # left out (see the section's last paragraph).
    "m2-cs236-labelled-bound": {"generative": True, **CS236, "labelled_bound_weight": 1.0},
}
REFERENCE = {"m2": "92–93.5 % (target ≥ 93 %)", "classifier-only": "73.5 %"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--max-minutes", type=float, default=60.0, help="wall budget per variant")
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--smoke", action="store_true", help="0.5 min per variant, RESULTS.md untouched")
    p.add_argument("--track-every", type=int, default=1000, help="steps between validation-accuracy checks")
    p.add_argument("--report", action="store_true", help="redraw the RESULTS.md section from stored rows")
    args = p.parse_args()
    if args.report:
        report()
        return
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(1)
    if args.smoke:
        args.max_minutes = 0.5
    train = semi_supervised(dgm.data.load("mnist-dynamic", "train"), labels_per_class=10, seed=0)
    valid = dgm.data.load("mnist-dynamic", "valid").take(1000)
    test = dgm.data.load("mnist-dynamic", "test")
    grey = dgm.data.load("mnist", "test").x.reshape(len(test), -1).float() / 255
    rows = []
    for name in args.variants.split(","):
        seed_everything(0)
        model = dgm.build("ssvae", event_shape=(784,), **VARIANTS[name])
        t0 = time.perf_counter()
        curve = []

        def track(trainer, model=model, curve=curve, name=name):
            # Accuracy of the current (raw) weights on the 1,000 validation images, to show the trend.
            if trainer.state.step % args.track_every == 0:
                with torch.no_grad():
                    acc = (model.predict(valid.x.float()) == valid.y).double().mean().item()
                curve.append((trainer.state.step, acc))
                print(f"{name}: step {trainer.state.step} valid accuracy {100 * acc:.2f} %", flush=True)

        res = dgm.train(
            model, train, valid, epochs=args.epochs, batch_size=100, lr=1e-3, patience=None,
            max_minutes=args.max_minutes, eval_num_samples=10, progress=False, seed=0, callbacks=[track],
        )  # fmt: skip
        wall = time.perf_counter() - t0
        acc = dgm.evaluation.accuracy(model, test)
        acc_mean, acc_grey = grey_accuracies(model, grey, test.y)
        rows.append(
            {
                "variant": name,
                "options": ", ".join(f"{k}={v}" for k, v in VARIANTS[name].items()),
                "labels": "100 (10 per class)",
                "steps": f"{res.steps:,} ({res.steps * 100 / len(train):.1f} epochs)",
                "train time": f"{wall / 60:.1f} min",
                "test accuracy": f"{100 * acc:.2f} %",
                "mean over 20 binarisations": f"{100 * acc_mean:.2f} %",
                "grey-level input (CS236)": f"{100 * acc_grey:.2f} %",
                "reference": REFERENCE[name.split("-cs236")[0]],
                "command": _command(),
                "curve": curve,
            }
        )
        print({k: v for k, v in rows[-1].items() if k != "curve"}, flush=True)
        if not args.smoke:  # each variant's row is kept, so separate runs make one table
            save_row(ROW_STORE, name, rows[-1])
            save_model(model, STORE / name)  # weights and config, to evaluate again later
    if args.smoke:
        print(table(rows, COLUMNS))
        plot_curves(rows, Path("/tmp/dgm-ssvae-smoke") / "ssvae_accuracy.png")
        return
    report()


COLUMNS = [
    "variant",
    "options",
    "labels",
    "steps",
    "train time",
    "test accuracy",
    "mean over 20 binarisations",
    "grey-level input (CS236)",
    "reference",
]


@torch.no_grad()
def grey_accuracies(model, grey: torch.Tensor, labels: torch.Tensor, draws: int = 20) -> tuple[float, float]:
    """Accuracy of argmax_y E_b[q(y | b)], b ~ Bernoulli(grey) (``draws`` binarisations, seeded), and of
    q(y | grey) with the grey levels fed to the classifier as they are (outside the binary support that
    ``predict`` checks, hence the classifier's logits directly)."""
    model.eval()
    g = torch.Generator().manual_seed(4321)
    mean = sum(model.predict_proba(torch.bernoulli(grey, generator=g)) for _ in range(draws)) / draws
    direct = model._class_logits(grey)
    return (
        (mean.argmax(-1) == labels).double().mean().item(),
        (direct.argmax(-1) == labels).double().mean().item(),
    )


def report() -> None:
    """Redraw the RESULTS.md section and the accuracy figure from every stored variant's row."""
    # Rows stored before the grey-level readings existed have no such columns.
    later = ("mean over 20 binarisations", "grey-level input (CS236)")
    rows = [{**dict.fromkeys(later, "not measured"), **r} for r in stored_rows(ROW_STORE, VARIANTS)]
    if all(r.get("curve") for r in rows):
        plot_curves(rows, FIGURES / "ssvae_accuracy.png")
    else:  # rows recovered from the table alone carry no curve: a redraw would drop theirs from the figure
        print("ssvae_accuracy.png left as it is: some stored rows have no validation curve", flush=True)
    commands = "\n".join(f"- {r['variant']}: `{r['command']}`" for r in rows if r.get("command"))
    update_results(
        "latent-ssvae",
        "## Semi-supervised VAE (M2), 100 labels (issue #5)\n\n"
        "`mnist-dynamic` training images, 10 labels per class kept (seed 0), the rest unlabelled; test "
        "accuracy of q(y | x) on the 10,000 test images (binarised once), each variant within its own wall "
        "budget (one thread). `-cs236` variants use the Stanford CS236 homework's networks (z = 64, two "
        "layers of 300 everywhere, ELU in the encoder and decoder and ReLU in the classifier, classifier "
        "weight 100), the others the registry's defaults (Kingma et al.: z = 50, one softplus layer of 500, "
        "weight 50). The labelled images' own bound is left out of the objective (`labelled_bound_weight=0`,"
        " the model's default): oversampled to half of every batch, it would outweigh the unlabelled data. "
        "Kingma et al.'s own M2 figure with 100 labels is 88.0 % (Table 1); the target is the issue's "
        "reference.\n\n"
        + table(rows, COLUMNS)
        + "\n\nCommands:\n\n"
        + commands
        + "\n\nValidation accuracy during training (1,000 validation images): "
        "`benchmarks/figures/ssvae_accuracy.png`.\n\n"
        "Training time is what separated m2-cs236 from the target: the same variant within 45 minutes "
        "(66,951 steps, 2026-11-24) reached 90.31 %, within 110 minutes (163,908 steps) 94.41 %. The curve "
        "reads the raw weights every few thousand steps and swings by about ±1.5 points between checks "
        "(constant learning rate); the row's weights are those of the best validation bound, not of the "
        "last check (checked afterwards from the stored weights: 94.44 % on all 10,000 validation images, "
        "93.0 % on the 1,000 the curve uses, where its last check read 91.8 %).\n\n"
        "The evaluation protocol is not what separates these rows from the reference: the CS236 homework "
        "classifies the grey-level test images, here the test images are binarised once; the last two "
        "accuracy columns read the same classifier both ways and differ from the first by under one "
        "point.\n\n"
        "What did: until the runs above, the labelled images' own bound L(x, y) was part of the objective "
        "at weight 1. Oversampled to half of every batch, it weighed about 500 times its share in Kingma "
        "et al.'s eq. 9 (where 100 images' L is 1/500 of the generative term), and fitted the generative "
        "model to those 100 images. Measured in diagnostic runs of a hand-written re-implementation of "
        "the homework's training loop (all 100 labelled and 100 unlabelled images per step, its loss): "
        "dgm's model reached 73.6 % test accuracy after 2,000 steps with L and 79.4 % without it, the "
        "homework's networks 80.3 % (78.9 % with an ELU classifier instead of its ReLU one); that loop "
        "reached 91.85 % after its 30,000 steps "
        "with the homework's labelled list (one run; also below the 93 % target). Rows measured before the "
        "change: m2 86.11 %, m2-cs236 84.73 % (m2-cs236-labelled-bound's setting, with an ELU classifier). "
        "Which images carry labels matters less than feared: the classifier trained on the 100 labels "
        "alone reaches 77.0 % with the homework's list, 76.9 % with this benchmark's seed-0 draw, and "
        "70.8–78.3 % over eight other draws.",
        rows=rows,
    )


def plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        if row.get("curve"):
            steps, acc = zip(*row["curve"], strict=True)
            ax.plot(steps, [100 * a for a in acc], label=row["variant"])
    ax.set_xlabel("training steps (batch 100)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("ssvae, 100 labels")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
