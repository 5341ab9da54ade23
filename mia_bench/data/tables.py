"""Tables: a binary medical-style table (records x 0/1 codes) and mixed-type CSVs (UCI Adult, or any CSV).

binary_table  `<root>/binary_table/<options.file>`: an NPZ with `x` (N, D) 0/1 (optional `y` (N,) labels)
              or a CSV with a header row of code names and 0/1 cells (optional `options.label` column as y).
              Records are encoded as 2x - 1 in {-1, 1}; DWP/DWpre apply (DataInfo.binary).
tabular_csv   `<root>/tabular_csv/<options.file>` with a header row; `options.label` names the class column.
adult         UCI Adult (`adult.data` + `adult.test`, 48,842 records), label: income > 50K.
Mixed encoding: numeric columns min-max scaled to [-1, 1] over the whole file (missing cells take the
column median); categorical columns (non-numeric ones, or `options.categorical`) one-hot in {-1, 1},
with "?" / "" as a category of its own; DataInfo.categorical holds the one-hot spans.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from mia_bench.data.datasets import DATASETS, ArrayDataset, DataInfo, DataKind, DatasetConfig, reject_options
from mia_bench.data.download import RemoteFile, ensure_files
from mia_bench.errors import DataError

MISSING = ("", "?", "NA", "nan")
ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                 "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
                 "income"]
_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
ADULT_FILES = [RemoteFile("adult.data", _UCI + "adult.data", "5d7c39d7b8804f071cdd1f2a7c460872"),
               RemoteFile("adult.test", _UCI + "adult.test", "35238206dfdf7f1fe215bbb874adecdc")]


def _path(cfg: DatasetConfig, sub: str, default: str) -> Path:
    file = Path(str(cfg.options.get("file", default)))
    return file if file.is_absolute() else Path(cfg.root) / sub / file


def read_csv(path: Path, what: str = "") -> tuple[list[str], list[list[str]]]:
    """(header, rows of stripped cells) of a CSV file; blank lines skipped. what: how errors name the file."""
    name = f"{what} {path}" if what else str(path)
    with path.open(newline="") as f:
        rows = [[c.strip() for c in r] for r in csv.reader(f, skipinitialspace=True) if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DataError(f"{name} needs a header row and at least one record")
    header, body = rows[0], rows[1:]
    bad = next((i for i, r in enumerate(body, start=2) if len(r) != len(header)), None)
    if bad is not None:
        raise DataError(f"{name}:{bad}: {len(body[bad - 2])} cells, the header has {len(header)}; every row needs "
                        "one cell per column")
    return header, body


def _labels(values: list[str], where: str) -> tuple[np.ndarray, list[str]]:
    classes = sorted(set(values))
    if len(classes) < 2:
        raise DataError(f"{where}: the label column has a single value {classes}; choose another label")
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in values], np.int64), classes


def _binary_source(path: Path, label: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw cells and optional labels of a binary table: NPZ arrays x[, y], or a CSV (label column -> y)."""
    if path.suffix == ".npz":
        from mia_bench.io import load_npz

        blob = load_npz(path)
        if "x" not in blob:
            raise DataError(f"{path} has no array 'x' (keys: {sorted(blob)})")
        if label:
            raise DataError("options.label applies to CSV tables; store NPZ labels as array 'y'")
        return np.asarray(blob["x"]), blob.get("y")
    header, body = read_csv(path)
    x = np.array(body)
    if not label:
        return x, None
    if label not in header:
        raise DataError(f"{path} has no column '{label}'; columns start {header[:5]}")
    y, _ = _labels(list(x[:, header.index(label)]), str(path))
    return np.delete(x, header.index(label), axis=1), y


# ---- binary table ---------------------------------------------------------------------------------
@DATASETS.register("binary_table")
def load_binary_table(cfg: DatasetConfig) -> ArrayDataset:
    """Binary medical-style table (records x 0/1 codes, e.g. MIMIC-III diagnoses) from an NPZ or CSV you provide."""
    reject_options(cfg, {"file", "label"})
    path = _path(cfg, "binary_table", "data.npz")
    if not path.is_file():
        raise DataError(f"binary table {path} not found. Provide the records x codes 0/1 matrix there as an NPZ "
                        "(np.savez(path, x=matrix[, y=labels])) or a CSV with a header of code names; MIMIC-III needs "
                        "credentialed access (physionet.org), build its matrix with medGAN's process_mimic.py (binary "
                        "mode) and save it as NPZ. It cannot be downloaded automatically. Or set dataset.options.file.")
    x, y = _binary_source(path, cfg.options.get("label"))
    try:
        values = x.astype(np.float64)
    except ValueError:
        raise DataError(f"{path}: cells must be 0 or 1") from None
    if values.ndim != 2 or not np.isin(values, (0, 1)).all():
        raise DataError(f"{path}: expected a 2-D table of 0/1 codes, got shape {values.shape} with other values")
    yt = torch.zeros(values.shape[0], dtype=torch.int64) if y is None else torch.as_tensor(np.asarray(y, np.int64))
    info = DataInfo(name="binary_table", shape=(values.shape[1],), n_classes=int(yt.max()) + 1,
                    kind=DataKind.TABULAR, binary=True)
    return ArrayDataset(x=torch.from_numpy(values.astype(np.float32) * 2 - 1), y=yt, info=info)


