"""Privacy-utility frontier figures of a protocol-v2 suite, one PNG per threat model (a pure function of
the entries: the same entries give the same bytes).

Every operating point of every defense: worst-case TPR at 1% FPR at the threat model's access level (log
axis, with its interval; the memorizer control, off that scale, named at the top edge) against the
suite's first floor metric (with its interval over seeds); one colour and marker per defense, the points
of a defense joined in knob order, `none`'s early-stopping curve in black, the Pareto front of the
defenses' points, the utility floor, the chance line TPR = FPR = 1%, and the `independent` control's
interval as a grey band (a point inside it is not separated from a model that never saw its records:
the worst case over many attacks sits above 1% even at chance).
Operating-point names label the points of the Pareto front and of `none`'s curve only: most points sit
in one cluster near chance, where a label on every point overprints the others (a point's defense is
its colour and marker; every point's name is in the leaderboard's tables).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mia_bench.report.pages import _sweeps, frontier_name, published, utility_metrics
from mia_bench.report.plots import _pyplot, _save
from mia_bench.report.ranking import LEVELS, NULL_CONTROL, Floor, Point, pareto_front, suite_points

TPR1 = "tpr@1%fpr"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")


@dataclass(frozen=True)
class Dot:
    """One point of the figure: utility (mean, half-width) and privacy (mean, interval), as drawn."""

    defense: str
    name: str
    control: bool
    u: float
    u_hw: float
    p: float
    p_lo: float
    p_hi: float


def dots(points: list[Point], level: str, metric: str) -> list[Dot]:
    out = []
    for pt in points:
        u, pr = pt.utility(metric), pt.privacy(level, TPR1)
        if math.isnan(u.mean) or math.isnan(pr.mean):
            continue
        out.append(Dot(pt.defense, pt.name, pt.control, u.mean, u.half_width or 0.0, pr.mean, pr.lo, pr.hi))
    return out


def _palette(n: int) -> list[Any]:
    """n distinct colours: tab10 without its grey (the controls are drawn grey), then tab20's light tones."""
    plt = _pyplot()
    tab10, tab20 = plt.get_cmap("tab10"), plt.get_cmap("tab20")
    colours = [tab10(i) for i in range(10) if i != 7] + [tab20(i) for i in range(1, 20, 2) if i != 15]
    return [colours[i % len(colours)] for i in range(n)]


def _styles(defenses: list[str]) -> dict[str, dict[str, Any]]:
    """A fixed colour and marker per defense (same in every figure of the suite); `none` in black. Pass the
    defenses that are not controls (controls are drawn grey), so that each gets a colour of its own."""
    others = [d for d in defenses if d != "none"]
    colours = _palette(len(others))
    out = {d: {"color": colours[i], "marker": MARKERS[i % len(MARKERS)]} for i, d in enumerate(others)}
    out["none"] = {"color": "black", "marker": "o"}
    return out


def draw(ax: Any, ds: list[Dot], floor: Floor, metric: str, styles: dict[str, dict[str, Any]],
         curves: frozenset[str] = frozenset({"none"})) -> tuple[float, float]:
    """Draw the dots on `ax`; returns the y range drawn (zeros are drawn at its bottom, on the log axis).
    Named: the Pareto front's points and every point of the `curves` defenses (none's budgets, the DP
    baseline's sweep), so a reader can tell which epsilon each point of the yardstick is.
    The top is set by the defenses and the negative control, not by the memorizer (TPR 1, which would
    squash every defense into the bottom decade): a control above it is drawn at the top edge and named
    with its value."""
    positive = [v for d in ds for v in (d.p, d.p_lo) if v > 0]
    y_min = min([*positive, 1e-2]) / 2
    scaled = [d.p_hi for d in ds if not d.control or d.defense == NULL_CONTROL]
    y_top = min(1.5, max([*scaled, 0.025]) * 2)
    y_cap = y_top / 1.3  # the highest point drawn, a margin below the top edge
    clip = lambda v: min(max(v, y_min), y_cap)  # noqa: E731
    for d in ds:
        if d.control and d.p > y_cap:
            ax.annotate(f"{d.defense} (control): {d.p:.3f}, off the scale ↑", (d.u, y_cap),
                        xytext=(-4, -10), textcoords="offset points", fontsize=6.5, color="0.35", ha="right")
    defended = [d for d in ds if not d.control]
    front = pareto_front([d.u for d in defended], [d.p for d in defended],
                         higher_utility=floor.higher.get(metric, True))
    named = {defended[i] for i in front} | {d for d in ds if d.defense in curves}
    u_span = (max(d.u for d in ds) - min(d.u for d in ds)) or 1.0
    for d in ds:  # the negative control's interval: what the attacks reach on records a model never saw
        if d.control and d.defense == NULL_CONTROL:
            ax.axhspan(clip(d.p_lo), clip(d.p_hi), color="0.55", alpha=0.2, lw=0, zorder=0.5,
                       label=f"{NULL_CONTROL} control's interval\n(not separated from chance)")
    for defense in sorted({d.defense for d in ds}):
        mine = [d for d in ds if d.defense == defense]
        st = {"color": "0.45", "marker": "x" if "memor" in defense else "+"} if mine[0].control else styles[defense]
        label = defense + (" (control)" if mine[0].control else
                           " (early stopping)" if defense == "none" and len(mine) > 1 else "")
        ys = [clip(d.p) for d in mine]
        ax.errorbar([d.u for d in mine], ys, xerr=[d.u_hw for d in mine],
                    yerr=[[y - clip(d.p_lo) for y, d in zip(ys, mine, strict=True)],
                          [clip(d.p_hi) - y for y, d in zip(ys, mine, strict=True)]],
                    color=st["color"], marker=st["marker"], ms=7 if defense == "none" or mine[0].control else 6,
                    lw=2.2 if defense == "none" else 1.2, ls="-" if len(mine) > 1 else "none", capsize=2,
                    elinewidth=0.8, alpha=0.95, label=label, zorder=4 if defense == "none" else 3)
        _label_points(ax, [(d.name, d.u, y) for d, y in zip(mine, ys, strict=True) if d.name and d in named],
                      st["color"], u_span, below=defense == "none")
    if front:
        # the staircase of the best privacy attainable at each utility or better
        ax.plot([defended[i].u for i in front], [clip(defended[i].p) for i in front], color="tab:red", lw=4,
                alpha=0.22, drawstyle="steps-pre" if floor.higher.get(metric, True) else "steps-post", zorder=1,
                label="Pareto front")
    return y_min, y_top


