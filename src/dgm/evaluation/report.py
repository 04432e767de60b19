"""What a training run did, from its directory alone: the rows that ``dgm report`` prints.

A run directory (``dgm train --out`` or ``dgm.train(out=...)``) holds config.json, run.json,
metrics.csv, the training state and, after ``dgm eval``, results.json. :func:`summarize` reads them
(no pickle, no weights: the parameter count comes from the config) into one plain dict per run;
:func:`dgm.viz.compare_curves` draws several runs' curves on one plot.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from dgm.core import checkpoint as ckpt
from dgm.core.errors import CheckpointError
from dgm.core.registry import build


def _history(path: Path) -> list[dict]:
    """metrics.csv as a list of rows, numbers as floats (empty fields dropped)."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is unreadable ({e})") from None
    out = []
    for row in rows:
        clean = {}
        for k, v in row.items():
            if k is None or v in (None, ""):
                continue
            try:
                clean[k] = float(v)
            except ValueError:
                clean[k] = v
        out.append(clean)
    return out


def _status(state: dict, training: dict, method: str) -> str:
    if not state:
        return "no training state"
    if not state.get("finished"):
        return "interrupted (--resume continues it)"
    if state.get("stopped_early"):
        return "early stop"
    if method == "fit":
        return "fitted"
    if state.get("epoch", 0) >= training.get("epochs", math.inf):
        return "all epochs"
    if training.get("max_steps") is not None and state.get("step", 0) >= training["max_steps"]:
        return "step limit"
    if training.get("max_minutes") is not None:
        return "time limit"
    return "finished"


def summarize(run_dir: str | Path, count_parameters: bool = True) -> dict:
    """One run as plain data: model, data, parameters, epochs, steps, time, the best validation NLL and
    its epoch, the last training loss, how training ended, and the stored test (and validation) figures.
    A directory that is not a run raises a one-line CheckpointError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory {run_dir}")
    if not (run_dir / ckpt.CONFIG).is_file():
        raise CheckpointError(f"{run_dir} is not a dgm run directory (no {ckpt.CONFIG})")
    config = ckpt.read_config(run_dir / ckpt.CONFIG)
    run = ckpt.read_json(run_dir / ckpt.RUN) if (run_dir / ckpt.RUN).is_file() else {}
    results = ckpt.read_json(run_dir / ckpt.RESULTS) if (run_dir / ckpt.RESULTS).is_file() else {}
    history = _history(run_dir / ckpt.METRICS)
    state_path = run_dir / ckpt.TRAINING_STATE
    state = ckpt.read_metadata(state_path).get("state", {}) if state_path.is_file() else {}
    training, method = run.get("training", {}), run.get("method", "gradient")
    last = history[-1] if history else {}
    valid = [(r["valid_nll"], int(r["epoch"])) for r in history if isinstance(r.get("valid_nll"), float)]
    best_nll, best_epoch = min(valid) if valid else (None, None)
    # A run still training writes metrics.csv after every epoch but its state only every checkpoint_every
    # seconds (or when it ends): the counters come from whichever is further along.
    checkpointed = state.get("epoch", 0)
    ahead = int(last.get("epoch", 0)) > checkpointed
    if ahead:
        state = {k: v for k, v in state.items() if k not in ("epoch", "step", "elapsed_s", "best_valid_nll")}
    if state.get("best_valid_nll") is not None and math.isfinite(state["best_valid_nll"]):
        best_nll, best_epoch = state["best_valid_nll"], state.get("best_epoch")
    epoch_times = [r["epoch_time_s"] for r in history if isinstance(r.get("epoch_time_s"), float)]
    summary = {
        "run": str(run_dir),
        "model": config.get("model"),
        "data": run.get("data", {}).get("name"),
        # The architecture fixes the count: the model is built from its config, its weights left unread.
        "params": build(config).num_parameters() if count_parameters else None,
        "method": method,
        "epochs": state.get("epoch", int(last.get("epoch", 0))),
        "epochs_planned": training.get("epochs"),
        "steps": state.get("step", int(last.get("step", 0))),
        "time_s": state.get("elapsed_s", last.get("elapsed_s")),
        "epoch_s": statistics.median(epoch_times) if epoch_times else None,
        "best_valid_nll": best_nll,
        "best_epoch": best_epoch,
        "last_train_loss": last.get("train_loss"),
        "status": (
            f"training, or stopped without a checkpoint (--resume restarts from epoch {checkpointed})"
            if ahead
            else _status(state, training, method)
        ),
        "command": run.get("command"),
    }
    for split in ("valid", "test"):
        res = results.get(split)
        if res:
            summary[f"{split}_nll"] = res.get("nll")
            summary[f"{split}_nll_stderr"] = res.get("nll_stderr")
            summary[f"{split}_bits_per_dim"] = res.get("bits_per_dim")
            summary[f"{split}_exact"] = res.get("exact")
            summary[f"{split}_num_samples"] = res.get("num_samples")
    return summary


def history(run_dir: str | Path) -> list[dict]:
    """The per-epoch rows of a run's metrics.csv (numbers as floats)."""
    return _history(Path(run_dir) / ckpt.METRICS)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """``rows`` as a markdown table with ``columns`` (missing values empty)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
