"""Real datasets: shapes, dtypes, values, split sizes; and the file formats on small hand-made files."""

import gzip
import os

import numpy as np
import pytest
import torch
from scipy.io import savemat

from dgm.core.errors import ConfigError, DataError
from dgm.data import decode, encode, load
from dgm.data.sources import read_amat, read_idx, read_mat

from .conftest import real_data_dir

MNIST_FILES = [
    f"mnist/{p}-ubyte.gz"
    for p in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ------------------------------------------------------------------------------------------ digits
def test_digits():
    splits = {s: load("digits", s) for s in ("train", "valid", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 1257, "valid": 180, "test": 360}
    for d in splits.values():
        assert d.x.shape[1:] == (64,) and d.x.dtype == torch.float32 and d.y.dtype == torch.long
        assert d.x.min() == 0 and d.x.max() == 16 and torch.equal(d.x, d.x.round())
        assert (d.support, d.kind, d.image_shape, d.num_classes) == (
            "categorical(17)",
            "image",
            (1, 8, 8),
            10,
        )
    assert d.as_images().x.shape == (360, 1, 8, 8)
    rows = {tuple(r) for d in splits.values() for r in d.x.tolist()}
    assert len(rows) > 1700  # the splits partition the 1797 images (a few images are duplicates)
    binary = load("digits-binary", "valid")
    assert torch.equal(binary.x, (splits["valid"].x >= 8).float()) and torch.equal(
        binary.y, splits["valid"].y
    )
    assert (binary.support, binary.binarization) == ("binary", "static")


# ------------------------------------------------------------------------------------------- MNIST
def test_mnist_real():
    root = real_data_dir(*MNIST_FILES)
    full, train, valid, test = (
        load("mnist", s, data_dir=root) for s in ("train-full", "train", "valid", "test")
    )
    assert [len(d) for d in (full, train, valid, test)] == [60000, 50000, 10000, 10000]
    for d in (full, test):
        assert d.x.shape[1:] == (1, 28, 28) and d.x.dtype == torch.float32 and d.y.dtype == torch.long
        assert d.x.min() == 0 and d.x.max() == 255
        assert (d.support, d.kind, d.image_shape, d.num_classes) == (
            "categorical(256)",
            "image",
            (1, 28, 28),
            10,
        )
    assert torch.bincount(full.y).tolist() == TRAIN_COUNTS and torch.bincount(test.y).tolist() == TEST_COUNTS
    assert torch.equal(torch.cat([train.x, valid.x]), full.x) and torch.equal(valid.y, full.y[50000:])


def test_mnist_dynamic_real():
    root = real_data_dir(*MNIST_FILES)
    train = load("mnist-dynamic", "train", data_dir=root)
    assert train.x.shape == (50000, 784) and train.x.min() >= 0 and train.x.max() == 1
    assert (train.support, train.binarization, train.num_classes) == ("binary", "dynamic", 10)
    index = torch.arange(256)
    a, y = train.get_batch(index, torch.Generator().manual_seed(0))
    b, _ = train.get_batch(index, torch.Generator().manual_seed(1))
    assert set(a.unique().tolist()) == {0.0, 1.0} and not torch.equal(a, b) and torch.equal(y, train.y[:256])
    test = load("mnist-dynamic", "test", data_dir=root)
    assert test.transform is None and set(test.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(test.x, load("mnist-dynamic", "test", data_dir=root).x)
    assert not torch.equal(test.x[:5000], load("mnist-dynamic", "valid", data_dir=root).x[:5000])
    grey = load("mnist", "test", data_dir=root).x.reshape(10000, 784) / 255
    assert abs(test.x.mean() - grey.mean()) < 1e-3 and not (test.x.bool() & (grey == 0)).any()


def write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_idx_reader(tmp_path):
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    write_idx(tmp_path / "a.gz", images, 2051)
    write_idx(tmp_path / "a", images, 2051)
    assert np.array_equal(read_idx(tmp_path / "a.gz", 3), images) and np.array_equal(
        read_idx(tmp_path / "a", 3), images
    )
    with pytest.raises(DataError, match="not an IDX"):
        read_idx(tmp_path / "a", 1)  # labels magic expected


def test_truncated_idx_file(tmp_path):
    images = np.zeros((3, 28, 28))
    write_idx(tmp_path / "t", images, 2051)
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t", 3)
    write_idx(tmp_path / "t.gz", images, 2051)
    (tmp_path / "t.gz").write_bytes((tmp_path / "t.gz").read_bytes()[:-20])
    with pytest.raises(DataError, match=r"t\.gz: cannot read"):
        read_idx(tmp_path / "t.gz", 3)


def test_missing_mnist_names_file_and_command(tmp_path):
    with pytest.raises(DataError) as err:
        load("mnist", "test", data_dir=tmp_path)
    message = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in message and str(tmp_path / "mnist") in message
    assert "dgm download mnist" in message and "download=True" in message and "\n" not in message


# --------------------------------------------------------------------------------- binarized MNIST
def test_binarized_mnist_real():
    root = real_data_dir("binarized_mnist/binarized_mnist.npz")
    for split, n, mean in [("train", 50000, 0.130562), ("valid", 10000, 0.131127), ("test", 10000, 0.132512)]:
        d = load("binarized-mnist", split, data_dir=root)
        assert d.x.shape == (n, 784) and d.x.dtype == torch.float32 and d.y is None
        assert ((d.x == 0) | (d.x == 1)).all() and abs(d.x.mean() - mean) < 1e-5
        assert (d.support, d.binarization, d.image_shape, d.kind) == (
            "binary",
            "static",
            (1, 28, 28),
            "image",
        )


def test_binarized_mnist_from_mat_files(tmp_path):
    """Without the .npz, the .mat files are read; a MATLAB file named .amat (as upstream copies) works too."""
    root = real_data_dir(
        "binarized_mnist/binarized_mnist_test.mat", "binarized_mnist/binarized_mnist.npz"
    ).resolve()
    (tmp_path / "binarized_mnist").mkdir()
    (tmp_path / "binarized_mnist" / "binarized_mnist_test.mat").symlink_to(
        root / "binarized_mnist/binarized_mnist_test.mat"
    )
    (tmp_path / "binarized_mnist" / "binarized_mnist_valid.amat").symlink_to(
        root / "binarized_mnist/binarized_mnist_valid.mat"
    )
    reference = {s: load("binarized-mnist", s, data_dir=root).x for s in ("valid", "test")}
    assert torch.equal(load("binarized-mnist", "test", data_dir=tmp_path).x, reference["test"])
    assert torch.equal(load("binarized-mnist", "valid", data_dir=tmp_path).x, reference["valid"])
    with pytest.raises(DataError, match=r"binarized_mnist_train\.amat .*dgm download binarized-mnist"):
        load("binarized-mnist", "train", data_dir=tmp_path)


def test_amat_text_parsing(tmp_path):
    rows = np.random.default_rng(0).integers(0, 2, size=(3, 784))
    path = tmp_path / "x.amat"
    path.write_text("".join(" ".join(map(str, r)) + " \n" for r in rows))
    x = read_amat(path)
    assert x.dtype == np.uint8 and np.array_equal(x, rows)
    path.write_text("0 1 " * 392 + "\n" + "1 " * 783 + "\n")
    with pytest.raises(DataError, match="line 2 has 783 values"):
        read_amat(path)
    path.write_text("0 2" + " 0" * 782 + "\n")
    with pytest.raises(DataError, match="unexpected byte"):
        read_amat(path)


def test_mat_parsing(tmp_path):
    rows = np.random.default_rng(1).integers(0, 2, size=(5, 784)).astype(np.uint8)
    savemat(tmp_path / "x.mat", {"X": rows})
    assert np.array_equal(read_mat(tmp_path / "x.mat"), rows)
    os.replace(tmp_path / "x.mat", tmp_path / "x.amat")  # the MATLAB header is recognised whatever the name
    assert np.array_equal(read_amat(tmp_path / "x.amat"), rows)
    savemat(tmp_path / "bad.mat", {"X": rows * 3})
    with pytest.raises(DataError, match="0 or 1"):
        read_mat(tmp_path / "bad.mat")
    savemat(tmp_path / "other.mat", {"Y": rows})
    with pytest.raises(DataError, match="no variable X"):
        read_mat(tmp_path / "other.mat")


# --------------------------------------------------------------------------------- tinyshakespeare
def test_tinyshakespeare_real():
    root = real_data_dir("text/tinyshakespeare/input.txt")
    text = (root / "text/tinyshakespeare/input.txt").read_text()
    splits = {s: load("tinyshakespeare", s, data_dir=root) for s in ("train", "valid", "test")}
    assert {s: d.x.shape for s, d in splits.items()} == {
        "train": (3921, 256),
        "valid": (217, 256),
        "test": (217, 256),
    }
    train = splits["train"]
    assert len(train.vocab) == 65 and train.support == "categorical(65)" and train.kind == "text"
    assert train.x.dtype == torch.long and decode(train.x[0], train.vocab) == text[:256]
    assert decode(splits["valid"].x[0], train.vocab) == text[int(0.9 * len(text)) :][:256]
    assert decode(splits["test"].x[-1], train.vocab) == text[int(0.95 * len(text)) :][216 * 256 : 217 * 256]
    assert load("tinyshakespeare", "valid", data_dir=root, seq_len=100).x.shape == (557, 100)
    with pytest.raises(ConfigError, match="seq_len"):
        load("tinyshakespeare", data_dir=root, seq_len=0)


def test_encode_decode():
    vocab = " abc"
    ids = encode("abc cab", vocab)
    assert ids.dtype == torch.long and ids.tolist() == [1, 2, 3, 0, 3, 1, 2]
    assert decode(ids, vocab) == "abc cab"
    with pytest.raises(DataError, match="'xz'"):
        encode("axbz", vocab)
    with pytest.raises(DataError, match=r"0\.\.3"):
        decode(torch.tensor([4]), vocab)