def _label_points(ax: Any, named: list[tuple[str, float, float]], color: Any, u_span: float, *,
                  below: bool = False) -> None:
    """Each point's operating-point name beside it (above right, or below right for `none`'s curve, whose
    names would otherwise run into the defenses clustered just above it); points drawn at (nearly) one
    place, within 3% of the utility span and 0.06 decades of each other, share one label."""
    groups: list[list[tuple[str, float, float]]] = []
    for name, u, y in sorted(named, key=lambda t: (t[1], t[2])):
        near = next((g for g in groups if abs(g[0][1] - u) <= 0.03 * u_span
                     and abs(math.log10(g[0][2]) - math.log10(y)) <= 0.06), None)
        if near is None:
            groups.append([(name, u, y)])
        else:
            near.append((name, u, y))
    for g in groups:
        ax.annotate("/".join(n for n, _, _ in g), (g[0][1], g[0][2]), xytext=(4, -9 if below else 3),
                    textcoords="offset points", fontsize=6.5, color=color)


def _decorate(ax: Any, floor: Floor, metric: str, y_min: float, y_top: float) -> None:
    ax.set_yscale("log")
    ax.axhline(0.01, color="0.4", lw=0.8, ls=":", zorder=0)
    ax.annotate("chance: TPR = FPR = 1%", (1, 0.01), xycoords=("axes fraction", "data"), xytext=(-3, 3),
                textcoords="offset points", fontsize=7, color="0.35", ha="right")
    if metric in floor.factors and floor.complete:
        t = floor.threshold(metric)
        ax.axvline(t, color="0.3", lw=0.9, ls="--", zorder=0)
        lo, hi = ax.get_xlim()
        below = (lo, t) if floor.higher[metric] else (t, hi)
        ax.axvspan(*below, color="0.85", alpha=0.5, zorder=0, lw=0)
        ax.set_xlim(lo, hi)
        side = 0.01 if floor.higher[metric] else 0.99
        ax.annotate(f"below the utility floor ({floor.factors[metric]:g} × {floor.reference}'s best)", (side, 0.98),
                    xycoords="axes fraction", fontsize=7, color="0.3", ha="left" if side < 0.5 else "right",
                    va="top")
    ax.set_ylim(y_min / 1.5, y_top)
    from matplotlib.ticker import FuncFormatter

    def minor(v: float, _: Any) -> str:  # 0.02, not 2 x 10^-2; only 2, 3 and 5 of each decade named
        return f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v) + 1e-9)) in (2, 3, 5) else ""

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))
    ax.grid(alpha=0.25, which="both", lw=0.5)


def frontier_png(path: Path, points: list[Point], level: str, *, title: str,
                 curves: frozenset[str] = frozenset({"none"})) -> Path | None:
    """The figure of one threat model (None when no point has both utility and privacy at that level);
    `curves`: the defenses whose every point is named (draw)."""
    floor = Floor.of(points)
    util = utility_metrics(points, floor)
    if not util:
        return None
    metric = util[0]
    ds = dots(points, level, metric)
    if not ds:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.6), dpi=150)
    y_range = draw(ax, ds, floor, metric, _styles(sorted({p.defense for p in points if not p.control})), curves)
    _decorate(ax, floor, metric, *y_range)
    better = "higher" if floor.higher.get(metric, True) else "lower"
    ax.set(xlabel=f"{metric.replace('_', ' ')} ({better} is better)",
           ylabel=f"worst-case TPR at 1% FPR, {level}\n(log; TPR = 0 drawn at the bottom)", title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5, frameon=False,
              title="named: Pareto front, " + ", ".join(sorted(curves)), title_fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def write_frontiers(entries: list[dict[str, Any]], folder: Path) -> list[Path]:
    """The suite's three figures in `folder` (frontier_<suite>_v<k>_<level>.png), of the points the
    leaderboard ranks (pages.published)."""
    suite, version = entries[0]["suite"], int(entries[0]["suite_version"])
    points = published(suite, suite_points(entries))[0]
    curves = frozenset({"none", *(_sweeps(suite) or [])})  # the DP baseline's points are named too
    out = []
    for level in LEVELS:
        path = frontier_png(Path(folder) / frontier_name(suite, version, level), points, level,
                            title=f"{suite} (protocol v{version}) · threat model: {level}", curves=curves)
        if path is not None:
            out.append(path)
    return out
