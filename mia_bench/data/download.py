"""Finding a real dataset's files on disk, or downloading them (user machines only) with checksum checks.

Every real loader lists its files as `RemoteFile`s (name, URL, MD5 as published by the dataset's hosts and
torchvision). `ensure_files` returns their paths when present; when some are missing it downloads them if
`dataset.download: true`, verifying each checksum before the file takes its final name, or else raises a
DataError that says where to put the files and where to get them. Files already on disk are trusted (not
re-hashed on every load); delete a file to have it downloaded and verified again.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mia_bench.errors import DataError

CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name inside the dataset folder
    url: str  # where `download: true` fetches it ("" = cannot be downloaded automatically)
    md5: str  # published checksum, verified after every download


def md5sum(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)  # integrity against the published MD5s, not security
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(remote: RemoteFile, dest: Path, *, timeout: float = 60.0) -> Path:
    """Download `remote` to `dest` through a temporary file; keep it only if its MD5 matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        request = urllib.request.Request(remote.url, headers={"User-Agent": "mia_bench"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
        got = md5sum(Path(tmp))
        if got != remote.md5:
            raise DataError(f"download of {remote.url} has MD5 {got}, expected {remote.md5}; the file was discarded. "
                            "Retry, or fetch it by hand and check it.")
        os.replace(tmp, dest)
    except OSError as e:
        raise DataError(f"cannot download {remote.url}: {e}. Download it by hand into {dest.parent}.") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def ensure_files(folder: Path, files: list[RemoteFile], *, download: bool, dataset: str, how: str) -> list[Path]:
    """Paths of `files` in `folder`; missing ones are downloaded (download=True) or explained (DataError)."""
    missing = [f for f in files if not (folder / f.name).is_file()]
    if missing and not download:
        names = ", ".join(f.name for f in missing)
        raise DataError(f"dataset '{dataset}' is missing {names} in {folder}. {how} "
                        "Or set `dataset.download: true` (in the suite or as an override) to download and verify them.")
    for f in missing:
        if not f.url:
            raise DataError(f"dataset '{dataset}': {f.name} cannot be downloaded automatically. {how}")
        fetch(f, folder / f.name)
    return [folder / f.name for f in files]


def extract_tar(archive: Path, into: Path) -> None:
    """Unpack a (gzipped) tar; the 'data' filter refuses absolute paths, links out of `into` and devices."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"cannot unpack {archive}: {e}. Delete it and download it again.") from None
