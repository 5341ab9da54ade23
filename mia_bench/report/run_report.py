"""`mia-bench report RUN_FOLDER`: the audit's report.md / report.html for a benchmark run folder
(results/<suite>/<defense>/[<variant>/]seed<N>/ with record.json, scores.npz and samples.npz).

Scores are read as the runner wrote them: protocol v1, (N,) per attack with `is_member`; protocol v2, (T, P)
per attack with `inside` (every population record under every target), pooled into one ROC as the record's
metrics are. The most exposed records are the members with the highest score (v2: mean score over the
targets that trained on them), shown beside the nearest sample their model released; they need the
dataset, loaded from the record's config (skipped, with a note, when it cannot be loaded).

A report is derived data: it is written in the run folder, and rewritten there only when the existing one
was written by `mia-bench report` (its marker line); any other report.md / report.html is never replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mia_bench.errors import MiaBenchError
from mia_bench.report.audit_report import GENERATORS, render

GENERATOR = GENERATORS[1]


def check_overwrite(folder: Path) -> None:
    """Refuse to replace a report.md / report.html this command did not write."""
    for name in ("report.md", "report.html"):
        path = folder / name
        if path.exists() and f"content='{GENERATOR}'" not in path.read_text(errors="replace")[:400] \
                and f"written by {GENERATOR} " not in path.read_text(errors="replace")[:200]:
            raise MiaBenchError(f"{path} exists and was not written by `mia-bench report` (an audit's report or "
                                "your own file); it is never replaced: move it away and rerun")


def _scores(folder: Path, record: Any) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """({score/<attack>: flat scores}, flat is_member, the layout: record_id, inside (T, P) or None)."""
    path = folder / "scores.npz"
    if not path.is_file():
        raise MiaBenchError(f"{folder} has no scores.npz: give a run folder (results/<suite>/<defense>/.../seed<N>/) "
                            "that a finished run wrote")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    raw = {k: v for k, v in arrays.items() if k.startswith("score/") and k[6:] in record.attacks}
    if "inside" in arrays:  # protocol v2: (T, P) scores, pooled
        inside = arrays["inside"].astype(bool)
        ids = arrays.get("record_id", np.arange(inside.shape[1]))
        return {k: v.ravel() for k, v in raw.items()}, inside.ravel(), {"ids": ids, "inside": inside}
    is_member = arrays["is_member"].astype(bool)
    return raw, is_member, {"ids": arrays.get("record_id", np.arange(is_member.size)), "inside": None}


def _exposed(folder: Path, record: Any, scores: np.ndarray, layout: dict, is_member: np.ndarray,
             n: int = 16) -> tuple[list, str | None]:
    """Image rows (record id, score, record, nearest released sample) of the most exposed members; a note
    when they cannot be shown."""
    from mia_bench.data.datasets import load_dataset
    from mia_bench.schema import DatasetConfig

    try:
        data = load_dataset(DatasetConfig(**record.config["dataset"]))
    except Exception as e:  # noqa: BLE001 - any loader failure only drops the picture
        return [], f"the most exposed records are not shown: the dataset could not be loaded ({e})"
    if len(data.info.shape) != 3:
        return [], "the most exposed records are shown for image datasets only"
    ids, inside = layout["ids"], layout["inside"]
    samples_path = folder / "samples.npz"
    with np.load(samples_path, allow_pickle=False) as z:
        released = z["targets_x"] if "targets_x" in z.files else z["x"][None]
    if inside is None:  # v1: one target
        inside, member_scores = is_member[None], np.where(is_member, scores, -np.inf)
    else:
        s = scores.reshape(inside.shape)
        member_scores = np.where(inside.any(0), (s * inside).sum(0) / np.maximum(inside.sum(0), 1), -np.inf)
    in_data = ids < len(data)  # planted canaries live outside the dataset
    member_scores = np.where(in_data, member_scores, -np.inf)
    rows = []
    for j in np.argsort(-member_scores, kind="stable")[:n]:
        if not np.isfinite(member_scores[j]):
            break
        x = data.take(np.array([ids[j]]))[0].numpy()[0]
        rel = released[int(np.argmax(inside[:, j]))]
        near = rel[int(np.argmin(((rel.reshape(len(rel), -1) - x.reshape(1, -1)) ** 2).sum(1)))]
        rows.append((int(ids[j]), float(member_scores[j]), x, near))
    return rows, None


def write_run_report(folder: Path) -> tuple[Path, Path]:
    """Render report.md and report.html into the run folder `folder`; returns their paths."""
    from mia_bench import protocol
    from mia_bench.results import RunRecord

    folder = Path(folder)
    if not (folder / "record.json").is_file():
        raise MiaBenchError(f"{folder} has no record.json: give a run folder (results/<suite>/<defense>/.../seed<N>/)")
    check_overwrite(folder)
    record = RunRecord.read(folder / "record.json")
    if not record.attacks:
        raise MiaBenchError(f"{folder}/record.json holds no attack results: nothing to report")
    if not record.worst_case:  # protocol v1 records: the same per-level pick
        record.worst_case = protocol.worst_case(record.attacks)
    raw, is_member, layout = _scores(folder, record)
    strongest = record.worst_case[list(record.worst_case)[-1]]["attack"]
    rows, note = [], None
    if (folder / "samples.npz").is_file():
        rows, note = _exposed(folder, record, raw[f"score/{strongest}"], layout, is_member)
    inside = layout["inside"]
    how = (f"protocol v2: {inside.shape[0]} targets x {inside.shape[1]} population records, scores pooled into one "
           "ROC; intervals: bootstrap over targets" if inside is not None else
           f"protocol v1: one target, {int(is_member.sum())} members and {int((~is_member).sum())} non-members")
    info = [f"Run: suite {record.suite} (version {record.suite_version}), defense {record.defense}, seed "
            f"{record.seed}{', variant ' + record.variant if record.variant else ''}.", f"Scores: {how}."]
    info += [f"Note: {note}"] if note else []
    title = f"{record.suite} / {record.defense} / seed {record.seed}"
    return render(folder, record=record, raw=raw, is_member=is_member, info=info, gates=[], skipped={},
                  image_rows=rows or None, table_rows=None, generator=GENERATOR, title=title)


