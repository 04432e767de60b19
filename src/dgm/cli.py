"""The ``dgm`` command line (DESIGN.md §7): models, datasets, download, train, eval, sample, bench,
report, and the tasks inpaint, superres, denoise, anomaly, classify, purify.

Every error a user can cause is one line on stderr and exit status 2 (130 when interrupted).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import math
import os
import sys
import time
from pathlib import Path

from dgm.core import progress
from dgm.core.errors import ConfigError, DgmError
from dgm.core.support import Support

EXAMPLES = {
    "models": "examples:\n  dgm models\n  dgm models independent      # options and docstring of one model",
    "datasets": "examples:\n  dgm datasets\n  DGM_DATA_DIR=../shared/data dgm datasets",
    "download": "examples:\n  dgm download tinyshakespeare\n  dgm download mnist --data-dir ~/data",
    "train": (
        "examples:\n"
        "  dgm train independent --data digits-binary --out runs/indep\n"
        "  dgm train independent --data digits-binary --method gradient --lr 0.05 --out runs/sgd\n"
        "  dgm train independent --data binarized-mnist --alpha 0.5 --out runs/bmnist\n"
        "  dgm train independent --data tinyshakespeare --data-opt seq_len=128 --out runs/text\n"
        "  dgm train independent --data digits-binary --method gradient --lr 0.05 --out runs/sgd --resume\n\n"
        "Options not listed above are the model's own (see `dgm models MODEL`),\n"
        "written --name value, e.g. --alpha 0.5; lists as --hidden-sizes 500,500."
    ),
    "eval": "examples:\n  dgm eval runs/indep\n  dgm eval runs/indep --split valid --scores scores.csv",
    "bench": (
        "examples:\n"
        "  dgm bench made --data binarized-mnist --hidden-sizes 500\n"
        "  dgm bench nade made fvsbn --data digits-binary --precision both --out bench.json\n"
        "  dgm bench all --data moons --tiny             # every model that handles the data\n"
        "  dgm bench realnvp --data mnist-dequantized --device cuda --batch-size 64\n\n"
        "Per model: parameters; the median Adam step on one training batch (forward, backward, update, as\n"
        "`dgm train` runs it; after 2 warm-up steps) and the epoch it implies; FLOPs per step (torch's\n"
        "counter: matrix products, convolutions, attention) and their share of this machine's matmul peak,\n"
        "measured first; log_prob examples/s on test data; samples/s of one sample(N) call. Fresh weights:\n"
        "speed depends on the architecture, not on training. Model options (--name value) apply to every\n"
        "model named; --tiny builds each with the small settings the tests use."
    ),
    "report": (
        "examples:\n"
        "  dgm report runs/made-1 runs/made-2\n"
        "  dgm report runs/* --curves curves.png --out runs.md\n"
        "  dgm report runs/nade --json\n\n"
        "One row per run directory, from its files alone: model, data, parameters, epochs, steps, time,\n"
        "time per epoch, the best validation NLL and its epoch, the last training loss, how training\n"
        "ended, and the test NLL / bits per dimension stored by `dgm train` or `dgm eval`. --curves draws\n"
        "every run's validation NLL and training loss per epoch on one plot; --out writes the table as\n"
        ".md, .csv or .json."
    ),
    "sample": (
        "examples:\n  dgm sample runs/indep -n 64 --out samples.png\n"
        "  dgm sample runs/indep -n 1000 --out s.npy"
    ),
    "inpaint": (
        "examples:\n"
        "  dgm inpaint runs/nade --mask bottom-half -n 8 -k 4 --out inpaint.png\n"
        "  dgm inpaint runs/made --mask left-half --split valid\n"
        "  dgm inpaint runs/nade --mask random:0.3 --method gibbs --sweeps 50\n"
        "  dgm inpaint runs/rnn-text --mask bottom-half --out completions.txt\n"
        "  dgm inpaint runs/maf --mask center --sweeps 400 --block-size 4 --out inpaint.png\n\n"
        "masks (True = missing): bottom-half, top-half, left-half, right-half, center (middle half\n"
        "square), random:P, or a .npy (bool / 0-1) or .png (white = missing) file of the image's shape.\n"
        "methods (auto picks the first that applies): closed-form (independent, mixtures, naive Bayes),\n"
        "autoregressive (exact: observed values first in the ordering; order-agnostic MADE reorders),\n"
        "enumeration (tiny discrete models), gibbs (discrete), metropolis (real-valued)."
    ),
    "superres": (
        "examples:\n"
        "  dgm train gated-pixelcnn --data binarized-mnist --context-shape 1,7,7 --out runs/gated-superres\n"
        "  dgm superres runs/gated-superres -n 8 -k 4 --out superres\n"
        "  dgm superres runs/gated-superres --data binarized-mnist --split valid -n 16\n\n"
        "The run must hold a model conditioned on an image: pixelcnn / gated-pixelcnn trained with\n"
        "--context-shape 1,7,7 (factor 4 on 28x28) or 1,14,14 (factor 2); --factor defaults to the one\n"
        "the model was trained with. Each image x is average-pooled by the factor (fraction of ones per\n"
        "block), samples are drawn from p(x | low-res), and the command reports the exact conditional NLL\n"
        "-log p(x | low-res) and the consistency error mean |downsample(sample) - low-res|. Written to\n"
        "--out DIR (default: the run directory): superres.png (columns: images; rows: low-res input\n"
        "upsampled, the samples, the true image), superres.npy (samples, (N, S, C, H, W)), superres.json."
    ),
    "denoise": (
        "examples:\n"
        "  dgm denoise runs/realnvp-mnist --noise gaussian:0.1 --num-samples 8 --steps 500 --out denoised\n"
        "  dgm denoise runs/vae --data binarized-mnist --noise flip:0.1 -n 16\n"
        "  dgm denoise runs/nade --noise flip:0.05 --steps 20 --method flip-mh\n\n"
        "Posterior sampling p(x | y) ∝ p(x) p(y | x) with the run's model as the prior p(x).\n"
        "noise: gaussian:SIGMA (y = x + SIGMA·N(0, 1), real-valued models, SIGMA in data units) or\n"
        "flip:RATE (each binary value flipped with probability RATE < 0.5, binary models).\n"
        "methods (auto picks the first that applies): flow-latent (MALA on a flow's latent), vae-latent\n"
        "(MALA on a VAE's latent), flip-mh (Metropolis single flips, binary), mala (data space).\n"
        "Written to --out DIR (default: RUN/denoise): denoise.png (rows: examples; columns: clean, noisy,\n"
        "posterior mean, samples), noisy.npy, mean.npy, samples.npy ((N, S, ...)); PSNR is printed."
    ),
    "anomaly": (
        "examples:\n"
        "  dgm anomaly runs/pixelcnn --out noise\n"
        "  dgm anomaly runs/pixelcnn --out inverted --background runs/pixelcnn-bg\n"
        "  dgm anomaly runs/made --out constant --background runs/local-pixelcnn   # blank pages\n"
        "  dgm anomaly runs/nade --in mnist-dynamic:digits=0-8 --out mnist-dynamic:digits=9\n"
        "  dgm anomaly runs/nade --out rotated:angle=90 --typicality-batch 1,10 --scores s.csv\n"
        "  dgm anomaly runs/rnn-text --out random\n\n"
        "DATA = SOURCE[:KEY=VALUE...]. SOURCE: a dataset name (see `dgm datasets`); noise (uniform over\n"
        "the support); inverted (values mirrored); rotated (angle=90|180|270); flipped (left-right);\n"
        "shuffled (values of each example permuted); constant (every value the lowest level, or value=V:\n"
        "a blank page); a .txt file (text models) or a .npy array.\n"
        "Transformations apply to the --in data. KEYS: split=NAME, digits=9 | 0-8 | 1,7 (labelled data),\n"
        "n=N (first N), seed=S, and the dataset's own options (e.g. seq_len=128).\n"
        "Scores (higher = more anomalous): NLL, bits/dim, -LLR against --background (Ren et al. 2019),\n"
        "typicality |mean NLL of M inputs - mean training NLL| (Nalisnick et al. 2019)."
    ),
    "classify": (
        "examples:\n"
        "  dgm classify runs/nade-conditional                      # one model with num_classes\n"
        "  dgm classify runs/class0 runs/class1 runs/class2 --data digits-binary\n"
        "  dgm classify runs/shakespeare runs/other --data tinyshakespeare other.txt\n"
        "  dgm classify runs/rnn-text --against random             # Shakespeare vs random strings\n"
        "  dgm classify runs/rnn-text --against shuffled\n\n"
        "Bayes' rule p(y|x) = p(y) p(x|y) / sum_c p(c) p(x|c) over one class-conditional model or one model\n"
        "per class (run i is class i). --data: one labelled dataset, or one DATA per class (labels = which\n"
        "one). --against DATA: one unconditional model tells its own data from DATA by a threshold on\n"
        "NLL per value (fit on half of each source, accuracy on the other half). DATA as in `dgm anomaly`."
    ),
    "purify": (
        "examples:\n"
        "  dgm purify runs/pixelcnn256 --train-classifier --attack pgd --eps 0.1 --num 100 --out purify\n"
        "  dgm purify runs/pixelcnn256 --classifier purify/classifier --attack fgsm --eps 0.3 --out p2\n"
        "  dgm purify runs/pixelcnn256 --classifier purify/classifier --eps 0.2 --eps-defend 0.3\n\n"
        "PixelDefend (Song et al. 2018): the classifier is attacked in L-inf on the [0, 1] scale (FGSM, or\n"
        "PGD with a random start), the attacked images are quantised to the model's levels inside the ball,\n"
        "scored by bits/dim (AUROC against the clean images; p-values against training images), and\n"
        "purified: each pixel in raster order set to the most probable level within eps_defend of it under\n"
        "the model's conditional. Needs an unconditional model with exact conditionals on categorical(k)\n"
        "images (pixelcnn, gated-pixelcnn, pixelrnn). The attacks are non-adaptive: Athalye et al. 2018\n"
        "broke PixelDefend with attacks through the purifier (BPDA). --classifier DIR holds\n"
        "classifier.json + classifier.safetensors (no pickle), which --train-classifier writes to\n"
        "OUT/classifier. Written to --out DIR (default: RUN/purify): report.json, attacked.npy,\n"
        "purified.npy (integer levels), purify.png (rows: clean, attacked, purified)."
    ),
}


def _int_list(text: str) -> tuple[int, ...]:
    """``"40,60"`` → ``(40, 60)``, for argparse (whose error then names the option)."""
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _data_arguments(s: argparse.ArgumentParser) -> None:
    """The dataset options of the commands that load a dataset by name (train, bench)."""
    s.add_argument("--data", required=True, help="dataset name (see `dgm datasets`)")
    s.add_argument("--data-dir", help="data directory (default: $DGM_DATA_DIR, else ~/.cache/dgm)")
    s.add_argument(
        "--data-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, e.g. seq_len=128 (repeatable)",
    )
    s.add_argument("--download", action="store_true", help="download missing data files")


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="dgm",
        description="Deep generative models: train, evaluate, sample.",
        formatter_class=fmt,
        epilog="run `dgm COMMAND --help` for examples",
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "models", help="list registered models", epilog=EXAMPLES["models"], formatter_class=fmt
    )
    s.add_argument("name", nargs="?", help="show one model's options")

    s = sub.add_parser(
        "datasets",
        help="list datasets and whether their files are present",
        epilog=EXAMPLES["datasets"],
        formatter_class=fmt,
    )
    s.add_argument("--data-dir", help="data directory (default: $DGM_DATA_DIR, else ~/.cache/dgm)")

    s = sub.add_parser(
        "download",
        help="download a dataset's files into the data directory",
        epilog=EXAMPLES["download"],
        formatter_class=fmt,
    )
    s.add_argument("name")
    s.add_argument("--data-dir")

    s = sub.add_parser(
        "train", help="train a model on a dataset", epilog=EXAMPLES["train"], formatter_class=fmt
    )
    s.add_argument("model", help="registered model name (see `dgm models`)")
    _data_arguments(s)
    s.add_argument("--out", help="run directory (default: runs/MODEL-DATA-TIME)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.add_argument("--epochs", type=int, default=50)
    s.add_argument("--batch-size", type=int, default=100)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--weight-decay", type=float, default=0.0)
    s.add_argument("--optimizer", choices=["adam", "sgd", "adagrad", "rmsprop"], default="adam")
    s.add_argument("--momentum", type=float, default=0.0, help="SGD or RMSProp momentum")
    s.add_argument("--rms-decay", type=float, default=0.99, help="RMSProp's decay of the squared gradients")
    s.add_argument("--eps", type=float, default=1e-8, help="Adam's and RMSProp's epsilon")
    s.add_argument("--grad-clip", type=float, default=100.0, help="max gradient norm (0 disables)")
    s.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs (0 disables)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--method",
        choices=["auto", "gradient", "fit"],
        default="auto",
        help="auto: the model's closed-form/EM fit where it has one, else gradient training",
    )
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    s.add_argument(
        "--eval-num-samples",
        type=int,
        help="importance samples K of each validation estimate (latent models)",
    )
    s.add_argument(
        "--labels-per-class",
        type=int,
        help="semi-supervised (ssvae): keep N labels per class, mark the rest -1 (unlabelled)",
    )
    s.add_argument("--max-minutes", type=float, help="stop after this many minutes of training")
    s.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine", "exponential", "step"],
        default="constant",
        help="cosine: anneal to --lr-min over the run; exponential: ×--lr-gamma per epoch, floor --lr-min; "
        "step: ×--lr-gamma at each of --lr-milestones",
    )
    s.add_argument("--lr-min", type=float, default=0.0)
    s.add_argument("--lr-gamma", type=float, default=1.0)
    s.add_argument(
        "--lr-milestones",
        type=_int_list,
        default=(),
        help="comma-separated epochs at which the step schedule multiplies the learning rate by --lr-gamma",
    )
    s.add_argument("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up")
    s.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: training loss under bfloat16 autocast (about 2x the matmul rate on AVX512-BF16 CPUs "
        "and GPUs); validation and evaluation stay fp32",
    )
    s.add_argument(
        "--ema-decay",
        type=float,
        default=None,
        help="Polyak averaging: validate, keep and save the moving average of the weights (e.g. 0.999)",
    )
    s.add_argument(
        "--checkpoint-every",
        type=float,
        default=None,
        help="seconds between checkpoints (default: 20x the last write's duration, at least 30 s; one is "
        "always written when training ends or is interrupted)",
    )
    s.add_argument("--num-train", type=int, help="use only the first N training examples")
    s.add_argument(
        "--num-samples",
        type=int,
        help="samples drawn for samples.png (default: 64 images, 2000 points, 4 texts)",
    )
    s.add_argument("--no-progress", action="store_true")

    s = sub.add_parser(
        "eval", help="evaluate a trained run on a split", epilog=EXAMPLES["eval"], formatter_class=fmt
    )
    s.add_argument("run_dir")
    s.add_argument("--split", default="test")
    s.add_argument("--num-samples", type=int, help="importance samples K for latent-variable models")
    s.add_argument("--batch-size", type=int, default=1000)
    s.add_argument("--data-dir")
    s.add_argument("--device", default="auto")
    s.add_argument("--scores", help="write per-example log-likelihoods (nats) to this .csv or .npy file")

    s = sub.add_parser(
        "bench",
        help="time training, scoring and sampling of models on this machine",
        epilog=EXAMPLES["bench"],
        formatter_class=fmt,
    )
    s.add_argument("models", nargs="+", metavar="MODEL", help="registered model names, or 'all'")
    _data_arguments(s)
    s.add_argument("--batch-size", type=int, default=100)
    s.add_argument("--repeats", type=int, default=5, help="timed training steps (the median is reported)")
    s.add_argument("--precision", choices=["fp32", "bf16", "both"], default="fp32")
    s.add_argument("--score-examples", type=int, default=1000, help="test examples scored (0: skip)")
    s.add_argument("--num-samples", type=int, default=100, help="samples drawn in one call (0: skip)")
    s.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--tiny", action="store_true", help="the small settings the tests use")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="also write the rows to this .json, .csv or .md file")

    s = sub.add_parser(
        "report",
        help="summarise training runs: epochs, time, validation and test NLL",
        epilog=EXAMPLES["report"],
        formatter_class=fmt,
    )
    s.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    s.add_argument("--curves", help="draw the runs' curves into this .png file")
    s.add_argument("--out", help="also write the table to this .md, .csv or .json file")
    s.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    s.add_argument(
        "--no-params", action="store_true", help="skip building each model to count its parameters"
    )

    s = sub.add_parser(
        "sample", help="draw samples from a trained run", epilog=EXAMPLES["sample"], formatter_class=fmt
    )
    s.add_argument("run_dir")
    s.add_argument("-n", "--num-samples", type=int, default=64)
    s.add_argument(
        "--out",
        help="output file: .png (grid or scatter), .txt (text), .npy (raw array; int64 for discrete data)",
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--data-dir")

    s = sub.add_parser(
        "inpaint",
        help="fill masked parts of held-out data: p(x_missing | x_observed)",
        epilog=EXAMPLES["inpaint"],
        formatter_class=fmt,
    )
    s.add_argument("run_dir")
    s.add_argument("--mask", required=True, help="which values are missing (see below)")
    s.add_argument("--split", default="test")
    s.add_argument("--data", help="data to inpaint (DATA as in `dgm anomaly`; default: the run's dataset)")
    s.add_argument("-n", "--num-examples", type=int, default=8, help="examples to inpaint")
    s.add_argument("-k", "--completions", type=int, default=4, help="completions per example")
    s.add_argument(
        "--method", default="auto", help="auto, closed-form, autoregressive, enumeration, gibbs, metropolis"
    )
    s.add_argument("--sweeps", type=int, help="MCMC sweeps (default 20 Gibbs, 200 Metropolis)")
    s.add_argument("--burn-in", type=int, help="Metropolis sweeps adapting the proposals (default half)")
    s.add_argument("--block-size", type=int, default=1, help="Metropolis: values proposed together")
    s.add_argument("--out", help="output: .png grid (images), .txt (text) or .npy (completions array)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--data-dir")

    s = sub.add_parser(
        "superres",
        help="super-resolution: sample images consistent with a downsampled one, p(x | low-res)",
        epilog=EXAMPLES["superres"],
        formatter_class=fmt,
    )
    s.add_argument("run_dir")
    s.add_argument(
        "--data", help="images to downsample (DATA as in `dgm anomaly`; default: the run's dataset)"
    )
    s.add_argument("--split", default="test")
    s.add_argument(
        "--factor", type=int, help="downsampling factor (default: the model's, H / context height)"
    )
    s.add_argument("-n", "--num-examples", type=int, default=8, help="images to super-resolve")
    s.add_argument("-k", "--num-samples", type=int, default=4, help="samples per image")
    s.add_argument("--out", metavar="DIR", help="output directory (default: the run directory)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--data-dir")

    s = sub.add_parser(
        "denoise",
        help="posterior sampling of clean data given noisy data: p(x | y) ∝ p(x) p(y | x); PSNR",
        epilog=EXAMPLES["denoise"],
        formatter_class=fmt,
    )
    s.add_argument("run_dir")
    s.add_argument("--noise", required=True, help="gaussian:SIGMA (real-valued models) or flip:RATE (binary)")
    s.add_argument(
        "--data", help="clean data to corrupt (DATA as in `dgm anomaly`; default: the run's dataset)"
    )
    s.add_argument("--split", default="test")
    s.add_argument("-n", "--num-examples", type=int, default=8, help="examples to corrupt and denoise")
    s.add_argument("--num-samples", type=int, default=8, help="chains (posterior samples) per example")
    s.add_argument("--steps", type=int, help="MCMC steps per chain (default 500 MALA, 20 sweeps flip-mh)")
    s.add_argument(
        "--burn-in", type=int, help="steps adapting the step size, left out of the mean (default half)"
    )
    s.add_argument("--method", default="auto", help="auto, flow-latent, vae-latent, flip-mh, mala")
    s.add_argument("--out", metavar="DIR", help="output directory (default: RUN/denoise)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--data-dir")

    s = sub.add_parser(
        "anomaly",
        help="out-of-distribution detection: NLL, likelihood ratio, typicality; AUROC/AUPR",
        epilog=EXAMPLES["anomaly"],
        formatter_class=fmt,
    )
    s.add_argument("run_dir")
    s.add_argument("--out", required=True, dest="out_data", metavar="DATA", help="out-of-distribution data")
    s.add_argument("--in", dest="in_data", metavar="DATA", help="in-distribution data (default: the run's)")
    s.add_argument("--background", metavar="RUN", help="background model run for the likelihood ratio")
    s.add_argument("--split", default="test", help="split of dataset sources (default test)")
    s.add_argument("-n", "--num-examples", type=int, help="use at most N examples of each set")
    s.add_argument(
        "--num-reference", type=int, default=2000, help="training examples whose mean NLL is the typical one"
    )
    s.add_argument("--typicality-batch", default="1,10", help="batch sizes M of the typicality test")
    s.add_argument("--scores", help="write per-example scores to this .csv file")
    s.add_argument("--batch-size", type=int, default=500)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--data-dir")

    s = sub.add_parser(
        "classify",
        help="generative classification by Bayes' rule, or sources told apart by likelihood",
        epilog=EXAMPLES["classify"],
        formatter_class=fmt,
    )
    s.add_argument("run_dirs", nargs="+", metavar="RUN")
    s.add_argument("--data", nargs="+", metavar="DATA", help="labelled data, or one DATA per class")
    s.add_argument("--against", metavar="DATA", help="second source for a one-model likelihood threshold")
    s.add_argument("--split", default="test")
    s.add_argument("-n", "--num-examples", type=int, help="use at most N examples (of each source)")
    s.add_argument(
        "--prior",
        choices=["auto", "train", "uniform"],
        default="auto",
        help="class prior: auto = the model's own (naive Bayes), else train-label frequencies, else uniform",
    )
    s.add_argument("--batch-size", type=int, default=500)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--data-dir")

    s = sub.add_parser(
        "purify",
        help="adversarial attacks on a classifier, detection by bits/dim, PixelDefend purification",
        epilog=EXAMPLES["purify"],
        formatter_class=fmt,
    )
    s.add_argument("run_dir", metavar="RUN")
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--classifier", metavar="DIR", help="classifier.json + classifier.safetensors")
    which.add_argument(
        "--train-classifier", action="store_true", help="train a SmallCNN on the run's data; saved to OUT"
    )
    s.add_argument("--classifier-minutes", type=float, default=2.0, help="--train-classifier wall budget")
    s.add_argument("--attack", choices=["fgsm", "pgd"], default="pgd")
    s.add_argument("--eps", type=float, default=0.1, help="attack radius on the [0, 1] scale")
    s.add_argument("--eps-defend", type=float, help="purification radius (default: --eps)")
    s.add_argument("--pgd-steps", type=int, default=40)
    s.add_argument("-n", "--num", type=int, default=100, help="images attacked and purified")
    s.add_argument(
        "--num-train-scores", type=int, default=1000, help="training images the p-values compare with"
    )
    s.add_argument("--split", default="test")
    s.add_argument("--out", metavar="DIR", help="output directory (default: RUN/purify)")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--data-dir")
    return p


# ---------------------------------------------------------------------------- helpers
def _version() -> str:
    from dgm import __version__

    return f"dgm {__version__}"


def _parse_value(text: str):
    """'3' → 3, '0.5' → 0.5, '500,500' → [500, 500], 'true' → True, '[1, 2]' → [1, 2], else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if "," in text and not text.startswith(("[", "(")):
        return [_parse_value(t) for t in text.split(",") if t]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _model_options(extra: list[str], entries=()) -> dict:
    """Turn ``--hidden-sizes 500,500 --flag`` into ``{"hidden_sizes": [500, 500], "flag": True}``.

    A name without a value is a flag (True) only for an option of ``entries`` (registry entries) whose
    default is a bool: ``--num-layers --max-steps 3`` is an error, not ``num_layers=True``.
    """
    opts, i = {}, 0
    flags = []
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or tok == "--":
            raise ConfigError(f"unexpected argument {tok!r}; model options are written --name value")
        key, eq, value = tok[2:].partition("=")
        if not eq:
            if i + 1 < len(extra) and not extra[i + 1].startswith("--"):
                value, i = extra[i + 1], i + 1
            else:
                value = "true"
                flags.append(key)
        opts[key.replace("-", "_")] = _parse_value(value)
        i += 1
    for key in flags:
        for entry in entries:
            option = entry.options().get(key.replace("-", "_"))
            if option is not None and not isinstance(option.default, bool):
                raise ConfigError(f"--{key} needs a value (model {entry.name!r})")
    return opts


