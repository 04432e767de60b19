"""Render samples for the kind of data they are: image grids, 2-D scatter + density contours, text.

Figures are drawn with matplotlib's object API on an Agg canvas, so nothing depends on a display or
on pyplot's global state, and every file is written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from dgm.core.checkpoint import atomic_write
from dgm.core.errors import DataError


def _save(fig: Figure, path: str | Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    atomic_write(path, buf.getvalue())
    return Path(path)


def _tile(images: np.ndarray, nrow: int, pad: int = 1, pad_value: float = 0.5) -> np.ndarray:
    """(N, C, H, W) → one (C, rows·(H+pad), cols·(W+pad)) mosaic."""
    n, c, h, w = images.shape
    ncol = nrow
    nrows = math.ceil(n / ncol)
    grid = np.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, dtype=np.float32)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[
            :, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w
        ] = images[i]
    return grid


def image_grid(
    x: Tensor,
    path: str | Path,
    image_shape=None,
    value_range=None,
    nrow: int | None = None,
    title: str | None = None,
) -> Path:
    """Save images ``x`` ((N, C, H, W), or (N, D) with ``image_shape``) as one PNG grid.

    ``value_range`` is (low, high) of the data (e.g. (0, 1) binary, (0, 255) 8-bit, (0, 16) digits);
    by default the batch's own min and max.
    """
    x = torch.as_tensor(x).detach().float().cpu()
    if image_shape is not None:
        x = x.reshape(len(x), *image_shape)
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4:
        raise DataError(
            f"cannot draw samples of shape {tuple(x.shape)} as images; give image_shape=(C, H, W)"
        )
    lo, hi = value_range if value_range is not None else (x.min().item(), x.max().item())
    x = ((x - lo) / max(hi - lo, 1e-12)).clamp(0, 1).numpy()
    nrow = nrow or max(1, math.ceil(math.sqrt(len(x))))
    grid = _tile(x, nrow)
    h, w = grid.shape[1:]
    zoom = min(8.0, max(2.0, 640 / max(h, w)))  # screen pixels per data pixel: ~640 px across
    top = 0.15 + 0.16 * (title.count("\n") + 1) if title else 0.0  # inches: room for every title line
    fig = Figure(figsize=(w * zoom / 100, h * zoom / 100 + top), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1 - top / fig.get_figheight()))
    if grid.shape[0] == 1:
        ax.imshow(grid[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid.transpose(1, 2, 0), interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def density_plot(
    points: Tensor,
    path: str | Path,
    model=None,
    data: Tensor | None = None,
    title: str | None = None,
    grid_size: int = 200,
) -> Path:
    """2-D samples as a scatter plot over the model's density (exp log_prob on a grid) when given."""
    pts = torch.as_tensor(points).detach().float().cpu()
    if pts.dim() != 2 or pts.shape[1] != 2:
        raise DataError(f"density_plot needs points of shape (N, 2), got {tuple(pts.shape)}")
    ref = pts if data is None else torch.cat([pts, torch.as_tensor(data).float().cpu()])
    lo, hi = torch.quantile(ref, 0.005, dim=0), torch.quantile(ref, 0.995, dim=0)
    margin = 0.15 * (hi - lo)
    lo, hi = (lo - margin).tolist(), (hi + margin).tolist()
    ncols = 2 if model is not None else 1
    fig = Figure(figsize=(4.5 * ncols, 4.5), dpi=100)
    if model is not None:
        ax = fig.add_subplot(1, ncols, 1)
        gx, gy = torch.meshgrid(
            torch.linspace(lo[0], hi[0], grid_size), torch.linspace(lo[1], hi[1], grid_size), indexing="xy"
        )
        grid = torch.stack([gx.flatten(), gy.flatten()], 1).to(model.device)
        with torch.no_grad():
            dens = model.log_prob(grid).exp().reshape(grid_size, grid_size).cpu().numpy()
        ax.imshow(dens, origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]), cmap="viridis", aspect="auto")
        ax.set_title("density p(x)", fontsize=9)
    ax = fig.add_subplot(1, ncols, ncols)
    if data is not None:
        d = torch.as_tensor(data).float().cpu()
        ax.scatter(d[:, 0], d[:, 1], s=1, alpha=0.3, color="gray", label="data")
    ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.5, color="C1", label="samples")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_title("samples", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def training_curves(history: list[dict], path: str | Path, title: str | None = None) -> Path:
    """Train loss and validation NLL per epoch."""
    fig = Figure(figsize=(5, 3.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    epochs = [r["epoch"] for r in history]
    for key in ("train_loss", "valid_nll"):
        vals = [r.get(key) for r in history]
        if any(v is not None for v in vals):
            ax.plot(epochs, [np.nan if v is None else v for v in vals], label=key, marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def compare_curves(histories: dict[str, list[dict]], path: str | Path, title: str | None = None) -> Path:
    """Validation NLL (solid) and training loss (dashed, same colour) per epoch of several runs, keyed
    by their labels, on one plot."""
    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for label, history in histories.items():
        valid = [(r["epoch"], r["valid_nll"]) for r in history if r.get("valid_nll") is not None]
        train = [(r["epoch"], r["train_loss"]) for r in history if r.get("train_loss") is not None]
        color = None
        if valid:
            (line,) = ax.plot(*zip(*valid, strict=True), label=label, marker=".")
            color = line.get_color()
        if train:
            ax.plot(*zip(*train, strict=True), "--", color=color, alpha=0.6, label=None if valid else label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example (valid solid, train dashed)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_samples(
    samples: Tensor,
    path: str | Path,
    data_info: dict,
    model=None,
    data: Tensor | None = None,
    title: str | None = None,
) -> Path:
    """Write samples in the form that suits the data: PNG grid, PNG scatter/density, or a text file.

    ``data_info`` is a dataset's ``describe()`` plus ``image_shape``/``vocab``/``value_range`` when known.
    """
    kind = data_info.get("kind", "vector")
    path = Path(path)
    if kind == "text":
        from dgm.data.sources import decode  # the vocabulary decoder lives with the text loader

        vocab = data_info["vocab"]
        text = "\n\n----\n\n".join(decode(row, vocab) for row in torch.as_tensor(samples).long().cpu())
        if path.suffix == ".png":
            path = path.with_suffix(".txt")
        atomic_write(path, text + "\n")
        return path
    if kind == "points" and samples.shape[-1] == 2:
        return density_plot(samples.reshape(len(samples), 2), path, model=model, data=data, title=title)
    image_shape = data_info.get("image_shape")
    if image_shape is None:
        d = math.prod(samples.shape[1:])
        side = math.isqrt(d)
        if side * side != d:
            raise DataError(f"cannot draw {d}-dimensional samples as an image without image_shape")
        image_shape = (1, side, side)
    return image_grid(
        samples, path, image_shape=image_shape, value_range=data_info.get("value_range"), title=title
    )
