"""What a W&B run shows of a benchmark run: ROC curves, the metrics table, released samples, leaderboard.

Called by mia_bench.tracking on an open run; every function takes the run explicitly (no global state). This
module imports nothing of tracking.py (tracking imports it), so there is no import circle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mia_bench.io import load_npz

GRID_SIDE = 8  # the samples grid shows GRID_SIDE x GRID_SIDE released records
ROC_POINTS = 500  # points kept per ROC table (log-spaced in FPR so the low-FPR end keeps its detail)


def log_results(run: Any, record: Any, paths: Any, info: Any = None) -> None:
    """Summary scalars, per-attack ROC (tables + line charts + a linear/log-log figure), metrics table,
    samples grid."""
    import wandb


    run.summary.update(summary_scalars(record))
    is_member, scores = load_scores(paths.scores)
    curves = {name: roc_points(s, is_member) for name, s in scores.items()}
    payload: dict[str, Any] = {"metrics/table": metrics_table(record)}
    for name, (fpr, tpr) in curves.items():
        fpr, tpr = thin(fpr, tpr)
        table = wandb.Table(columns=["fpr", "tpr"], data=np.c_[fpr, tpr].tolist())
        payload[f"roc/{name}"] = wandb.plot.line(table, "fpr", "tpr", title=f"ROC {name} (linear)")
        payload[f"roc_table/{name}"] = table
    if curves:
        payload["roc/curves"] = wandb.Image(roc_figure(curves, f"{record.defense} seed {record.seed}"))
    grid = samples_grid(paths.samples, info)
    if grid is not None:
        payload["samples/released"] = wandb.Image(grid, caption=f"first {GRID_SIDE ** 2} released records")
    run.log(payload)


def summary_scalars(record: Any) -> dict[str, float]:
    """attack/<name>/<metric> and utility/<name> values, timings/<stage>, wall time."""
    out: dict[str, float] = {}
    for name, res in record.attacks.items():
        for key, m in res["metrics"].items():
            if isinstance(m, dict) and "value" in m:
                out[f"attack/{name}/{key}"] = float(m["value"])
    for key, m in (record.utility or {}).items():
        value = m.get("value") if isinstance(m, dict) else m
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[f"utility/{key}"] = float(value)
    out.update({f"timings/{k}": float(v) for k, v in record.timings.items()})
    out["wall_time_s"] = float(record.wall_time_s)
    return out


def metrics_table(record: Any) -> Any:
    """One row per attack: access, then every metric's value and its interval bounds."""
    import wandb

    keys = sorted({k for res in record.attacks.values() for k, m in res["metrics"].items()
                   if isinstance(m, dict) and "value" in m})
    columns: list[str | int] = ["attack", "access", "variant"]
    for k in keys:
        columns += [k, f"{k} lo", f"{k} hi"]
    rows = []
    for name, res in record.attacks.items():
        row: list[Any] = [name, res.get("access"), res.get("variant")]
        for k in keys:
            m = res["metrics"].get(k, {})
            ci = m.get("ci") or [None, None]
            row += [m.get("value"), ci[0], ci[1]]
        rows.append(row)
    return wandb.Table(columns=columns, data=rows)


def thin(fpr: np.ndarray, tpr: np.ndarray, k: int = ROC_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ~k ROC points, chosen log-uniformly in FPR (the end points are kept)."""
    if fpr.size <= k:
        return fpr, tpr
    low = max(float(fpr[fpr > 0].min()), 1e-6) if (fpr > 0).any() else 1e-6
    grid = np.r_[0.0, np.geomspace(low, 1.0, k - 1)]
    idx = np.unique(np.clip(np.searchsorted(fpr, grid, side="right") - 1, 0, fpr.size - 1))
    return fpr[idx], tpr[idx]


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> Any:
    """Every attack's ROC on linear axes (left) and log-log axes (right, where low-FPR leakage shows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lin, lg) = plt.subplots(1, 2, figsize=(9, 4))
    for name, (fpr, tpr) in curves.items():
        lin.plot(fpr, tpr, label=name)
        pos = (fpr > 0) & (tpr > 0)
        lg.plot(fpr[pos], tpr[pos], label=name)
    floor = min((float(f[f > 0].min()) for f, _ in curves.values() if (f > 0).any()), default=1e-3)
    lin.plot([0, 1], [0, 1], "k:", lw=1, label="chance")
    lg.plot([floor, 1], [floor, 1], "k:", lw=1, label="chance")
    lg.set_xscale("log")
    lg.set_yscale("log")
    for ax, scale in ((lin, "linear"), (lg, "log-log")):
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{title} ({scale})")
    lin.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    image = _to_array(fig)
    plt.close(fig)
    return image


def _to_array(fig: Any) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def samples_grid(samples_path: Path, info: Any = None) -> np.ndarray | None:
    """(H', W', C) uint8 tiling of the first GRID_SIDE^2 released records; rows of a heat map for tables."""
    if not Path(samples_path).is_file():
        return None
    x = load_npz(samples_path)["x"][: GRID_SIDE ** 2]
    if x.size == 0:
        return None
    x = ((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8)
    if x.ndim == 2:  # tabular records (N, D): one row per record, scaled up so a cell is visible
        return np.repeat(np.repeat(x, 8, axis=0), 8, axis=1)[..., None]
    if x.ndim == 3:
        x = x[:, None]
    n, c, h, w = x.shape
    side = GRID_SIDE
    canvas = np.zeros((side * (h + 1) + 1, side * (w + 1) + 1, c), np.uint8)
    for i in range(n):
        r, q = divmod(i, side)
        canvas[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + q * (w + 1): 1 + q * (w + 1) + w] = x[i].transpose(1, 2, 0)
    scale = max(1, 256 // canvas.shape[0])  # 8x8 digits would be a thumbnail otherwise
    return np.repeat(np.repeat(canvas, scale, axis=0), scale, axis=1)


def log_figures(run: Any, figures: Any) -> None:
    """PNG files as W&B images, keyed figures/<file stem> (the leaderboard's frontier figures)."""
    import wandb

    images = {f"figures/{Path(p).stem}": wandb.Image(str(p)) for p in figures}
    if images:
        run.log(images)


def log_leaderboard_tables(run: Any, entries: list[dict[str, Any]]) -> None:
    import wandb

    from mia_bench.leaderboard import leaderboard_rows

    columns, rows = leaderboard_rows(entries)
    run.log({"leaderboard": wandb.Table(columns=list[str | int](columns), data=rows)})


def roc_points(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full empirical ROC (sklearn, no point dropped): fpr, tpr, both (K,) non-decreasing."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(is_member, bool), np.asarray(scores, float), drop_intermediate=False)
    return fpr, tpr


def load_scores(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(is_member (N,) bool, {attack: (N,) float, higher = member}) from a run's scores.npz. Protocol v2's
    (T, P) scores and membership are pooled (flattened), as its metrics are."""
    raw = load_npz(path)
    member = raw["inside"] if "inside" in raw else raw["is_member"]
    return member.astype(bool).ravel(), {k.split("/", 1)[1]: v.ravel() for k, v in raw.items()
                                         if k.startswith("score/")}
