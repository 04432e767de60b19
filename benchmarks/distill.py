"""Probability density distillation on MNIST (issue #6): a MAF teacher → an IAF student.

    DGM_DATA_DIR=../shared/data python -m benchmarks.distill                      (~20 min, one thread)
    DGM_DATA_DIR=../shared/data python -m benchmarks.distill --teacher-minutes 10 (train its own teacher)
    DGM_DATA_DIR=../shared/data python -m benchmarks.distill --smoke               (~1 min, no RESULTS.md)

Parallel WaveNet's recipe (van den Oord et al. 2018, §3) at D = 784: the teacher is the MAF that
``benchmarks/flows_mnist.py`` trains on ``mnist-dequantized`` (5 MADE layers of 1×1024 ReLU units, batch
norm, logit λ = 1e-6; loaded from ``runs/benchmarks/flows_mnist/maf``); without it, or with
``--teacher-minutes``, a smaller MAF (5 × 1×512) is trained here within that budget. The student is an IAF
with the teacher's layer structure (layers, MADE widths, orderings, log-scale clamp, the same logit
preprocessing; IAF has no batch norm: the paper's MAF uses it between layers, an IAF would need its
inverse in the sampling direction, and the student learns from samples, not data). It is trained by
``dgm.models.flows.distill.distill``: Adam on KL(student ‖ teacher) estimated on a batch of its own
reparameterised samples per step, within ``--student-minutes``.

Scale: both models are densities on the [0, 1) pixels (x + u)/256; every NLL reported here is moved to the
integer scale x + u of the published tables by adding 784·log 256 nats (as ``dgm.evaluate`` does), and
bits/dim = nats / (784 ln 2). The KL needs no shift (the constant cancels).
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
from dgm.models.flows.distill import distill, sampling_speed, student_scores, teacher_entropy
from dgm.training import seed_everything
from dgm.viz import image_grid

FIGURES = Path(__file__).with_name("figures")
TEACHER = RUNS / "flows_mnist" / "maf"
SECTION = "flows-distill"
SMALL_TEACHER = {"num_layers": 5, "hidden_sizes": [512], "batch_norm": True, "logit_alpha": 1e-6}
SMOKE_TEACHER = {"num_layers": 2, "hidden_sizes": [64], "batch_norm": True, "logit_alpha": 1e-6}


def get_teacher(args, train, valid):
    """(teacher, description): the flows_mnist MAF if present (and no teacher budget was given), else one
    trained here."""
    if not args.smoke and args.teacher_minutes is None and (TEACHER / checkpoint.WEIGHTS).exists():
        return checkpoint.load(TEACHER).eval(), f"`{TEACHER.relative_to(RUNS.parents[1])}` (flows_mnist.py)"
    minutes = 0.1 if args.smoke else (args.teacher_minutes or 10.0)
    options = SMOKE_TEACHER if args.smoke else SMALL_TEACHER
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
    return model.eval(), (
        f"trained here: MAF {layers} × MADE {width}, batch norm, logit 1e-6; Adam 1e-3, batch 100, "
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
        seed=1,
        **{k: c[k] for k in keep if k in c},
    )


def draw_curve(history, entropy, shift, path, every):
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    steps = [r["step"] for r in history][::every]
    for key, label in (("teacher_nll", "teacher NLL of student samples"), ("student_nll", "student entropy")):
        ax.plot(steps, [r[key] + shift for r in history][::every], label=label, lw=1)
    ax.axhline(entropy + shift, color="k", ls="--", lw=1, label="teacher entropy (own samples)")
    ax.set_xlabel("step")
    ax.set_ylabel("nats per image (integer scale)")
    lo = entropy + shift
    ax.set_ylim(lo - 0.3 * abs(lo), lo + 1.0 * abs(lo))
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
    p.add_argument("--student-minutes", type=float, default=10.0, help="wall budget of distillation")
    p.add_argument("--batch-size", type=int, default=64, help="student samples per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--entropy-samples", type=int, default=1000, help="teacher samples for its entropy")
    p.add_argument("--eval-samples", type=int, default=1000, help="fresh student samples for the scores")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="tiny teacher and budgets; RESULTS.md untouched")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.student_minutes, args.entropy_samples, args.eval_samples = 0.2, 200, 200

    train, valid, test = (dgm.data.load("mnist-dequantized", s) for s in ("train", "valid", "test"))
    if args.smoke:
        test = test.take(1000)
    shift = test.dequantization_log_det  # [0, 1) scale → integer scale, nats per image
    D = test.num_dims

    def bpd(nats: float) -> float:
        return nats / (D * math.log(2))

    teacher, teacher_text = get_teacher(args, train, valid)
    t0 = time.perf_counter()
    teacher_eval = dgm.evaluate(teacher, test)
    t_entropy0 = time.perf_counter()
    entropy = teacher_entropy(teacher, args.entropy_samples, torch.Generator().manual_seed(0))
    # The same samples again, their median: a few samples on the logit's near-singular faces swamp the mean.
    entropy_median = teacher_entropy(
        teacher, args.entropy_samples, torch.Generator().manual_seed(0), "median"
    )
    entropy_s = time.perf_counter() - t_entropy0
    print(f"teacher: {teacher_text}; test {teacher_eval['bits_per_dim']:.3f} bits/dim; entropy "
          f"{entropy + shift:.1f} nats ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip

    seed_everything(0)
    student = student_like(teacher)
    every = 200 if args.smoke else 25

    def progress(r):
        if r["step"] % every == 0 or r["step"] == 1:
            print(f"step {r['step']}: KL {r['kl']:.1f}, teacher NLL {r['teacher_nll'] + shift:.1f}, "
                  f"student entropy {r['student_nll'] + shift:.1f}", flush=True)  # fmt: skip

    t0 = time.perf_counter()
    result = distill(
        teacher, student, num_steps=10**9, batch_size=args.batch_size, lr=args.lr, seed=0,
        teacher_samples=0, max_minutes=args.student_minutes, callback=progress,
    )  # fmt: skip
    student_min = (time.perf_counter() - t0) / 60
    steps = len(result.history)
    scores = student_scores(teacher, student, args.eval_samples, seed=1)
    speed = sampling_speed(student, teacher, 100, repeats=1 if args.smoke else 2)

    figures = Path("/tmp/dgm-distill-smoke") if args.smoke else FIGURES
    draw_curve(result.history, entropy, shift, figures / "flows_distill_curve.png", max(1, steps // 400))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        grid = torch.cat([teacher.sample(50, generator=gen), student.sample(50, generator=gen)])
    image_grid(grid.clamp(0, 1), figures / "flows_distill_samples.png", (1, 28, 28), (0, 1), 10,
               "top 5 rows: MAF teacher; bottom 5 rows: distilled IAF student")  # fmt: skip

    teacher_nll, entropy_int = scores["teacher_nll"] + shift, entropy + shift
    student_entropy = scores["student_nll"] + shift
    ratio = teacher_nll / entropy_int
    median_int, teacher_nll_median = entropy_median + shift, scores["teacher_nll_median"] + shift
    ratio_median = teacher_nll_median / median_int
    test_label = "teacher test NLL (1k test images)" if args.smoke else "teacher test NLL (10k test images)"
    teacher_bpd = teacher_eval["bits_per_dim"]
    pairs = [
        ("teacher", teacher_text),
        ("teacher params / student params", f"{teacher.num_parameters():,} / {student.num_parameters():,}"),
        (test_label, f"{teacher_eval['nll']:.1f} nats = {teacher_bpd:.3f} bits/dim"),
        (
            f"teacher entropy: NLL of {args.entropy_samples} own samples",
            f"{entropy_int:.1f} nats = {bpd(entropy_int):.3f} bits/dim ({entropy_s:.0f} s)",
        ),
        (
            f"teacher NLL of {args.eval_samples} student samples (end)",
            f"{teacher_nll:.1f} ± {scores['teacher_nll_se']:.1f} nats = {bpd(teacher_nll):.3f} bits/dim",
        ),
        (
            "ratio of the means; within 2 %?",
            f"{ratio:.4f}; {'yes' if abs(ratio - 1) <= 0.02 else 'no'}",
        ),
        (
            "medians: teacher NLL of its own samples / of the student's samples",
            f"{median_int:.1f} / {teacher_nll_median:.1f} nats = {bpd(median_int):.3f} / "
            f"{bpd(teacher_nll_median):.3f} bits/dim",
        ),
        (
            "ratio of the medians (the robust comparison); within 2 %?",
            f"{ratio_median:.4f}; {'yes' if abs(ratio_median - 1) <= 0.02 else 'no'}",
        ),
        (
            "student entropy (its NLL of its own samples)",
            f"{student_entropy:.1f} ± {scores['student_nll_se']:.1f} nats = "
            f"{bpd(student_entropy):.3f} bits/dim (teacher's: {entropy_int:.1f})",
        ),
        (
            "KL(student ‖ teacher), fresh samples",
            f"{scores['kl']:.1f} ± {scores['kl_se']:.1f} nats = {bpd(scores['kl']):.3f} bits/dim",
        ),
        (
            "distillation",
            f"{steps:,} steps × {args.batch_size} samples, Adam {args.lr:g}, {student_min:.1f} min",
        ),
        (
            "100 samples: teacher (784 sequential steps per layer) / student (one pass)",
            f"{speed['teacher_s']:.3f} s / {speed['student_s']:.3f} s",
        ),
        (
            "sampling speed-up; ≥ 10×?",
            f"{speed['speedup']:.0f}×; {'yes' if speed['speedup'] >= 10 else 'no'}",
        ),
    ]
    rows = [{"quantity": q, "value": v} for q, v in pairs]
    text = table(rows, ["quantity", "value"])
    print(text)
    if args.smoke:
        return
    update_results(
        SECTION,
        "## Probability density distillation: MAF teacher → IAF student on MNIST (issue #6)\n\n"
        "Target: the student's NLL under the teacher within 2 % of the teacher's own (its entropy, the NLL "
        "of its own samples) and sampling ≥ 10× faster at D = 784 (Parallel WaveNet: same quality, ~1000× "
        "faster at its scale). Densities on the dequantised pixels; every NLL is on the integer scale x + u "
        "(784·log 256 nats added; bits/dim = nats / (784 ln 2)); ± one standard error over samples. "
        f"{args.threads} thread(s); settings in the docstring of `benchmarks/distill.py`.\n\n"
        f"{text}\n\n"
        "The loss is the reverse KL, E_q[log q − log p_teacher] = (teacher NLL of student samples) − "
        "(student entropy). It is mode seeking: a student that covers only part of the teacher's mass "
        "(its most likely images) can have a teacher NLL at or below the teacher's entropy while missing the "
        "rest, so the teacher-NLL ratio alone does not show quality. The student's entropy does: a student "
        "that matched the teacher would have the teacher's entropy; one far below it has collapsed onto a "
        "subset of modes (KL = teacher NLL − student entropy measures the gap).\n\n"
        "Figures: `benchmarks/figures/flows_distill_curve.png` (KL, teacher NLL of student samples and "
        "student entropy per step), `benchmarks/figures/flows_distill_samples.png` (teacher vs student "
        "samples).",
    )


if __name__ == "__main__":
    main()
