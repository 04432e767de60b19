"""Shared benchmark plumbing: machine description, peak-rate probes, and RESULTS.md sections.

Each benchmark script owns one section of RESULTS.md, delimited by HTML comments, and rewrites only that
section, so scripts can be re-run independently and the file keeps every other table.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

import dgm
from dgm.core import checkpoint as ckpt
from dgm.evaluation.report import markdown_table
from dgm.evaluation.speed import (  # noqa: F401  (the benchmarks import them from here)
    extra_flop_formulas,
    machine,
    peak_rates,
    step_flops,
    synchronize,
    time_log_prob,
    time_train_step,
)
from dgm.training import seed_everything

RESULTS = Path(__file__).with_name("RESULTS.md")
# Trained benchmark models (checkpoints); runs/ is not versioned.
RUNS = Path(__file__).resolve().parents[1] / "runs" / "benchmarks"
# Finished table rows (JSON), versioned beside RESULTS.md: a section drawn from rows measured in separate
# invocations is redrawn from all of them, so running one model on a fresh checkout keeps every other row.
ROWS = Path(__file__).with_name("rows")


table = markdown_table


def _command() -> str:
    """How to re-run this script: as a module from the repository root, with the shared data."""
    script = Path(sys.argv[0]).resolve()
    # benchmarks/peers/same_function.py is benchmarks.peers.same_function: the path below the repository root
    module = ".".join(script.relative_to(RESULTS.parent.parent.resolve()).with_suffix("").parts)
    # shlex: an argument such as maf.scale_fn="softplus" must keep its quotes to be pasted into a shell.
    return f"DGM_DATA_DIR=../shared/data python -m {module} {shlex.join(sys.argv[1:])}".rstrip()


def device_mismatch(labels: list[str], device: str) -> str | None:
    """Why these row labels may not run on ``device``, or None: rows trained on a GPU are stored under
    labels ending in "-gpu" and the others are CPU rows, so that a run on one never replaces the other's
    stored row."""
    from dgm.core.errors import ConfigError
    from dgm.training.trainer import resolve_device

    try:
        gpu = resolve_device(device).type == "cuda"
    except ConfigError as e:  # e.g. --device cuda where there is none
        return str(e)
    wrong = [m for m in labels if m.endswith("-gpu") != gpu]
    if not wrong:
        return None
    return f"{', '.join(wrong)}: " + (
        "CPU rows; on a GPU run their -gpu labels" if gpu else "GPU rows (-gpu); run them with --device cuda"
    )


def trained_on(device: torch.device, shared_note: str = "", cpu_suffix: str = "") -> str:
    """Where a row trained, for its budget column: the CPU threads, or the GPU's name and, when given, what
    shared it (e.g. other jobs time-slicing the same GPU)."""
    where = (
        f"{torch.get_num_threads()} thr{cpu_suffix}"
        if device.type == "cpu"
        else torch.cuda.get_device_name(device)
    )
    return where + (f" ({shared_note})" if shared_note else "")


@contextlib.contextmanager
def full_fp32():
    """Inside: no TF32 in CUDA matmuls and convolutions (torch lets cuDNN use TF32 by default), so that a
    GPU-trained model's reported likelihood is computed in full fp32, as on a CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def save_row(store: Path, name: str, row: dict) -> None:
    """Keep one finished row (its ``_``-prefixed entries dropped) with the command that produced it, so
    that rows measured in separate invocations make one table (``store``: a folder under ``ROWS``), the
    date it was finished on and the machine it ran on (sessions do not always get the same one)."""
    kept = {k: v for k, v in row.items() if not k.startswith("_")}
    ckpt.write_json(
        store / f"{name}.json",
        {
            **kept,
            "command": kept.get("command", _command()),
            "date": date.today().isoformat(),
            "machine": kept.get("machine", machine(threads=False)),
        },
    )


def rows_machine(rows: list[dict]) -> str:
    """The machine line of a section of stored rows: the one machine they all ran on, or each machine with
    the rows it ran (rows name themselves by ``model`` or ``variant``)."""
    by_machine: dict[str, list[str]] = {}
    for r in rows:
        label = r.get("model", r.get("variant", "?"))
        by_machine.setdefault(r.get("machine", "not recorded"), []).append(label)
    if len(by_machine) == 1:
        return next(iter(by_machine))
    return "; ".join(f"{m} ({', '.join(labels)})" for m, labels in by_machine.items())


def stored_rows(store: Path, names) -> list[dict]:
    """The kept rows of ``names`` that exist, in that order."""
    return [ckpt.read_json(store / f"{n}.json") for n in names if (store / f"{n}.json").exists()]


