"""Synthetic protocol-v2 leaderboard entries (no training): what leaderboard.build_entry writes, with the
values a test chooses."""

from __future__ import annotations

from typing import Any

LEVELS = ("samples", "generator", "white_box")
FLOOR = {"downstream_accuracy": 0.9, "fid_classifier": 2.0}


def v2_entry(defense: str, op: str = "", index: int = 0, *, tpr: list[float] | tuple[float, ...] = (0.05,),
             acc: float = 0.8, fid: float = 20.0, labels: tuple[str, ...] = (), ci: float | None = None,
             levels: tuple[float, ...] = (0.5, 0.8, 1.0), floor: dict[str, float] | None = None,
             epsilon: float | None = None, suite: str = "s", knob: str = "defense.k",
             default: bool = True) -> dict[str, Any]:
    """One (defense, operating point) entry; `tpr`: the white-box worst-case TPR@1%FPR per seed (samples and
    generator get `levels` times it); `ci`: the bootstrap half-width stored with each seed's value;
    `default`: whether `op` is the defense's default point (what a suite's published grid always holds)."""
    seeds = {}
    for i, t in enumerate(tpr):
        worst = {}
        for level, f in zip(LEVELS, levels, strict=True):
            v = t * f
            worst[level] = {"attack": f"a_{level}", "auc": 0.5 + v / 2, "tpr@1%fpr": v, "tpr@0.1%fpr": v / 4,
                            "canaries": {"auc": 0.5 + v, "tpr@1%fpr": min(1.0, 2 * v), "tpr@0.1%fpr": v},
                            "ci": {} if ci is None else {"tpr@1%fpr": [max(0.0, v - ci), min(1.0, v + ci)]},
                            "canaries_ci": {}}
        seeds[str(i)] = {
            "split_digest": "x", "git": "abc", "created_at": f"2026-01-0{i + 1}T00:00:00+00:00",
            "attacks": {f"a_{lv}": {"auc": 0.5 + t / 2, "tpr@1%fpr": t, "tpr@0.1%fpr": t / 4, "underpowered": [],
                                    "canaries": {"auc": 0.6, "tpr@1%fpr": t, "tpr@0.1%fpr": t / 2}} for lv in LEVELS},
            "utility": {"metrics": {"downstream_accuracy": acc, "fid_classifier": fid}, "main": "fid_classifier",
                        "higher_is_better": {"downstream_accuracy": True, "fid_classifier": False}, "details": {}},
            "privacy_guarantee": {"epsilon": epsilon, "delta": 1e-5} if epsilon is not None else {},
            "n_members": 500, "n_non_members": 500, "worst_case": worst,
            "design": {"digest": "d", "targets": 16, "population": 1000, "canaries": 128, "canary_kind": "shuffled"}}
    return {"schema": "mia_bench.entry/1", "suite": suite, "suite_version": 2, "defense": defense,
            "config_digest": f"{defense}-{op}", "labels": list(labels),
            "operating_point": {"name": op, "index": index, "knob": knob, "settings": {knob: index},
                                "default": default} if op else {},
            "utility_floor": dict(FLOOR if floor is None else floor), "floor_reference": "none",
            "attacks": {f"a_{lv}": {"access": lv, "variant": "v"} for lv in LEVELS}, "seeds": seeds,
            "environment": {"python": "3.11", "device": "cpu", "cpu_count": 2, "packages": {"torch": "2.13.0"}}}


def sweep(defense: str, points: list[tuple[str, float, float, float]], **kw: Any) -> list[dict[str, Any]]:
    """Entries of a defense's sweep: (op, white-box TPR, accuracy, FID) per point, in knob order."""
    return [v2_entry(defense, op, i, tpr=(t, t * 1.1, t * 0.9), acc=a, fid=f, **kw)
            for i, (op, t, a, f) in enumerate(points)]


def suite_entries() -> list[dict[str, Any]]:
    """A small suite: none's early-stopping curve, two defenses, a collapsed DP model, both controls."""
    return [*sweep("none", [("full", 0.30, 0.80, 20), ("half", 0.12, 0.78, 26), ("quarter", 0.05, 0.70, 45)]),
            *sweep("megan", [("lh0.1", 0.25, 0.80, 21), ("lh1", 0.08, 0.76, 30), ("lh3", 0.02, 0.60, 70)],
                   labels=("reconstructed",)),
            *sweep("mixup", [("a0.2", 0.20, 0.79, 22), ("a1", 0.10, 0.75, 33), ("a4", 0.07, 0.73, 38)]),
            *sweep("dpgan", [("nm0.1", 0.01, 0.11, 300), ("eps10", 0.0, 0.10, 405), ("eps1", 0.0, 0.09, 420)],
                   epsilon=10.0),
            v2_entry("memorizer", tpr=(1.0, 1.0), acc=0.9, fid=5, labels=("control",)),
            v2_entry("independent", tpr=(0.01, 0.012), acc=0.8, fid=21, labels=("control",))]
