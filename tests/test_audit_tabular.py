"""Tabular audits through --recipe: mia_bench's own defenses (mia_bench.external.recipes) on a CSV table with a
text column, and the CTGAN example (examples/audit_ctgan.py, skipped where `ctgan` is not installed)."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from mia_bench.results import RunRecord

ROOT = Path(__file__).resolve().parents[1]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """train.csv (200 rows) and holdout.csv (300): 6 numeric columns and the text column `diagnosis`."""
    tmp = tmp_path_factory.mktemp("table")
    data = load_breast_cancer()
    header = [c.replace(" ", "_") for c in data.feature_names[:6]] + ["diagnosis"]
    rows = [[f"{v:.4g}" for v in r[:6]] + [str(data.target_names[t])] for r, t in zip(data.data, data.target, strict=True)]
    order = np.random.default_rng(0).permutation(len(rows))
    _write_csv(tmp / "train.csv", header, [rows[i] for i in order[:200]])
    _write_csv(tmp / "holdout.csv", header, [rows[i] for i in order[200:500]])
    return tmp


def _release_of_defense(table: Path, recipe_name: str) -> Path:
    """The user's side: a mia_bench defense trained on train.csv, in the audit's own encoding; its samples
    written back as a CSV with the same columns."""
    from mia_bench.external import inputs, recipes
    from mia_bench.external.attack import data_info

    data = inputs.load(train=table / "train.csv", holdout=table / "holdout.csv", synthetic=None, reference=None,
                       fprs=[], seed=0)
    model = getattr(recipes, recipe_name)(data.train, None, seed=1, info=data_info(data))
    cols = data.encoding.decode(model.sample(600).numpy())
    out = table / f"{recipe_name}.csv"
    _write_csv(out, list(cols), [[f"{v:.6g}" if isinstance(v, float) else str(v) for v in row]
                                 for row in zip(*[c.tolist() for c in cols.values()], strict=True)])
    return out


def test_project_memorizer_on_a_table_is_caught_and_the_report_says_how_columns_are_encoded(table, tmp_path):
    synthetic = _release_of_defense(table, "memorizer_recipe")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "mia_bench", "audit-release", "--no-progress",
                        "--train", str(table / "train.csv"), "--holdout", str(table / "holdout.csv"),
                        "--synthetic", str(synthetic), "--recipe", "mia_bench.external.recipes:memorizer_recipe",
                        "--shadows", "4", "--out", str(tmp_path / "a")], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    record = RunRecord.read(tmp_path / "a" / "record.json")
    for name in ("lira_fbb", "lira_fbb_offline", "ganleaks_fbb_cal", "logan_bb"):
        assert record.attacks[name]["metrics"]["auc"]["value"] >= 0.9, name
    report = (tmp_path / "a" / "report.md").read_text()
    assert "text columns ['diagnosis'] one-hot" in report and "min-max scaled to [-1, 1]" in report
    assert "in mia_bench's space" in report  # the recipe trained on the attacks' own features
    assert "diagnosis=" in report  # exposed records shown as table rows, in the file's units


@pytest.mark.skipif(importlib.util.find_spec("ctgan") is None,
                    reason="the optional extra `ctgan` is not installed (pip install -c constraints.txt "
                           "'mia_bench[ctgan]')")
def test_ctgan_example_audits_a_ctgan_through_its_recipe(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import audit_ctgan

    assert audit_ctgan.main(["--epochs", "20", "--shadows", "4", "--data", str(tmp_path / "data"),
                             "--out", str(tmp_path / "out")]) == 0
    record = RunRecord.read(tmp_path / "out" / "record.json")
    assert {"lira_fbb", "lira_fbb_offline", "ganleaks_fbb_cal"} <= set(record.attacks)
    assert "discriminate" in record.diagnostics["skipped_attacks"]["logan_bb"]  # CTGAN exposes no D
    assert "one-hot" in (tmp_path / "out" / "report.md").read_text()