def epoch_seconds(history: list[dict], steps_per_epoch: int) -> float:
    """Median time per epoch of training steps (validation excluded) from a training history: each logged
    epoch's time over the steps it ran, so that an epoch cut short by a wall budget still gives the rate."""
    previous = [0] + [h["step"] for h in history[:-1]]
    rates = [
        h["epoch_time_s"] / (h["step"] - p) for h, p in zip(history, previous, strict=True) if h["step"] > p
    ]
    return statistics.median(rates) * steps_per_epoch


def update_results(section: str, body: str, rows: list[dict] | None = None) -> None:
    """Replace (or append) the section named ``section`` of RESULTS.md with ``body``.

    ``rows``: the body's stored rows, measured by separate invocations (each with its own command and
    thread count in the body), so the header names this invocation only as the one that redrew the
    section, and the machines those rows ran on rather than this one."""
    per_row = rows is not None
    begin, end = f"<!-- begin {section} -->", f"<!-- end {section} -->"
    command = (
        f"each row's own, listed with its table (section redrawn by `{_command()}`)"
        if per_row
        else f"`{_command()}`"
    )
    header = (
        f"{begin}\nCommand: {command}  \n"
        f"Machine: {rows_machine(rows) if rows else machine(threads=not per_row)}  \n"
        f"Date: {date.today().isoformat()}"
        + (
            " (the day this section was redrawn from the rows stored in benchmarks/rows/; rows finished"
            " since 2026-11-25 store their own date, and each row its machine)"
            if per_row
            else ""
        )
        + "\n\n"
    )
    block = header + body.strip() + "\n" + end
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Benchmark results\n\nEvery figure below is measured by the named command.\n"
    )
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def fresh_run_dir(path: Path) -> Path:
    """``path`` emptied for a new training run: a benchmark row is defined by its own budget, never by a
    history resumed from an earlier run (``dgm.train`` refuses a directory that already holds one)."""
    if path.exists():
        shutil.rmtree(path)
    return path


def resumable_run(run_dir: Path | None, row_path: Path, resume: bool) -> tuple[bool, dict]:
    """For a row whose training may span invocations (sessions): whether to resume the checkpointed run in
    ``run_dir`` (asked for, and a checkpoint exists; otherwise the directory is emptied for a fresh run),
    and the entries the new row takes over from the one it continues: its command, followed by this one.
    ``run_dir`` None (a smoke run, not checkpointed): a fresh run."""
    if run_dir is None:
        return False, {}
    if resume and (run_dir / ckpt.TRAINING_STATE).exists():
        previous = ckpt.read_json(row_path) if row_path.exists() else {}
        return True, {"command": f"{previous['command']}`, then `{_command()}"} if previous else {}
    fresh_run_dir(run_dir)
    return False, {}


def cached_train(store: Path, key: str, make, train, valid, minutes: float, reuse: bool, **options):
    """Train ``make()`` within ``minutes`` (run directory ``store/key``), or load it back with ``reuse``.

    A checkpoint is reused only when its config equals that of a freshly built model, so changing a
    setting retrains. Returns (model, info) with the training budget and what it achieved.
    """
    run = store / key
    seed_everything(0)
    model = make()
    info_file = run / "benchmark.json"
    if reuse and (run / ckpt.WEIGHTS).exists() and info_file.exists():
        if ckpt.read_config(run / ckpt.CONFIG) == json.loads(json.dumps(model.config)):
            info = ckpt.read_json(info_file)
            print(f"{key}: reusing {run} ({info['steps']} steps, {info['train_min']:.1f} min)", flush=True)
            return ckpt.load(run), info
        print(f"{key}: {run} holds another config; training again", flush=True)
    fresh_run_dir(run)
    t0 = time.perf_counter()
    opts = {"epochs": 10_000, "batch_size": 100, "lr": 1e-3, "patience": None, **options}
    res = dgm.train(model, train, valid, out=run, progress=False, max_minutes=minutes, seed=0, **opts)
    info = {
        "budget_min": minutes,
        "train_min": (time.perf_counter() - t0) / 60,
        "steps": res.steps,
        "epochs": res.steps * opts["batch_size"] / len(train),
        "best_valid_nll": res.best_valid_nll,
    }
    ckpt.write_json(info_file, info)
    print(f"{key}: trained {info['steps']} steps in {info['train_min']:.1f} min, "
          f"valid NLL {res.best_valid_nll:.2f}", flush=True)  # fmt: skip
    return model, info


def budget_text(info: dict) -> str:
    return f"{info['budget_min']:g} min ({info['epochs']:.1f} epochs, valid NLL {info['best_valid_nll']:.1f})"


def test_subset(test, n: int):
    """A seeded random subset of n test images: MNIST's test set is ordered, its first images easier than
    its last (e.g. a 2,000-image prefix scores ~16 nats lower than the full set), so a prefix is biased."""
    if n >= len(test):
        return test.x
    return test.x[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:n]]
