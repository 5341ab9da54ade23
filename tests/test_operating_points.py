"""Operating points: every defense declares a sweep of its privacy knob; each point has its own config,
run folder and leaderboard entry; `--sweep` runs them all; a bad name stops before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import cli_without_torch, quick_config_dir
from mia_bench.cli import main
from mia_bench.config import defense_sweep, load_run
from mia_bench.errors import ConfigError
from mia_bench.leaderboard import load_entries, update_entries
from mia_bench.results import RunRecord, find_records
from mia_bench.schema import CONTROLS
from mia_bench.sweep import parse

SUITE_DEFENSES = [d for d in load_run(suite="digits", defense="none").config.defenses if d not in CONTROLS]


@pytest.mark.parametrize("defense", SUITE_DEFENSES)
def test_every_defense_sweeps_its_knob_over_distinct_configs(defense: str) -> None:
    sweep = defense_sweep(defense)
    assert sweep is not None and len(sweep.points) >= 3 and sweep.default in sweep.names()
    runs = [load_run(suite="digits", defense=defense, operating_point=name) for name in sweep.names()]
    assert len({r.digest() for r in runs}) == len(runs), "each point is its own config"
    assert len({r.variant for r in runs}) == len(runs), "and its own run folder"
    assert [r.variant for r in runs if r.operating_point.is_default] == [""]  # the default keeps the plain folder
    assert load_run(suite="digits", defense=defense).point_name == sweep.default


def test_the_controls_have_no_sweep() -> None:
    assert all(defense_sweep(c) is None for c in CONTROLS)
    with pytest.raises(ConfigError, match="declares no operating points"):
        load_run(suite="digits", defense="memorizer", operating_point="x")


def test_early_stopping_scales_the_suite_budget_after_the_overrides() -> None:
    steps = {p: load_run(suite="digits", defense="none", operating_point=p).config.trainer.max_steps
             for p in ("full", "half", "quarter", "eighth")}
    assert steps == {"full": 4000, "half": 2000, "quarter": 1000, "eighth": 500}
    quick = load_run(suite="digits", defense="none", operating_point="quarter", overrides=["trainer.max_steps=100"])
    assert quick.config.trainer.max_steps == 25


def test_a_point_sets_the_knob_and_nothing_else() -> None:
    lo, hi = (load_run(suite="digits", defense="megan", operating_point=p) for p in ("lh0.1", "lh3"))
    assert (lo.defense_params.lambda_h, hi.defense_params.lambda_h) == (0.1, 3.0)
    a, b = lo.to_dict(), hi.to_dict()
    assert {k for k in a["defense"] if a["defense"][k] != b["defense"][k]} == {"lambda_h"}


@pytest.mark.parametrize("node, message", [
    ({"points": {"a": {"defense.x": 1}, "b": {"defense.x": 2}}}, "at least 3"),
    ({"points": {"a": {"defense.x": 1}, "b": {"defense.x": 1}, "c": {"defense.x": 3}}}, "the same settings"),
    ({"default": "z", "points": {"a": {"defense.x": 1}, "b": {"defense.x": 2}, "c": {}}}, "no operating point 'z'"),
    ({"points": {"A b": {}, "b": {"defense.x": 2}, "c": {"defense.x": 3}}}, "start with a lowercase letter"),
    ({"points": {"a": {"budget": 2}, "b": {"defense.x": 2}, "c": {}}}, "fraction in"),
])
def test_a_malformed_sweep_names_the_fix(node: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse("d", node, "d.yaml")


def test_a_bad_point_name_stops_with_the_valid_ones_before_torch_is_imported(tmp_path: Path) -> None:
    argv = ["run", "--suite", "digits", "--defense", "megan", "--op", "lh9", "--results-dir", str(tmp_path / "r")]
    proc = cli_without_torch(argv)
    assert proc.returncode == 2, proc.stderr
    assert "no operating point 'lh9'" in proc.stderr and "lh0.1, lh1, lh3" in proc.stderr
    assert not (tmp_path / "r").exists()


def _record(point: str, seed: int, *, default: bool, tpr: float = 0.1) -> RunRecord:
    metrics = {"auc": {"value": 0.6}, "tpr@1%fpr": {"value": tpr}, "tpr@0.1%fpr": {"value": tpr / 2}}
    return RunRecord(suite="digits", suite_version=2, defense="megan", seed=seed, config={},
                     config_digest=f"digest-{point}", overrides=[], split_digest="s", split_sizes={},
                     member_fraction=0.5, attacks={"a": {"access": "samples", "variant": "v", "metrics": metrics}},
                     environment={}, created_at=f"2026-01-0{seed + 1}T00:00:00+00:00",
                     operating_point={"name": point, "index": 0, "knob": "k", "settings": {}, "default": default})


def test_points_get_their_own_entries_and_merging_one_never_drops_another(tmp_path: Path) -> None:
    entries = tmp_path / "entries"
    update_entries([_record("lh1", s, default=True) for s in (0, 1)] + [_record("lh3", 0, default=False)], entries)
    assert sorted(p.name for p in (entries / "digits").iterdir()) == ["megan.json", "megan@lh3.json"]
    update_entries([_record("lh3", 1, default=False, tpr=0.3)], entries)  # one more seed of one point
    by_point = {e["operating_point"]["name"]: e for e in load_entries(entries)}
    assert sorted(by_point["lh1"]["seeds"]) == ["0", "1"] and sorted(by_point["lh3"]["seeds"]) == ["0", "1"]


def test_a_default_point_beside_an_older_entry_takes_its_point_name(tmp_path: Path) -> None:
    entries = tmp_path / "entries"
    update_entries([_record("", 0, default=True)], entries)  # e.g. the committed v1-era entry, no sweep
    update_entries([_record("lh1", 0, default=True)], entries)
    assert sorted(p.name for p in (entries / "digits").iterdir()) == ["megan.json", "megan@lh1.json"]


def test_sweep_runs_every_operating_point_into_its_own_folder_and_entry(tmp_path: Path) -> None:
    config_dir = quick_config_dir(tmp_path, keep=("ganleaks_fbb",))
    suite = config_dir / "digits_v1.yaml"
    OmegaConf.save(OmegaConf.merge(OmegaConf.load(suite), {"utility": {"enabled": False},
                                                           "trainer": {"max_steps": 40}}), suite)
    r, lb = tmp_path / "r", tmp_path / "lb"
    assert main(["run", "--suite", "digits_v1", "--defense", "none", "--sweep", "--results-dir", str(r),
                 "--config-dir", str(config_dir), "--no-progress", "--wandb", "off"]) == 0
    records = {RunRecord.read(p).operating_point["name"]: p.parent.parent.name for p in find_records(r)}
    assert records == {"full": "none", "half": "op-half", "quarter": "op-quarter", "eighth": "op-eighth"}
    steps = {RunRecord.read(p).operating_point["name"]: RunRecord.read(p).config["trainer"]["max_steps"]
             for p in find_records(r)}
    assert steps == {"full": 40, "half": 20, "quarter": 10, "eighth": 5}
    assert main(["leaderboard", "--results-dir", str(r), "--leaderboard-dir", str(lb)]) == 0
    names = sorted(p.name for p in (lb / "entries" / "digits_v1").iterdir())
    assert names == ["none.json", "none@eighth.json", "none@half.json", "none@quarter.json"]
    assert json.loads((lb / "entries" / "digits_v1" / "none@half.json").read_text())["operating_point"]["name"] == "half"


def test_the_published_grid_is_each_default_point_and_every_point_of_the_suites_sweeps(tmp_path: Path) -> None:
    """`make grid` runs the digits suite's published grid: every defense of `defenses:` at its default point,
    and dpgan (leaderboard.sweeps, the DP baseline) at every point; POINTS=all adds the other points of
    every sweep, POINTS=default drops dpgan's; an unknown value names the three."""
    from mia_bench.grid import plan, published_sweeps, suite_defenses

    def cells(points: str) -> set[tuple[str, str]]:
        todo, done = plan(suite="digits", defenses=["all"], seeds=[0], overrides=[], results_dir=tmp_path,
                          points=points)
        assert not done
        return {(c.defense, c.operating_point) for c in todo}

    names = suite_defenses("digits")
    assert published_sweeps("digits") == ["dpgan"]
    dp = {("dpgan", "" if p.is_default else p.name) for p in defense_sweep("dpgan").points}
    default = {(d, "") for d in names}
    every = {(d, "" if p.is_default else p.name) for d in names if (s := defense_sweep(d)) for p in s.points}
    every |= {(d, "") for d in names if defense_sweep(d) is None}
    assert cells("default") == default
    assert cells("published") == default | dp and len(dp) >= 3
    assert cells("all") == every and len(every) > len(default | dp)
    with pytest.raises(ConfigError, match="'published', 'all' or 'default'"):
        plan(suite="digits", defenses=["none"], seeds=[0], overrides=[], results_dir=tmp_path, points="some")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "x.yaml").write_text("defenses: [none, dpgan]\nleaderboard: {sweeps: [dpgann]}\n")
    with pytest.raises(ConfigError, match=r"leaderboard.sweeps names \['dpgann'\], not in its `defenses:`"):
        published_sweeps("x", tmp_path / "cfg")
