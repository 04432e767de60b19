"""The real datasets: file formats, splits and download records.

File layout inside a data directory (that of ``../shared/data``)::

    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    binarized_mnist/binarized_mnist.npz  or  binarized_mnist_{train,valid,test}.{mat,amat}
    text/tinyshakespeare/input.txt

Parsed files are cached per process, keyed by path, size and mtime, so loading every split of MNIST
decompresses each file once. Cached arrays are read-only; loaders hand out copies.
"""

from __future__ import annotations

import functools
import gzip
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dgm.core.errors import ConfigError, DataError
from dgm.data.dataset import Dataset
from dgm.data.download import RemoteFile, missing_file_error
from dgm.data.transforms import DynamicBinarize, binarize


def _cached_by_file(read):
    """Memoise ``read(path, *args)`` per process; an edited or replaced file (new size/mtime) is re-read."""

    @functools.lru_cache(maxsize=16)
    def cached(path: str, stamp: tuple[int, int], *args):
        return read(Path(path), *args)

    @functools.wraps(read)
    def wrapper(path, *args):
        stat = Path(path).stat()
        return cached(str(path), (stat.st_mtime_ns, stat.st_size), *args)

    return wrapper


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# ------------------------------------------------------------------------------------------ digits
DIGITS_SPLITS = {"train": 1257, "valid": 180, "test": 360}


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # A fixed split: a permutation drawn with seed 0; its first 360 are test, the next 180 valid.
    order = np.random.default_rng(0).permutation(len(bunch.target))
    index = {"test": order[:360], "valid": order[360:540], "train": order[540:]}
    return _frozen(bunch.data.astype(np.float32)), _frozen(bunch.target.astype(np.int64)), index


def load_digits(split: str, binary: bool = False) -> Dataset:
    """scikit-learn's 8x8 digits (the UCI optdigits test set, Alpaydin & Kaynak 1998): 1797 images with
    values 0..16, split 1257/180/360 by a seed-0 permutation. ``binary`` thresholds at 8 (static)."""
    data, target, index = _digits()
    x = torch.from_numpy(data[index[split]])  # fancy indexing copies, so x is writable
    y = torch.from_numpy(target[index[split]])
    common = dict(split=split, y=y, kind="image", image_shape=(1, 8, 8), num_classes=10)
    if binary:
        return Dataset(
            name="digits-binary", x=binarize(x, 8), support="binary", binarization="static", **common
        )
    return Dataset(name="digits", x=x, support="categorical(17)", **common)


# ------------------------------------------------------------------------------------------- MNIST
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# sha256 of the official .gz files, checked on download only: a local copy may be re-gzipped (as the
# train images in ../shared/data are) and still hold the same IDX bytes.
_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_FILES = tuple(
    RemoteFile(f"mnist/{stem}.gz", _MNIST_URL + f"{stem}.gz", sha, alternatives=(f"mnist/{stem}",))
    for stem, sha in _MNIST_SHA256.items()
)
# The binarized-MNIST convention: train = first 50k of MNIST-train, valid = its last 10k.
MNIST_SPLITS = {"train": 50000, "valid": 10000, "test": 10000, "train-full": 60000}
_IDX_MAGIC = {1: 2049, 3: 2051}  # 0x00000801 labels, 0x00000803 images: unsigned bytes, 1 or 3 dims


