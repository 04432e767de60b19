import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from dgm.core.errors import ConfigError, DataError
from dgm.data import download, fetch, load, registry, resolve_data_dir
from dgm.data.download import download_file


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PAYLOAD = bytes(range(256)) * 4000  # ~1 MB, so the transfer spans several chunks


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DGM_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("DGM_DATA_DIR")
    assert resolve_data_dir() == Path("~/.cache/dgm").expanduser()


def test_download_success(server, tmp_path):
    (server.root / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "f.bin"
    assert download_file(f"{server.url}/f.bin", dest, sha(PAYLOAD), progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert os.listdir(dest.parent) == ["f.bin"]  # no .part left behind


def test_checksum_mismatch_keeps_existing_dest(server, tmp_path):
    (server.root / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"previous content")
    url = f"{server.url}/f.bin"
    with pytest.raises(DataError) as err:
        download_file(url, dest, "0" * 64, progress=False)
    message = str(err.value)
    assert url in message and "0" * 64 in message and sha(PAYLOAD) in message and "\n" not in message
    assert dest.read_bytes() == b"previous content"
    assert not dest.with_name("f.bin.part").exists()


def test_resume_partial_download(server, tmp_path):
    (server.root / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "f.bin"
    dest.with_name("f.bin.part").write_bytes(PAYLOAD[:123457])
    download_file(f"{server.url}/f.bin", dest, sha(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/f.bin", "bytes=123457-")]


def test_restart_when_server_ignores_range(server, tmp_path):
    server.server.honour_range = False
    (server.root / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "f.bin"
    dest.with_name("f.bin.part").write_bytes(b"garbage that must not be kept")
    download_file(f"{server.url}/f.bin", dest, sha(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_is_redownloaded_after_416(server, tmp_path):
    (server.root / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "f.bin"
    dest.with_name("f.bin.part").write_bytes(PAYLOAD + b"extra")
    download_file(f"{server.url}/f.bin", dest, sha(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_missing_remote_file(server, tmp_path):
    url = f"{server.url}/nope.bin"
    with pytest.raises(DataError, match="404") as err:
        download_file(url, tmp_path / "nope.bin", sha(b""), progress=False)
    assert url in str(err.value)
    assert list(tmp_path.iterdir()) == [server.root]


def test_unreachable_host_names_url(tmp_path):
    url = "http://127.0.0.1:9/x.bin"  # nothing listens on the discard port
    with pytest.raises(DataError, match=r"127\.0\.0\.1:9/x\.bin"):
        download_file(url, tmp_path / "x.bin", sha(b""), progress=False)


@pytest.fixture
def fake_shakespeare(server, monkeypatch):
    """A tiny corpus served at the mirror, with the registry's checksum patched to match it."""
    text = ("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40).encode()
    served = server.root / "text" / "tinyshakespeare" / "input.txt"
    served.parent.mkdir(parents=True)
    served.write_bytes(text)
    info = registry.DATASETS["tinyshakespeare"]
    patched = replace(info, files=(replace(info.files[0], sha256=sha(text)),))
    monkeypatch.setitem(registry.DATASETS, "tinyshakespeare", patched)
    monkeypatch.setenv("DGM_DATA_MIRROR", server.url)
    return text


def test_fetch_through_mirror(server, fake_shakespeare, tmp_path):
    written = fetch("tinyshakespeare", tmp_path / "data", progress=False)
    assert written == [tmp_path / "data" / "text" / "tinyshakespeare" / "input.txt"]
    assert written[0].read_bytes() == fake_shakespeare
    assert fetch("tinyshakespeare", tmp_path / "data", progress=False) == []  # nothing missing any more
    assert len(server.requests) == 1


def test_fetch_mirror_argument_and_nothing_to_fetch(server, fake_shakespeare, tmp_path, monkeypatch):
    monkeypatch.delenv("DGM_DATA_MIRROR")
    fetch("tinyshakespeare", tmp_path, mirror=server.url + "/", progress=False)
    assert (tmp_path / "text" / "tinyshakespeare" / "input.txt").exists()
    assert fetch("moons", tmp_path) == []
    with pytest.raises(ConfigError, match="valid names"):
        fetch("no-such-set", tmp_path)


def test_fetch_uses_upstream_url_without_mirror(monkeypatch, tmp_path):
    monkeypatch.delenv("DGM_DATA_MIRROR")
    calls = []
    monkeypatch.setattr(
        download, "download_file", lambda url, dest, sha256, progress: calls.append(url) or dest
    )
    fetch("binarized-mnist", tmp_path)
    assert calls == [
        f"http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{s}.amat"
        for s in ("train", "valid", "test")
    ]


def test_fetch_skips_files_with_an_alternative(monkeypatch, tmp_path):
    (tmp_path / "binarized_mnist").mkdir()
    (tmp_path / "binarized_mnist" / "binarized_mnist.npz").write_bytes(b"")
    monkeypatch.setattr(download, "download_file", lambda *a, **k: pytest.fail("nothing should download"))
    assert fetch("binarized-mnist", tmp_path) == []


def test_load_downloads_end_to_end(server, fake_shakespeare, tmp_path):
    with pytest.raises(DataError, match="dgm download tinyshakespeare"):
        load("tinyshakespeare", data_dir=tmp_path)
    ds = load("tinyshakespeare", "train", data_dir=tmp_path, download=True, seq_len=16)
    vocab = "".join(sorted(set(fake_shakespeare.decode())))
    assert ds.vocab == vocab and ds.support == f"categorical({len(vocab)})"
    assert ds.x.shape == (int(0.9 * len(fake_shakespeare)) // 16, 16)
