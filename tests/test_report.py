"""The v2 leaderboard: matched-utility ranking per threat model, ties, the Pareto front, and pages and
figures that are pure functions of the entries (synthetic entries: no training)."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from v2_entries import FLOOR, LEVELS, suite_entries, sweep, v2_entry

from mia_bench import leaderboard as lb
from mia_bench.report.frontier import write_frontiers
from mia_bench.report.ranking import Floor, Interval, assign_ranks, pareto_front, rank_level, suite_points

ROOT = Path(__file__).resolve().parent.parent


def _tables(entries):
    points = suite_points(entries)
    floor = Floor.of(points)
    return {level: rank_level(points, floor, level) for level in LEVELS}


def _ranked(table):
    return [(r.point.defense, r.point.name) for r in table.rows if r.rank is not None]


def test_a_collapsed_model_is_never_ranked_even_with_the_lowest_attack_success():
    entries = suite_entries()  # dpgan releases noise: accuracy at chance, FID in the hundreds, TPR 0
    for level, table in _tables(entries).items():
        assert "dpgan" not in [d for d, _ in _ranked(table)], level
        assert [p.defense for p in table.below] == ["dpgan"]
        assert table.below[0].name == "nm0.1", "listed with its best utility"
    text = lb.render(entries)
    assert text.count("**Not ranked: below the utility floor:** `dpgan` (best utility at `nm0.1`") == 3
    # what it leaks at that point is said beside it (the white box: TPR 0.01 over its three seeds)
    assert text.count("its worst-case TPR@1% here 0.010 [") == 1 and text.count("its worst-case TPR@1% here") == 3


def test_nothing_ranks_without_the_reference_defense():
    entries = [e for e in suite_entries() if e["defense"] != "none"]
    assert all(not _ranked(t) for t in _tables(entries).values())
    assert "**Nothing is ranked:** the utility floor is relative to `none`" in lb.render(entries)


def test_each_defense_ranks_at_its_most_private_point_above_the_floor():
    # floor: accuracy >= 0.9 x 0.80 = 0.72 and FID <= 2 x 20 = 40 (none's best point, `full`)
    table = _tables(suite_entries())["white_box"]
    assert _ranked(table) == [("mixup", "a4"), ("megan", "lh1"), ("none", "half")]
    assert [r.point.defense for r in table.rows if r.rank is None] == ["independent", "memorizer"]


def test_controls_are_labelled_rows_never_ranked():
    text = lb.render(suite_entries())
    assert text.count("| – | `memorizer` | *control* | – |") == 3
    assert text.count("| – | `independent` | *control* | – |") == 3
    assert "*reconstructed*" in text.split("### Threat model `samples`")[1].split("![")[0]


def _single(defense, tpr, half_width):
    return v2_entry(defense, "p", 0, tpr=(tpr,), ci=half_width, levels=(1.0, 1.0, 1.0))


def test_rows_whose_intervals_overlap_the_row_above_share_its_rank_and_are_marked():
    entries = [*sweep("none", [("full", 0.5, 0.8, 20), ("half", 0.45, 0.8, 20), ("quarter", 0.44, 0.8, 20)]),
               _single("a", 0.10, 0.02), _single("b", 0.11, 0.02), _single("c", 0.20, 0.02)]
    table = _tables(entries)["white_box"]
    ranked = [r for r in table.rows if r.rank is not None]
    assert [(r.point.defense, r.rank, r.tied) for r in ranked[:3]] == [("a", 1, True), ("b", 1, True), ("c", 3, False)]
    text = lb.render(entries)
    assert "| 1= | `a` |" in text and "| 1= | `b` |" in text and "| 3 | `c` |" in text


def test_rows_apart_get_their_own_rank_without_a_mark():
    entries = [*sweep("none", [("full", 0.5, 0.8, 20), ("half", 0.45, 0.8, 20), ("quarter", 0.44, 0.8, 20)]),
               _single("a", 0.10, 0.001), _single("b", 0.11, 0.001)]
    ranked = [r for r in _tables(entries)["white_box"].rows if r.rank is not None]
    assert [(r.point.defense, r.rank, r.tied) for r in ranked][:2] == [("a", 1, False), ("b", 2, False)]


intervals = st.lists(st.tuples(st.floats(0, 1), st.floats(0, 0.2)), min_size=1, max_size=12).map(
    lambda xs: [Interval(m, max(0.0, m - h), min(1.0, m + h), 2) for m, h in sorted(xs)])


@given(intervals)
def test_a_rank_is_shared_exactly_when_the_interval_overlaps_the_row_above(ivs):
    ranks = assign_ranks(ivs)
    assert ranks[0] == 1
    for i in range(1, len(ivs)):
        assert (ranks[i] == ranks[i - 1]) == ivs[i].overlaps(ivs[i - 1])
        assert ranks[i] in (ranks[i - 1], i + 1)


points = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=15)


def _dominates(a, b):
    return a[0] >= b[0] and a[1] <= b[1] and a != b


@given(points, st.booleans())
def test_the_frontier_is_exactly_the_set_of_non_dominated_points(pts, higher):
    u = [float(x if higher else -x) for x, _ in pts]
    front = set(pareto_front([float(x) for x, _ in pts], [float(p) for _, p in pts], higher_utility=higher))
    oriented = [(ui, float(p)) for ui, (_, p) in zip(u, pts, strict=True)]
    for i, a in enumerate(oriented):  # on the front: nothing dominates it; off it: a front point does
        if i in front:
            assert not any(_dominates(b, a) for b in oriented)
        else:
            assert any(_dominates(oriented[j], a) for j in front)


@given(points, st.randoms(use_true_random=False))
def test_the_frontier_does_not_depend_on_the_order_of_the_points(pts, rnd):
    shuffled = list(pts)
    rnd.shuffle(shuffled)
    front = {pts[i] for i in pareto_front([float(x) for x, _ in pts], [float(p) for _, p in pts])}
    again = {shuffled[i] for i in pareto_front([float(x) for x, _ in shuffled], [float(p) for _, p in shuffled])}
    assert front == again


def test_pages_and_figures_are_a_pure_function_of_the_entries(tmp_path):
    entries = suite_entries()
    before = copy.deepcopy(entries)
    shuffled = copy.deepcopy(entries)
    random.Random(3).shuffle(shuffled)
    assert lb.pages(entries) == lb.pages(shuffled) and entries == before
    first = [p.read_bytes() for p in write_frontiers(entries, tmp_path / "a")]
    again = [p.read_bytes() for p in write_frontiers(shuffled, tmp_path / "b")]
    assert len(first) == 3 and first == again


def test_compact_tables_have_at_most_ten_columns_and_the_detail_page_every_point():
    pages = lb.pages(suite_entries())
    heads = [ln for ln in pages["LEADERBOARD.md"].splitlines() if ln.startswith("| Rank")]
    assert len(heads) == 3 and all(ln.count("|") - 1 <= 10 for ln in heads)
    detail = pages["s.md"]
    for e in suite_entries():
        at = e["operating_point"].get("name") or "–"
        assert f"### `{e['defense']}` at `{at}`" in detail
    assert "`a_white_box` | white_box |" in detail and "a_white_box" not in pages["LEADERBOARD.md"]


def test_v1_entries_keep_their_own_section_never_mixed_into_v2_rankings():
    from test_leaderboard import _entry

    v1 = [_entry("none", [0.3, 0.5], [0.9, 0.8]), _entry("megan", [0.777, 0.777], [0.6, 0.6])]
    for e in v1:
        e["suite"] = "s"
    pages = lb.pages(v1 + suite_entries())
    text, v1_page = pages["LEADERBOARD.md"], pages["s_v1.md"]
    assert "(protocol version 1)" not in text and "[version 1](s_v1.md)" in text  # superseded: linked, not shown
    v1_part = v1_page.split("## Suite `s` (protocol version 1)")[1]
    assert lb.render_suite(v1).split("\n", 1)[1].strip() in v1_part  # the v1 section as it was
    v2_part = text.split("## Suite `s` (protocol version 2)")[1]
    assert "| `megan` |" in v2_part and "0.777" not in v2_part  # v1 megan's worst case is not in the v2 tables
    assert "0.777" in v1_part


def test_committed_pages_are_generated_from_committed_entries():
    entries = lb.load_entries(ROOT / "leaderboard" / "entries")
    for name, text in lb.pages(entries).items():
        path = ROOT / "leaderboard" / name
        assert path.is_file() and path.read_text() == text, f"{name} is stale or edited: run `make leaderboard`"


def _v2_record(attacks):
    """A one-seed protocol-v2 record of `none` at `full` holding `attacks` (their worst case computed)."""
    from mia_bench.protocol import worst_case
    from mia_bench.results import RunRecord

    utility = {"metrics": {"downstream_accuracy": 0.8, "fid_classifier": 20.0},
               "higher_is_better": {"downstream_accuracy": True, "fid_classifier": False}}
    return RunRecord(suite="s", suite_version=2, defense="none", seed=0, config={"leaderboard": {"utility_floor": FLOOR}},
                     config_digest="d", overrides=[], split_digest="x", split_sizes={}, member_fraction=0.5,
                     attacks=attacks, utility=utility, worst_case=worst_case(attacks), created_at="t",
                     operating_point={"name": "full", "index": 0, "knob": "k", "settings": {}, "default": True})


def test_a_record_of_pooled_metrics_ranks_with_its_bootstrap_interval():
    """From protocol v2's own pooled metrics and worst case (one seed) through the entry to the table: the
    row's interval is the record's bootstrap-over-targets interval."""
    import numpy as np

    from mia_bench.metrics.pooled import pooled_report

    rng = np.random.default_rng(0)
    inside = np.zeros((8, 200), bool)
    inside[:4, :100] = inside[4:, 100:] = True
    scores = rng.normal(size=inside.shape) + 0.8 * inside
    canary = np.zeros(200, bool)
    canary[::10] = True
    metrics = pooled_report(scores, inside, n_boot=50)
    attacks = {"a": {"access": "samples", "variant": "v", "metrics": metrics,
                     "canaries": pooled_report(scores, inside, n_boot=50, columns=canary)}}
    record = _v2_record(attacks)
    entry = lb.build_entry([record])
    table = _tables([entry])["samples"]
    (row,) = table.rows
    iv = row.point.privacy("samples", "tpr@1%fpr")
    assert row.rank == 1 and [iv.lo, iv.hi] == metrics["tpr@1%fpr"]["ci"] and iv.mean == metrics["tpr@1%fpr"]["value"]
    assert row.point.privacy("samples", "tpr@1%fpr", canaries=True).n == 1


def test_the_detail_page_shows_each_attacks_bootstrap_interval_and_flags():
    """A one-seed v2 entry keeps every attack's bootstrap-over-targets intervals, so the per-attack page
    shows them (population and canaries); an underpowered FPR is marked † and an AUC below chance beyond
    its interval ! (a broken attack), only where the record says so."""
    import numpy as np

    from mia_bench.metrics.pooled import pooled_report
    from mia_bench.report.pages import render_detail

    rng = np.random.default_rng(1)
    inside = np.zeros((8, 200), bool)
    inside[:4, :100] = inside[4:, 100:] = True  # 800 non-member scores: TPR@0.1% and @1% underpowered
    canary = np.zeros(200, bool)
    canary[::10] = True
    attacks = {}
    for name, sign in (("good", 1.0), ("broken", -1.0)):
        scores = rng.normal(size=inside.shape) + sign * inside
        attacks[name] = {"access": "samples", "variant": "v", "metrics": pooled_report(scores, inside, n_boot=50),
                         "canaries": pooled_report(scores, inside, n_boot=50, columns=canary)}
    record = _v2_record(attacks)
    rows = {ln.split("`")[1]: ln.split(" | ")[2:] for ln in render_detail([lb.build_entry([record])]).splitlines()
            if ln.startswith("| `")}
    for name in ("good", "broken"):
        m, c = attacks[name]["metrics"], attacks[name]["canaries"]
        auc, can_auc = rows[name][0], rows[name][3]
        for cell, part in ((auc, m), (can_auc, c)):
            lo, hi = part["auc"]["ci"]
            assert cell.startswith(f"{part['auc']['value']:.3f} [{max(lo, 0):.3f}, {min(hi, 1):.3f}]")
        assert all(cell.endswith("†") for cell in rows[name][1:3])  # 800 non-members < 10 / 1%
        assert auc.endswith(" !") == (name == "broken")
    assert attacks["broken"]["metrics"]["below_chance"] and not attacks["good"]["metrics"]["below_chance"]



def _with_canaries(entry, ci):
    """`entry` whose canaries' white-box worst case has the bootstrap half-width `ci`."""
    for seed in entry["seeds"].values():
        w = seed["worst_case"]["white_box"]
        v = w["canaries"]["tpr@1%fpr"]
        w["canaries_ci"] = {"tpr@1%fpr": [max(0.0, v - ci), min(1.0, v + ci)]}
    return entry


