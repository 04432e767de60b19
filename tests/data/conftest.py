"""Fixtures for the data tests: the real data directory (or a skip) and a local HTTP server."""

from __future__ import annotations

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def real_data_dir(*needed: str) -> Path:
    """``$DGM_DATA_DIR`` when it holds every ``needed`` relative path; otherwise skip the test."""
    env = os.environ.get("DGM_DATA_DIR")
    if not env:
        pytest.skip("DGM_DATA_DIR is not set; real-data tests need e.g. DGM_DATA_DIR=../shared/data")
    root = Path(env).expanduser()
    missing = [p for p in needed if not (root / p).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found under DGM_DATA_DIR={env}")
    return root


class _Handler(SimpleHTTPRequestHandler):
    """Serves files from ``directory``; honours ``Range: bytes=N-`` when the server says so."""

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        ranged = self.headers.get("Range") if self.server.honour_range else None
        start = int(ranged.removeprefix("bytes=").rstrip("-")) if ranged else 0
        if start >= len(data) > 0:
            self.send_error(416)
            return
        if ranged:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


class LocalServer:
    def __init__(self, root: Path):
        self.root = root
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.server.honour_range = True
        self.server.requests = []
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        return self.server.requests

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "served"``; no proxy may intercept it."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "served"
    root.mkdir()
    s = LocalServer(root)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _no_real_network(monkeypatch):
    """Any download a test forgets to point at the local server goes to a closed local port instead."""
    monkeypatch.setenv("DGM_DATA_MIRROR", "http://127.0.0.1:9")