def _data_options(pairs: list[str]) -> dict:
    opts = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise ConfigError(f"--data-opt needs KEY=VALUE, got {pair!r}")
        opts[key.replace("-", "_")] = _parse_value(value)
    return opts


def _data_info(ds) -> dict:
    info = ds.describe()
    info["image_shape"] = list(ds.image_shape) if ds.image_shape else None
    info["vocab"] = ds.vocab
    k = Support.parse(ds.support).num_categories
    info["value_range"] = [0, k - 1] if k else None
    return info


def _load_split(name: str, split: str, data_dir, download: bool, options: dict, event_shape=None):
    from dgm import data

    ds = data.load(name, split, data_dir=data_dir, download=download, **options)
    return ds if event_shape is None else ds.reshape_to(tuple(event_shape))


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


def _fmt_result(res: dict) -> str:
    sign = "=" if res["exact"] else "≈"
    extra = f", K={res['num_samples']}" if "num_samples" in res else ""
    bin_ = f", {res['binarization']} binarization" if res.get("binarization") else ""
    bpd = f", {res['bits_per_dim']:.4f} bits/dim" if res.get("bits_per_dim") is not None else ""
    of = f" of {res['likelihood_of']}" if res.get("likelihood_of") else ""
    acc = f"; accuracy {100 * res['accuracy']:.2f}%" if "accuracy" in res else ""
    return (
        f"{res['dataset']}/{res['split']} (n={res['num_examples']}{bin_}{extra}): "
        f"NLL{of} {sign} {res['nll']:.3f} ± {res['nll_stderr']:.3f} nats{bpd} "
        f"({'exact' if res['exact'] else 'estimate'}){acc}"
    )


