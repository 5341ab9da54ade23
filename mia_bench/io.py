"""Atomic file writes and safe reads: a crash never leaves a half-written record, and nothing we load
can execute pickled code."""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mia_bench.errors import CheckpointError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600: give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it where /proc tells it (os.umask can only swap it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode())


def read_versioned_json(path: Path, schema: str, what: str, fix: str = "") -> dict[str, Any]:
    """A JSON object whose "schema" field must equal `schema`; a MiaBenchError naming `what` otherwise."""
    from mia_bench.errors import MiaBenchError

    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MiaBenchError(f"cannot read {what} {path}: {e}{fix}") from None
    if not isinstance(d, dict) or d.get("schema") != schema:
        found = d.get("schema") if isinstance(d, dict) else None
        raise MiaBenchError(f"{path}: {what} schema {found!r}, expected {schema!r}")
    return d


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def atomic_torch_save(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def safe_torch_load(path: Path) -> Any:
    """torch.load restricted to tensors and plain containers (weights_only=True); anything else is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except pickle.UnpicklingError:  # the restricted unpickler met code or a foreign object: it never ran
        raise CheckpointError(f"refusing to load {path}: it holds objects other than tensors and plain values "
                              "(pickled code is never run)") from None
    except Exception as e:  # RuntimeError of a truncated or corrupt zip, EOFError, ...
        kind = "truncated or corrupt" if "zip" in str(e) or isinstance(e, EOFError) else type(e).__name__
        raise CheckpointError(f"refusing to load {path}: it is not a readable mia_bench file ({kind})") from None
