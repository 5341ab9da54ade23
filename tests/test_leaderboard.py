"""The leaderboard is a pure function of its entries (RobustBench-style): recompute and compare."""

import copy
from pathlib import Path

import pytest

from mia_bench.leaderboard import Stat, load_entries, rank, render, worst_case

ROOT = Path(__file__).resolve().parent.parent


def _entry(defense, tprs, aucs, labels=()):
    seeds = {str(i): {"attacks": {"a": {"auc": auc, "tpr@1%fpr": tpr, "underpowered": []},
                                  "b": {"auc": 0.5, "tpr@1%fpr": 0.0, "underpowered": ["tpr@1%fpr"]}},
                      "utility": {}, "privacy_guarantee": {}, "n_members": 10, "n_non_members": 10,
                      "split_digest": "x", "git": "abc", "created_at": "t"}
             for i, (tpr, auc) in enumerate(zip(tprs, aucs, strict=True))}
    return {"schema": "mia_bench.entry/1", "suite": "s", "suite_version": 1, "defense": defense,
            "config_digest": "d", "labels": list(labels), "seeds": seeds,
            "attacks": {"a": {"access": "samples", "variant": "v"}, "b": {"access": "white_box", "variant": "w"}},
            "environment": {"python": "3.11", "device": "cpu", "cpu_count": 2, "packages": {"torch": "2.13.0"}}}


def test_rank_by_worst_case_tpr_then_auc():
    entries = [_entry("leaky", [0.3, 0.5], [0.9, 0.9]), _entry("tight", [0.01, 0.02], [0.6, 0.62]),
               _entry("tie_low_auc", [0.01, 0.02], [0.55, 0.55])]
    assert [e["defense"] for e in rank(entries)] == ["tie_low_auc", "tight", "leaky"]
    assert worst_case(entries[0], "tpr@1%fpr").mean == pytest.approx(0.4)


def test_render_is_deterministic_and_order_free():
    entries = [_entry("none", [0.3, 0.5, 0.4], [0.9, 0.8, 0.85]), _entry("memorizer", [1, 1, 1], [1, 1, 1], ["control"])]
    text = render(entries)
    assert text == render(list(reversed(copy.deepcopy(entries))))
    assert "| 1 | `none` |  | 3 | 0.400 ± 0.248 |" in text
    assert "| – | `memorizer` | *control* | 3 | 1.000 ± 0.000 |" in text
    assert "**Underpowered:** tpr@1%fpr" in text


def test_interval_is_a_t_interval():
    s = Stat.of([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.half_width == pytest.approx(4.302653 * 1.0 / 3**0.5, rel=1e-5)
    assert Stat.of([0.7]).fmt() == "0.700"


def test_committed_leaderboard_is_generated_from_committed_entries():
    md = ROOT / "leaderboard" / "LEADERBOARD.md"
    entries = load_entries(ROOT / "leaderboard" / "entries")
    if not md.exists():
        pytest.skip("no committed leaderboard yet")
    assert md.read_text() == render(entries), "LEADERBOARD.md was edited by hand or is stale: run `make leaderboard`"