def test_each_level_says_which_defenses_leak_beyond_the_independent_control():
    """A ranked row leaks measurably only when its TPR@1% interval lies wholly above the `independent`
    control's (population first, else the canaries); any other row is not separated from a model that never
    saw the records, and when `none` is among those the page says no defense can show a gain at that level."""
    from mia_bench.report.pages import control_verdict
    from mia_bench.report.ranking import verdict
    from mia_bench.tables import level_tables

    def point(defense, tpr, ci, can_ci, **kw):
        return _with_canaries(v2_entry(defense, tpr=(tpr,), ci=ci, **kw), can_ci)

    # white box: control 0.010 [0.006, 0.014], canaries 0.020 [0.015, 0.025]
    entries = [point("independent", 0.010, 0.004, 0.005, labels=("control",)),
               point("memorizer", 1.0, 0.0, 0.0, labels=("control",)),
               point("none", 0.050, 0.010, 0.01),  # [0.040, 0.060] > 0.014: population
               point("megan", 0.012, 0.010, 0.002),  # overlaps; canaries 0.024 [0.022, 0.026] > 0.025? no
               point("mixup", 0.016, 0.001, 0.002),  # [0.015, 0.017] > 0.014: population (a narrow interval)
               point("mpgan", 0.014, 0.002, 0.0005)]  # overlaps; canaries 0.028 [0.0275, 0.0285] > 0.025
    points = suite_points(entries)
    table = rank_level(points, Floor.of(points), "white_box")
    v = verdict(table)
    assert [p.defense for p in v.population] == ["mixup", "none"]
    assert [p.defense for p in v.canaries] == ["mpgan"] and [p.defense for p in v.unseparated] == ["megan"]
    assert (v.control.lo, v.control.hi) == pytest.approx((0.006, 0.014))
    text = control_verdict(table)[1]
    assert "above it on the whole population: `mixup`, `none`; on the canaries only: `mpgan`" in text
    assert "`megan`" in text.split("not separated from it")[1] and "ties with chance" not in text
    caption = str(level_tables(entries)[2].caption).replace("\n", " ")
    assert "above it on the population: mixup, none" in " ".join(caption.split())

    # `none` inside the control's interval: every rank is a tie with chance
    entries[2] = point("none", 0.012, 0.004, 0.0)
    table = rank_level(suite_points(entries), Floor.of(suite_points(entries)), "white_box")
    assert "none" in [p.defense for p in verdict(table).unseparated]
    assert "ties with chance" in control_verdict(table)[1]
    # no negative control: no verdict
    table = rank_level(suite_points(entries[1:]), Floor.of(suite_points(entries[1:])), "white_box")
    assert verdict(table) is None and control_verdict(table) == []