@_cached_by_file
def read_idx(path: Path, ndim: int) -> np.ndarray:
    """A uint8 IDX file (LeCun's MNIST format), gzipped or raw, as a read-only array.

    Header: big-endian int32 magic ``0x0000 08 ndim``, then ``ndim`` int32 sizes, then the bytes."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e}); delete it and download again") from None
    header = 4 + 4 * ndim
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != _IDX_MAGIC[ndim] or len(data) < header:
        raise DataError(
            f"{path}: not an IDX file of {ndim}-D unsigned bytes (magic {magic}, {len(data)} bytes)"
        )
    shape = [int.from_bytes(data[i : i + 4], "big") for i in range(4, header, 4)]
    if len(data) != header + math.prod(shape):
        raise DataError(
            f"{path}: truncated or corrupt IDX file: header says {shape} ({header + math.prod(shape)} "
            f"bytes), file has {len(data)} bytes; delete it and download again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx(root: Path, stem: str, ndim: int, name: str) -> np.ndarray:
    for path in (root / "mnist" / f"{stem}.gz", root / "mnist" / stem):
        if path.exists():
            return read_idx(path, ndim)
    raise missing_file_error(name, root, f"mnist/{stem}.gz", (stem,))


def _mnist_arrays(root: Path, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(N, 28, 28)`` and labels ``(N,)`` of one split (views of the cached arrays)."""
    prefix = "t10k" if split == "test" else "train"
    images = _idx(root, f"{prefix}-images-idx3-ubyte", 3, name)
    labels = _idx(root, f"{prefix}-labels-idx1-ubyte", 1, name)
    expected = 10000 if split == "test" else 60000
    if images.shape != (expected, 28, 28) or labels.shape != (expected,):
        raise DataError(
            f"{name}: {prefix} files hold images {images.shape} and labels {labels.shape}; "
            f"expected ({expected}, 28, 28) and ({expected},)"
        )
    rows = {"train": slice(0, 50000), "valid": slice(50000, 60000)}.get(split, slice(None))
    return images[rows], labels[rows]


def load_mnist(split: str, root: Path) -> Dataset:
    """MNIST (LeCun, Bottou, Bengio & Haffner 1998) as float32 0..255 ``(N, 1, 28, 28)`` with labels.

    Splits follow the binarized-MNIST convention: ``train`` = first 50000 of MNIST-train, ``valid`` = its
    last 10000, ``test`` = the 10000 t10k images; ``train-full`` = all 60000 training images."""
    images, labels = _mnist_arrays(root, split, "mnist")
    return Dataset(
        name="mnist",
        split=split,
        x=torch.from_numpy(images.astype(np.float32)).unsqueeze(1),
        y=torch.from_numpy(labels.astype(np.int64)),
        support="categorical(256)",
        kind="image",
        image_shape=(1, 28, 28),
        num_classes=10,
    )


# The fixed draws that binarise the evaluation splits of mnist-dynamic once and for all.
_DYNAMIC_EVAL_SEEDS = {"valid": 1233, "test": 1234}


def load_mnist_dynamic(split: str, root: Path) -> Dataset:
    """MNIST with dynamic binarisation: ``x ~ Bernoulli(grey / 255)`` redrawn every batch for training.

    ``train`` / ``train-full`` hold the probabilities ``grey / 255`` in ``x`` and a :class:`DynamicBinarize`
    transform; ``valid`` and ``test`` are binarised once with torch generators seeded 1233 and 1234, so
    every evaluation sees the same 0/1 images. Same splits as :func:`load_mnist`."""
    images, labels = _mnist_arrays(root, split, "mnist-dynamic")
    p = torch.from_numpy(images.reshape(len(images), 784).astype(np.float32) / 255)
    if split in _DYNAMIC_EVAL_SEEDS:
        x = torch.bernoulli(p, generator=torch.Generator().manual_seed(_DYNAMIC_EVAL_SEEDS[split]))
        transform = None
    else:
        x, transform = p, DynamicBinarize()
    return Dataset(
        name="mnist-dynamic",
        split=split,
        x=x,
        y=torch.from_numpy(labels.astype(np.int64)),
        support="binary",
        kind="image",
        image_shape=(1, 28, 28),
        num_classes=10,
        binarization="dynamic",
        transform=transform,
    )


# --------------------------------------------------------------------------------- binarized MNIST
_BMNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
# sha256 of Larochelle's ASCII .amat files (78400000 / 15680000 / 15680000 bytes) as published by
# tensorflow/datasets, tensorflow_datasets/url_checksums/binarized_mnist.txt (commit 333639b). They also
# match the arrays of ../shared/data/binarized_mnist written back as text (one image per line, digits
# separated by single spaces), which we checked offline since the upstream host was not reachable.
_BMNIST_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
BINARIZED_MNIST_SPLITS = {"train": 50000, "valid": 10000, "test": 10000}
BINARIZED_MNIST_FILES = tuple(
    RemoteFile(
        f"binarized_mnist/binarized_mnist_{split}.amat",
        _BMNIST_URL + f"binarized_mnist_{split}.amat",
        sha,
        alternatives=("binarized_mnist/binarized_mnist.npz", f"binarized_mnist/binarized_mnist_{split}.mat"),
    )
    for split, sha in _BMNIST_SHA256.items()
)