def _update_results(run_dir: Path, split: str, res: dict) -> None:
    from dgm.core import checkpoint as ckpt

    path = run_dir / ckpt.RESULTS
    results = ckpt.read_json(path) if path.exists() else {}
    results[split] = res
    ckpt.write_json(path, results)


# ---------------------------------------------------------------------------- commands


def _class_cycle(model, n: int):
    """Labels 0, 1, …, C−1, 0, 1, … for a class-conditional model (a grid with one class per column when
    the row length is C), None for an unconditional one."""
    classes = getattr(model, "num_classes", None)
    if not model.conditional or not classes:
        return None
    import torch

    return torch.arange(n, device=model.device) % classes


def _superres_factor(model) -> int | None:
    """The downsampling factor f of a model conditioned on an image (``context_shape`` [C, H/f, W/f]),
    None for every other model."""
    shape = getattr(model, "context_shape", None)
    if shape is None:
        return None
    C, H, W = model.event_shape
    c, h, w = shape
    f = H // h
    if c != C or H % h or W % w or W // w != f:
        raise ConfigError(
            f"{model.name}: context_shape={list(shape)} is not a downsampled {C}x{H}x{W} image; the CLI "
            f"conditions on [C, H/f, W/f] for a factor f that divides H and W, e.g. [{C}, {H // 2}, {W // 2}]"
        )
    return f


def _low_resolution(ds, model):
    """``ds`` with y = its images average-pooled to the model's context (image-conditioned models: the
    trainer and ``evaluate`` pass y as the context), else ``ds`` unchanged."""
    factor = _superres_factor(model)
    if factor is None:
        return ds
    from dgm.tasks.superres import low_resolution

    return low_resolution(ds, factor)


def _cycle(t, n: int):
    """The first n rows of t, repeated from the start when t has fewer."""
    import torch

    return t[torch.arange(n) % len(t)]


def cmd_models(args) -> None:
    from dgm.core.registry import get_entry, list_models

    if args.name:
        entry = get_entry(args.name)
        print(
            f"{entry.name}: {entry.description}\npaper: {entry.paper}\nfamily: {entry.family}\n"
            f"log_prob: {'exact' if entry.cls.exact else 'estimate'}\nsupports: {', '.join(entry.supports)}\n"
        )
        print("options (CLI: --name value):")
        for k, p in entry.options().items():
            default = "" if p.default is p.empty else f" = {p.default!r}"
            print(f"  --{k.replace('_', '-')}{default}")
        doc = (entry.cls.__doc__ or "").strip()
        if doc:
            print("\n" + doc)
        return
    _print_table(list_models(), ["name", "family", "exact", "description", "paper"])


def cmd_datasets(args) -> None:
    from dgm import data

    root = data.resolve_data_dir(args.data_dir)
    rows = data.list_datasets(root)
    cols = ["name", "splits", "event_shape", "support", "files", "description"]
    _print_table([{k: _short(v) for k, v in r.items()} for r in rows], cols)
    print(f"\ndata directory: {root}  (missing files: `dgm download NAME`)")


def _short(v):
    if isinstance(v, dict):
        return "/".join(f"{k}:{n}" for k, n in v.items())
    if isinstance(v, list | tuple):
        return "×".join(map(str, v)) if all(isinstance(i, int) for i in v) else ",".join(map(str, v))
    return v


def cmd_download(args) -> None:
    from dgm import data

    paths = data.fetch(args.name, data_dir=args.data_dir)
    for p in paths:
        print(f"downloaded {p}")
    if not paths:
        print(f"all files of {args.name} are already in {data.resolve_data_dir(args.data_dir)}")


def _options_for_data(entry, model_opts: dict, train_ds) -> tuple[dict, object]:
    """The model's options with its support and event shape filled in from the data (unless given),
    and the data reshaped to that event shape; a ConfigError if the model cannot model such data."""
    model_opts = dict(model_opts)
    if isinstance(model_opts.get("event_shape"), int):  # --event-shape 3
        model_opts["event_shape"] = [model_opts["event_shape"]]
    asked = str(model_opts.get("support", ""))
    if asked.startswith("real") and train_ds.support.split("(")[0] != "real":
        print(
            f"note: a real-valued density on {train_ds.support} data: its NLL is of a density, not a "
            "probability (it can be negative) and does not compare with discrete models' figures",
            file=sys.stderr,
        )
    if "support" not in model_opts:
        if train_ds.support.split("(")[0] not in entry.supports:
            raise ConfigError(
                f"model {entry.name!r} handles {'/'.join(entry.supports)} data but {train_ds.name} is "
                f"{train_ds.support}"
            )
        if "support" in entry.options():
            model_opts["support"] = train_ds.support
    if "event_shape" not in model_opts:
        # Image models (PixelCNN) read flat binarized MNIST as the images it holds: (1, 28, 28).
        image = entry.shape == "image" and train_ds.image_shape
        model_opts["event_shape"] = list(train_ds.image_shape if image else train_ds.event_shape)
    return model_opts, train_ds.reshape_to(tuple(model_opts["event_shape"]))


