"""Checkpoints: safetensors + JSON, atomic writes, never a pickle (DESIGN.md §6).

A run directory holds ``config.json`` (the model's config, enough for ``dgm.build``),
``model.safetensors`` (the best weights), ``training_state.safetensors`` (model, optimizer and RNG state
at the last checkpoint, with the trainer's counters as JSON metadata, in ONE file so that a crash can
never leave weights and optimizer from different steps), ``run.json``, ``metrics.csv`` and
``results.json``. Every file is written to a temporary name in the same directory, flushed, then renamed
over the old one, so a crash leaves the previous version intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from dgm.core.errors import CheckpointError, ConfigError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TRAINING_STATE = "training_state.safetensors"
RUN = "run.json"
METRICS = "metrics.csv"
RESULTS = "results.json"

_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 less the umask), so
        # runs can be shared like any other files.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None


def read_config(path: str | Path) -> dict:
    """A stored model config, brought up to date: an option its model added later with a default other
    than what older runs were built with (the class's ``legacy_options``) gets that older value when the
    file lacks it, so an old checkpoint rebuilds the model it was trained as."""
    from dgm.core.registry import get_entry

    config = read_json(path)
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{path} is not a model config (no 'model' key)")
    try:
        legacy = get_entry(config["model"]).cls.legacy_options
    except ConfigError:  # an unknown name: build() reports it, with the list of models
        return config
    return {**legacy, **config}


def save_tensors(
    path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, Any] | None = None
) -> None:
    """Save tensors (moved to CPU, made contiguous, un-shared) with JSON metadata, atomically."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {"dgm": json.dumps(metadata or {})}
    atomic_write(path, st_save(flat, metadata=meta))


def load_tensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load a safetensors file written by :func:`save_tensors`; refuse anything else with a clear error."""
    path = Path(path)
    if path.suffix in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"refusing to load {path}: it is a pickle-format file; dgm loads only safetensors"
        )
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {path}")
    data = path.read_bytes()
    # A safetensors file is an 8-byte little-endian header length, then a JSON header. Only a file that
    # is not shaped like that is checked for pickle / zip magic: a header of 640, 896, 1152 or 1408 bytes
    # (mod 65536) begins with the same two bytes as a pickle.
    header_len = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    looks_safetensors = 0 < header_len <= len(data) - 8 and data[8:9] == b"{"
    pickle_magic = data[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
    if not looks_safetensors and (pickle_magic or data[:4] == b"PK\x03\x04"):
        raise CheckpointError(
            f"refusing to load {path}: it is a pickle/zip (torch.save) file, not safetensors"
        )
    try:
        tensors = st_load(data)
        from safetensors import safe_open  # metadata is only exposed through safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("dgm", "{}")
        metadata = json.loads(raw)
    except (SafetensorError, json.JSONDecodeError, ValueError, RuntimeError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} is corrupted or truncated ({msg})") from None
    return tensors, metadata


# ---------------------------------------------------------------------------- models
def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata that :func:`save_tensors` stored in a safetensors file, without reading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("dgm", "{}")
        return json.loads(raw)
    except (SafetensorError, json.JSONDecodeError, ValueError, RuntimeError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} is corrupted or truncated ({msg})") from None


def save_model(model, run_dir: str | Path, weights_name: str = WEIGHTS, state_dict=None) -> None:
    """``model``'s config and weights (or ``state_dict``, e.g. the best weights kept during training) as
    `dgm.load` reads them."""
    run_dir = Path(run_dir)
    write_json(run_dir / CONFIG, model.config)
    weights = model.state_dict() if state_dict is None else state_dict
    save_tensors(run_dir / weights_name, weights, {"model": model.config["model"]})


def load_state_into(model, tensors: dict[str, Tensor], source: str | Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for k, v in expected.items():
        if tensors[k].shape != v.shape:
            raise CheckpointError(
                f"{source}: {k} has shape {tuple(tensors[k].shape)}, model expects {tuple(v.shape)}"
            )
    # Parameters only: buffers may hold infinities on purpose (masks added to logits).
    for k, _ in model.named_parameters():
        t = tensors[k]
        if t.is_floating_point() and not torch.isfinite(t).all():
            bad = "NaN" if torch.isnan(t).any() else "infinite"
            raise CheckpointError(
                f"{source}: parameter {k} holds {bad} values (damaged, or saved after divergence)"
            )
    model.load_state_dict(tensors)


def load(run_dir: str | Path, device: str | torch.device | None = None, weights: str = WEIGHTS):
    """Rebuild a model from a run directory: ``config.json`` → ``dgm.build``, weights from safetensors.

    Never unpickles anything. ``weights`` picks another safetensors file of the run (e.g. the last
    checkpoint's weights are inside ``training_state.safetensors`` under ``model.*``).
    """
    from dgm.core.registry import build

    run_dir = Path(run_dir)
    if run_dir.suffix in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"refusing to load {run_dir}: it is a pickle-format file; dgm loads only safetensors"
        )
    if run_dir.is_file() and run_dir.suffix == ".safetensors":
        run_dir, weights = run_dir.parent, run_dir.name
    if run_dir.is_file():
        raise CheckpointError(f"{run_dir} is a file; give the run directory that holds {CONFIG}")
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    config = read_config(run_dir / CONFIG)
    model = build(config)
    tensors, _ = load_tensors(run_dir / weights)
    if weights == TRAINING_STATE:
        tensors = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    load_state_into(model, tensors, run_dir / weights)
    model.eval()
    return model.to(device) if device is not None else model