def test_a_partial_grid_says_which_cells_are_missing_above_its_tables(tmp_path):
    """The digits suite's published grid is what `make grid` runs (its `defenses:` at their default points,
    every point of `leaderboard.sweeps`); a page built from some of those cells says how many it holds and
    names the rest, so a partial ranking is never mistaken for the whole benchmark. A point outside the
    published grid is no cell of it."""
    from mia_bench.grid import plan
    from mia_bench.report.pages import render_suite_v2

    entries = [v2_entry("none", "full", 0, suite="digits"), v2_entry("none", "half", 1, suite="digits", default=False),
               v2_entry("megan", "lh1", 1, suite="digits")]
    page = render_suite_v2(entries)
    total = len(plan(suite="digits", defenses=["all"], seeds=[0], overrides=[], results_dir=tmp_path)[0])
    line = next(ln for ln in page.splitlines() if ln.startswith("**Partial grid:**"))
    assert f"2 of the {total} (defense, operating point) cells" in line
    assert "`dpgan` (all points)" in line and "`mixup` (all points)" in line
    assert "`megan`" not in line and "`none`" not in line  # none@half is outside the published grid
    assert page.index("**Partial grid:**") < page.index("### Threat model")
    assert "Partial grid" not in render_suite_v2([v2_entry("none", "full", 0)])  # suite "s" has no YAML: no claim


