"""Data specs for the tasks: a dataset, a subset of its classes, or a transformation of reference data.

    SPEC    = SOURCE[:KEY=VALUE[:KEY=VALUE ...]]
    SOURCE  = a dataset name (see `dgm datasets`)        e.g. mnist, digits-binary, tinyshakespeare
            | noise | random                            uniform values over the support (real data:
                                                          Gaussian with the reference's mean and std)
            | inverted                                   the reference with values mirrored, lo + hi − x
            | rotated                                    the reference images rotated (angle=90|180|270)
            | flipped                                    the reference images mirrored left–right
            | shuffled                                   each reference example's values permuted
            | constant                                   every value set to one level (value=V; default
                                                          the lowest: a blank page for images)
            | FILE.txt                                   a text file cut into the model's sequence length
            | FILE.npy                                   an array of examples
    KEYS    = split=NAME          split of a dataset (default: the task's --split)
            | digits=9 | digits=0-8 | digits=1,7         keep these class labels (labelled data only)
            | n=N                                        the first N examples
            | seed=S                                     seed of noise / shuffled / random draws
            | angle=A                                    rotation in degrees (rotated)
            | value=V                                    the level of constant inputs (default the lowest)
            | other keys                                 the dataset's own options, e.g. seq_len=128

The reference is the in-distribution data the transformations start from (``--in`` for ``dgm anomaly``).
"""

from __future__ import annotations

import ast
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dgm.core.errors import ConfigError, DataError
from dgm.core.support import Support
from dgm.data.dataset import Dataset

TRANSFORMS = ("noise", "random", "inverted", "rotated", "flipped", "shuffled", "constant")
SPEC_HELP = (
    "SOURCE[:KEY=VALUE...] with SOURCE a dataset name, noise, inverted, rotated, flipped, shuffled, "
    "constant, a .txt or a .npy file"
)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``'mnist:digits=0-8:split=test'`` → ``('mnist', {'digits': '0-8', 'split': 'test'})``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"empty data spec; expected {SPEC_HELP}")
    source, *parts = spec.strip().split(":")
    options = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ConfigError(f"data spec {spec!r}: {part!r} is not KEY=VALUE")
        options[key.strip().replace("-", "_")] = value.strip()
    return source.strip(), options


def parse_labels(text: str) -> list[int]:
    """``'9'`` → [9], ``'0-8'`` → [0..8], ``'1,7'`` → [1, 7], ``'0-4,9'`` → [0..4, 9]."""
    labels: list[int] = []
    try:
        for part in text.split(","):
            lo, dash, hi = part.partition("-")
            labels.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    except ValueError:
        raise ConfigError(f"digits={text!r}: expected labels such as 9, 0-8 or 1,7") from None
    if not labels:
        raise ConfigError(f"digits={text!r} selects no label")
    return sorted(set(labels))


def _int_option(options: dict, key: str, default=None):
    if key not in options:
        return default
    try:
        return int(options.pop(key))
    except ValueError:
        raise ConfigError(f"{key} must be an integer") from None


def _dataset_options(options: dict) -> dict:
    """Dataset option values as Python values: '128' → 128, '0.5' → 0.5, anything else a string."""
    out = {}
    for key, value in options.items():
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def select_labels(ds: Dataset, labels: list[int]) -> Dataset:
    """The examples of ``ds`` whose label is in ``labels`` (a DataError when it has none)."""
    if ds.y is None:
        raise DataError(
            f"{ds.name} has no labels, so digits=... cannot select classes; use a labelled dataset "
            "(digits, digits-binary, mnist, mnist-dynamic)"
        )
    keep = torch.isin(ds.y.long(), torch.tensor(labels))
    if not keep.any():
        raise DataError(f"{ds.name}/{ds.split} has no example with label in {labels}")
    return replace(ds, x=ds.x[keep], y=ds.y[keep], name=f"{ds.name}[{','.join(map(str, labels))}]")


def _materialise(ds: Dataset, generator) -> Dataset:
    """Draw a dataset's random transform (dynamic binarisation) once, so scores are of fixed inputs."""
    if ds.transform is None:
        return ds
    return replace(ds, x=ds.transform(ds.x, generator), transform=None)


def _image_layout(ds: Dataset, image_shape) -> tuple[int, int, int]:
    shape = tuple(image_shape or ds.image_shape or ())
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or math.prod(shape) != ds.num_dims:
        if len(ds.event_shape) == 3:
            return tuple(ds.event_shape)
        raise DataError(f"{ds.name} is not image data: rotating or flipping needs a (C, H, W) layout")
    return shape


def _value_range(sup: Support, x: torch.Tensor) -> tuple[float, float]:
    """The lowest and highest value: the support's levels for discrete data, the reference's range else."""
    return (0.0, sup.num_categories - 1.0) if sup.discrete else (x.min().item(), x.max().item())


