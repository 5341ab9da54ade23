"""End-to-end runs through the runner and the CLI: records, determinism, reuse, errors."""

import json

import numpy as np
import pytest

from conftest import QUICK, only_attacks, quick, quick_config_dir
from mia_bench.cli import main
from mia_bench.io import load_npz
from mia_bench.results import RunPaths, RunRecord
from mia_bench.runner import run


@pytest.fixture(scope="module")
def none_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("none")
    return out, run(quick("none"), 0, results_dir=out)


def test_record_holds_what_a_reader_needs(none_run):
    out, rec = none_run
    paths = RunPaths.of(out, "digits_v1", "none", 0, rec.variant)
    again = RunRecord.read(paths.record)
    assert again == rec
    assert rec.schema == "mia_bench.record/1" and rec.suite_version == 1
    assert len(rec.split_digest) == 64 and len(rec.config_digest) == 64
    assert rec.config["defense"]["name"] == "none" and rec.config["trainer"]["max_steps"] == 150
    assert rec.environment["packages"]["torch"].startswith("2.13.0")
    assert rec.member_fraction == 0.5 and rec.split_sizes["members"] == 300
    for res in rec.attacks.values():
        m = res["metrics"]
        assert 0 <= m["auc"]["value"] <= 1 and m["auc"]["ci"][0] <= m["auc"]["ci"][1]
        assert m["tpr@0.1%fpr"]["detail"]["underpowered"] is True
    raw = load_npz(paths.scores)
    assert raw["is_member"].sum() == 300 and raw["record_id"].size == 600
    for name in rec.attacks:
        assert raw[f"score/{name}"].shape == (600,)


def test_same_seed_gives_identical_metrics(none_run, tmp_path):
    _, first = none_run
    second = run(quick("none"), 0, results_dir=tmp_path)  # fresh folder: trains again
    assert second.timings["checkpoint_reused"] == 0.0
    for name in first.attacks:
        a, b = first.attacks[name]["metrics"], second.attacks[name]["metrics"]
        assert a == b


def test_rerun_reuses_the_checkpoint_and_gives_the_same_record(none_run):
    out, first = none_run
    again = run(quick("none"), 0, results_dir=out)
    assert again.timings["checkpoint_reused"] == 1.0
    assert again.attacks.keys() == first.attacks.keys()
    for name in first.attacks:
        assert again.attacks[name]["metrics"] == first.attacks[name]["metrics"]


def test_a_different_seed_gives_a_different_split(none_run, tmp_path):
    _, first = none_run
    other = run(quick("memorizer"), 1, results_dir=tmp_path)
    assert other.split_digest != first.split_digest


@pytest.mark.parametrize("argv, message", [
    (["run", "--suite", "digits_v1", "--defense", "nne"], "Unknown defense 'nne'. Did you mean: none"),
    (["run", "--suite", "digits_v1", "--defense", "none", "trainer.max_stepz=3"], "unknown config key 'trainer.max_stepz'"),
    (["run", "--suite", "digits_v1", "--defense", "none", "split.members=1500"], "holds 1797"),
    (["run", "--suite", "digits_v1", "--defense", "none", "--suite", "cifar99"], "Unknown suite 'cifar99'"),
])
def test_cli_errors_exit_non_zero_and_write_nothing(argv, message, tmp_path, capsys):
    code = main([*argv, "--results-dir", str(tmp_path / "r"), *QUICK])
    assert code == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("record.json"))


def test_cli_run_then_leaderboard(tmp_path, capsys):
    r, lb = tmp_path / "r", tmp_path / "lb"
    keep = ("ganleaks_fbb", "logan_wb")  # the leaderboard's mechanics, not the attacks, are under test here
    suites = ["--config-dir", str(quick_config_dir(tmp_path, keep))]  # the quick budget, without overrides
    assert main(["run", "--suite", "digits_v1", "--defense", "memorizer", "--seed", "0", "1", "--results-dir", str(r), "--no-progress",
                 *suites]) == 0
    assert main(["run", "--suite", "digits_v1", "--defense", "none", "--results-dir", str(r), *QUICK,
                 *only_attacks(*keep)]) == 0  # overridden: not official
    assert main(["leaderboard", "--results-dir", str(r), "--leaderboard-dir", str(lb)]) == 0
    out = capsys.readouterr().out
    assert "1 run(s) with overrides left out" in out
    entry = json.loads((lb / "entries" / "digits_v1" / "memorizer.json").read_text())
    assert sorted(entry["seeds"]) == ["0", "1"]
    assert not (lb / "entries" / "digits_v1" / "none.json").exists()
    md = (lb / "LEADERBOARD.md").read_text()
    assert "`memorizer` | *control* | 2 | 1.000 ± 0.000" in md
    assert np.isclose(entry["seeds"]["0"]["attacks"]["logan_wb"]["auc"], 1.0)


def test_attack_or_metric_settings_do_not_force_retraining(none_run):
    out, _ = none_run
    again = run(quick("none", "metrics.bootstrap=5", "release.n_samples=300"), 0, results_dir=out)
    assert again.timings["checkpoint_reused"] == 1.0
    retrained = run(quick("none", "trainer.max_steps=20"), 0, results_dir=out)
    assert retrained.timings["checkpoint_reused"] == 0.0
