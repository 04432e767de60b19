"""Probability density distillation on MNIST (issue #6): a MAF teacher → an IAF student.

    DGM_DATA_DIR=../shared/data python -m benchmarks.distill                      (~20 min, one thread)
    DGM_DATA_DIR=../shared/data python -m benchmarks.distill --teacher-minutes 10 (train its own teacher)
    DGM_DATA_DIR=../shared/data python -m benchmarks.distill --teacher-minutes 8 --student-minutes 10 \
        --pair-weight 0,0.02,0.05,0.2                          (the RESULTS.md run: ~60 min, one thread)
    DGM_DATA_DIR=../shared/data python -m benchmarks.distill --conditional --teacher-minutes 8 \
        --student-minutes 10 --pair-weight 0,0.05      (class-conditional teacher and student: ~40 min)
    DGM_DATA_DIR=../shared/data python -m benchmarks.distill --smoke               (~1 min, no RESULTS.md)

Parallel WaveNet's recipe (van den Oord et al. 2018, §3) at D = 784: the teacher is the MAF that
``benchmarks/flows_mnist.py`` trains on ``mnist-dequantized`` (5 MADE layers of 1×1024 ReLU units, batch
norm, logit λ = 1e-6; loaded from ``runs/benchmarks/flows_mnist/maf``); without it, or with
``--teacher-minutes``, a smaller MAF (5 × 1×512) is trained here within that budget. The student is an IAF
with the teacher's layer structure (layers, MADE widths, orderings, log-scale clamp, the same logit
preprocessing; IAF has no batch norm: the paper's MAF uses it between layers, an IAF would need its
inverse in the sampling direction, and the student learns from samples, not data). Training, in two
stages (``dgm.models.flows.distill``):

1. imitation (``--pairs``, ``--imitate-minutes``): ``--pairs`` teacher samples are drawn with the noise
   that drew them, and the student's map noise ↦ image is fitted to the teacher's by least squares in the
   shared logit space (``imitate``; Luhman & Luhman 2021);
2. distillation (``--student-minutes``): Adam on KL(student ‖ teacher), estimated on a batch of the
   student's own reparameterised samples per step, plus ``--pair-weight`` × the same squared error on a
   batch of pairs (an auxiliary loss against collapse, as Parallel WaveNet adds its own, §3.2).

``--pairs 0`` is the plain reverse KL from a fresh student (the setting of the first row in RESULTS).

``--conditional``: teacher and student both model p(x | y) for the ten digit labels (the one-hot label an
extra input of every MADE, as Parallel WaveNet conditions both networks on the same linguistic features);
the teacher is trained here on the labelled images, every KL sample and teacher pair carries a uniformly
drawn label, and the digits drawn are scored against the labels asked for. The unconditional student can
satisfy the reverse KL by drawing one digit well; a conditional one is asked for every digit.

Scale: both models are densities on the [0, 1) pixels (x + u)/256; every NLL reported here is moved to the
integer scale x + u of the published tables by adding 784·log 256 nats (as ``dgm.evaluate`` does), and
bits/dim = nats / (784 ln 2). The KL needs no shift (the constant cancels). The same densities are also
reported over y = logit(x), the space the flows' other layers act in: over pixels the logit's log-det puts
integrable spikes at the cube's faces, where a few teacher samples score −10⁸ nats and swamp a mean,
while over y the teacher's entropy has a stable mean (KL is the same in both spaces; NLLs are not).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

import dgm
from benchmarks.common import RUNS, table, update_results
from dgm.core import checkpoint
from dgm.models.flows.distill import (
    distill,
    imitate,
    sampling_speed,
    student_scores,
    teacher_entropy,
    teacher_pairs,
)
from dgm.training import seed_everything
from dgm.viz import image_grid

FIGURES = Path(__file__).with_name("figures")
TEACHER = RUNS / "flows_mnist" / "maf"
SECTION = "flows-distill"
NUM_CLASSES = 10
# The teachers keep the paper's (x − μ)·exp(−α), MAF's default when the distillation rows were measured.
SMALL_TEACHER = {
    "num_layers": 5,
    "hidden_sizes": [512],
    "batch_norm": True,
    "logit_alpha": 1e-6,
    "shift": "before",
}
SMOKE_TEACHER = {
    "num_layers": 2,
    "hidden_sizes": [64],
    "batch_norm": True,
    "logit_alpha": 1e-6,
    "shift": "before",
}


def get_teacher(args, train, valid):
    """(teacher, description): the flows_mnist MAF if present (and no teacher budget was given), else one
    trained here."""
    stored = (TEACHER / checkpoint.WEIGHTS).exists()
    if not args.smoke and not args.conditional and args.teacher_minutes is None and stored:
        return checkpoint.load(TEACHER).eval(), f"`{TEACHER.relative_to(RUNS.parents[1])}` (flows_mnist.py)"
    minutes = 0.1 if args.smoke else (args.teacher_minutes or 10.0)
    options = dict(SMOKE_TEACHER if args.smoke else SMALL_TEACHER)
    if args.conditional:
        options["num_classes"] = NUM_CLASSES
    if args.smoke:
        train, valid = train.take(2000), valid.take(500)
    seed_everything(0)
    model = dgm.build("maf", event_shape=train.event_shape, support=train.support, **options)
    t0 = time.perf_counter()
    res = dgm.train(
        model, train, valid, epochs=10_000, batch_size=100, lr=1e-3, patience=None,
        max_minutes=minutes, progress=False, seed=0,
    )  # fmt: skip
    wall = (time.perf_counter() - t0) / 60
    layers, width = options["num_layers"], options["hidden_sizes"]
    kind = "class-conditional MAF p(x | y)" if args.conditional else "MAF"
    return model.eval(), (
        f"trained here: {kind} {layers} × MADE {width}, batch norm, logit 1e-6; Adam 1e-3, batch 100, "
        f"{res.steps:,} steps in {wall:.1f} min"
    )


def student_like(teacher) -> dgm.GenerativeModel:
    c = teacher.config
    keep = ("num_layers", "hidden_sizes", "activation", "orderings", "hidden_degrees", "scale_clamp")
    return dgm.build(
        "iaf",
        event_shape=teacher.event_shape,
        support="real",
        logit_alpha=c.get("logit_alpha"),
        num_classes=c.get("num_classes"),
        seed=1,
        **{k: c[k] for k in keep if k in c},
    )


def digit_labeller(train, test):
    """A multinomial logistic regression on 10,000 MNIST training images (pixels in [0, 1]), to count
    which digits a model draws: a collapsed student shows up as one class. Returns the labelling function
    (samples, and for a conditional model the labels asked for → a summary) and its accuracy on (up to)
    2,000 test images."""
    from sklearn.linear_model import LogisticRegression

    def features(x: torch.Tensor):
        return x.reshape(len(x), -1).clamp(0, 1).double().numpy()

    gen = torch.Generator().manual_seed(0)
    x, _ = train.get_batch(torch.arange(10_000), gen)
    clf = LogisticRegression(max_iter=300).fit(features(x), train.y[:10_000].numpy())
    n_test = min(2_000, len(test))
    xt, _ = test.get_batch(torch.arange(n_test), gen)
    accuracy = float(clf.score(features(xt), test.y[:n_test].numpy()))

    def classes(samples: torch.Tensor, asked: torch.Tensor | None = None) -> str:
        predicted = torch.as_tensor(clf.predict(features(samples)))
        counts = torch.bincount(predicted, minlength=10).double()
        share = counts / counts.sum()
        entropy = -(share[share > 0] * share[share > 0].log2()).sum().item()
        text = f"largest {share.max().item():.0%} (digit {share.argmax().item()}), entropy {entropy:.2f} bits"
        if asked is not None:
            text += f"; labelled as the digit asked for: {(predicted == asked).double().mean().item():.0%}"
        return text

    return classes, accuracy


def draw_curve(history, entropy, path, every, space):
    key = "_logit" if space == "logit" else ""
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    steps = [r["step"] for r in history][::every]
    for name, label in (
        ("teacher_nll", "teacher NLL of student samples"),
        ("student_nll", "student entropy"),
    ):
        ax.plot(steps, [r[name + key] for r in history][::every], label=label, lw=1)
    ax.axhline(entropy, color="k", ls="--", lw=1, label="teacher entropy (own samples)")
    ax.set_xlabel("distillation step")
    ax.set_ylabel(f"nats per image, over {'y = logit(x)' if key else 'x'}")
    ax.set_ylim(entropy - 0.3 * abs(entropy), entropy + 0.6 * abs(entropy))
    ax2 = ax.twinx()
    ax2.plot(steps, [r["kl"] for r in history][::every], color="tab:red", lw=1, label="KL(student ‖ teacher)")
    ax2.set_yscale("log")
    ax2.set_ylabel("KL (nats)", color="tab:red")
    ax.legend(loc="upper right", fontsize=8)
    ax2.legend(loc="center right", fontsize=8)
    ax.set_title("density distillation on MNIST: MAF teacher → IAF student", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--teacher-minutes",
        type=float,
        default=None,
        help="train a smaller teacher within this budget instead of loading flows_mnist's MAF",
    )
    p.add_argument("--pairs", type=int, default=10_000, help="teacher samples with their noise (0: none)")
    p.add_argument("--imitate-minutes", type=float, default=4.0, help="wall budget of the imitation stage")
    p.add_argument("--student-minutes", type=float, default=10.0, help="wall budget of distillation")
    p.add_argument(
        "--pair-weight",
        type=lambda text: [float(w) for w in text.split(",")],
        default=[0.0, 0.2],
        help="weights of the paired loss in distillation, comma-separated: one arm each from the same start",
    )
    p.add_argument("--batch-size", type=int, default=64, help="student samples per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--entropy-samples", type=int, default=1000, help="teacher samples for its entropy")
    p.add_argument("--eval-samples", type=int, default=1000, help="fresh student samples for the scores")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--conditional", action="store_true", help="class-conditional teacher and student")
    p.add_argument("--smoke", action="store_true", help="tiny teacher and budgets; RESULTS.md untouched")
    args = p.parse_args()
    if not args.pairs and any(args.pair_weight):
        p.error("a paired loss weight needs teacher pairs (--pairs > 0); with --pairs 0 use --pair-weight 0")
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.student_minutes, args.imitate_minutes = 0.2, 0.1
        args.entropy_samples, args.eval_samples, args.pairs = 200, 200, min(args.pairs, 500)

    train, valid, test = (dgm.data.load("mnist-dequantized", s) for s in ("train", "valid", "test"))
    if args.smoke:
        test = test.take(1000)
    shift = test.dequantization_log_det  # [0, 1) scale → integer scale, nats per image
    D = test.num_dims

    def bpd(nats: float) -> float:
        return nats / (D * math.log(2))

    teacher, teacher_text = get_teacher(args, train, valid)
    labeller, labeller_accuracy = digit_labeller(train, test)

    def asked(n: int) -> torch.Tensor | None:  # every digit in turn, for a conditional model
        return torch.arange(n) % NUM_CLASSES if args.conditional else None

    def digits_drawn(model, n: int) -> str:
        with torch.no_grad():
            x = model.sample(n, context=asked(n), generator=torch.Generator().manual_seed(2))
        return labeller(x, asked(n))

    def grid_of(model) -> torch.Tensor:  # 3 rows of 10; conditional: the digits 0-9 in every row
        with torch.no_grad():
            return model.sample(30, context=asked(30), generator=torch.Generator().manual_seed(0))

    t0 = time.perf_counter()
    teacher_eval = dgm.evaluate(teacher, test)
    t_entropy0 = time.perf_counter()
    # Over pixels the mean is swamped by a few samples on the logit's near-singular faces: the median too.
    entropy = {
        reduce: teacher_entropy(teacher, args.entropy_samples, torch.Generator().manual_seed(0), reduce)
        for reduce in ("mean", "median")
    }
    entropy_logit = teacher_entropy(
        teacher, args.entropy_samples, torch.Generator().manual_seed(0), space="logit"
    )
    entropy_s = time.perf_counter() - t_entropy0
    print(f"teacher: {teacher_text}; test {teacher_eval['bits_per_dim']:.3f} bits/dim; entropy over pixels "
          f"{entropy['median'] + shift:.1f} nats (median), over logit {entropy_logit:.1f} nats "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip

    seed_everything(0)
    student = student_like(teacher)
    pairs, imitation, after_imitation = None, [], None
    if args.pairs:
        t0 = time.perf_counter()
        pairs = teacher_pairs(teacher, args.pairs, torch.Generator().manual_seed(5))
        pairs_s = time.perf_counter() - t0
        print(f"{args.pairs} teacher pairs in {pairs_s:.0f} s", flush=True)
        t0 = time.perf_counter()
        imitation = imitate(student, pairs, 10**9, args.batch_size, args.lr, max_minutes=args.imitate_minutes)
        imitate_min = (time.perf_counter() - t0) / 60
        after_imitation = student_scores(teacher, student, args.eval_samples, seed=1)
        after_imitation_digits = digits_drawn(student, args.eval_samples)
        imitated_grid = grid_of(student)
        print(f"imitation: {len(imitation)} steps, pair loss {imitation[-1]['pair_loss']:.1f}; KL "
              f"{after_imitation['kl']:.1f}", flush=True)  # fmt: skip
    every = 200 if args.smoke else 250

    def progress(r):
        if r["step"] % every == 0 or r["step"] == 1:
            print(f"step {r['step']}: KL {r['kl']:.1f}, teacher NLL over logit {r['teacher_nll_logit']:.1f}, "
                  f"student entropy {r['student_nll_logit']:.1f}", flush=True)  # fmt: skip

    # Every arm starts from the same (imitated or fresh) student.
    start_state = {k: v.clone() for k, v in student.state_dict().items()}
    arms = []
    for weight in args.pair_weight:
        student.load_state_dict(start_state)
        print(f"distillation, paired loss weight {weight:g}", flush=True)
        t0 = time.perf_counter()
        result = distill(
            teacher, student, num_steps=10**9, batch_size=args.batch_size, lr=args.lr, seed=0,
            teacher_samples=0, max_minutes=args.student_minutes, callback=progress,
            pairs=pairs if weight else None, pair_weight=weight,
        )  # fmt: skip
        minutes = (time.perf_counter() - t0) / 60
        arms.append({
            "weight": weight, "history": result.history, "minutes": minutes, "grid": grid_of(student),
            "scores": student_scores(teacher, student, args.eval_samples, seed=1),
            "speed": sampling_speed(student, teacher, 100, repeats=1 if args.smoke else 2),
            "digits": digits_drawn(student, args.eval_samples),
        })  # fmt: skip

    n_teacher_digits = 100 if args.smoke else 500
    teacher_digits = digits_drawn(teacher, n_teacher_digits)
    figures = Path("/tmp/dgm-distill-smoke") if args.smoke else FIGURES
    stem = "flows_distill_conditional" if args.conditional else "flows_distill"
    last = arms[-1]
    every_point = max(1, len(last["history"]) // 400)
    draw_curve(last["history"], entropy_logit, figures / f"{stem}_curve.png", every_point, "logit")
    blocks = [grid_of(teacher)] + ([imitated_grid] if pairs is not None else []) + [a["grid"] for a in arms]
    names = (["after imitation"] if pairs is not None else []) + [_arm_name(arm["weight"]) for arm in arms]
    title = "3 rows each: MAF teacher; IAF student\n" + ";\n".join(names)
    if args.conditional:
        title = "digits 0-9 asked for in every row. " + title
    image_grid(torch.cat(blocks).clamp(0, 1), figures / f"{stem}_samples.png", (1, 28, 28), (0, 1), 10,
               title)  # fmt: skip

    def pixels(value):
        return f"{value + shift:.1f} nats = {bpd(value + shift):.3f} bits/dim"

    def ratio_y(scores):  # teacher NLL of student samples over the teacher's own, over y = logit(x)
        return scores["teacher_nll_logit"] / entropy_logit

    def ratio_pixels(scores):  # the same over pixels, medians
        return (scores["teacher_nll_median"] + shift) / (entropy["median"] + shift)

    def close(ratio):  # the target: within 2 %
        return abs(ratio - 1) <= 0.02

    def within(ratio):
        return f"{ratio:.4f}; {'yes' if close(ratio) else 'no'}"

    test_label = "teacher test NLL (1k test images)" if args.smoke else "teacher test NLL (10k test images)"
    n_own, n_eval = args.entropy_samples, args.eval_samples
    shared = [
        ("teacher", teacher_text),
        ("teacher params / student params", f"{teacher.num_parameters():,} / {student.num_parameters():,}"),
        (test_label, f"{teacher_eval['nll']:.1f} nats = {teacher_eval['bits_per_dim']:.3f} bits/dim"),
        (
            f"teacher entropy over pixels (NLL of {n_own} own samples): mean / median",
            f"{entropy['mean'] + shift:.1f} / {entropy['median'] + shift:.1f} nats ({entropy_s:.0f} s)",
        ),
        (f"teacher entropy over y = logit(x) ({n_own} own samples), mean", f"{entropy_logit:.1f} nats"),
        (
            f"digits the teacher draws ({n_teacher_digits} samples; labeller: logistic regression, "
            f"{labeller_accuracy:.0%} on test images)",
            teacher_digits,
        ),
    ]
    if pairs is not None:
        shared += [
            (
                "imitation (stage 1, shared by the arms below)",
                f"{args.pairs:,} teacher samples with their noise, the {len(pairs) / pairs.drawn:.0%} of "
                f"{pairs.drawn:,} draws inside the pixel range ({pairs_s:.0f} s); "
                f"{len(imitation):,} steps × {args.batch_size}, Adam {args.lr:g}, {imitate_min:.1f} min; "
                f"squared error per image {imitation[-1]['pair_loss']:.1f} "
                f"(first step {imitation[0]['pair_loss']:.1f})",
            ),
        ]
    columns = (["after imitation"] if pairs is not None else []) + [_arm_name(arm["weight"]) for arm in arms]
    states = (
        [{"scores": after_imitation, "digits": after_imitation_digits}] if pairs is not None else []
    ) + arms

    def per_arm(label, fn):
        return {"quantity": label, **{c: fn(state) for c, state in zip(columns, states, strict=True)}}

    dash = "—"
    arm_rows = [
        per_arm("distillation (stage 2)", lambda a: (
            f"{len(a['history']):,} steps × {args.batch_size}, Adam {args.lr:g}, {a['minutes']:.1f} min"
            if "history" in a else dash)),
        per_arm("KL(student ‖ teacher), fresh samples (nats)", lambda a: (
            f"{a['scores']['kl']:.1f} ± {a['scores']['kl_se']:.1f} = {bpd(a['scores']['kl']):.3f} bits/dim")),
        per_arm(f"teacher NLL of {n_eval} student samples over y, mean (nats)", lambda a: (
            f"{a['scores']['teacher_nll_logit']:.1f} ± {a['scores']['teacher_nll_logit_se']:.1f}")),
        per_arm("… ratio to the teacher's own over y; within 2 %?", lambda a: (
            within(ratio_y(a["scores"])))),
        per_arm("teacher NLL of student samples over pixels, median", lambda a: (
            pixels(a["scores"]["teacher_nll_median"]))),
        per_arm("… ratio to the teacher's own (medians); within 2 %?", lambda a: (
            within(ratio_pixels(a["scores"])))),
        per_arm("student entropy over y, mean (nats)", lambda a: f"{a['scores']['student_nll_logit']:.1f}"),
        per_arm(f"digits drawn ({n_eval} samples, labelled as the teacher's)", lambda a: a["digits"]),
        per_arm("100 samples: teacher / student (s)", lambda a: (
            f"{a['speed']['teacher_s']:.3f} / {a['speed']['student_s']:.3f}" if "speed" in a else dash)),
        per_arm("sampling speed-up; ≥ 10×?", lambda a: (
            f"{a['speed']['speedup']:.0f}×; {'yes' if a['speed']['speedup'] >= 10 else 'no'}"
            if "speed" in a else dash)),
    ]  # fmt: skip
    text = (
        table([{"quantity": q, "value": v} for q, v in shared], ["quantity", "value"])
        + "\n\n"
        + table(arm_rows, ["quantity", *columns])
    )
    print(text)
    if args.smoke:
        return
    both = [
        _arm_name(arm["weight"])
        for arm in arms
        if close(ratio_y(arm["scores"])) and close(ratio_pixels(arm["scores"]))
    ]
    within_both = ", ".join(both) if both else "no arm"
    header = (
        "Target: the student's NLL under the teacher within 2 % of the teacher's own (its entropy, the NLL "
        "of its own samples) and sampling ≥ 10× faster at D = 784 (Parallel WaveNet: same quality, ~1000× "
        "faster at its scale). Densities on the dequantised pixels, NLLs over pixels on the integer scale "
        "x + u (784·log 256 nats added; bits/dim = nats / (784 ln 2)), and the same densities over "
        "y = logit(x), where the teacher's entropy has a stable mean (the docstring of "
        "`benchmarks/distill.py`); ± one standard error over samples. "
        f"{args.threads} thread(s).\n\n"
        f"{text}\n\n"
        "The loss is the reverse KL, E_q[log q − log p_teacher] = (teacher NLL of student samples) − "
        "(student entropy). It is mode seeking: a student that covers only part of the teacher's mass "
        "(its most likely images) can have a teacher NLL at or below the teacher's entropy while missing the "
        "rest, so the teacher-NLL ratio alone does not show quality; the samples and the KL do.\n\n"
    )
    figures_text = (
        f"Figures: `benchmarks/figures/{stem}_curve.png` (KL, and over y the teacher NLL of student "
        "samples and the student entropy, per distillation step of the last arm), "
        f"`benchmarks/figures/{stem}_samples.png` (teacher vs student samples)."
    )
    if args.conditional:
        update_results(
            f"{SECTION}-conditional",
            "## Class-conditional density distillation: MAF p(x | y) teacher → IAF p(x | y) student on "
            "MNIST (issue #6)\n\n"
            + header
            + "Teacher and student both condition on the digit label (`--conditional`, the docstring of "
            "`benchmarks/distill.py`); every KL sample, teacher pair, entropy and score above draws its "
            "label uniformly, and the digits drawn are scored against the labels asked for (every digit "
            f"in turn). Within 2 % of the teacher's own over y and over pixels: {within_both}.\n\n"
            + figures_text,
        )
        return
    update_results(
        SECTION,
        "## Probability density distillation: MAF teacher → IAF student on MNIST (issue #6)\n\n"
        + header
        + "What the arms show (the runs of 2026-11-24 and 2026-11-25 with teachers of this recipe): the "
        'reverse KL alone collapses. From the imitated student, which draws every digit, it ends on "1"s '
        "(the digits drawn, and its rows of the sample grid) at a *lower* KL than any student the paired "
        "loss keeps diverse: within this student family the KL itself prefers the collapsed student, so "
        "more steps do not undo it. The same happened from a fresh student (KL 54.2 nats, every sample a "
        '"1") and with the teacher tempered (diagnostic: β from 0.2 to 1 over 1,500 steps, KL 63.9 nats, '
        "\"1\"s). Over pixels the collapsed student's samples score far *below* the teacher's own (the "
        '"1"s are its densest images), hence the ratio reported both ways, beside the digits drawn and '
        "the samples. The paired loss's weight trades the two failure modes: a large weight keeps the "
        "student as diverse as after imitation but its samples score worse than the teacher's own; a "
        "small one lets it drift towards the teacher's densest images (ratios below 1). "
        f"Within 2 % of the teacher's own over y and over pixels: {within_both}. "
        "That is the issue's criterion, not sameness: compare the digits drawn, the KL and the samples "
        "of that arm with the teacher's, and note that the weight is picked among the arms by the ratio "
        "itself (on fresh samples; no held-out data is involved). Imitation uses only the teacher's "
        "samples that lie inside "
        "the pixel range: the others (about 30 %, many of them the noise images in the teacher's rows) "
        "have no image to imitate, and clamping them to the range instead (an earlier run) left a squared "
        "error of 4,588 per image and students whose samples the teacher scores at 10¹³ nats.\n\n"
        + figures_text,
    )


def _arm_name(weight: float) -> str:
    return f"KL + {weight:g} × paired loss" if weight else "KL alone"


if __name__ == "__main__":
    main()
