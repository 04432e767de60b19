"""Generative classification (issue #7): Bayes' rule over class-conditional densities, and text sources
told apart by a character model's likelihood.

    DGM_DATA_DIR=../shared/data python -m benchmarks.classification             (full run, ≈ 11 min)
    DGM_DATA_DIR=../shared/data python -m benchmarks.classification --reuse     (reuse checkpoints)
    DGM_DATA_DIR=../shared/data python -m benchmarks.classification --smoke     (≈ 1 min, no RESULTS.md)

(a) Digits. `binarized-mnist` has no labels, so the labelled MNIST images of `mnist-dynamic` are used:
the 50,000 training images binarised once (x ~ Bernoulli(grey/255), seed 0), the 10,000 test images
binarised once by the loader; training subsets of ``--sizes`` images (a fixed random permutation, seed 0,
the same subset for every model). Per size:

- conditional MADE (``made`` with ``num_classes=10``: one hidden layer of 500 ReLU units, one mask, the
  one-hot label feeding every hidden unit and output) trained on log p(x | y) with Adam 1e-3, batch 100,
  early stopping on 2,000 validation images (patience 10, best weights kept) within a wall budget that
  grows with the size; classified by Bayes' rule p(y | x) ∝ p(y) p(x | y) with p(y) the training label
  frequencies (:func:`dgm.tasks.classify`);
- naive Bayes (Bernoulli features, α = 1, closed form): the simplest class-conditional density;
- logistic regression (the registry's ``logistic-regression``, L2 weight 1e-4, L-BFGS): the
  discriminative counterpart, on the same binary pixels.

(b) Text sources (the CS236 homework): an LSTM character model (``rnn``: 256 units, 64-dimensional
embeddings) trained on tiny Shakespeare in chunks of 128 characters within ``--text-minutes``; each test
chunk of Shakespeare is told apart from chunks of another source by the model's NLL per character,
with the threshold chosen on one random half of each source (maximising balanced accuracy) and the
accuracy measured on the other half (:func:`dgm.tasks.source_test`). The other sources: random strings
(characters uniform over the 65-symbol vocabulary), shuffled Shakespeare (the test chunks with their
characters permuted: same letter frequencies, no words), and another English text available offline: the
license of the Python installation (``LICENSE.txt`` of the standard library; if absent, the docstrings
of a fixed list of standard-library modules), its characters outside the vocabulary (digits, brackets,
quotes …) replaced by spaces.
"""

from __future__ import annotations

import argparse
import sysconfig
import time
from dataclasses import replace
from pathlib import Path

import torch

import dgm
from benchmarks.common import RUNS, cached_train, table, update_results
from dgm.data.sources import encode
from dgm.tasks import class_log_prior, classify, source_test
from dgm.tasks.sources import transform

SIZES = (1000, 10000, 50000)
MADE_MINUTES = {1000: 0.75, 10000: 1.5, 50000: 2.5}
SEQ_LEN = 128
RNN = {"cell": "lstm", "hidden_size": 256, "num_layers": 1, "embedding_dim": 64}


def digits(num_valid: int = 2000):
    train = dgm.data.load("mnist-dynamic", "train")
    x = torch.bernoulli(train.x, generator=torch.Generator().manual_seed(0))
    train = replace(train, x=x, transform=None, binarization="static (seed 0)")
    perm = torch.randperm(len(train.x), generator=torch.Generator().manual_seed(0))
    train = replace(train, x=train.x[perm], y=train.y[perm])
    return (
        train,
        dgm.data.load("mnist-dynamic", "valid").take(num_valid),
        dgm.data.load("mnist-dynamic", "test"),
    )


def closed_form(name: str, train, **options):
    model = dgm.build(name, event_shape=(784,), support="binary", num_classes=10, **options)
    t0 = time.perf_counter()
    for _ in model.fit((train.x, train.y.long())):
        pass
    return model, time.perf_counter() - t0


def part_a(args, store: Path) -> list[dict]:
    train, valid, test = digits()
    x_test, y_test = test.x, test.y.long()
    rows = []
    for n in args.sizes:
        sub = train.take(n)
        minutes = 0.1 if args.smoke else MADE_MINUTES.get(n, 2.0)
        made, info = cached_train(
            store, f"made-cond-{n}",
            lambda: dgm.build("made", event_shape=(784,), hidden_sizes=[500], num_classes=10),
            sub, valid, minutes, args.reuse, patience=10,
        )  # fmt: skip
        prior = class_log_prior(10, sub.y)
        t0 = time.perf_counter()
        res = classify(made, x_test, y_test, log_prior=prior)
        score_s = time.perf_counter() - t0
        nb, _ = closed_form("naive-bayes", sub)
        nb_acc = classify(nb, x_test, y_test).accuracy
        lr, lr_s = closed_form("logistic-regression", sub, l2=1e-4)
        with torch.no_grad():
            lr_acc = float((lr.predict(x_test) == y_test).double().mean())
        rows.append(
            {
                "training images": f"{n:,}",
                "conditional MADE (Bayes' rule)": f"{100 * res.accuracy:.2f} %",
                "MADE budget": f"{info['budget_min']:g} min ({info['epochs']:.0f} epochs, valid NLL "
                f"{info['best_valid_nll']:.1f})",
                "MADE mean log p(y | x)": f"{res.mean_log_posterior:.3f}",
                "MADE scoring": f"{1000 * score_s / len(x_test):.2f} ms/image (10 classes)",
                "naive Bayes": f"{100 * nb_acc:.2f} %",
                "logistic regression": f"{100 * lr_acc:.2f} %",
                "LR fit": f"{lr_s:.0f} s",
            }
        )
        print(rows[-1], flush=True)
    return rows


