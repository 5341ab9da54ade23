"""Reading the user's record files: .npz (array `x`, optional `y`), .npy, .csv / .parquet tables, or a folder
of PNG / JPEG images. Nothing read here can run code: NumPy files load with allow_pickle=False.

Images come back as (N, C, H, W) in the file's own value range (converted to [-1, 1] by encoding.py);
numeric tables as (N, D); CSV / parquet tables as a header and (N, C) string cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mia_bench.data.tables import read_csv
from mia_bench.errors import DataError
from mia_bench.external.arguments import record_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class RecordFile:
    """One file of records as read. x: (N, C, H, W) images or (N, D) numeric table, in the file's own units;
    header/cells: a text table (N, C) of strings (CSV / parquet), x then None."""

    path: Path
    what: str  # "--train", "--holdout", ...
    x: np.ndarray | None = None
    header: tuple[str, ...] | None = None
    cells: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.x.shape[0] if self.x is not None else self.cells.shape[0])  # type: ignore[union-attr]

    @property
    def is_text_table(self) -> bool:
        return self.cells is not None

    @property
    def is_image(self) -> bool:
        return self.x is not None and self.x.ndim == 4


def read(path: Path | str, what: str) -> RecordFile:
    """The records of `path` (any of FORMATS); a DataError naming the fix when it cannot be read."""
    path = record_path(path, what)  # exists, in one of the formats
    if path.is_dir():
        return RecordFile(path=path, what=what, x=_image_folder(path, what))
    suffix = path.suffix.lower()
    if suffix in (".npz", ".npy"):
        return RecordFile(path=path, what=what, x=_as_records(_numpy(path, what), path, what))
    header, cells = _csv(path, what) if suffix == ".csv" else _parquet(path, what)
    return RecordFile(path=path, what=what, header=header, cells=cells)


def _numpy(path: Path, what: str) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise DataError(f"{what} {path} has arrays {z.files} but no 'x'; save it with "
                                "np.savez(path, x=records[, y=labels])")
            return z["x"]
    except ValueError as e:  # object arrays need pickle: refused, never run
        raise DataError(f"{what} {path} cannot be read without unpickling ({e}); save a numeric array with "
                        "np.save / np.savez") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{what} {path} is not a readable NumPy file ({e}); save it with np.save / np.savez") from None


def _as_records(x: np.ndarray, path: Path, what: str) -> np.ndarray:
    """(N, D) tables stay; (N, H, W) images gain a channel; (N, H, W, C) channel-last images become (N, C, H, W)."""
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{what} {path}: dtype {x.dtype} is not numeric; save numbers (float or integer pixels)")
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{what} {path}: array of shape {x.shape}; records must be (N, D) rows or (N, H, W[, C]) "
                        "images with N >= 1")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = np.transpose(x, (0, 3, 1, 2))
    elif x.ndim > 4:
        raise DataError(f"{what} {path}: array of shape {x.shape}; expected (N, D), (N, H, W), (N, C, H, W) "
                        "or (N, H, W, C)")
    return x.astype(np.float64)


def _image_folder(path: Path, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{what} {path} holds no .png/.jpg/.jpeg files; put the images there, one per record")
    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                arrays.append(np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16") else "RGB")))
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{what} {f} is not a readable image ({e}); remove it or re-save it as PNG") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"{what} {path}: images of different sizes {sorted(shapes)}; resize them to one size")
    return _as_records(np.stack(arrays), path, what)


def _csv(path: Path, what: str) -> tuple[tuple[str, ...], np.ndarray]:
    header, body = read_csv(path, what)
    return tuple(header), np.array(body, dtype=str)


def _parquet(path: Path, what: str) -> tuple[tuple[str, ...], np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{what} {path}: reading parquet needs pyarrow; `pip install pyarrow`, or save the table "
                        "as CSV") from None
    table = pq.read_table(path)
    cols = [np.array([("" if v is None else str(v)) for v in table.column(c).to_pylist()], dtype=str)
            for c in table.column_names]
    return tuple(table.column_names), np.stack(cols, axis=1)