# ---- mixed-type tables -----------------------------------------------------------------------------
def _is_numeric(values: list[str]) -> bool:
    try:
        [float(v) for v in values if v not in MISSING]
    except ValueError:
        return False
    return True


def encode_mixed(header: list[str], rows: list[list[str]], *, label: str, categorical: list[str] | None,
                 drop: list[str], where: str) -> tuple[np.ndarray, np.ndarray, tuple[tuple[int, int], ...]]:
    """Rows of strings -> x (N, D) float32 in [-1, 1], y (N,) int64, one-hot spans (start, size)."""
    unknown = [c for c in [label, *drop, *(categorical or [])] if c not in header]
    if unknown:
        raise DataError(f"{where}: no column(s) {unknown}; columns are {header}")
    cols = list(zip(*rows, strict=True))
    y, _ = _labels(list(cols[header.index(label)]), where)
    blocks, spans, width = [], [], 0
    for j, name in enumerate(header):
        if name == label or name in drop:
            continue
        values = list(cols[j])
        numeric = _is_numeric(values)
        if categorical is not None and name not in categorical and not numeric:
            raise DataError(f"{where}: column '{name}' is not numeric; list it in options.categorical")
        if (name in categorical) if categorical is not None else not numeric:
            index = {c: k for k, c in enumerate(sorted(set(values)))}
            onehot = -np.ones((len(values), len(index)), np.float32)
            onehot[np.arange(len(values)), [index[v] for v in values]] = 1.0
            blocks.append(onehot)
            spans.append((width, len(index)))
            width += len(index)
            continue
        num = np.array([float(v) if v not in MISSING else np.nan for v in values])
        num[np.isnan(num)] = np.nanmedian(num) if np.isfinite(num).any() else 0.0
        lo, hi = num.min(), num.max()
        blocks.append(((num - lo) / (hi - lo) * 2 - 1 if hi > lo else np.zeros_like(num))[:, None].astype(np.float32))
        width += 1
    return np.concatenate(blocks, axis=1), y, tuple(spans)


def _mixed_dataset(name: str, x: np.ndarray, y: np.ndarray, spans: tuple[tuple[int, int], ...]) -> ArrayDataset:
    info = DataInfo(name=name, shape=(x.shape[1],), n_classes=int(y.max()) + 1, kind=DataKind.TABULAR,
                    categorical=spans)
    return ArrayDataset(x=torch.from_numpy(x), y=torch.from_numpy(y), info=info)


@DATASETS.register("tabular_csv")
def load_tabular_csv(cfg: DatasetConfig) -> ArrayDataset:
    """Mixed-type table from a CSV with a header row; options.label names the class column."""
    reject_options(cfg, {"file", "label", "categorical", "drop"})
    path = _path(cfg, "tabular_csv", "data.csv")
    if not path.is_file():
        raise DataError(f"table {path} not found: put a CSV with a header row there (or set dataset.options.file)")
    if not cfg.options.get("label"):
        raise DataError("dataset 'tabular_csv' needs options.label, the name of the class column")
    header, rows = read_csv(path)
    cat = cfg.options.get("categorical")
    x, y, spans = encode_mixed(header, rows, label=str(cfg.options["label"]), drop=list(cfg.options.get("drop", [])),
                               categorical=None if cat is None else list(cat), where=str(path))
    return _mixed_dataset("tabular_csv", x, y, spans)


def read_adult(path: Path) -> list[list[str]]:
    """adult.data / adult.test rows: comma-separated, no header; the test file starts with a '|' line and
    ends its labels with '.'."""
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("|"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(ADULT_COLUMNS):
            raise DataError(f"{path}:{i}: {len(cells)} fields, expected {len(ADULT_COLUMNS)}")
        cells[-1] = cells[-1].rstrip(".")
        rows.append(cells)
    return rows


@DATASETS.register("adult")
def load_adult(cfg: DatasetConfig) -> ArrayDataset:
    """UCI Adult census records (48,842; mixed numeric/categorical), label: income > 50K."""
    reject_options(cfg, {"drop"})
    folder = Path(cfg.root) / "adult"
    how = f"Download adult.data and adult.test from {_UCI} into {folder}."
    paths = ensure_files(folder, ADULT_FILES, download=cfg.download, dataset="adult", how=how)
    rows = [r for p in paths for r in read_adult(p)]
    x, y, spans = encode_mixed(ADULT_COLUMNS, rows, label="income", drop=list(cfg.options.get("drop", [])),
                               categorical=None, where=str(folder))
    return _mixed_dataset("adult", x, y, spans)