def other_text(vocab: str) -> tuple[str, str]:
    """(name, text) of an English text shipped with Python, mapped onto ``vocab``."""
    path = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    if path.is_file():
        name, text = "LICENSE.txt of the Python standard library", path.read_text()
    else:
        import argparse as a
        import email
        import json
        import logging
        import unittest

        name = "docstrings of argparse, email, json, logging, unittest"
        text = "\n".join(m.__doc__ or "" for m in (a, email, json, logging, unittest))
    allowed = set(vocab)
    return name, "".join(c if c in allowed else " " for c in text)


def part_b(args, store: Path) -> tuple[list[dict], dict, str]:
    train, valid, test = (
        dgm.data.load("tinyshakespeare", s, seq_len=SEQ_LEN) for s in ("train", "valid", "test")
    )
    minutes = 0.15 if args.smoke else args.text_minutes
    rnn, info = cached_train(
        store, "rnn",
        lambda: dgm.build("rnn", event_shape=train.event_shape, support=train.support, **RNN),
        train, valid.take(200), minutes, args.reuse, batch_size=32, lr=3e-3, grad_clip=1.0,
    )  # fmt: skip
    vocab = train.vocab
    x_a = test.x
    gen = torch.Generator().manual_seed(0)
    name, text = other_text(vocab)
    n_other = len(text) // SEQ_LEN
    sources = {
        "random strings (uniform characters)": torch.randint(len(vocab), x_a.shape, generator=gen),
        "shuffled Shakespeare (characters permuted per chunk)": transform(
            "shuffled", test, test.support, {}, torch.Generator().manual_seed(1)
        ).x,
        name: encode(text[: n_other * SEQ_LEN], vocab).reshape(n_other, SEQ_LEN),
    }
    rows = []
    for source, x_b in sources.items():
        r = source_test(rnn, x_a.float(), x_b.float(), generator=torch.Generator().manual_seed(0))
        rows.append(
            {
                "other source": source,
                "chunks (Shakespeare / other)": f"{r['num_a']} / {r['num_b']}",
                "NLL Shakespeare (nats/char)": f"{r['nll_per_dim_a']:.3f}",
                "NLL other (nats/char)": f"{r['nll_per_dim_b']:.3f}",
                "threshold (nats/char)": f"{r['threshold']:.3f}",
                "held-out accuracy": f"{100 * r['accuracy']:.1f} %",
                "AUROC": f"{r['auroc']:.4f}",
            }
        )
        print(rows[-1], flush=True)
    return rows, info, name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="training-set sizes of part (a)")
    p.add_argument("--text-minutes", type=float, default=3.0, help="wall budget of the character model")
    p.add_argument("--parts", default="a,b")
    p.add_argument("--reuse", action="store_true", help="load the checkpoints of an earlier run")
    p.add_argument("--smoke", action="store_true", help="tiny budgets, RESULTS.md untouched")
    args = p.parse_args()
    torch.set_num_threads(1)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    store = RUNS / "classification"
    if args.smoke:
        args.sizes = [1000]
        store = RUNS / "classification-smoke"
    t_start = time.perf_counter()
    parts = args.parts.split(",")
    body = "## Generative classification (issue #7)\n\n"
    if "a" in parts:
        rows = part_a(args, store)
        cols = list(rows[0])
        print(table(rows, cols))
        budgets = ", ".join(f"{MADE_MINUTES.get(n, 2.0):g} min at {n:,}" for n in args.sizes)
        body += (
            "### (a) Bayes' rule over class-conditional densities vs a discriminative classifier\n\n"
            "MNIST with labels (`mnist-dynamic`; `binarized-mnist` has none): training subsets of the 50,000 "
            "training images binarised once (seed 0; the same subset for every model), test accuracy on the "
            "10,000 test images binarised once. Conditional MADE (one hidden layer of 500 ReLU units, one "
            "mask, the label one-hot into every hidden unit and output): Adam 1e-3, batch 100, early "
            f"stopping on 2,000 validation images (patience 10), wall budget {budgets} (one thread); "
            "p(y | x) ∝ p(y) p(x | y) with p(y) the training label frequencies. Naive Bayes: Bernoulli, "
            "α = 1, closed form. Logistic regression: L2 weight 1e-4, L-BFGS to convergence, on the same "
            "binary pixels.\n\n" + table(rows, cols) + "\n\n"
        )
    if "b" in parts:
        rows, info, name = part_b(args, store)
        cols = list(rows[0])
        print(table(rows, cols))
        body += (
            "### (b) Text sources by likelihood (CS236 homework)\n\n"
            f"Character LSTM (`rnn`: {', '.join(f'{k}={v}' for k, v in RNN.items())}) trained on tiny "
            f"Shakespeare in {SEQ_LEN}-character chunks: Adam 3e-3, batch 32, gradient clipping 1.0, wall "
            f"budget {info['budget_min']:g} min on one thread ({info['epochs']:.1f} epochs, validation NLL "
            f"{info['best_valid_nll'] / SEQ_LEN:.3f} nats/char on 200 chunks). Each test chunk of "
            "Shakespeare (the last 5 % of the text) against chunks of another source, scored by the "
            "model's NLL per character: the threshold maximising balanced accuracy is chosen on a random "
            "half of each source, the balanced accuracy is measured on the other half; AUROC over all "
            "chunks. Other sources: uniform random characters; the Shakespeare test chunks with their "
            f"characters shuffled; {name} — the only other English text available offline — with the "
            "characters outside the 65-symbol vocabulary replaced by spaces.\n\n" + table(rows, cols) + "\n"
        )
    print(f"total wall time {(time.perf_counter() - t_start) / 60:.1f} min")
    if not args.smoke and parts == ["a", "b"]:
        update_results("tasks-classification", body)


if __name__ == "__main__":
    main()
