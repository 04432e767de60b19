"""Boolean masks for imputation: True marks a missing value, never a sentinel value in the data.

A mask has the model's event shape. Geometric masks (``bottom-half``, ``left-half`` …) are drawn on the
image layout ``(C, H, W)`` of the data (every channel of a pixel is missing together) and reshaped to the
event shape, so a flat ``(784,)`` model of ``(1, 28, 28)`` images gets the same mask as an image model.
Data without an image layout (text, plain vectors) is read as a sequence of positions.

Specs understood by :func:`parse_mask`:

    bottom-half, top-half, left-half, right-half   geometric halves
    center                                         the middle square of half the height and width
    random:P                                       each value missing with probability P
    FILE.npy, FILE.png                             a stored mask (True / nonzero / white = missing)
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dgm.core.errors import DataError

GEOMETRIC = ("bottom-half", "top-half", "left-half", "right-half", "center")
SPEC_HELP = "bottom-half, top-half, left-half, right-half, center, random:P (0 < P < 1), or a .npy/.png file"


def _layout(event_shape: tuple[int, ...], image_shape) -> tuple[int, ...] | None:
    """(C, H, W) to draw geometric masks on, or None for sequences/vectors."""
    D = math.prod(event_shape)
    if image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) == 2:
            image_shape = (1, *image_shape)
        if len(image_shape) == 3 and math.prod(image_shape) == D:
            return image_shape
    if len(event_shape) == 3:
        return tuple(event_shape)
    if len(event_shape) == 2:
        return (1, *event_shape)
    return None


def geometric_mask(name: str, event_shape, image_shape=None) -> Tensor:
    """The named geometric mask as a bool tensor of ``event_shape`` (True = missing).

    Images: halves split the height or width (the missing half gets the extra row/column when odd);
    ``center`` is the central square of half the height and half the width. Sequences (no image layout):
    ``bottom-half`` is the last half of the positions (the continuation of a prefix), ``top-half`` the
    first half and ``center`` the middle half; left/right halves need an image layout.
    """
    event_shape = tuple(event_shape)
    layout = _layout(event_shape, image_shape)
    if name not in GEOMETRIC:
        raise DataError(f"unknown mask {name!r}; use {SPEC_HELP}")
    if layout is None:
        D = math.prod(event_shape)
        mask = torch.zeros(D, dtype=torch.bool)
        half = D // 2
        if name == "bottom-half":
            mask[half:] = True
        elif name == "top-half":
            mask[: D - half] = True
        elif name == "center":
            length = max(1, (D + 1) // 2)
            start = (D - length) // 2
            mask[start : start + length] = True
        else:
            raise DataError(f"mask {name!r} needs image data; this model's data is a sequence of {D} values")
        return mask.reshape(event_shape)
    C, H, W = layout
    mask = torch.zeros(C, H, W, dtype=torch.bool)
    if name == "bottom-half":
        mask[:, H // 2 :] = True
    elif name == "top-half":
        mask[:, : H - H // 2] = True
    elif name == "left-half":
        mask[:, :, : W - W // 2] = True
    elif name == "right-half":
        mask[:, :, W // 2 :] = True
    else:
        h, w = max(1, (H + 1) // 2), max(1, (W + 1) // 2)
        top, left = (H - h) // 2, (W - w) // 2
        mask[:, top : top + h, left : left + w] = True
    return mask.reshape(event_shape)


def random_mask(p: float, event_shape, generator: torch.Generator | None = None) -> Tensor:
    """Each value missing independently with probability ``p`` (one mask, drawn with ``generator``)."""
    if not 0 < p < 1:
        raise DataError(f"random mask probability must be in (0, 1), got {p!r}")
    return torch.rand(tuple(event_shape), generator=generator) < p


def load_mask_file(path: str | Path, event_shape, image_shape=None) -> Tensor:
    """A mask from a ``.npy`` array (bool, or 0/1 numbers) or a ``.png`` image (white/nonzero = missing).

    The array may have the event shape, the image layout, the image's (H, W) (broadcast over channels)
    or be flat with D values.
    """
    path = Path(path)
    event_shape = tuple(event_shape)
    D = math.prod(event_shape)
    if not path.is_file():
        raise DataError(f"mask file {path} does not exist; masks are {SPEC_HELP}")
    if path.suffix == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"mask file {path} is not a readable .npy array ({msg})") from None
        if a.dtype != np.bool_:
            if not np.issubdtype(a.dtype, np.number) or not np.isin(a, (0, 1)).all():
                raise DataError(f"mask file {path} must hold booleans or 0/1 values (True/1 = missing)")
            a = a.astype(bool)
    elif path.suffix == ".png":
        from matplotlib.image import imread

        try:
            img = np.asarray(imread(path), dtype=np.float64)
        except (ValueError, OSError, SyntaxError) as e:
            raise DataError(f"mask file {path} is not a readable PNG ({str(e).splitlines()[0]})") from None
        if img.ndim == 3:  # RGB(A): any colour channel lit marks the pixel missing
            img = img[..., :3].max(-1)
        a = img > 0.5
    else:
        raise DataError(f"mask file {path} must be .npy or .png; masks are {SPEC_HELP}")
    mask = torch.from_numpy(np.ascontiguousarray(a))
    layout = _layout(event_shape, image_shape)
    if tuple(mask.shape) == event_shape:
        return mask
    if layout is not None and tuple(mask.shape) == layout[1:]:
        return mask[None].expand(*layout).reshape(event_shape).clone()
    if mask.numel() == D:
        return mask.reshape(event_shape)
    want = f"{event_shape}" + (f" or {layout[1:]}" if layout is not None else "")
    raise DataError(f"mask file {path} has shape {tuple(mask.shape)}; this model needs {want} ({D} values)")


_RANDOM = re.compile(r"^random:(.+)$")


def parse_mask(spec, event_shape, image_shape=None, generator: torch.Generator | None = None) -> Tensor:
    """A bool mask of ``event_shape`` (True = missing) from a spec string (see the module docstring).

    A tensor or array is accepted as is and checked. A mask that marks nothing missing is refused: there
    would be nothing to impute.
    """
    event_shape = tuple(event_shape)
    if isinstance(spec, Tensor | np.ndarray):
        mask = torch.as_tensor(spec)
        if mask.dtype != torch.bool:
            raise DataError(f"mask must be a boolean tensor (True = missing), got dtype {mask.dtype}")
        if tuple(mask.shape) != event_shape:
            raise DataError(f"mask has shape {tuple(mask.shape)}; this model needs {event_shape}")
    elif not isinstance(spec, str) or not spec.strip():
        raise DataError(f"mask must be {SPEC_HELP}; got {spec!r}")
    else:
        spec = spec.strip()
        if spec in GEOMETRIC:
            mask = geometric_mask(spec, event_shape, image_shape)
        elif m := _RANDOM.match(spec):
            try:
                p = float(m.group(1))
            except ValueError:
                raise DataError(f"random mask needs a probability, e.g. random:0.5; got {spec!r}") from None
            mask = random_mask(p, event_shape, generator)
        elif spec.endswith((".npy", ".png")) or Path(spec).exists():
            mask = load_mask_file(spec, event_shape, image_shape)
        else:
            raise DataError(f"unknown mask {spec!r}; use {SPEC_HELP}")
    if not mask.any():
        raise DataError("the mask marks no value missing: there is nothing to impute")
    return mask