def transform(
    kind: str, reference: Dataset, support: str, options: dict, generator, image_shape=None
) -> Dataset:
    """One of :data:`TRANSFORMS` applied to ``reference`` (labels kept where they still mean something)."""
    sup = Support.parse(support)
    x = reference.x.float()
    n = len(x)
    y = reference.y
    if kind in ("noise", "random"):
        n = _int_option(options, "n", n)
        if sup.discrete:
            new = torch.randint(sup.num_categories, (n, *reference.event_shape), generator=generator).float()
        else:
            mean, std = x.mean(0), x.std(0, correction=0).clamp_min(1e-6)
            new = mean + std * torch.randn((n, *reference.event_shape), generator=generator)
        y = None
    elif kind == "inverted":
        lo, hi = _value_range(sup, x)
        new = lo + hi - x
    elif kind in ("rotated", "flipped"):
        C, H, W = _image_layout(reference, image_shape)
        img = x.reshape(n, C, H, W)
        if kind == "rotated":
            angle = _int_option(options, "angle", 90)
            if angle % 90 or angle % 360 == 0:
                raise ConfigError(f"rotated: angle must be 90, 180 or 270, got {angle}")
            if H != W and angle % 180:
                raise DataError(f"rotating {H}x{W} images by {angle} degrees changes their shape")
            img = torch.rot90(img, angle // 90 % 4, dims=(2, 3))
        else:
            img = img.flip(3)
        new = img.reshape(x.shape)
    elif kind == "shuffled":
        flat = x.reshape(n, -1)
        perm = torch.argsort(torch.rand(flat.shape, generator=generator), dim=1)
        new = flat.gather(1, perm).reshape(x.shape)
        y = None
    elif kind == "constant":
        # The simplest input there is (a blank page): the classic case of a likelihood that ranks an
        # out-of-distribution input above the data (Nalisnick et al. 2019).
        value = options.pop("value", None)
        lo, hi = _value_range(sup, x)
        try:
            level = lo if value is None else float(value)
        except ValueError:
            raise ConfigError(f"constant: value must be a number, got {value!r}") from None
        if not math.isfinite(level) or (sup.discrete and (level != round(level) or not lo <= level <= hi)):
            raise ConfigError(f"constant: value must be a level in [{lo:g}, {hi:g}], got {value}")
        new = torch.full_like(x, level)
        y = None
    else:
        raise ConfigError(f"unknown transformation {kind!r}; use one of {', '.join(TRANSFORMS)}")
    if reference.x.dtype == torch.long:
        new = new.round().long()
    return replace(
        reference,
        name=f"{kind}({reference.name})",
        x=new,
        y=y,
        transform=None,
        num_classes=reference.num_classes if y is not None else None,
    )


def text_chunks(path: str | Path, vocab: str, seq_len: int) -> torch.Tensor:
    """A text file as non-overlapping chunks ``(N, seq_len)`` of character ids in ``vocab``."""
    from dgm.data.sources import encode

    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file {path} does not exist")
    text = path.read_text(errors="replace")
    unknown = sorted(set(text) - set(vocab))
    if unknown:
        raise DataError(
            f"{path} has {len(unknown)} character(s) outside the model's vocabulary: "
            f"{''.join(unknown)[:40]!r}"
        )
    n = len(text) // seq_len
    if n == 0:
        raise DataError(f"{path} has {len(text)} characters, fewer than one sequence of {seq_len}")
    return encode(text[: n * seq_len], vocab).reshape(n, seq_len)


def load_source(
    spec: str,
    *,
    event_shape,
    support: str,
    split: str = "test",
    reference: Dataset | None = None,
    image_shape=None,
    vocab: str | None = None,
    data_dir=None,
    generator: torch.Generator | None = None,
) -> Dataset:
    """The dataset a spec names (see the module docstring), shaped ``(N, *event_shape)``.

    ``reference`` is what the transformations start from; ``vocab`` encodes ``.txt`` files.
    """
    from dgm import data

    source, options = parse_spec(spec)
    event_shape = tuple(event_shape)
    seed = _int_option(options, "seed")
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
    labels = parse_labels(options.pop("digits")) if "digits" in options else None
    first = _int_option(options, "n")
    ds_split = options.pop("split", split)
    path = Path(source)
    if source in TRANSFORMS:
        if reference is None:
            raise ConfigError(f"{source} transforms reference data, and none was given")
        if source in ("noise", "random") and first is not None:
            options["n"] = str(first)
            first = None
        base = select_labels(reference, labels) if labels else reference
        ds = transform(source, base, support, options, generator, image_shape)
        labels = None
    elif path.suffix == ".txt":
        if vocab is None:
            raise DataError(f"{spec}: a text file needs a model trained on text (with a vocabulary)")
        ds = Dataset(
            name=path.name,
            split="-",
            x=text_chunks(path, vocab, math.prod(event_shape)),
            support=support,
            kind="text",
            vocab=vocab,
        )
    elif path.suffix == ".npy":
        if not path.is_file():
            raise DataError(f"data file {path} does not exist")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{path} is not a readable .npy array ({msg})") from None
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise DataError(f"{path} holds {arr.dtype} values; a data array must be numeric")
        if arr.ndim < 2:
            raise DataError(f"{path} has shape {arr.shape}; a data array is (N, *event_shape)")
        ds = Dataset(name=path.name, split="-", x=torch.from_numpy(np.ascontiguousarray(arr)).float())
    else:
        ds = _materialise(
            data.load(source, ds_split, data_dir=data_dir, **_dataset_options(options)), generator
        )
        options = {}
    if options:
        raise ConfigError(f"data spec {spec!r}: unknown option(s) {', '.join(sorted(options))}")
    if labels:
        ds = select_labels(ds, labels)
    if first is not None:
        if first < 1:
            raise ConfigError(f"n must be positive, got {first}")
        ds = ds.take(first)
    if ds.num_dims != math.prod(event_shape):
        raise DataError(
            f"{spec}: examples have shape {ds.event_shape} ({ds.num_dims} values) but the model expects "
            f"{event_shape}"
        )
    return ds.reshape_to(event_shape)
