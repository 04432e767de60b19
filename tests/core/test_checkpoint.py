import os

import pytest
import torch

import dgm
from dgm.core import checkpoint as ckpt


@pytest.fixture
def run_dir(tmp_path):
    model = dgm.build("independent", event_shape=(5,))
    with torch.no_grad():
        model.logits.normal_()
    ckpt.save_model(model, tmp_path)
    return tmp_path, model


def test_round_trip_identical_log_prob(run_dir):
    path, model = run_dir
    x = torch.randint(0, 2, (20, 5)).float()
    assert torch.equal(dgm.load(path).log_prob(x), model.log_prob(x))
    assert torch.equal(dgm.load(path / "model.safetensors").log_prob(x), model.log_prob(x))


def test_refuses_pickles(run_dir, tmp_path):
    path, model = run_dir
    torch.save(model.state_dict(), path / "model.pt")
    with pytest.raises(dgm.CheckpointError, match="pickle"):
        dgm.load(path / "model.pt")
    # A pickle disguised under the safetensors name is refused too, never unpickled.
    torch.save(model.state_dict(), path / "model.safetensors")
    with pytest.raises(dgm.CheckpointError, match="refusing"):
        dgm.load(path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_checkpoint_is_a_clear_error(run_dir, damage):
    path, _ = run_dir
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage]
    )
    with pytest.raises(dgm.CheckpointError, match="corrupted or truncated"):
        dgm.load(path)


def test_missing_pieces(run_dir, tmp_path):
    with pytest.raises(dgm.CheckpointError, match="does not exist"):
        dgm.load(tmp_path / "nope")
    path, _ = run_dir
    (path / "config.json").write_text("{not json")
    with pytest.raises(dgm.CheckpointError, match="not valid JSON"):
        dgm.load(path)


def test_mismatched_weights(run_dir):
    path, _ = run_dir
    ckpt.write_json(path / "config.json", dgm.build("independent", event_shape=(6,)).config)
    with pytest.raises(dgm.CheckpointError, match="shape"):
        dgm.load(path)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    ckpt.atomic_write(target, "old")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        ckpt.atomic_write(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_metadata_round_trip(tmp_path):
    ckpt.save_tensors(tmp_path / "t.safetensors", {"a": torch.arange(3)}, {"k": [1, 2], "x": "y"})
    tensors, meta = ckpt.load_tensors(tmp_path / "t.safetensors")
    assert torch.equal(tensors["a"], torch.arange(3)) and meta == {"k": [1, 2], "x": "y"}


@pytest.mark.parametrize("header_len", [640, 896, 1152, 1408])
def test_safetensors_whose_header_length_looks_like_pickle_magic_loads(tmp_path, header_len):
    # The 8-byte header length of these files starts with b"\x80\x02".."\x80\x05", a pickle's first bytes.
    from safetensors.torch import save

    tensors = {"w": torch.randn(3)}
    pad = 0
    while True:
        data = save(tensors, metadata={"pad": "x" * pad})
        n = int.from_bytes(data[:8], "little")
        if n >= header_len:
            break
        pad += 1
    # safetensors pads the header with spaces to a multiple of 8; pad the JSON to the exact length.
    header = data[8 : 8 + n].rstrip(b" ")
    header = header + b" " * (header_len - len(header))
    blob = header_len.to_bytes(8, "little") + header + data[8 + n :]
    assert blob[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
    path = tmp_path / "m.safetensors"
    path.write_bytes(blob)
    loaded, _ = ckpt.load_tensors(path)
    assert torch.equal(loaded["w"], tensors["w"])


def test_atomic_writes_get_the_mode_of_an_ordinary_file(tmp_path):
    import os
    import stat

    from dgm.core.checkpoint import atomic_write

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write(tmp_path / "atomic.txt", "x")
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(plain).st_mode) and mode & stat.S_IRGRP  # not mkstemp's 0600
