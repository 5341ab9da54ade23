"""Every check of the user's files, before any model is loaded or trained: formats, shapes and dtypes that
do not match, value ranges (rescaled, with a note), NaN / inf, records shared by --train and --holdout,
and too few hold-out records for the FPRs asked. Each failure is a DataError that names the fix (exit 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mia_bench.errors import DataError
from mia_bench.external import files
from mia_bench.external.encoding import Affine, TextTable, image_range, table_range
from mia_bench.external.files import RecordFile
from mia_bench.metrics.privacy import fpr_key

MIN_HOLDOUT = 10  # scored non-members below which no number means anything


@dataclass
class AuditData:
    """The records as every attack sees them, float32 in mia_bench's space ([-1, 1] for the real records).

    train (M, *shape): members, scored; holdout (H, *shape): non-members, scored; reference (R, *shape): the
    attacker's own data (calibration, DOMIAS, shadow models), never scored; synthetic (S, *shape) or None."""

    train: np.ndarray
    holdout: np.ndarray
    reference: np.ndarray
    synthetic: np.ndarray | None
    kind: str  # "image" | "table"
    encoding: Affine | TextTable  # the --train file's: generator and recipe outputs are encoded with it
    header: tuple[str, ...] | None = None  # text tables: the column names
    reference_source: str = "--reference"
    holdout_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows of --holdout scored
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    def encoding_note(self) -> str:
        if isinstance(self.encoding, TextTable):
            return self.encoding.describe()
        if self.kind == "table":
            return self.encoding.label
        return f"pixels rescaled from {self.encoding.label} (the --train file's range) to [-1, 1]"


def needed_holdout(fprs: list[float], *, split: bool) -> int:
    """Hold-out records needed for an FPR of x to be measurable at all, 1/x scored non-members (twice that when
    half of the hold-out becomes the attacker's reference data); below 10/x the record marks it underpowered."""
    need = max([MIN_HOLDOUT, *[math.ceil(1.0 / a - 1e-9) for a in fprs]])
    return 2 * need if split else need


def load(*, train: Path, holdout: Path, synthetic: Path | None, reference: Path | None, fprs: list[float],
         seed: int) -> AuditData:
    """Read and check every file; the scored hold-out and the reference set (half of the hold-out, drawn with
    `seed`, when --reference is not given)."""
    named = {"--train": train, "--holdout": holdout, "--synthetic": synthetic, "--reference": reference}
    read = {what: files.read(p, what) for what, p in named.items() if p is not None}
    _check_kinds(read)
    _check_finite(read)
    shared = _shared_rows(read["--train"], read["--holdout"])
    if shared:
        pairs = ", ".join(f"train {i} = holdout {j}" for i, j in shared[:20])
        raise DataError(f"{len(shared)} record(s) are in both --train and --holdout ({pairs}"
                        f"{', ...' if len(shared) > 20 else ''}); an audit whose non-members are members means "
                        "nothing: remove them from the hold-out file")
    n_hold = read["--holdout"].n
    need = needed_holdout(fprs, split=reference is None)
    if n_hold < need:
        asked = ", ".join(fpr_key(a) for a in fprs) or "any number"
        how = " (half of it becomes the attacker's reference data: give --reference to use all of it)" \
            if reference is None else ""
        raise DataError(f"--holdout has {n_hold} records; {asked} needs at least {need}{how}. Give more "
                        "hold-out records, or gate on a larger FPR (e.g. tpr@10%fpr)")
    data = _encode(read)
    if reference is None:
        perm = np.random.default_rng(seed).permutation(n_hold)
        ref_ids, hold_ids = np.sort(perm[: n_hold // 2]), np.sort(perm[n_hold // 2:])
        data.reference, data.holdout = data.holdout[ref_ids], data.holdout[hold_ids]
        data.holdout_ids, data.reference_source = hold_ids, f"half of --holdout ({ref_ids.size} records, seed {seed})"
        data.notes.append(f"no --reference: the attacker's reference data is {data.reference_source}; the other "
                          f"{hold_ids.size} hold-out records are scored as non-members")
    else:
        data.holdout_ids = np.arange(n_hold)
    return data


def _check_kinds(read: dict[str, RecordFile]) -> None:
    base = read["--train"]
    for what, f in read.items():
        if f.is_text_table != base.is_text_table:
            raise DataError(f"{what} {f.path} is a {'text table' if f.is_text_table else 'numeric array'} but "
                            f"--train {base.path} is not; give every file in the same form")
        if f.is_text_table:
            if f.header != base.header:
                raise DataError(f"{what} {f.path}: columns {list(f.header or ())} differ from --train's "
                                f"{list(base.header or ())}; give every file the same columns in the same order")
        elif f.x.shape[1:] != base.x.shape[1:]:  # type: ignore[union-attr]
            raise DataError(f"{what} {f.path}: records of shape {f.x.shape[1:]} but --train's are "  # type: ignore[union-attr]
                            f"{base.x.shape[1:]}; save every file with the same record shape")  # type: ignore[union-attr]


def _check_finite(read: dict[str, RecordFile]) -> None:
    for what, f in read.items():
        if f.x is None:
            continue
        bad = ~np.isfinite(f.x.reshape(f.n, -1)).all(1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise DataError(f"{what} {f.path}: {rows.size} record(s) hold NaN or inf (rows {rows[:10].tolist()}"
                            f"{' ...' if rows.size > 10 else ''}); drop or repair them before the audit")


def _row_keys(f: RecordFile) -> list[bytes]:
    if f.cells is not None:
        return ["\x1f".join(r).encode() for r in f.cells.tolist()]
    flat = np.ascontiguousarray(f.x.reshape(f.n, -1))  # type: ignore[union-attr]
    return [r.tobytes() for r in flat]


def _shared_rows(train: RecordFile, holdout: RecordFile) -> list[tuple[int, int]]:
    """(train row, holdout row) pairs of identical records."""
    first: dict[bytes, int] = {}
    for i, k in enumerate(_row_keys(train)):
        first.setdefault(k, i)
    return [(first[k], j) for j, k in enumerate(_row_keys(holdout)) if k in first]


def _encode(read: dict[str, RecordFile]) -> AuditData:
    base = read["--train"]
    real = [read[w] for w in ("--train", "--holdout", "--reference") if w in read]
    notes: list[str] = []
    if base.is_text_table:
        table = TextTable.fit(base.header, np.concatenate([f.cells for f in real]))  # type: ignore[arg-type,misc]
        enc = {w: table.encode(f.header, f.cells, w) for w, f in read.items()}  # type: ignore[arg-type]
        encoding: Affine | TextTable = table
        kind = "table"
    elif base.is_image:
        ranges = {w: image_range(f) for w, f in read.items()}
        enc = {w: ranges[w].encode(f.x) for w, f in read.items()}  # type: ignore[arg-type]
        notes += [f"{w}: pixel values read as {r.label}, rescaled to [-1, 1]" for w, r in ranges.items()
                  if r.label != "[-1, 1]"]
        encoding, kind = ranges["--train"], "image"
    else:
        encoding, kind = table_range(real), "table"
        enc = {w: encoding.encode(f.x) for w, f in read.items()}  # type: ignore[arg-type]
    for w, x in enc.items():
        if not np.isfinite(x).all():
            raise DataError(f"{w} {read[w].path}: a numeric cell is inf; drop or repair those rows")
    return AuditData(train=enc["--train"], holdout=enc["--holdout"], reference=enc.get("--reference", enc["--holdout"][:0]),
                     synthetic=enc.get("--synthetic"), kind=kind, encoding=encoding,
                     header=base.header, notes=notes)
