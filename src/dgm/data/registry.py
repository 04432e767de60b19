"""The dataset registry: ``load(name, split)`` and ``list_datasets()`` (design.md §5)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dgm.core.errors import ConfigError
from dgm.data import sources, toys
from dgm.data.dataset import Dataset
from dgm.data.download import RemoteFile, fetch, resolve_data_dir
from dgm.data.transforms import UniformDequantize, dequantization_log_det


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    splits: dict[str, int]  # split -> number of examples (at the default options)
    event_shape: tuple[int, ...]
    support: str
    source: str
    loader: Callable[..., Dataset]  # loader(split, root, **options)
    options: dict[str, Any] = field(default_factory=dict)  # option -> default
    files: tuple[RemoteFile, ...] = ()  # what fetch() downloads; empty when nothing is downloaded


@dataclass(frozen=True)
class DequantizedDataset(Dataset):
    """Integers 0..levels-1 uniformly dequantised and rescaled to [0, 1): ``(x + u) / levels``.

    The training splits hold the integers in ``x`` and a :class:`UniformDequantize` transform, so every batch
    gets a fresh ``u ~ U[0, 1)^D`` (as ``mnist-dynamic`` redraws its binarisation); ``valid`` and ``test`` are
    dequantised once, with fixed seeds, so every evaluation sees the same values. A density on [0, 1)^D is
    ``D · log(levels)`` nats higher than the same density on the integer scale ``x + u``, the scale of the
    published tables (design.md §4): :attr:`dequantization_log_det` is that constant, and ``dgm.evaluate``
    adds it to the reported NLL and bits/dim.
    """

    levels: int = 256

    @property
    def dequantization_log_det(self) -> float:
        return dequantization_log_det(self.num_dims, self.levels)


# The fixed draws that dequantise the evaluation splits once and for all.
_DEQUANTIZED_EVAL_SEEDS = {"valid": 2233, "test": 2234}


def load_dequantized(base: Dataset, name: str, levels: int) -> DequantizedDataset:
    """``base`` (integers 0..levels-1) as a :class:`DequantizedDataset` named ``name``."""
    dequantize = UniformDequantize(levels)
    if base.split in _DEQUANTIZED_EVAL_SEEDS:
        generator = torch.Generator().manual_seed(_DEQUANTIZED_EVAL_SEEDS[base.split])
        x, transform = dequantize(base.x, generator), None
    else:
        x, transform = base.x, dequantize
    return DequantizedDataset(
        name=name,
        split=base.split,
        x=x,
        y=base.y,
        support="real",
        kind=base.kind,
        image_shape=base.image_shape,
        num_classes=base.num_classes,
        transform=transform,
        levels=levels,
    )


_FFJORD = "synthetic; generators as in FFJORD's toy_data.py (Grathwohl et al. 2019)"
_TOY_DESCRIPTIONS = {
    "moons": "two interleaving half circles, noise 0.05",
    "circles": "two concentric circles (radius ratio 0.5), noise 0.08",
    "8gaussians": "mixture of 8 Gaussians on a circle",
    "checkerboard": "uniform on the black squares of a 4x4 checkerboard",
    "pinwheel": "5-armed pinwheel (Johnson et al. 2016)",
    "spirals": "two interleaved noisy spirals",
}

_ENTRIES = [
    *(
        DatasetInfo(
            name=name,
            description=f"2-D toy density: {description}",
            splits=dict(toys.SPLIT_SIZES),
            event_shape=(2,),
            support="real",
            source=_FFJORD,
            loader=lambda split, root, _name=name, **options: toys.load_toy(_name, split, **options),
            options={"num_examples": None},
        )
        for name, description in _TOY_DESCRIPTIONS.items()
    ),
    DatasetInfo(
        name="digits",
        description="8x8 handwritten digits, values 0..16, with labels (scikit-learn, no download)",
        splits=dict(sources.DIGITS_SPLITS),
        event_shape=(64,),
        support="categorical(17)",
        source="UCI optdigits (Alpaydin & Kaynak 1998) via sklearn.datasets.load_digits",
        loader=lambda split, root: sources.load_digits(split),
    ),
    DatasetInfo(
        name="digits-binary",
        description="8x8 digits thresholded at 8 (static binarisation), with labels",
        splits=dict(sources.DIGITS_SPLITS),
        event_shape=(64,),
        support="binary",
        source="UCI optdigits (Alpaydin & Kaynak 1998) via sklearn.datasets.load_digits",
        loader=lambda split, root: sources.load_digits(split, binary=True),
    ),
    DatasetInfo(
        name="mnist",
        description="MNIST 28x28 grey levels 0..255 with labels; train/valid = first 50k/last 10k of train",
        splits=dict(sources.MNIST_SPLITS),
        event_shape=(1, 28, 28),
        support="categorical(256)",
        source="LeCun, Bottou, Bengio & Haffner 1998; IDX files from the PyTorch S3 mirror",
        loader=sources.load_mnist,
        files=sources.MNIST_FILES,
    ),
    DatasetInfo(
        name="binarized-mnist",
        description="MNIST with the fixed binarisation and 50k/10k/10k split used by NADE, VAE, IWAE papers",
        splits=dict(sources.BINARIZED_MNIST_SPLITS),
        event_shape=(784,),
        support="binary",
        source="Salakhutdinov & Murray 2008; split of Larochelle & Murray 2011 (Larochelle's .amat files)",
        loader=sources.load_binarized_mnist,
        files=sources.BINARIZED_MNIST_FILES,
    ),
    DatasetInfo(
        name="mnist-dynamic",
        description="MNIST binarised dynamically: a fresh Bernoulli(grey/255) draw per training batch",
        splits=dict(sources.MNIST_SPLITS),
        event_shape=(784,),
        support="binary",
        source="MNIST (LeCun et al. 1998), dynamic binarisation as in Burda et al. 2016 (IWAE)",
        loader=sources.load_mnist_dynamic,
        files=sources.MNIST_FILES,
    ),
    DatasetInfo(
        name="digits-dequantized",
        description="8x8 digits as reals in [0, 1): (x + u) / 17, u ~ U[0, 1) redrawn per training batch",
        splits=dict(sources.DIGITS_SPLITS),
        event_shape=(64,),
        support="real",
        source="UCI optdigits via scikit-learn; uniform dequantisation (Uria, Murray & Larochelle 2013)",
        loader=lambda split, root: load_dequantized(sources.load_digits(split), "digits-dequantized", 17),
    ),
    DatasetInfo(
        name="mnist-dequantized",
        description="MNIST as reals in [0, 1): (x + u) / 256, u ~ U[0, 1) redrawn per training batch",
        splits=dict(sources.MNIST_SPLITS),
        event_shape=(1, 28, 28),
        support="real",
        source="MNIST (LeCun et al. 1998); uniform dequantisation as in RealNVP and MAF",
        loader=lambda split, root: load_dequantized(
            sources.load_mnist(split, root), "mnist-dequantized", 256
        ),
        files=sources.MNIST_FILES,
    ),
    DatasetInfo(
        name="tinyshakespeare",
        description="1.1M characters of Shakespeare, 65-symbol vocabulary, chunks of seq_len characters",
        splits=dict(sources.TINYSHAKESPEARE_SPLITS),
        event_shape=(256,),
        support="categorical(65)",
        source="Karpathy 2015, char-rnn data/tinyshakespeare/input.txt; 90/5/5 split by position",
        loader=sources.load_tinyshakespeare,
        options={"seq_len": 256},
        files=sources.TINYSHAKESPEARE_FILES,
    ),
]
DATASETS: dict[str, DatasetInfo] = {info.name: info for info in _ENTRIES}


def dataset_info(name: str) -> DatasetInfo:
    """The entry of ``name`` (case and ``_``/``-`` insensitive); ConfigError listing the names if unknown."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[key]


