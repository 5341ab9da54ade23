"""`mia-bench report RUN_FOLDER`: the audit's report for a benchmark run folder (protocol v2 layout), with
underpowered metrics flagged, rewritten only when this command wrote it."""

from __future__ import annotations

import numpy as np

from mia_bench.cli import main
from mia_bench.data.datasets import load_dataset
from mia_bench.io import atomic_save_npz
from mia_bench.metrics.pooled import pooled_report
from mia_bench.results import RunRecord, environment, now_iso
from mia_bench.schema import DatasetConfig


def _run_folder(folder, *, t: int = 4, p: int = 200) -> None:
    """A protocol v2 run folder as the runner writes it: T targets over P digits records, every record IN for
    half of them; the attack scores members higher (a leaky defense); each target releases its members."""
    rng = np.random.default_rng(0)
    data = load_dataset(DatasetConfig(name="digits"))
    ids = rng.choice(len(data), p, replace=False)
    inside = np.argsort(rng.uniform(size=(t, p)), axis=0) < t // 2
    scores = inside + rng.normal(0, 0.5, (t, p))
    x = data.take(ids)[0].numpy()
    released = np.stack([x[np.flatnonzero(inside[k])[np.arange(120) % inside[k].sum()]] for k in range(t)])
    folder.mkdir(parents=True)
    atomic_save_npz(folder / "scores.npz", record_id=ids, inside=inside, canary=np.zeros(p, bool),
                    **{"score/ganleaks_fbb": scores.astype(np.float32)})
    atomic_save_npz(folder / "samples.npz", targets_x=released)
    metrics = pooled_report(scores, inside, fprs=(0.001, 0.01, 0.1), n_boot=50, seed=0)
    RunRecord(suite="digits", suite_version=2, defense="leaky", seed=0, config={"dataset": {"name": "digits"}},
              config_digest="x", overrides=[], split_digest="y", split_sizes={"population": p}, member_fraction=0.5,
              attacks={"ganleaks_fbb": {"access": "samples", "variant": "fbb", "settings": {}, "metrics": metrics,
                                        "canaries": {}, "seconds": 0.0}},
              labels=[], diagnostics={}, environment=environment(), wall_time_s=0.0, created_at=now_iso(),
              variant="", worst_case={}).write(folder / "record.json")



def test_report_for_a_run_folder_flags_underpowered_metrics_and_shows_exposed_records(tmp_path, capsys):
    run = tmp_path / "results" / "digits" / "leaky" / "seed0"
    _run_folder(run)
    assert main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert md.startswith("<!-- written by mia-bench report -->")
    assert "digits / leaky / seed 0" in md and "samples: ganleaks_fbb" in md
    # 400 pooled non-members: 0.1% FPR needs 10,000 (10/x) -> dagger and footnote; 1% needs 1,000 -> also
    assert "]†" in md and "† underpowered: fewer than 10/x non-member scores" in md
    page = (run / "report.html").read_text()
    assert 'alt="exposed"' in page and "content='mia-bench report'" in page
    assert main(["report", str(run)]) == 0  # its own report: rewritten in place


def test_report_never_replaces_a_report_it_did_not_write(tmp_path, capsys):
    run = tmp_path / "seed0"
    _run_folder(run)
    (run / "report.md").write_text("# my notes\n")
    assert main(["report", str(run)]) == 2
    assert "never replaced: move it away" in " ".join(capsys.readouterr().err.split())
    assert (run / "report.md").read_text() == "# my notes\n" and not (run / "report.html").exists()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "has no record.json" in " ".join(capsys.readouterr().err.split())
