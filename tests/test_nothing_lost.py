"""Nothing a user already has is lost: entries merge, runs with overrides live apart, bad files are moved aside."""

from __future__ import annotations

import json
from pathlib import Path

from mia_bench.leaderboard import load_entries, render, update_entries
from mia_bench.results import RunRecord


def _record(seed: int, *, digest: str = "d" * 64, tpr: float = 0.1, overrides: list[str] | None = None,
            created: str = "2026-01-01T00:00:00+00:00") -> RunRecord:
    metrics = {"auc": {"value": 0.6}, "tpr@1%fpr": {"value": tpr}, "tpr@0.1%fpr": {"value": tpr / 2}}
    return RunRecord(suite="digits", suite_version=1, defense="mixup", seed=seed, config={}, config_digest=digest,
                     overrides=list(overrides or []), split_digest=f"s{seed}",
                     split_sizes={"members": 10, "non_members": 10}, member_fraction=0.5,
                     attacks={"a": {"access": "samples", "variant": "v", "metrics": metrics}},
                     environment={"python": "3.11", "device": "cpu", "cpu_count": 2, "packages": {}},
                     created_at=created)


def test_local_run_of_one_seed_keeps_the_committed_seeds(tmp_path: Path) -> None:
    entries = tmp_path / "entries"
    update_entries([_record(s, tpr=0.2) for s in (0, 1, 2)], entries)  # the committed entry
    committed = json.loads((entries / "digits" / "mixup.json").read_text())
    update_entries([_record(0, tpr=0.4, created="2026-02-01T00:00:00+00:00")], entries)  # a local rerun of seed 0
    entry = json.loads((entries / "digits" / "mixup.json").read_text())
    assert sorted(entry["seeds"]) == ["0", "1", "2"]
    assert entry["seeds"]["0"]["attacks"]["a"]["tpr@1%fpr"] == 0.4  # its own cell is replaced
    assert entry["seeds"]["1"] == committed["seeds"]["1"] and entry["seeds"]["2"] == committed["seeds"]["2"]


def test_other_config_digest_is_kept_beside_and_named(tmp_path: Path) -> None:
    entries = tmp_path / "entries"
    update_entries([_record(s) for s in (0, 1, 2)], entries)
    update_entries([_record(0, digest="e" * 64, tpr=0.9, created="2026-03-01T00:00:00+00:00")], entries)
    files = sorted(p.name for p in (entries / "digits").iterdir())
    assert files == ["mixup.json", f"mixup@{'e' * 12}.json"]
    assert sorted(json.loads((entries / "digits" / "mixup.json").read_text())["seeds"]) == ["0", "1", "2"]
    text = render(load_entries(entries))
    assert f"ranked `{'d' * 12}` (3 seeds); kept `{'e' * 12}` (1 seed)" in text
    assert "0.900" not in text  # the one-seed config is not what the table ranks


def test_records_with_overrides_never_touch_entries(tmp_path: Path) -> None:
    assert update_entries([_record(0, overrides=["trainer.max_steps=5"])], tmp_path / "entries") == []
    assert not (tmp_path / "entries").exists()
