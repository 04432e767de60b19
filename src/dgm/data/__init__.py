"""Datasets, downloads and preprocessing (design.md §4–5).

>>> from dgm import data
>>> train = data.load("binarized-mnist", "train")       # data dir: argument > $DGM_DATA_DIR > ~/.cache/dgm
>>> [d["name"] for d in data.list_datasets()]
"""

from dgm.data import transforms
from dgm.data.dataset import Dataset
from dgm.data.download import download_file, fetch, resolve_data_dir
from dgm.data.registry import list_datasets, load
from dgm.data.sources import decode, encode

__all__ = [
    "Dataset",
    "decode",
    "download_file",
    "encode",
    "fetch",
    "list_datasets",
    "load",
    "resolve_data_dir",
    "transforms",
]
