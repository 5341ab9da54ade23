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


@dataclass(frozen=True)
class ExposedRecord:
    """One of the most exposed records: the record, its nearest released sample, and its scores."""

    record: np.ndarray  # (*shape) in [-1, 1]
    nearest: np.ndarray  # the nearest sample of a target that trained on it
    gap: float  # mean score IN minus OUT, in the attack's within-group spread
    record_id: int
    canary: bool


def _image(a: np.ndarray) -> tuple[np.ndarray, str | None]:
    a = (np.clip(np.asarray(a, dtype=float), -1, 1) + 1) / 2
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    return a, ("gray" if a.ndim == 2 else None)


def exposure_png(path: Path, rows: list[ExposedRecord], *, title: str) -> Path:
    """The most exposed records beside their nearest released sample: image pairs (records of images), or
    a table of values (tabular records), 4 pairs per row, each captioned with its gap and id."""
    if not (rows and rows[0].record.ndim >= 2):
        return _exposure_table(path, rows, title=title)
    return _save(exposure_grid(rows, title=title), path)


def exposure_grid(rows: list[ExposedRecord], *, title: str) -> Any:
    """The figure of exposure_png for records of images (one row of 4 pairs per 4 records)."""
    plt = _pyplot()
    cols = 4
    n_rows = max(1, -(-len(rows) // cols))
    # constrained layout keeps each pair's two-line caption clear of the images above it (tight_layout
    # with a suptitle let them overprint); a row is an image (1.05 in) plus its caption
    fig, axes = plt.subplots(n_rows, 2 * cols, figsize=(2 * cols * 1.05, n_rows * 1.45 + 0.5), dpi=130,
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for i, r in enumerate(rows):
        a, b = axes[i // cols, 2 * (i % cols)], axes[i // cols, 2 * (i % cols) + 1]
        for ax, img in ((a, r.record), (b, r.nearest)):
            arr, cmap = _image(img)
            ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        a.set_title(f"#{r.record_id}{' canary' if r.canary else ''}\ngap {r.gap:.1f}", fontsize=6.5, loc="left")
        b.set_title("nearest\nsample", fontsize=6.5, loc="left", color="0.35")
    fig.suptitle(title, fontsize=8, x=0.01, ha="left")
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.04, hspace=0.02, wspace=0.02)
    return fig


def _exposure_table(path: Path, rows: list[ExposedRecord], *, title: str) -> Path:
    plt = _pyplot()
    width = min(rows[0].record.size if rows else 1, 12)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * width, 0.3 * (2 * len(rows) + 2)), dpi=130)
    ax.set_axis_off()
    cells, labels = [], []
    for r in rows:
        for name, v in (("record", r.record), ("nearest", r.nearest)):
            cells.append([f"{x:.2f}" for x in np.asarray(v).ravel()[:width]])
            labels.append(f"#{r.record_id} {name}" + (" (canary)" if r.canary and name == "record" else "")
                          + (f" gap {r.gap:.1f}" if name == "record" else ""))
    if cells:
        table = ax.table(cellText=cells, rowLabels=labels, loc="upper left", cellLoc="right")
        table.auto_set_font_size(False)
        table.set_fontsize(6)
    ax.set_title(title + (f" (first {width} columns)" if rows and rows[0].record.size > width else ""),
                 fontsize=8, loc="left")
    fig.tight_layout()
    return _save(fig, path)