def cmd_train(args, extra: list[str]) -> None:
    import torch

    import dgm
    from dgm.core.registry import get_entry
    from dgm.evaluation import evaluate
    from dgm.training import seed_everything, train
    from dgm.viz import save_samples, training_curves

    _positive("--num-train", args.num_train)
    _positive("--num-samples", args.num_samples)  # checked now, not after a long run
    data_opts = _data_options(args.data_opt)
    train_ds = _load_split(args.data, "train", args.data_dir, args.download, data_opts)
    if args.num_train is not None:
        train_ds = train_ds.take(args.num_train)
    entry = get_entry(args.model)
    model_opts, train_ds = _options_for_data(entry, _model_options(extra, [entry]), train_ds)
    event_shape = model_opts["event_shape"]
    if args.labels_per_class is not None:
        from dgm.models.latent.ssvae import SSVAE, semi_supervised

        if not issubclass(entry.cls, SSVAE):
            raise ConfigError(
                f"--labels-per-class marks the other labels unknown, and only a semi-supervised model "
                f"(ssvae) trains on unlabelled examples; {entry.name} does not"
            )

        train_ds = semi_supervised(train_ds, labels_per_class=args.labels_per_class, seed=args.seed)
    valid_ds = _load_split(args.data, "valid", args.data_dir, False, data_opts, event_shape)

    out = (
        Path(args.out)
        if args.out
        else Path("runs") / f"{args.model}-{args.data}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    seed_everything(args.seed)  # before building, so initial weights follow the seed
    model = dgm.build(args.model, **model_opts)
    factor = _superres_factor(model)
    if factor is not None:
        # An image-conditioned model (--context-shape C,h,w) learns p(x | low-res x): super-resolution.
        train_ds, valid_ds = _low_resolution(train_ds, model), _low_resolution(valid_ds, model)
    print(
        f"model {args.model}: {model.num_parameters():,} parameters; data {args.data}: "
        f"{len(train_ds)} train / {len(valid_ds)} valid, event shape {tuple(event_shape)}, {train_ds.support}"
    )
    run_info = {
        "data": {
            "name": args.data,
            "options": data_opts,
            "event_shape": list(event_shape),
            "num_train": args.num_train,
            **_data_info(train_ds),
            **({"low_resolution_factor": factor} if factor is not None else {}),
        },
        "command": " ".join(["dgm", *args.argv]),
    }
    result = train(
        model,
        train_ds,
        valid_ds,
        out=out,
        resume=args.resume,
        progress=not args.no_progress,
        run_info=run_info,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        momentum=args.momentum,
        rms_decay=args.rms_decay,
        eps=args.eps,
        grad_clip=args.grad_clip or None,
        patience=args.patience or None,
        seed=args.seed,
        method=args.method,
        device=args.device,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        eval_num_samples=args.eval_num_samples,
        lr_schedule=args.lr_schedule,
        lr_min=args.lr_min,
        lr_gamma=args.lr_gamma,
        lr_milestones=args.lr_milestones,
        warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay,
        precision=args.precision,
        checkpoint_every=args.checkpoint_every,
    )
    unit = f"{args.optimizer} steps" if result.method == "gradient" else "fit iterations (closed form / EM)"
    if result.resumed_changes:
        changes = ", ".join(f"{k} {old!r} → {new!r}" for k, (old, new) in result.resumed_changes.items())
        print(f"resumed with changed options (recorded in run.json): {changes}")
    if result.already_finished:
        print(
            "the run had already finished: nothing more was trained "
            "(a larger --epochs or --max-steps continues it)"
        )
    print(
        f"trained {result.steps} {unit} in {result.elapsed_s:.1f} s; best epoch {result.best_epoch}"
        + (" (stopped early)" if result.stopped_early else "")
    )
    test_ds = _load_split(args.data, "test", args.data_dir, False, data_opts, event_shape)
    res = evaluate(model, _low_resolution(test_ds, model), progress=not args.no_progress)
    _update_results(out, "test", res)
    print(_fmt_result(res))
    if getattr(model, "discriminative", False):
        print(f"run directory: {out}  (metrics.csv, results.json; a discriminative model draws no samples)")
        return
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    num = args.num_samples or {"points": 2000, "text": 4}.get(train_ds.kind, 64)
    # Image-conditioned: samples given the low-resolution validation images (`dgm superres` shows both).
    context = _class_cycle(model, num) if factor is None else _cycle(valid_ds.y, num).to(model.device)
    with progress.shown(f"sampling {num}") if not args.no_progress else contextlib.nullcontext():
        samples = model.sample(num, context=context, generator=gen)
    path = save_samples(
        samples,
        out / "samples.png",
        _data_info(train_ds),
        model=model,
        data=valid_ds.x if train_ds.kind == "points" else None,
        title=f"{args.model} on {args.data}",
    )
    if len(result.history) > 1:
        training_curves(result.history, out / "curves.png", title=f"{args.model} on {args.data}")
    extra = _latent_grids(model, valid_ds, _data_info(train_ds), out)
    print(f"run directory: {out}  (samples: {', '.join([path.name, *extra])}, metrics.csv, results.json)")


def _latent_grids(model, valid_ds, info: dict, out: Path) -> list[str]:
    """Reconstructions and latent interpolations of the first validation images, for models with an
    encoder (``reconstruct`` / ``interpolate``) trained on images: the latent-space views of a VAE."""
    import torch

    from dgm.viz import image_grid

    shape = info.get("image_shape")
    if (
        not (hasattr(model, "reconstruct") and hasattr(model, "interpolate"))
        or not shape
        or model.conditional
    ):
        return []
    low, high = info.get("value_range") or (0, 1)
    x = valid_ds.x[:16].to(model.device)
    with torch.no_grad():
        model.eval()
        recon = model.reconstruct(x).reshape(16, -1).float().cpu()
        pairs = torch.stack([x.reshape(16, -1).float().cpu(), recon], 1).reshape(32, -1)
        lerp = model.interpolate(x[:8], x[8:16], steps=10).reshape(80, -1).float().cpu()
    image_grid(pairs, out / "reconstructions.png", shape, (low, high), 8, "data | reconstruction (pairs)")
    image_grid(lerp, out / "interpolations.png", shape, (low, high), 10, "latent interpolation")
    return ["reconstructions.png", "interpolations.png"]


def cmd_eval(args) -> None:

    import dgm
    from dgm.core import checkpoint as ckpt
    from dgm.evaluation import log_prob_dataset, summarize_log_probs
    from dgm.training import resolve_device

    _positive("--batch-size", args.batch_size)
    if args.scores and Path(args.scores).suffix not in (".csv", ".npy"):
        raise ConfigError(f"--scores must end in .csv or .npy, got {Path(args.scores).name!r}")
    run_dir = Path(args.run_dir)
    model = dgm.load(run_dir, device=resolve_device(args.device))
    info = ckpt.read_json(run_dir / ckpt.RUN)["data"]
    ds = _load_split(
        info["name"], args.split, args.data_dir, False, info.get("options", {}), model.event_shape
    )
    ds = _low_resolution(ds, model)  # image-conditioned models: log p(x | low-res x)
    kw = {"num_samples": args.num_samples} if args.num_samples is not None else {}
    if args.num_samples is not None and model.exact:
        raise ConfigError(
            f"{model.name} has an exact log_prob; --num-samples applies to latent-variable models"
        )
    # Scored once: the per-example values (--scores) are those the summary averages (an estimate drawn
    # twice would differ, and scoring twice doubles a long evaluation).
    log_probs = log_prob_dataset(model, ds, args.batch_size, progress=True, **kw)
    res = summarize_log_probs(model, ds, log_probs, args.batch_size, **kw)
    _update_results(run_dir, args.split, res)
    print(_fmt_result(res))
    if args.scores:
        scores = log_probs.numpy()
        out = Path(args.scores)
        if out.suffix == ".npy":
            _save_npy(out, scores)
        else:
            ckpt.atomic_write(
                out, "index,log_prob_nats\n" + "".join(f"{i},{s:.6f}\n" for i, s in enumerate(scores))
            )
        print(f"per-example log-likelihoods written to {out}")


def _save_npy(path: Path, array) -> Path:
    """Write a plain (pickle-free) .npy file atomically."""
    import io

    import numpy as np

    from dgm.core.checkpoint import atomic_write

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write(path, buf.getvalue())
    return path


def cmd_sample(args) -> None:
    import torch

    import dgm
    from dgm.core import checkpoint as ckpt
    from dgm.training import resolve_device
    from dgm.viz import save_samples

    run_dir = Path(args.run_dir)
    model = dgm.load(run_dir, device=resolve_device(args.device))
    info = ckpt.read_json(run_dir / ckpt.RUN)["data"]
    n = args.num_samples
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    if getattr(model, "discriminative", False):
        raise ConfigError(f"{model.name} is discriminative (it models p(y | x)): it has no samples to draw")
    text = info.get("kind") == "text"
    # Without --out: a new file in the run directory, never the samples `dgm train` wrote there.
    out = (
        Path(args.out)
        if args.out
        else _free_path(run_dir / f"samples-n{n}-seed{args.seed}{'.txt' if text else '.png'}")
    )
    if out.suffix not in (".png", ".txt", ".npy"):
        raise ConfigError(f"--out must end in .png, .txt or .npy, got {out.name!r}")
    _check_memory(n * math.prod(model.event_shape) * 4, f"-n {n} samples of shape {tuple(model.event_shape)}")
    if (out.suffix == ".txt") != text and out.suffix != ".npy":
        raise ConfigError(
            f"--out {out.name!r}: samples of {info.get('name', 'this data')} are written as "
            + ("text (.txt) or .npy" if text else "a figure (.png) or .npy")
        )
    context, note = _class_cycle(model, n), ""
    factor = _superres_factor(model)
    if factor is not None:
        # Samples of p(x | h) need an h: the low-resolution versions of the run's validation images,
        # as the samples.png of `dgm train` (same seed, same samples).
        valid = _load_split(
            info["name"], "valid", args.data_dir, False, info.get("options", {}), model.event_shape
        )
        context = _cycle(_low_resolution(valid, model).y, n).to(model.device)
        note = (
            f" (given the {'x'.join(map(str, model.context_shape[1:]))} average-pooled versions of the "
            f"first {min(n, len(valid))} {info['name']}/valid images; `dgm superres` shows them side by side)"
        )
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    try:
        with torch.no_grad(), progress.shown(f"sampling {n}"):
            samples = model.sample(n, context=context, generator=gen)
    except (RuntimeError, MemoryError) as e:  # a CPU allocation failure is a plain RuntimeError
        if not isinstance(e, MemoryError | torch.OutOfMemoryError) and "can't allocate" not in str(e):
            raise
        raise ConfigError(f"-n {n}: out of memory while sampling; draw fewer") from None
    if out.suffix == ".npy":
        # Discrete samples are category indices (token ids, pixel levels): integers, not float32
        discrete = model.support.kind != "real"
        path = _save_npy(out, (samples.long() if discrete else samples).cpu().numpy())
    else:
        path = save_samples(samples, out, info, model=model, title=f"{model.name}: {n} samples")
    print(f"{n} samples written to {path}{note}")


def _free_path(path: Path) -> Path:
    """``path``, or ``stem-2.suffix``, ``stem-3.suffix``, ... : the first that does not exist yet."""
    k = 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{k}{path.suffix}")
        k += 1
    return candidate


def _check_memory(num_bytes: int, what: str) -> None:
    """A one-line error, before any work, when ``what`` alone would need more than this machine's memory
    (torch's allocator error otherwise comes from deep inside a sampler, after minutes of work)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if num_bytes > total:
        raise ConfigError(
            f"{what} need {num_bytes / 2**30:,.0f} GiB as float32, more than this machine's "
            f"{total / 2**30:,.0f} GiB of memory; draw fewer"
        )


def _write_rows(path: Path, rows: list[dict], columns: list[str], meta: dict) -> None:
    """The rows as .json (with ``meta``), .csv or a markdown table (.md), written atomically."""
    import csv
    import io
    import json

    from dgm.core.checkpoint import atomic_write

    if path.suffix == ".json":
        atomic_write(path, json.dumps({**meta, "rows": rows}, indent=2, default=str) + "\n")
    elif path.suffix == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(path, buf.getvalue())
    elif path.suffix == ".md":
        from dgm.evaluation.report import markdown_table

        header = "".join(f"{k}: {v}  \n" for k, v in meta.items())
        atomic_write(path, f"{header}\n{markdown_table(rows, columns)}\n")
    else:
        raise ConfigError(f"--out must end in .json, .csv or .md, got {path.name!r}")


def _figure(value, digits: int = 3) -> str:
    """A number for a table: '—' when absent, thousands separated, else ``digits`` significant digits."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"


def _seconds(value) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.1f} s" if value < 600 else f"{value / 60:.1f} min"


