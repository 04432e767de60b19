"""Where data lives and how it gets there: the data directory, checksummed resumable downloads, ``fetch``."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from dgm.core.errors import DataError

DEFAULT_DATA_DIR = Path("~/.cache/dgm")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file of a dataset.

    ``path`` is relative to the data directory (the layout of ``../shared/data``). ``alternatives`` are
    other relative paths holding the same data (an uncompressed copy, an ``.npz`` conversion); when one
    of them exists the download is unnecessary.
    """

    path: str
    url: str
    sha256: str
    alternatives: tuple[str, ...] = ()

    def present(self, root: Path) -> bool:
        return any((root / p).exists() for p in (self.path, *self.alternatives))


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else ``$DGM_DATA_DIR``, else ``~/.cache/dgm`` (design.md §5)."""
    if data_dir is None:
        data_dir = os.environ.get("DGM_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


def missing_file_error(name: str, root: Path, path: str, others: tuple[str, ...] = ()) -> DataError:
    """The one-line message for a file that is not there: which file, where, and how to get it."""
    also = f" (or {', '.join(others)})" if others else ""
    return DataError(
        f"{name}: missing file {Path(path).name}{also}: expected in {(root / path).parent}; "
        f"download it with `dgm download {name}` or dgm.data.load({name!r}, split, download=True), "
        f"or point DGM_DATA_DIR at a directory that holds {path}"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: str | os.PathLike, sha256: str, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, verifying its SHA-256, atomically.

    Bytes go to ``dest + ".part"`` in the same directory. An existing ``.part`` is resumed with an HTTP
    ``Range`` request when the server answers 206; a server that ignores ranges answers 200 and the
    download starts over. Only a verified file is moved into place (``os.replace``), so ``dest`` is never
    half-written; on a checksum mismatch the ``.part`` is deleted and any existing ``dest`` left untouched.
    A failed transfer keeps its ``.part`` so the next call resumes it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = offset > 0 and response.status == 206
            length = response.headers.get("Content-Length")
            total = int(length) + (offset if resumed else 0) if length else None
            with (
                open(part, "ab" if resumed else "wb") as f,
                tqdm(
                    total=total,
                    initial=offset if resumed else 0,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                ) as bar,
            ):
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        e.close()  # an HTTPError holds the open response
        if e.code == 416 and offset:  # the .part is already as long as the file (or longer): start over
            part.unlink()
            return download_file(url, dest, sha256, progress)
        raise DataError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, truncated bodies
        raise DataError(f"download of {url} failed: {getattr(e, 'reason', None) or e!r}") from None

    actual = _sha256(part)
    if actual != sha256.lower():
        part.unlink()
        raise DataError(
            f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}; the download was discarded"
        )
    os.replace(part, dest)
    return dest


def fetch(
    name: str,
    data_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Download every missing file of dataset ``name``; return the paths written.

    ``mirror`` (else ``$DGM_DATA_MIRROR``) replaces the upstream URLs: each file is then fetched from
    ``mirror + "/" + relative_path``, i.e. a mirror has the layout of a data directory.
    """
    from dgm.data.registry import dataset_info  # the registry imports this module

    root = resolve_data_dir(data_dir)
    mirror = mirror or os.environ.get("DGM_DATA_MIRROR")
    written = []
    for record in dataset_info(name).files:
        if record.present(root):
            continue
        url = f"{mirror.rstrip('/')}/{record.path}" if mirror else record.url
        written.append(download_file(url, root / record.path, record.sha256, progress=progress))
    return written
