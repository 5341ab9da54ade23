"""One encoding of the user's records into mia_bench's space, shared by every attack.

  images   each file's value range is detected: [0, 255] -> x / 127.5 - 1, [0, 1] -> 2x - 1, [-1, 1] kept
           (said in the audit's notes); anything else is refused. A generator's or recipe model's output is
           taken in the --train file's range, a discriminator is fed records in that range.
  tables   as mia_bench's own tables (data/tables.py): numeric columns min-max scaled to [-1, 1] over the
           real records (train, hold-out, reference), missing cells -> the column median; text columns
           one-hot in {-1, 1} over the categories of the real records (an unseen category: all -1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mia_bench.data.tables import MISSING, _is_numeric
from mia_bench.errors import DataError
from mia_bench.external.files import RecordFile


@dataclass(frozen=True)
class Affine:
    """x_encoded = (x - lo) / (hi - lo) * 2 - 1, per feature (lo, hi broadcast over the record shape)."""

    lo: np.ndarray
    hi: np.ndarray
    label: str  # "[0, 255]", "[-1, 1]", "min-max per column", ...

    def encode(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.lo) / (self.hi - self.lo) * 2 - 1).astype(np.float32)

    def decode(self, x: np.ndarray) -> np.ndarray:
        """Records in mia_bench's space -> the --train file's units (what a --recipe trains on), float64."""
        return (np.asarray(x, np.float64) + 1) / 2 * (self.hi - self.lo) + self.lo

    def decode_torch(self, x):  # noqa: ANN001, ANN201 - torch.Tensor -> torch.Tensor (differentiable)
        import torch

        lo = torch.as_tensor(self.lo, dtype=x.dtype, device=x.device)
        hi = torch.as_tensor(self.hi, dtype=x.dtype, device=x.device)
        return (x + 1) / 2 * (hi - lo) + lo

    def encode_torch(self, x):  # noqa: ANN001, ANN201
        import torch

        lo = torch.as_tensor(self.lo, dtype=x.dtype, device=x.device)
        hi = torch.as_tensor(self.hi, dtype=x.dtype, device=x.device)
        return (x - lo) / (hi - lo) * 2 - 1


_IMAGE_RANGES = ((-1.0, 1.0, "[-1, 1]"), (0.0, 1.0, "[0, 1]"), (0.0, 255.0, "[0, 255]"))


def image_range(f: RecordFile) -> Affine:
    """The narrowest of [-1, 1], [0, 1], [0, 255] that holds every value of the file (a [-1, 1] file whose
    values are all >= 0 is read as [0, 1]: mia_bench says so in the notes)."""
    lo, hi = float(f.x.min()), float(f.x.max())  # type: ignore[union-attr]
    tol = 1e-4
    if lo >= -tol and hi <= 1 + tol:
        a, b, label = 0.0, 1.0, "[0, 1]"
    elif lo >= -1 - tol and hi <= 1 + tol:
        a, b, label = -1.0, 1.0, "[-1, 1]"
    elif lo >= -tol and hi <= 255 + tol:
        a, b, label = 0.0, 255.0, "[0, 255]"
    else:
        raise DataError(f"{f.what} {f.path}: pixel values span [{lo:g}, {hi:g}], outside [0, 255], [0, 1] and "
                        "[-1, 1]; save the images in one of those ranges (e.g. uint8 pixels)")
    return Affine(lo=np.float64(a), hi=np.float64(b), label=label)


def table_range(files: list[RecordFile]) -> Affine:
    """Per-column min-max over the real records of numeric tables (a constant column maps to 0)."""
    x = np.concatenate([f.x for f in files])  # type: ignore[misc]
    lo, hi = x.min(0), x.max(0)
    const = hi <= lo
    return Affine(lo=np.where(const, lo - 1, lo), hi=np.where(const, lo + 1, hi),
                  label="numeric columns min-max scaled to [-1, 1] over the real records")


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool
    lo: float = 0.0
    hi: float = 0.0
    median: float = 0.0
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextTable:
    """A fitted encoding of CSV / parquet columns (numeric min-max, text one-hot), as data/tables.py does."""

    columns: tuple[Column, ...]

    @classmethod
    def fit(cls, header: tuple[str, ...], cells: np.ndarray) -> TextTable:
        cols = []
        for j, name in enumerate(header):
            values = cells[:, j].tolist()
            if _is_numeric(values):
                num = np.array([float(v) for v in values if v not in MISSING] or [0.0])
                cols.append(Column(name=name, numeric=True, lo=float(num.min()), hi=float(num.max()),
                                   median=float(np.median(num))))
            else:
                cols.append(Column(name=name, numeric=False, categories=tuple(sorted(set(values)))))
        return cls(columns=tuple(cols))

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        out, width = [], 0
        for c in self.columns:
            if not c.numeric:
                out.append((width, len(c.categories)))
            width += 1 if c.numeric else len(c.categories)
        return tuple(out)

    def encode(self, header: tuple[str, ...], cells: np.ndarray, what: str) -> np.ndarray:
        """(N, C) strings -> (N, D) float32 in [-1, 1] (values beyond the real records' range go beyond it)."""
        if tuple(header) != tuple(c.name for c in self.columns):
            raise DataError(f"{what}: columns {list(header)} differ from --train's {[c.name for c in self.columns]}; "
                            "give every file the same columns in the same order")
        blocks = []
        for j, c in enumerate(self.columns):
            values = cells[:, j]
            if c.numeric:
                try:
                    num = np.array([float(v) if v not in MISSING else c.median for v in values.tolist()])
                except ValueError:
                    raise DataError(f"{what}: column '{c.name}' holds text but is numeric in the real records; "
                                    "fix the cells or the column") from None
                span = c.hi - c.lo
                blocks.append(((num - c.lo) / span * 2 - 1 if span > 0 else np.zeros_like(num))[:, None])
            else:
                index = {v: k for k, v in enumerate(c.categories)}
                onehot = -np.ones((len(values), len(index)))
                hit = np.array([index.get(v, -1) for v in values.tolist()])
                onehot[np.flatnonzero(hit >= 0), hit[hit >= 0]] = 1.0
                blocks.append(onehot)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def decode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(N, D) encoded records -> {column: (N,) values}: numeric columns back in their units (float64),
        text columns the category of the largest one-hot entry (str). What a --recipe trains on."""
        out, j = {}, 0
        for c in self.columns:
            if c.numeric:
                out[c.name] = (x[:, j].astype(np.float64) + 1) / 2 * (c.hi - c.lo) + c.lo
                j += 1
            else:
                k = len(c.categories)
                out[c.name] = np.asarray(c.categories, dtype=str)[np.argmax(x[:, j:j + k], axis=1)]
                j += k
        return out

    def describe(self) -> str:
        num = [c.name for c in self.columns if c.numeric]
        cat = [c.name for c in self.columns if not c.numeric]
        return (f"numeric columns {num} min-max scaled to [-1, 1] over the real records (missing cells: the "
                f"median); text columns {cat} one-hot in {{-1, 1}} (a category unseen in the real records: all -1)")