def test_entries_with_fewer_seeds_than_the_suite_names_say_so_above_the_tables(monkeypatch):
    """A suite naming seeds 0, 1, 2 (replicate designs): a page whose entries hold fewer says how many hold
    which, so a one-seed interval (the bootstrap over one design's targets) is not read as the suite's
    between-seed interval."""
    from mia_bench import grid
    from mia_bench.report.pages import render_suite_v2

    assert grid.suite_seeds("digits") == [0]  # the published digits grid: one design of 16 targets
    real = grid.suite_seeds
    monkeypatch.setattr(grid, "suite_seeds", lambda suite, config_dir=None: [0, 1, 2] if suite == "digits"
                        else real(suite, config_dir))
    three = (0.05, 0.06, 0.04)
    page = render_suite_v2([v2_entry("none", "full", 0, suite="digits", tpr=three),
                            v2_entry("none", "half", 1, suite="digits", tpr=(0.05,)),
                            v2_entry("megan", "lh1", 2, suite="digits", tpr=(0.05,))])
    line = next(ln for ln in page.splitlines() if ln.startswith("**Seeds:**"))
    assert "seeds 0, 1, 2; of its 3 entries (defense, operating point), 2 with seed 0; 1 with seeds 0, 1, 2." in line
    assert page.index("**Seeds:**") < page.index("### Threat model")
    complete = render_suite_v2([v2_entry("none", "full", 0, suite="digits", tpr=three),
                                v2_entry("megan", "lh1", 2, suite="digits", tpr=three)])
    assert "**Seeds:**" not in complete
    assert "**Seeds:**" not in render_suite_v2([v2_entry("none", "full", 0)])  # suite "s" has no YAML: no claim