def list_datasets(data_dir: str | os.PathLike | None = None) -> list[dict]:
    """One plain-data record per dataset: name, description, split sizes, event shape, support, source.

    ``files`` says where the data comes from relative to the data directory (resolved as in :func:`load`):
    ``embedded`` (generated or shipped with a dependency), ``present`` or ``missing``.
    """
    root = resolve_data_dir(data_dir)
    return [
        {
            "name": info.name,
            "description": info.description,
            "splits": dict(info.splits),
            "event_shape": list(info.event_shape),
            "support": info.support,
            "source": info.source,
            "options": dict(info.options),
            "download": bool(info.files),
            "files": _file_status(info, root),
        }
        for info in DATASETS.values()
    ]


def _file_status(info: DatasetInfo, root: Path) -> str:
    if not info.files:
        return "embedded"
    return "present" if all(f.present(root) for f in info.files) else "missing"


def load(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    **options,
) -> Dataset:
    """Load one split of a registered dataset.

    ``data_dir`` resolves as argument > ``$DGM_DATA_DIR`` > ``~/.cache/dgm``. With ``download=True``
    the dataset's missing files are fetched first (from ``$DGM_DATA_MIRROR`` when set). ``options`` are
    dataset specific: ``num_examples`` for the 2-D toys, ``seq_len`` for tinyshakespeare.
    """
    info = dataset_info(name)
    if split not in info.splits:
        raise ConfigError(f"{info.name} has no split {split!r}; valid splits: {', '.join(info.splits)}")
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        valid = ", ".join(info.options) or "none"
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for {info.name}; valid options: {valid}")
    root: Path = resolve_data_dir(data_dir)
    if download and info.files:
        fetch(info.name, root)
    return info.loader(split, root, **{**info.options, **options})