def _check_binary_images(a: np.ndarray, path: Path) -> np.ndarray:
    if a.ndim != 2 or a.shape[1] != 784:
        raise DataError(f"{path}: expected rows of 784 pixels, got an array of shape {a.shape}")
    if not ((a == 0) | (a == 1)).all():
        raise DataError(f"{path}: values must be 0 or 1; found {np.setdiff1d(np.unique(a), [0, 1])[:5]}")
    return _frozen(a.astype(np.uint8))


@_cached_by_file
def read_mat(path: Path) -> np.ndarray:
    """The ``X`` matrix ``(N, 784)`` of a MATLAB v5 file, checked to be 0/1, as read-only uint8."""
    from scipy.io import loadmat

    try:
        contents = loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError, OSError … on damaged files
        raise DataError(f"{path}: not a readable MATLAB file ({e})") from None
    if "X" not in contents:
        keys = sorted(k for k in contents if not k.startswith("__"))
        raise DataError(f"{path}: MATLAB file has no variable X (it has {keys})")
    return _check_binary_images(np.asarray(contents["X"]), path)


@_cached_by_file
def read_amat(path: Path) -> np.ndarray:
    """Larochelle's ``.amat``: one image per line, 784 whitespace-separated ``0``/``1``; read-only uint8.

    Some copies named ``.amat`` are really MATLAB v5 files (e.g. those in mingzhang-yin/ARM-gradient);
    those are recognised by their ``MATLAB 5.0`` header and read with :func:`read_mat`.
    """
    data = path.read_bytes()
    if data.startswith(b"MATLAB 5.0"):
        return read_mat(path)
    # Vectorised parse (np.loadtxt takes tens of seconds on the 78 MB train file): every byte must be a
    # digit 0/1 or whitespace, no two digits adjacent, and each non-empty line must hold 784 digits.
    b = np.frombuffer(data, dtype=np.uint8)
    kind = np.zeros(256, dtype=np.uint8)  # byte -> 0 other, 1 digit, 2 whitespace
    kind[list(b"01")], kind[list(b" \t\r\n")] = 1, 2
    kind = kind[b]
    if (kind == 0).any():
        at = int(np.argmax(kind == 0))
        raise DataError(
            f"{path}: unexpected byte {data[at : at + 1]!r} at offset {at}; expected 0/1 and spaces"
        )
    digit = kind == 1
    if (digit[1:] & digit[:-1]).any():
        raise DataError(f"{path}: values must be single 0/1 digits separated by whitespace")
    starts = np.concatenate([[0], np.flatnonzero(b == ord("\n")) + 1])
    counts = np.add.reduceat(digit, starts[starts < len(b)], dtype=np.int64) if len(b) else np.zeros(0, int)
    if ((counts != 784) & (counts != 0)).any():
        bad = int(np.argmax((counts != 784) & (counts != 0)))
        raise DataError(f"{path}: line {bad + 1} has {counts[bad]} values; expected 784")
    return _frozen((b[digit] - ord("0")).reshape(-1, 784))