def test_the_frontier_names_only_the_pareto_points_and_nones_curve():
    """Named points: `none`'s budgets and the Pareto front of the defended points, in every threat model;
    a dominated point keeps its marker but no name, so the cluster near chance stays legible."""
    from mia_bench.report import frontier
    from mia_bench.report.plots import _pyplot
    from mia_bench.report.ranking import Floor, pareto_front, suite_points

    points = suite_points(suite_entries())
    floor = Floor.of(points)
    plt = _pyplot()
    for level in ("samples", "white_box"):
        ds = frontier.dots(points, level, "downstream_accuracy")
        defended = [d for d in ds if not d.control]
        front = {defended[i].name for i in pareto_front([d.u for d in defended], [d.p for d in defended])}
        fig, ax = plt.subplots()
        frontier.draw(ax, ds, floor, "downstream_accuracy", frontier._styles(sorted({d.defense for d in ds})))
        named = {n for t in ax.texts if "(control)" not in t.get_text() for n in t.get_text().split("/")}
        plt.close(fig)
        assert named == front | {"full", "half", "quarter"}
        assert {d.name for d in defended} - named  # some points are left unnamed
        fig, ax = plt.subplots()  # a suite's published sweep (the DP baseline) is named point by point too
        frontier.draw(ax, ds, floor, "downstream_accuracy", frontier._styles(sorted({d.defense for d in ds})),
                      frozenset({"none", "mixup"}))
        named = {n for t in ax.texts if "(control)" not in t.get_text() for n in t.get_text().split("/")}
        plt.close(fig)
        assert named == front | {"full", "half", "quarter", "a0.2", "a1", "a4"}


def test_the_frontier_shows_the_control_band_and_keeps_the_memorizer_off_the_defenses_scale():
    """The `independent` control's interval is a grey band across the figure; the memorizer (TPR 1) does not
    set the y range (that would squash the defenses into the bottom decade): it is named at the top edge
    with its value; and every defense that is not a control has a colour of its own, even past tab10's."""
    from matplotlib.patches import Polygon, Rectangle

    from mia_bench.report import frontier
    from mia_bench.report.plots import _pyplot

    points = suite_points(suite_entries())
    ds = frontier.dots(points, "white_box", "downstream_accuracy")
    control = next(d for d in ds if d.defense == "independent")
    plt = _pyplot()
    fig, ax = plt.subplots()
    y_min, y_top = frontier.draw(ax, ds, Floor.of(points), "downstream_accuracy",
                                 frontier._styles(["dpgan", "megan", "mixup", "none"]))
    bands = [p for p in ax.patches if isinstance(p, (Polygon, Rectangle)) and "control" in str(p.get_label())]
    plt.close(fig)
    assert len(bands) == 1
    b = bands[0]
    ys = b.get_xy()[:, 1] if isinstance(b, Polygon) else [b.get_y(), b.get_y() + b.get_height()]
    # the control's two seeds give a t-interval reaching below 0: drawn from the bottom of the log axis
    assert min(ys) == pytest.approx(max(control.p_lo, y_min)) and max(ys) == pytest.approx(control.p_hi)
    defended_top = max(d.p_hi for d in ds if not d.control)
    assert defended_top < y_top < 1.0  # the memorizer (TPR 1) is above the scale ...
    assert any("memorizer (control): 1.000" in t.get_text() for t in ax.texts)  # ... and named there
    names = [f"d{i}" for i in range(14)]
    colours = [frontier._styles(names)[n]["color"] for n in names]
    assert len(set(colours)) == len(names) and (0.5, 0.5, 0.5, 1.0) not in colours


