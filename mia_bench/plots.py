"""PNG figures (matplotlib, Agg backend; no 'Software' metadata, so the same inputs give the same bytes):
DWP/DWpre scatter plots beside a run's record, and the privacy-utility plot of a suite beside LEADERBOARD.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    _pyplot().close(fig)
    return Path(path)


def scatter_png(path: Path, x: np.ndarray, y: np.ndarray, *, title: str, xlabel: str, ylabel: str) -> Path:
    """Scatter of paired per-dimension values in [0, 1] with the y = x diagonal."""
    fig, ax = _pyplot().subplots(figsize=(4.2, 4.2), dpi=110)
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, zorder=1)
    ax.scatter(x, y, s=10, alpha=0.7, zorder=2)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=xlabel, ylabel=ylabel, title=title)
    fig.tight_layout()
    return _save(fig, path)


@dataclass(frozen=True)
class TradeoffPoint:
    """One defense on the privacy-utility plot: means and 95% half-widths over seeds (None: one seed)."""

    label: str
    utility: float
    utility_hw: float | None
    privacy: float
    privacy_hw: float | None
    control: bool


def privacy_utility_png(path: Path, points: list[TradeoffPoint], *, title: str, utility_label: str,
                        privacy_label: str) -> Path:
    """Worst-case attack success (y) against the main utility metric (x), one point per defense."""
    fig, ax = _pyplot().subplots(figsize=(6.0, 4.5), dpi=110)
    for p in sorted(points, key=lambda q: q.label):
        style = {"color": "0.55", "marker": "x"} if p.control else {"marker": "o"}
        ax.errorbar([p.utility], [p.privacy], xerr=[[p.utility_hw or 0.0], [p.utility_hw or 0.0]],
                    yerr=[[p.privacy_hw or 0.0], [p.privacy_hw or 0.0]], capsize=3, linestyle="none", **style)
        ax.annotate(p.label + (" (control)" if p.control else ""), (p.utility, p.privacy), xytext=(5, 4),
                    textcoords="offset points", fontsize=8)
    ax.set(xlabel=utility_label, ylabel=privacy_label, title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