@_cached_by_file
def _read_npz(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as f:
            a = f[key] if key in f.files else None
            keys = f.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if a is None:
        raise DataError(f"{path}: no array {key!r} (it has {keys})")
    return _check_binary_images(a, path)


def load_binarized_mnist(split: str, root: Path) -> Dataset:
    """The fixed binarisation of MNIST (Salakhutdinov & Murray 2008) with the 50000/10000/10000 split of
    Larochelle & Murray (2011): float32 0./1. ``(N, 784)``, no labels.

    Reads, in order of preference, ``binarized_mnist.npz`` (keys train/valid/test), the MATLAB files
    ``binarized_mnist_{split}.mat`` (variable ``X``), or the original ``binarized_mnist_{split}.amat``."""
    folder = root / "binarized_mnist"
    if (path := folder / "binarized_mnist.npz").exists():
        x = _read_npz(path, split)
    elif (path := folder / f"binarized_mnist_{split}.mat").exists():
        x = read_mat(path)
    elif (path := folder / f"binarized_mnist_{split}.amat").exists():
        x = read_amat(path)
    else:
        alternatives = ("binarized_mnist.npz", f"binarized_mnist_{split}.mat")
        raise missing_file_error(
            "binarized-mnist", root, f"binarized_mnist/binarized_mnist_{split}.amat", alternatives
        )
    if len(x) != BINARIZED_MNIST_SPLITS[split]:
        raise DataError(
            f"{path}: {split} split has {len(x)} images; expected {BINARIZED_MNIST_SPLITS[split]}"
        )
    return Dataset(
        name="binarized-mnist",
        split=split,
        x=torch.from_numpy(x.astype(np.float32)),
        support="binary",
        kind="image",
        image_shape=(1, 28, 28),
        binarization="static",
    )


# --------------------------------------------------------------------------------- tinyshakespeare
TINYSHAKESPEARE_FILES = (
    RemoteFile(
        "text/tinyshakespeare/input.txt",
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ),
)
# split sizes in chunks of the default seq_len 256
TINYSHAKESPEARE_SPLITS = {"train": 3921, "valid": 217, "test": 217}
_TEXT_FRACTIONS = {"train": (0.0, 0.9), "valid": (0.9, 0.95), "test": (0.95, 1.0)}


def encode(text: str, vocab: str) -> Tensor:
    """Character ids ``(len(text),)`` long: ``vocab.index(c)`` for each character ``c``."""
    if len(set(vocab)) != len(vocab):
        raise DataError("the vocabulary has repeated characters")
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    vocab_codes = np.frombuffer(vocab.encode("utf-32-le"), dtype="<u4")
    table = np.full(max(codes.max(initial=0), vocab_codes.max(initial=0)) + 1, -1, dtype=np.int64)
    table[vocab_codes] = np.arange(len(vocab))
    ids = table[codes]
    if (ids < 0).any():
        unknown = "".join(sorted({chr(c) for c in codes[ids < 0]}))
        raise DataError(f"characters not in the vocabulary: {unknown!r}")
    return torch.from_numpy(ids)


def decode(ids: Tensor, vocab: str) -> str:
    """The text of a sequence of ids (any shape, read in row-major order)."""
    ids = torch.as_tensor(ids).reshape(-1).tolist()
    if any(not 0 <= i < len(vocab) for i in ids):
        raise DataError(f"ids must lie in 0..{len(vocab) - 1} for a vocabulary of {len(vocab)} characters")
    return "".join(vocab[i] for i in ids)


@_cached_by_file
def _read_corpus(path: Path) -> tuple[str, np.ndarray]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from None
    vocab = "".join(sorted(set(text)))
    return vocab, _frozen(encode(text, vocab).numpy())


def load_tinyshakespeare(split: str, root: Path, seq_len: int = 256) -> Dataset:
    """Karpathy's tiny Shakespeare (char-rnn, 2015) as non-overlapping chunks ``(N, seq_len)`` of ids.

    The vocabulary is the sorted distinct characters of the whole file (65). The split is by position:
    the first 90% of characters train, the next 5% valid, the last 5% test; each split's tail shorter
    than ``seq_len`` is dropped."""
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
        raise ConfigError(f"tinyshakespeare: seq_len must be a positive integer; got {seq_len!r}")
    record = TINYSHAKESPEARE_FILES[0]
    path = root / record.path
    if not path.exists():
        raise missing_file_error("tinyshakespeare", root, record.path)
    vocab, ids = _read_corpus(path)
    start, stop = (int(f * len(ids)) for f in _TEXT_FRACTIONS[split])
    n = (stop - start) // seq_len
    x = torch.from_numpy(ids[start : start + n * seq_len].reshape(n, seq_len).copy())
    return Dataset(
        name="tinyshakespeare",
        split=split,
        x=x,
        support=f"categorical({len(vocab)})",
        kind="text",
        vocab=vocab,
    )