def test_the_leaderboard_ranks_and_draws_only_the_published_grid_and_keeps_the_rest_on_the_detail_page(tmp_path):
    """digits publishes each defense at its default point and every point of dpgan (leaderboard.sweeps): a
    more private megan point outside it never takes megan's row or its place in the figures (a user's `make
    grid` could not reproduce that ranking), dpgan's most private point above the floor does, and the point
    outside is listed under the tables and kept, marked, on the detail page."""
    from mia_bench.grid import published_sweeps
    from mia_bench.report.pages import published, render_detail, render_suite_v2

    assert published_sweeps("digits") == ["dpgan"]
    entries = [v2_entry("none", "full", 0, suite="digits", tpr=(0.30,)),
               v2_entry("megan", "lh1", 1, suite="digits", tpr=(0.20,)),
               v2_entry("megan", "lh3", 2, suite="digits", tpr=(0.02,), default=False),  # more private, clears
               v2_entry("dpgan", "eps10", 1, suite="digits", tpr=(0.10,)),
               v2_entry("dpgan", "eps1", 2, suite="digits", tpr=(0.05,), default=False),
               v2_entry("independent", suite="digits", tpr=(0.01,), labels=("control",))]
    inside, outside = published("digits", suite_points(entries))
    assert [(p.defense, p.name) for p in outside] == [("megan", "lh3")]
    table = rank_level(inside, Floor.of(inside), "white_box")
    chosen = {r.point.defense: r.point.name for r in table.rows if r.rank is not None}
    assert chosen == {"none": "full", "megan": "lh1", "dpgan": "eps1"}
    page = render_suite_v2(entries)
    rows = [ln for ln in page.splitlines() if ln.startswith("| ") and "`megan`" in ln]
    assert len(rows) == 3 and all("`lh1`" in ln for ln in rows)  # one per threat model
    assert "**Not ranked, outside the published grid:** `megan@lh3`" in page
    assert "### `megan` at `lh3` (not ranked: outside the published grid)" in render_detail(entries)
    assert "### `megan` at `lh1`\n" in render_detail(entries)
    from mia_bench.tables import level_tables  # the terminal's ranking: the same rows

    for t in level_tables(entries):
        names = list(t.columns[1].cells)
        assert "megan@lh1" in names and "dpgan@eps1" in names
        assert not any("lh3" in n for n in names)
    # every point is published where the suite names no sweeps (suite "s" has no YAML)
    other = [dict(e, suite="s") for e in entries]
    assert published("s", suite_points(other))[1] == []
    # the figure is drawn from the published points: the same image with or without the point outside
    with_lh3, without = tmp_path / "a", tmp_path / "b"
    with_lh3.mkdir(), without.mkdir()
    a = write_frontiers(entries, with_lh3)
    b = write_frontiers([e for e in entries if lb.point_name(e) != "lh3"], without)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_the_page_says_which_rows_a_rerun_cannot_reproduce_because_their_dp_noise_is_fresh():
    """A DP run whose record says its noise came from os.urandom (deterministic_noise false, what a guarantee
    needs) is one draw: the page names it and says the seeded rows reproduce. A DP run on seeded noise (a
    test setting) and a non-DP run are not named; with neither kind of fresh-noise row the line is absent."""
    from mia_bench.report.pages import fresh_noise, render_suite_v2

    def dp(defense, deterministic):
        e = v2_entry(defense, epsilon=10.0)
        for s in e["seeds"].values():
            s["privacy_guarantee"]["deterministic_noise"] = deterministic
        return e

    entries = [v2_entry("none"), dp("dpgan", False), dp("gswgan", True), dp("zeta", False)]
    (line,) = [ln for ln in fresh_noise(suite_points(entries)) if ln]
    assert line.startswith("Reruns: `dpgan`, `zeta` draw their DP noise") and "`gswgan`" not in line
    assert "every other row is seeded" in line
    assert line in render_suite_v2(entries).splitlines()
    assert fresh_noise(suite_points([v2_entry("none"), dp("gswgan", True)])) == []
    assert "Reruns:" not in render_suite_v2([v2_entry("none"), v2_entry("megan")])