def cmd_bench(args, extra: list[str]) -> None:
    import torch

    from dgm.core.registry import get_entry, list_models
    from dgm.evaluation import speed
    from dgm.training import resolve_device

    for name, value in (
        ("--batch-size", args.batch_size),
        ("--repeats", args.repeats),
        ("--threads", args.threads),
    ):
        _positive(name, value)
    if args.score_examples < 0 or args.num_samples < 0:
        raise ConfigError("--score-examples and --num-samples must be 0 (skip) or more")
    if args.out and Path(args.out).suffix not in (".json", ".csv", ".md"):
        raise ConfigError(f"--out must end in .json, .csv or .md, got {Path(args.out).name!r}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    names = list(args.models)
    everything = names == ["all"]
    if everything:
        names = [m["name"] for m in list_models()]
    elif "all" in names:
        raise ConfigError("'all' stands alone: dgm bench all --data NAME")
    entries = [get_entry(n) for n in names]  # unknown names fail here, before anything is measured
    data_opts = _data_options(args.data_opt)
    train_ds = _load_split(args.data, "train", args.data_dir, args.download, data_opts)
    test_ds = _load_split(args.data, "test", args.data_dir, False, data_opts)
    if everything:
        kind = train_ds.support.split("(")[0]
        skipped = [e.name for e in entries if kind not in e.supports]
        entries = [e for e in entries if kind in e.supports]
        if skipped:
            print(f"skipped (they do not model {train_ds.support} data): {', '.join(skipped)}")
    precisions = ("fp32", "bf16") if args.precision == "both" else (args.precision,)
    peak = speed.peak_rates(1.0, bf16="bf16" in precisions, device=device)
    where = speed.machine() if device.type == "cpu" else torch.cuda.get_device_name(device)
    peaks = f"fp32 matmul peak {peak['gflops']:,.0f} GFLOP/s"
    if "bf16_gflops" in peak:
        peaks += f", bf16 {peak['bf16_gflops']:,.0f} GFLOP/s"
    print(f"{where}\n{peaks}, memory copy {peak['gbps']:.1f} GB/s; batch {args.batch_size}", flush=True)
    user_opts = _model_options(extra, entries)
    rows: list[dict] = []
    for entry in entries:
        try:
            row = _bench_one(entry, args, user_opts, train_ds, test_ds, precisions, peak, device)
        except DgmError as e:
            if not everything:
                raise
            print(f"{entry.name}: not measured ({e})", flush=True)
            continue
        rows.append(row)
        print("  ".join(f"{k} {v}" for k, v in row["shown"].items()), flush=True)
    if not rows:
        raise ConfigError(f"no model could be measured on {args.data}")
    columns = list(rows[0]["shown"])
    print()
    _print_table([r["shown"] for r in rows], columns)
    if args.out:
        meta = {"machine": where, "peak": peak, "data": args.data, "batch_size": args.batch_size}
        meta["command"] = " ".join(["dgm", *args.argv])
        plain = [{k: v for k, v in r.items() if k != "shown"} for r in rows]
        _write_rows(
            Path(args.out),
            plain if Path(args.out).suffix != ".md" else [r["shown"] for r in rows],
            columns,
            meta,
        )
        print(f"rows written to {args.out}")


def _bench_one(entry, args, user_opts: dict, train_ds, test_ds, precisions, peak: dict, device) -> dict:
    """One model's row of `dgm bench`: plain figures, and under 'shown' the same as table text."""
    import torch

    import dgm
    from dgm.evaluation import speed
    from dgm.training import seed_everything

    tiny = dict(entry.tiny) if args.tiny else {}
    if "num_classes" in tiny and train_ds.num_classes:  # the tests' class count, the data's labels
        tiny["num_classes"] = train_ds.num_classes
    opts, train = _options_for_data(entry, {**tiny, **user_opts}, train_ds)
    seed_everything(args.seed)
    model = dgm.build(entry.name, **opts).to(device)
    train = _low_resolution(train, model)  # image-conditioned models: y = the low-resolution images
    test = _low_resolution(test_ds.reshape_to(train.event_shape), model)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = next(train.batches(args.batch_size, shuffle=True, generator=gen))
    score_x = score_y = None
    if args.score_examples and len(test):
        k = min(args.score_examples, len(test))
        score_x, score_y = next(test.take(k).batches(k, generator=gen))  # with the split's transform
    n = args.num_samples
    sample_context = None
    if n and model.conditional:
        sample_context = _class_cycle(model, n) if _superres_factor(model) is None else _cycle(test.y, n)
    if model.conditional and y is None:
        raise ConfigError(f"{entry.name} as built is conditional but {train.name} has no labels")
    row = speed.benchmark(
        model,
        x,
        context=y if model.conditional else None,
        num_train=len(train),
        score=score_x,
        score_context=score_y if model.conditional else None,
        num_samples=n,
        sample_context=sample_context,
        precisions=precisions,
        peak=peak,
        repeats=args.repeats,
        device=device,
    )
    shown = {"model": entry.name, "params": _figure(row["params"])}
    for p in precisions:
        shown[f"step ({p})"] = _seconds(row.get(f"step_s_{p}"))
        shown[f"epoch ({p})"] = _seconds(row.get(f"epoch_s_{p}"))
        share = row.get(f"peak_share_{p}")
        shown[f"share of {p} peak"] = "—" if share is None else "<1%" if share < 0.005 else f"{share:.0%}"
    shown["GFLOP/step"] = _figure(row.get("gflop_per_step"))
    shown["log_prob/s"] = _figure(row.get("log_prob_per_s"))
    shown["samples/s"] = _figure(row.get("samples_per_s"))
    return {"model": entry.name, **row, "shown": shown}


def cmd_report(args) -> None:
    import json

    from dgm.evaluation.report import history, summarize

    if args.curves and Path(args.curves).suffix != ".png":
        raise ConfigError(f"--curves must end in .png, got {Path(args.curves).name!r}")
    if args.out and Path(args.out).suffix not in (".json", ".csv", ".md"):
        raise ConfigError(f"--out must end in .json, .csv or .md, got {Path(args.out).name!r}")
    rows = [summarize(d, count_parameters=not args.no_params) for d in args.run_dirs]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    shown = []
    for r in rows:
        test = r.get("test_nll")
        test_text = "—" if test is None else f"{test:.2f} ± {r['test_nll_stderr']:.2f}"
        if test is not None and not r.get("test_exact", True):
            k = r.get("test_num_samples")
            test_text = "≈ " + test_text + (f" (K={k})" if k else "")
        bpd = r.get("test_bits_per_dim")
        planned = r.get("epochs_planned")
        best = r.get("best_valid_nll")
        shown.append(
            {
                "run": r["run"],
                "model": r["model"],
                "data": r["data"] or "—",
                "params": _figure(r["params"]),
                "epochs": f"{r['epochs']}" + (f"/{planned}" if planned else ""),
                "steps": _figure(r["steps"]),
                "time": _seconds(r["time_s"]),
                "time/epoch": _seconds(r["epoch_s"]),
                "best valid NLL": "—" if best is None else f"{best:.2f} (epoch {r['best_epoch']})",
                "last train loss": "—" if r["last_train_loss"] is None else f"{r['last_train_loss']:.2f}",
                "test NLL": test_text,
                "bits/dim": "—" if bpd is None else f"{bpd:.4f}",
                "ended": r["status"],
            }
        )
    columns = list(shown[0])
    if not args.json:
        _print_table(shown, columns)
    if args.out:
        out = Path(args.out)
        _write_rows(out, rows if out.suffix != ".md" else shown, columns, {"runs": len(rows)})
        print(f"table written to {out}", file=sys.stderr if args.json else sys.stdout)
    if args.curves:
        from dgm.viz import compare_curves

        labels = [Path(r["run"]).name or r["run"] for r in rows]
        if len(set(labels)) < len(labels):
            labels = [r["run"] for r in rows]
        path = compare_curves(
            {lab: history(r["run"]) for lab, r in zip(labels, rows, strict=True)}, args.curves
        )
        print(f"curves written to {path}", file=sys.stderr if args.json else sys.stdout)


# ---------------------------------------------------------------------------- tasks (dgm.tasks)
def _load_run(run_dir: str, device: str):
    """(model, the run's data record) from a run directory."""
    import dgm
    from dgm.core import checkpoint as ckpt
    from dgm.training import resolve_device

    path = Path(run_dir)
    model = dgm.load(path, device=resolve_device(device))
    info = ckpt.read_json(path / ckpt.RUN).get("data", {}) if (path / ckpt.RUN).is_file() else {}
    return model, info


def _task_data(spec, model, info: dict, split: str, data_dir, reference=None, seed: int = 0):
    """The dataset a DATA spec names for ``model`` (default: the run's own dataset at ``split``)."""
    import torch

    from dgm.data.registry import dataset_info
    from dgm.tasks.sources import TRANSFORMS, load_source, parse_spec

    if spec is None:
        if not info.get("name"):
            raise ConfigError("the run records no dataset (run.json); name the data with --data / --in")
        spec = info["name"]
    source, options = parse_spec(spec)
    if source not in TRANSFORMS and not source.endswith((".txt", ".npy")):
        # A dataset named without options takes the run's (e.g. seq_len) when it is the run's dataset,
        # and a text dataset the model's sequence length.
        known = dataset_info(source)
        defaults = dict(info.get("options") or {}) if known.name == info.get("name") else {}
        if "seq_len" in known.options and len(model.event_shape) == 1:
            defaults.setdefault("seq_len", model.num_dims)
        extra = [f"{k}={v}" for k, v in defaults.items() if k.replace("-", "_") not in options]
        spec = ":".join([spec, *extra])
    vocab = info.get("vocab") or (reference.vocab if reference is not None else None)
    image_shape = info.get("image_shape") or (reference.image_shape if reference is not None else None)
    if vocab is None and source.endswith(".txt") and info.get("name"):
        vocab = _task_data(None, model, info, "train", data_dir).vocab
    return load_source(
        spec,
        event_shape=model.event_shape,
        support=str(model.support),
        split=split,
        reference=reference,
        image_shape=image_shape,
        vocab=vocab,
        data_dir=data_dir,
        generator=torch.Generator().manual_seed(seed),
    )


def _positive(name: str, value) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")


def _check_data(model, x, what: str):
    """Validate task data against the model, naming which data is wrong."""
    try:
        return model.validate(x, what)
    except DgmError as e:
        raise type(e)(f"{what}: {e}" if not str(e).startswith(what) else str(e)) from None


def _out_dir(out, default: Path) -> Path:
    """The output directory of a task that writes several files. It is created only when there is
    something to write, so that a command that fails leaves nothing behind."""
    path = Path(out) if out else default
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out must be a directory, got the file {path}")
    if not path.exists() and path.suffix.lower() in (".png", ".npy", ".txt", ".json", ".csv"):
        raise ConfigError(f"--out is a directory (the command writes several files in it), got {path.name!r}")
    return path


def cmd_inpaint(args) -> None:
    import torch

    from dgm.core.checkpoint import atomic_write
    from dgm.tasks import conditional_log_prob, impute, parse_mask
    from dgm.tasks.imputation import select_method

    _positive("-n", args.num_examples)
    _positive("-k", args.completions)
    model, info = _load_run(args.run_dir, args.device)
    if getattr(model, "discriminative", False):
        raise ConfigError(f"{model.name} models p(y | x), not the inputs: it cannot fill in missing values")
    ds = _task_data(args.data, model, info, args.split, args.data_dir, seed=args.seed).take(args.num_examples)
    x = _check_data(model, ds.x, f"{ds.name}/{ds.split}")
    context = None
    if model.conditional and getattr(model, "num_classes", None) and not hasattr(model, "prior"):
        if ds.y is None:
            raise ConfigError(
                f"{model.name} is class-conditional but {ds.name} has no labels to condition on"
            )
        context = ds.y.long().to(model.device)
    factor = _superres_factor(model)
    if factor is not None:  # image-conditioned (super-resolution) model: given each image's low-res version
        from dgm.tasks.superres import downsample

        context = downsample(x, factor, str(model.support)).to(model.device)
        print(
            f"{model.name} is conditioned on an image: each example is inpainted given its "
            f"{factor}x downsampling"
        )
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    mask = parse_mask(args.mask, model.event_shape, ds.image_shape, torch.Generator().manual_seed(args.seed))
    out = Path(args.out) if args.out else None
    kind = ds.kind if ds.kind in ("image", "text") else "array"
    if out is None:
        out = (
            Path(args.run_dir) / {"image": "inpaint.png", "text": "inpaint.txt", "array": "inpaint.npy"}[kind]
        )
    if out.suffix not in (".png", ".txt", ".npy"):
        raise ConfigError(f"--out must end in .png, .txt or .npy, got {out.name!r}")
    if out.suffix == ".png" and ds.image_shape is None and len(model.event_shape) != 3:
        raise ConfigError(
            f"{ds.name} is not image data: write the completions with --out FILE.npy"
            + (" or .txt" if ds.vocab else "")
        )
    if out.suffix == ".txt" and ds.vocab is None:
        raise ConfigError(f"{ds.name} is not text: write the completions with --out FILE.png or .npy")
    missing = int(mask.sum())
    print(
        f"{model.name} on {ds.name}/{ds.split}: {len(x)} examples, mask {args.mask!r}: "
        f"{missing} of {model.num_dims} values missing"
    )
    with progress.shown("completing"):
        res = impute(
            model,
            x,
            mask,
            args.completions,
            method=args.method,
            context=context,
            sweeps=args.sweeps,
            burn_in=args.burn_in,
            block_size=args.block_size,
            generator=gen,
        )
    print(f"imputation: {res.describe()}")
    try:
        method = select_method(model, mask, "auto", "likelihood")
        clp = conditional_log_prob(model, x, mask, context).double().cpu()
        se = clp.std().item() / len(clp) ** 0.5 if len(clp) > 1 else float("nan")
        sign = "=" if model.exact else "≈"
        bits = -clp.mean().item() / (missing * 0.6931471805599453)
        print(
            f"log p(x_missing | x_observed) {sign} {clp.mean().item():.3f} ± {se:.3f} nats per example "
            f"({bits:.4f} bits per missing value; {method}, {ds.name}/{ds.split}, n={len(clp)})"
            + ("; of the mixture of reordered masks" if "reordered" in res.note else "")
        )
    except ConfigError as e:
        print(f"log p(x_missing | x_observed): not available ({e})")
    m = res.mask.reshape(len(x), -1).cpu()
    comp = res.completions.reshape(len(x), args.completions, -1).cpu()
    truth = x.reshape(len(x), 1, -1).cpu().float()
    sel = m[:, None, :].expand_as(comp)
    if model.support.discrete:
        agree = (comp == truth)[sel].double().mean().item()
        print(f"missing values equal to the original in the completions: {100 * agree:.2f}%")
    else:
        err = (comp - truth).abs()[sel].mean().item()
        print(f"mean |completion - original| over missing values: {err:.4f}")
    if out.suffix == ".npy":
        _save_npy(out, res.completions.cpu().numpy())
    elif out.suffix == ".txt":
        atomic_write(out, _inpaint_text(x, res, ds.vocab))
    else:
        _inpaint_grid(x, res, ds, out, model)
    layout = {
        ".png": f" (rows: examples; columns: original, masked, {args.completions} completion(s))",
        ".txt": " (per example: original, masked, completions; ↵ marks a newline)",
        ".npy": f" (array (N, {args.completions}, {', '.join(map(str, model.event_shape))}))",
    }
    print(f"written to {out}{layout[out.suffix]}")


def _inpaint_text(x, res, vocab: str) -> str:
    from dgm.data.sources import decode

    def show(text: str) -> str:
        return text.replace("\n", "↵")

    blocks = []
    for i in range(len(x)):
        ids = x[i].reshape(-1).long().cpu()
        miss = res.mask[i].reshape(-1).cpu()
        masked = "".join("·" if mv else vocab[int(c)] for c, mv in zip(ids, miss, strict=True))
        lines = [f"original:     {show(decode(ids, vocab))}", f"masked:       {show(masked)}"]
        for j, c in enumerate(res.completions[i].reshape(len(res.completions[i]), -1).long().cpu()):
            lines.append(f"completion {j + 1}: {show(decode(c, vocab))}")
        blocks.append("\n".join(lines))
    return "\n\n----\n\n".join(blocks) + "\n"


def _inpaint_grid(x, res, ds, out: Path, model) -> None:
    import torch

    from dgm.viz import image_grid

    k = Support.parse(str(model.support)).num_categories
    lo, hi = (0.0, float(k - 1)) if k else (x.min().item(), x.max().item())
    n, s = res.completions.shape[:2]
    shape = tuple(ds.image_shape or model.event_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    images = torch.cat(
        [x.reshape(n, 1, -1).float().cpu(), res.completions.reshape(n, s, -1).float().cpu()], 1
    )
    images = ((images - lo) / max(hi - lo, 1e-12)).clamp(0, 1).reshape(n, s + 1, *shape)
    if shape[0] == 1:  # grey → RGB, so that missing values can be shown in a colour no data value has
        images = images.expand(-1, -1, 3, -1, -1)
    missing = res.mask.reshape(n, *shape).cpu().any(1, keepdim=True).expand(-1, images.shape[2], -1, -1)
    red = torch.tensor([0.85, 0.15, 0.15] if images.shape[2] == 3 else [0.5] * images.shape[2])
    masked = torch.where(missing, red[:, None, None].expand_as(missing), images[:, 0])
    rows = torch.cat([images[:, :1], masked[:, None], images[:, 1:]], 1)
    image_grid(
        rows.reshape(n * (s + 2), *rows.shape[2:]),
        out,
        value_range=(0.0, 1.0),
        nrow=s + 2,
        title=f"{model.name}: original | masked (red) | {res.method} completions",
    )


def cmd_superres(args) -> None:
    import torch

    from dgm.core.checkpoint import write_json
    from dgm.tasks.superres import evaluate_super_resolution, superres_grid

    _positive("-n", args.num_examples)
    _positive("-k", args.num_samples)
    _positive("--factor", args.factor)
    out = _out_dir(args.out, Path(args.run_dir))
    model, info = _load_run(args.run_dir, args.device)
    if getattr(model, "context_shape", None) is None:
        raise ConfigError(
            f"{model.name} is not conditioned on an image: super-resolution needs a pixelcnn or "
            "gated-pixelcnn trained with --context-shape C,h,w (e.g. 1,7,7 for factor 4 on 28x28)"
        )
    C, H, W = model.event_shape
    factor = _superres_factor(model)
    if args.factor is not None and args.factor != factor:
        if H % args.factor or W % args.factor:
            raise ConfigError(f"--factor {args.factor} does not divide the image size {H}x{W}")
        raise ConfigError(
            f"--factor {args.factor} gives {H // args.factor}x{W // args.factor} inputs but {model.name} is "
            f"conditioned on {H // factor}x{W // factor} (context_shape={list(model.context_shape)}): "
            f"use --factor {factor}"
        )
    ds = _task_data(args.data, model, info, args.split, args.data_dir, seed=args.seed).take(args.num_examples)
    x = _check_data(model, ds.x, f"{ds.name}/{ds.split}")
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    print(
        f"{model.name} on {ds.name}/{ds.split}: {len(x)} images, factor {factor} "
        f"({H}x{W} -> {H // factor}x{W // factor}), {args.num_samples} samples each"
    )
    model.eval()
    with progress.shown("sampling"):
        res = evaluate_super_resolution(model, x, factor, args.num_samples, generator=gen)
    print(f"super-resolution: {res.describe()}")
    nll = -res.log_prob.double().cpu()
    figures = {
        "model": model.name,
        "run": str(args.run_dir),
        "data": ds.name,
        "split": ds.split,
        "binarization": ds.binarization,
        "num_examples": len(x),
        "num_samples": args.num_samples,
        "factor": factor,
        "context_shape": list(model.context_shape),
        "conditional_nll": nll.mean().item(),
        "conditional_nll_stderr": nll.std().item() / len(nll) ** 0.5 if len(nll) > 1 else None,
        "exact": res.exact,
        "consistency_error": res.consistency,
        "consistency_error_per_example": res.consistency_per_example.cpu().tolist(),
        "sampling_seconds": res.seconds,
        "seed": args.seed,
    }
    out.mkdir(parents=True, exist_ok=True)
    superres_grid(
        res.low,
        res.samples,
        factor,
        out / "superres.png",
        truth=x,
        support=str(model.support),
        title=f"{model.name}: low-res input, {args.num_samples} samples, true image",
    )
    _save_npy(out / "superres.npy", res.samples.cpu().numpy())
    write_json(out / "superres.json", figures)
    print(
        f"written to {out}: superres.png (columns: images; rows: low-res input, {args.num_samples} "
        f"sample(s), true image), superres.npy ({len(x)}, {args.num_samples}, {C}, {H}, {W}), superres.json"
    )


def cmd_denoise(args) -> None:
    import torch

    from dgm.tasks.denoising import DEFAULT_STEPS, add_noise, denoise, parse_noise, psnr, select_method

    _positive("-n", args.num_examples)
    _positive("--num-samples", args.num_samples)
    _positive("--steps", args.steps)
    noise = parse_noise(args.noise)  # a bad spec fails before the model and data are loaded
    out = _out_dir(args.out, Path(args.run_dir) / "denoise")
    model, info = _load_run(args.run_dir, args.device)
    method = select_method(model, noise, args.method)  # gaussian noise on a binary model fails here
    steps = args.steps or DEFAULT_STEPS[method]
    if args.burn_in is not None and not 0 <= args.burn_in < steps:
        raise ConfigError(
            f"--burn-in must be in 0..{steps - 1} (fewer than the {steps} steps), got {args.burn_in}"
        )
    ds = _task_data(args.data, model, info, args.split, args.data_dir, seed=args.seed).take(args.num_examples)
    x = _check_data(model, ds.x, f"{ds.name}/{ds.split}").float()
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    y = add_noise(x.cpu(), noise, generator=torch.Generator().manual_seed(args.seed + 1))  # same y anywhere
    print(f"{model.name} on {ds.name}/{ds.split}: {len(x)} examples corrupted with {noise.spec}")
    with progress.shown("denoising"):
        res = denoise(
            model,
            y.to(model.device),
            noise,
            num_samples=args.num_samples,
            num_steps=args.steps,
            burn_in=args.burn_in,
            generator=gen,
            method=method,
        )
    print(f"denoising: {res.describe()}")
    # PSNR on the data's own scale: [0, 1] for dequantised and binary data, 0..k-1 for categorical(k)
    k = model.support.num_categories
    data_range = float(k - 1) if k else 1.0
    clean = x.cpu()
    noisy, post = psnr(clean, y, data_range), res.psnr(clean, data_range)
    one = psnr(clean, res.samples[:, 0].cpu(), data_range)
    print(
        f"PSNR (dB, range {data_range:g}, mean over {len(x)} examples): noisy {noisy.mean:.2f}, "
        f"posterior mean {post.mean:.2f}, one posterior sample {one.mean:.2f}"
    )
    if model.support.kind == "binary":
        wrong_noisy = 100 * (y != clean).float().mean().item()
        wrong_mean = 100 * ((res.mean.cpu() > 0.5).float() != clean).float().mean().item()
        print(f"values wrong: noisy {wrong_noisy:.2f}%, posterior mean > 1/2 {wrong_mean:.2f}%")
    out.mkdir(parents=True, exist_ok=True)
    written = ["noisy.npy", "mean.npy", f"samples.npy (N, {args.num_samples}, ...)"]
    if ds.image_shape is not None or len(model.event_shape) == 3:
        _denoise_grid(clean, res, ds, out / "denoise.png", model, data_range)
        written.insert(0, "denoise.png (rows: examples; columns: clean, noisy, posterior mean, samples)")
    _save_npy(out / "noisy.npy", y.numpy())
    _save_npy(out / "mean.npy", res.mean.cpu().numpy())
    _save_npy(out / "samples.npy", res.samples.cpu().numpy())
    print(f"written to {out}: " + ", ".join(written))


def _denoise_grid(x, res, ds, path: Path, model, data_range: float) -> None:
    import torch

    from dgm.viz import image_grid

    n, s = res.samples.shape[:2]
    shape = tuple(ds.image_shape or model.event_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    cols = [x.cpu(), res.noisy.cpu(), res.mean.cpu()] + [res.samples[:, j].cpu() for j in range(min(s, 4))]
    rows = torch.stack([c.reshape(n, -1).float() for c in cols], 1)  # (n, columns, D)
    image_grid(
        rows.reshape(-1, *shape).clamp(0, data_range),
        path,
        value_range=(0.0, data_range),
        nrow=len(cols),
        title=f"{model.name}, {res.noise.spec}: clean | noisy | posterior mean | {res.method} samples",
    )


def cmd_anomaly(args) -> None:
    import numpy as np
    import torch

    import dgm
    from dgm.core.checkpoint import atomic_write
    from dgm.tasks import detect, nll_scores
    from dgm.training import resolve_device

    _positive("-n", args.num_examples)
    _positive("--num-reference", args.num_reference)
    try:
        batches = tuple(int(b) for b in str(args.typicality_batch).split(",") if b.strip())
    except ValueError:
        raise ConfigError(
            f"--typicality-batch must be integers such as 1,10; got {args.typicality_batch!r}"
        ) from None
    if any(b < 1 for b in batches):
        raise ConfigError("--typicality-batch sizes must be positive")
    model, info = _load_run(args.run_dir, args.device)
    background = dgm.load(args.background, device=resolve_device(args.device)) if args.background else None
    data_in = _task_data(args.in_data, model, info, args.split, args.data_dir, seed=args.seed)
    if args.num_examples:
        data_in = data_in.take(args.num_examples)
    data_out = _task_data(args.out_data, model, info, args.split, args.data_dir, data_in, args.seed + 1)
    if args.num_examples:
        data_out = data_out.take(args.num_examples)
    x_in = _check_data(model, data_in.x, f"--in data {data_in.name}")
    x_out = _check_data(model, data_out.x, f"--out data {data_out.name}")
    reference, skipped = None, None
    if info.get("name") and batches:
        try:
            reference = _task_data(None, model, info, "train", args.data_dir, seed=args.seed)
            reference = reference.take(args.num_reference)
        except DgmError as e:
            skipped = f"typicality skipped: the run's training data cannot be loaded ({e})"
    report = detect(
        model,
        x_in,
        x_out,
        background=background,
        reference=None if reference is None else reference.x,
        typicality_batches=batches,
        batch_size=args.batch_size,
        generator=torch.Generator().manual_seed(args.seed),
    )
    sign = "exact" if model.exact else "estimate"
    print(
        f"{model.name} ({sign} log-likelihood): in-distribution {data_in.name}/{data_in.split} "
        f"(n={report.num_in}) vs out-of-distribution {data_out.name} (n={report.num_out})"
    )
    if background is not None:
        print(f"likelihood ratio against background model {background.name} ({args.background})")
    if report.entropy is not None:
        print(
            f"typical NLL (mean over {len(reference)} training examples of {reference.name}): "
            f"{report.entropy:.3f} nats"
        )
    print(report.table())
    for note in [*report.notes, *([skipped] if skipped else [])]:
        print(f"note: {note}")
    if args.scores:
        nll_in = nll_scores(model, x_in, args.batch_size).numpy()
        nll_out = nll_scores(model, x_out, args.batch_size).numpy()
        lines = ["set,index,nll_nats,bits_per_dim"]
        scale = model.num_dims * np.log(2)
        for name, scores in (("in", nll_in), ("out", nll_out)):
            lines += [f"{name},{i},{v:.6f},{v / scale:.6f}" for i, v in enumerate(scores)]
        atomic_write(Path(args.scores), "\n".join(lines) + "\n")
        print(f"per-example scores written to {args.scores}")


def cmd_classify(args) -> None:
    import torch

    from dgm.tasks.classification import class_log_prior, classify, num_classes_of, source_test

    _positive("-n", args.num_examples)
    loaded = [_load_run(r, args.device) for r in args.run_dirs]
    models = [m for m, _ in loaded]
    model, info = loaded[0]
    gen = torch.Generator().manual_seed(args.seed)
    if args.against is not None:
        if len(models) > 1:
            raise ConfigError("--against compares one model's likelihoods; give one run")
        if args.data and len(args.data) > 1:
            raise ConfigError("--against takes one --data source")
        a = _task_data(
            args.data[0] if args.data else None, model, info, args.split, args.data_dir, seed=args.seed
        )
        if args.num_examples:
            a = a.take(args.num_examples)
        b = _task_data(args.against, model, info, args.split, args.data_dir, a, args.seed + 1)
        if args.num_examples:
            b = b.take(args.num_examples)
        xa = _check_data(model, a.x, f"--data {a.name}")
        xb = _check_data(model, b.x, f"--against {b.name}")
        res = source_test(model, xa, xb, batch_size=args.batch_size, generator=gen)
        unit = "nats per character" if a.kind == "text" else "nats per value"
        print(f"{model.name} scores two sources by NLL per value ({'exact' if model.exact else 'estimate'}):")
        print(f"  a: {a.name}/{a.split} (n={res['num_a']}): {res['nll_per_dim_a']:.4f} {unit}")
        print(f"  b: {b.name} (n={res['num_b']}): {res['nll_per_dim_b']:.4f} {unit}")
        print(
            f"threshold {res['threshold']:.4f} {unit} (fit on a random half of each source): held-out "
            f"balanced accuracy {100 * res['accuracy']:.2f}%; AUROC {res['auroc']:.4f} (b positive)"
        )
        return
    C = num_classes_of(models)
    specs = args.data or [None]
    if len(specs) == 1:
        ds = _task_data(specs[0], model, info, args.split, args.data_dir, seed=args.seed)
        if ds.y is None:
            raise ConfigError(f"{ds.name} has no labels: give one DATA per class, or a labelled dataset")
        if args.num_examples:
            ds = ds.take(args.num_examples)
        x, y, what = ds.x, ds.y.long(), f"{ds.name}/{ds.split}"
        if len(y) and int(y.max()) >= C:
            raise ConfigError(f"{ds.name} has labels up to {int(y.max())} but the models give {C} classes")
    else:
        if len(specs) != C:
            raise ConfigError(f"{len(specs)} data sources for {C} classes: give one DATA per class")
        parts = []
        for c, spec in enumerate(specs):
            part = _task_data(spec, model, info, args.split, args.data_dir, seed=args.seed + c)
            parts.append(part.take(args.num_examples) if args.num_examples else part)
        x = torch.cat([p.x.float() for p in parts])
        y = torch.cat([torch.full((len(p),), c, dtype=torch.long) for c, p in enumerate(parts)])
        what = " + ".join(p.name for p in parts)
        ds = None
    x = _check_data(model, x, what)
    prior_name = args.prior
    if prior_name == "auto":
        own = len(models) == 1 and callable(getattr(model, "prior", None))
        prior_name = "model" if own else ("train" if ds is not None else "uniform")
    if prior_name == "model":
        log_prior = class_log_prior(C, model=model)
        prior_text = f"{model.name}'s own prior p(y)"
    elif prior_name == "train":
        if ds is None or not info.get("name"):
            raise ConfigError(
                "--prior train needs one labelled dataset (label frequencies of its train split)"
            )
        train = _task_data(specs[0], model, info, "train", args.data_dir, seed=args.seed)
        if train.y is None:
            raise ConfigError(f"{train.name}/train has no labels for the prior")
        log_prior = class_log_prior(C, train.y)
        prior_text = f"label frequencies of {train.name}/train (+1 smoothing)"
    else:
        log_prior = class_log_prior(C)
        prior_text = "uniform"
    res = classify(models, x, y, log_prior=log_prior, batch_size=args.batch_size)
    how = "one model per class" if len(models) > 1 else f"one class-conditional {model.name}"
    print(f"Bayes' rule over {C} classes ({how}); prior: {prior_text}")
    sign = "exact" if all(m.exact for m in models) else "estimated"
    print(
        f"{what} (n={len(x)}, {sign} log p(x|y)): accuracy {100 * res.accuracy:.2f}%; "
        f"mean log p(y|x) {res.mean_log_posterior:.4f} nats"
    )
    counts = torch.bincount(y, minlength=C)
    right = torch.bincount(y[res.predictions == y], minlength=C)
    print("per class: " + ", ".join(f"{c}: {int(right[c])}/{int(counts[c])}" for c in range(C) if counts[c]))


def cmd_purify(args) -> None:
    import torch

    from dgm.core.checkpoint import write_json
    from dgm.tasks.purification import (
        SmallCNN,
        _conditionals,
        bits_per_dim,
        defend,
        load_classifier,
        save_classifier,
        train_classifier,
    )
    from dgm.viz import image_grid

    _positive("-n", args.num)
    _positive("--pgd-steps", args.pgd_steps)
    _positive("--num-train-scores", args.num_train_scores)
    _positive("--batch-size", args.batch_size)
    for name, value in (("--eps", args.eps), ("--eps-defend", args.eps_defend)):
        if value is not None and not 0 <= value <= 1:  # NaN fails too
            raise ConfigError(f"{name} must lie in [0, 1] (the [0, 1] pixel scale), got {value}")
    if not args.classifier_minutes > 0:
        raise ConfigError(f"--classifier-minutes must be positive, got {args.classifier_minutes}")
    out = _out_dir(args.out, Path(args.run_dir) / "purify")
    model, info = _load_run(args.run_dir, args.device)
    if model.support.kind != "categorical" or len(model.event_shape) != 3:
        raise ConfigError(
            f"purify needs a model of images of integer levels (support categorical(k), event shape "
            f"(C, H, W)); {model.name} has support {model.support} and event shape {tuple(model.event_shape)}"
        )
    if model.conditional:
        raise ConfigError(f"{model.name} is conditional; purify uses an unconditional model p(x)")
    _conditionals(model)  # a model without exact conditionals fails here, before any work
    k = model.support.num_categories
    ds = _task_data(None, model, info, args.split, args.data_dir, seed=args.seed).take(args.num)
    if ds.y is None:
        raise ConfigError(f"{ds.name} has no labels: the attacks need the true classes")
    x = _check_data(model, ds.x, f"{ds.name}/{ds.split}")
    y = ds.y.long()
    train = _task_data(None, model, info, "train", args.data_dir, seed=args.seed)
    if args.train_classifier:
        if train.y is None:
            raise ConfigError(f"{train.name}/train has no labels to train a classifier on")
        num_classes = max(int(train.y.max()) + 1, int(y.max()) + 1 if len(y) else 0)
        classifier = SmallCNN(image_shape=list(model.event_shape), num_classes=num_classes).to(model.device)
    else:
        classifier = load_classifier(args.classifier, device=model.device)
        if tuple(classifier.image_shape) != tuple(model.event_shape):
            raise ConfigError(
                f"the classifier takes images of shape {tuple(classifier.image_shape)} but {model.name} "
                f"models {tuple(model.event_shape)}"
            )
    if len(y) and int(y.max()) >= classifier.num_classes:
        raise ConfigError(
            f"{ds.name} has labels up to {int(y.max())}; the classifier has {classifier.num_classes} classes"
        )
    if args.train_classifier:
        print(f"training a SmallCNN on {train.name}/train for up to {args.classifier_minutes:g} min ...")
        stats = train_classifier(
            classifier, train, epochs=100, max_minutes=args.classifier_minutes, seed=args.seed
        )
        # Written at once (the inputs were all checked above): a long purification that is interrupted
        # keeps the classifier for the next call's --classifier.
        save_classifier(classifier, out / "classifier")
        print(
            f"classifier: {stats['steps']} steps ({stats['epochs']} epochs, "
            f"{stats['seconds'] / 60:.1f} min), saved to {out / 'classifier'}"
        )
    train_scores = bits_per_dim(model, train.x[: args.num_train_scores], args.batch_size)
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    eps_defend = args.eps if args.eps_defend is None else args.eps_defend
    print(
        f"{args.attack.upper()} eps={args.eps:g} on {len(x)} images of {ds.name}/{ds.split}; PixelDefend "
        f"with {model.name}, eps_defend={eps_defend:g} ({model.num_dims} sequential steps per batch) ..."
    )
    report = defend(
        classifier,
        model,
        x,
        y,
        attacks=(args.attack,),
        eps=(args.eps,),
        eps_defend=eps_defend,
        train_scores=train_scores,
        pgd_steps=args.pgd_steps,
        generator=gen,
        batch_size=args.batch_size,
        progress=sys.stderr.isatty(),
    )
    print(report.table())
    row = report.rows[0]
    print(
        f"accuracy: clean {100 * row['clean_acc']:.2f}%, attacked {100 * row['attacked_acc']:.2f}%, "
        f"purified {100 * row['purified_acc']:.2f}% (clean images purified: "
        f"{100 * row['purified_clean_acc']:.2f}%); detection AUROC by bits/dim {row['auroc']:.4f}; "
        f"median p-value clean {row['pvalue_clean']:.3f}, attacked {row['pvalue_attacked']:.3g} "
        f"(against {len(train_scores)} training images)"
    )
    for note in report.notes:
        print(f"note: {note}")
    adv, pur = report.images[(args.attack, float(args.eps))]
    out.mkdir(parents=True, exist_ok=True)
    _save_npy(out / "attacked.npy", adv.numpy())
    _save_npy(out / "purified.npy", pur.numpy())
    write_json(
        out / "report.json",
        {
            "run": str(args.run_dir),
            "data": f"{ds.name}/{ds.split}",
            "classifier": str(out / "classifier") if args.train_classifier else str(args.classifier),
            "rows": report.rows,
            "notes": report.notes,
        },
    )
    n = min(10, len(x))
    image_grid(
        torch.cat([x[:n].cpu().float(), adv[:n].float(), pur[:n].float()]),
        out / "purify.png",
        value_range=(0, k - 1),
        nrow=n,
        title=f"{model.name}: clean | {args.attack.upper()} eps={args.eps:g} | purified eps={eps_defend:g}",
    )
    print(
        f"written to {out}: report.json, attacked.npy and purified.npy (integer levels, shape "
        f"({len(x)}, {', '.join(map(str, model.event_shape))})), purify.png (rows: clean, attacked, purified)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    args.argv = argv
    if extra and args.command not in ("train", "bench"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command in ("train", "bench"):
            (cmd_train if args.command == "train" else cmd_bench)(args, extra)
        else:
            {
                "models": cmd_models,
                "datasets": cmd_datasets,
                "download": cmd_download,
                "eval": cmd_eval,
                "sample": cmd_sample,
                "report": cmd_report,
                "inpaint": cmd_inpaint,
                "superres": cmd_superres,
                "denoise": cmd_denoise,
                "anomaly": cmd_anomaly,
                "classify": cmd_classify,
                "purify": cmd_purify,
            }[args.command](args)
    except DgmError as e:
        print(f"dgm: error: {e}", file=sys.stderr)
        return 130 if type(e).__name__ == "TrainingInterrupted" else 2
    except KeyboardInterrupt:
        print("dgm: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # an output path that cannot be written, a file that cannot be read
        where = f": {e.filename}" if e.filename else ""
        print(f"dgm: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
