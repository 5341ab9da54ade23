"""Protocol v2's membership design, canaries and pooled metrics (data/design.py, metrics/pooled.py,
nets/lira.loo_scores): properties for any sizes and seeds, and equality with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score, roc_curve

from mia_bench.data import ArrayDataset, DataInfo
from mia_bench.data.datasets import DataKind
from mia_bench.data.design import OUTSIDE, MembershipDesign, balanced_membership, canary_kind, with_canaries
from mia_bench.errors import SplitError
from mia_bench.metrics.pooled import exposure, pooled_report, replicate_summaries
from mia_bench.metrics.privacy import precision_at_n
from mia_bench.nets import lira
from mia_bench.schema import DesignConfig, SplitConfig


def _design(n, pop, t, seed, canaries=0, ref=5, aux=5, pool=0, hold=5, groups=None, kind="shuffled"):
    return MembershipDesign.make(n_records=n, split=SplitConfig(reference=ref, attacker_aux=aux, shadow_pool=pool),
                                 design=DesignConfig(targets=t, population=pop, canaries=canaries, holdout=hold),
                                 seed=seed, groups=groups, canary_kind=kind)


@given(pop=st.integers(2, 300), half=st.integers(1, 12), seed=st.integers(0, 2**31 - 1),
       extra=st.lists(st.integers(0, 40), min_size=4, max_size=4), spare=st.integers(0, 30),
       canaries=st.integers(0, 50))
def test_balanced_design_and_disjoint_roles_for_any_sizes_and_seeds(pop, half, seed, extra, spare, canaries):
    ref, aux, pool, hold = extra
    hold = max(hold, 1)
    n = pop + ref + aux + pool + hold + spare
    d = _design(n, pop, 2 * half, seed, canaries=min(canaries, pop), ref=ref, aux=aux, pool=pool, hold=hold)
    assert d.inside.shape == (2 * half, pop)
    assert (d.inside.sum(0) == half).all()  # every record IN for exactly T/2 targets
    roles = [d.population, *(getattr(d, r) for r in OUTSIDE)]
    together = np.concatenate(roles)
    assert np.unique(together).size == together.size  # pairwise disjoint, the population untouched
    assert together.min() >= 0 and together.max() < n
    assert [r.size for r in roles] == [pop, ref, aux, pool, hold]
    assert int(d.canary.sum()) == min(canaries, pop)
    again = _design(n, pop, 2 * half, seed, canaries=min(canaries, pop), ref=ref, aux=aux, pool=pool, hold=hold)
    assert again.digest() == d.digest() and (again.inside == d.inside).all()  # deterministic per seed
    for t in range(d.n_targets):  # a target's split: its IN half against its OUT half, roles as above
        split = d.target_split(t)
        assert np.union1d(split.members, split.non_members).size == pop
        assert split.members.size == d.inside[t].sum()


def test_groups_are_in_or_out_as_a_whole_and_never_straddle_roles():
    groups = np.repeat(np.arange(100), 3)  # 100 people, 3 records each
    d = _design(300, 150, 8, 4, groups=groups, ref=30, aux=30, hold=30)
    g = groups[d.population]
    for person in np.unique(g):
        cols = d.inside[:, g == person]
        assert (cols == cols[:, :1]).all()  # every record of a person shares their membership
    assert (d.inside.sum(0) == 4).all()
    assert not set(g) & set(groups[np.concatenate([getattr(d, r) for r in OUTSIDE])])


def test_design_digest_changes_with_the_seed_and_memberships_are_independent():
    a, b = _design(500, 400, 16, 0), _design(500, 400, 16, 1)
    assert a.digest() != b.digest()
    inside = balanced_membership(4000, 16, seed=3)
    corr = np.corrcoef(inside[:, :200].T.astype(float))  # records' membership vectors are independent
    off = corr[~np.eye(200, dtype=bool)]
    assert abs(off.mean()) < 0.02 and (inside.sum(1) > 1800).all()


@pytest.mark.parametrize("bad, message", [
    (dict(t=3), "even number"), (dict(t=4, canaries=20, pop=10), "exceeds design.population"),
    (dict(t=4, pop=1000), "holds 100"),
])
def test_design_refuses_what_it_cannot_build(bad, message):
    kw = dict(n=100, pop=50, t=4, seed=0)
    kw.update(bad)
    with pytest.raises(SplitError, match=message):
        _design(**kw)


def _images(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    return ArrayDataset(x=x, y=torch.randint(0, 10, (n,), generator=g), info=DataInfo("toy", (1, 8, 8), 10))


def test_shuffled_canaries_keep_their_pixels_but_not_their_layout_and_mislabelled_change_only_the_label():
    data = _images()
    d = _design(120, 80, 4, 0, canaries=10)
    planted, d2 = with_canaries(data, d)
    ids = d.population[d.canary]
    others = np.setdiff1d(np.arange(120), ids)
    assert torch.equal(planted.x[others], data.x[others]) and torch.equal(planted.y, data.y)
    for i in ids:
        a, b = planted.x[i].flatten(), data.x[i].flatten()
        assert torch.equal(a.sort().values, b.sort().values) and not torch.equal(a, b)
    perms = {tuple(torch.argsort(planted.x[i].flatten()).tolist()) for i in ids}
    assert len(perms) == ids.size  # one permutation per canary: no shared pattern to learn as a mode
    wrong, _ = with_canaries(data, _design(120, 80, 4, 0, canaries=10, kind="mislabelled"))
    assert torch.equal(wrong.x, data.x)
    assert (wrong.y[ids] != data.y[ids]).all() and torch.equal(wrong.y[others], data.y[others])


def test_outlier_canaries_of_tables_are_the_records_farthest_from_their_neighbours():
    x = torch.randn(100, 6) * 0.1
    for i, (r, c) in enumerate(((3, 0), (17, 1), (42, 2))):  # three outliers, each far from every record
        x[r, c] += 5.0 * (i + 1)
    data = ArrayDataset(x=x, y=torch.zeros(100, dtype=torch.int64), info=DataInfo("t", (6,), 2, kind=DataKind.TABULAR))
    d = _design(100, 80, 4, 0, canaries=3, kind=canary_kind("auto", data))
    planted, d2 = with_canaries(data, d)
    assert d.canary_kind == "outliers" and torch.equal(planted.x, x)
    in_pop = [i for i in (3, 17, 42) if i in set(d.population.tolist())]
    assert set(in_pop) <= set(d2.population[d2.canary].tolist())


# ---- pooled metrics -------------------------------------------------------------------------------------

def test_pooled_metrics_equal_scikit_learn_on_the_pooled_scores():
    rng = np.random.default_rng(0)
    inside = balanced_membership(300, 8, seed=1)
    scores = rng.normal(size=inside.shape) + 0.8 * inside
    r = pooled_report(scores, inside, n_boot=50, seed=0)
    flat_s, flat_m = scores.ravel(), inside.ravel()
    assert r["auc"]["value"] == pytest.approx(roc_auc_score(flat_m, flat_s), abs=1e-12)
    fpr, tpr, _ = roc_curve(flat_m, flat_s, drop_intermediate=False)
    for a, key in ((0.01, "tpr@1%fpr"), (0.1, "tpr@10%fpr")):
        assert r[key]["value"] == pytest.approx(tpr[fpr <= a].max(), abs=1e-12)
    assert r["balanced_accuracy"]["value"] == pytest.approx(np.max(1 - (fpr + 1 - tpr) / 2), abs=1e-12)
    assert r["n_non_members"] == 1200 and r["underpowered"] == ["tpr@0.1%fpr"]
    for key in ("auc", "tpr@1%fpr", "tpr@0.1%fpr"):
        lo, hi = r[key]["ci"]
        assert 0.0 <= lo <= hi <= 1.0
    cols = np.zeros(300, bool)
    cols[:40] = True
    c = pooled_report(scores, inside, n_boot=0, columns=cols)
    assert c["auc"]["value"] == pytest.approx(roc_auc_score(inside[:, :40].ravel(), scores[:, :40].ravel()))
    assert not r["below_chance"] and pooled_report(-scores, inside, n_boot=50)["below_chance"]



@pytest.mark.parametrize("decimals", [1, 8])  # heavy ties (scores on a coarse grid), and almost none
def test_every_bootstrap_replicate_equals_scikit_learn_on_its_resampled_pool(decimals):
    """The replicates are computed at once from one sort (weights = how often each target was drawn); each
    must equal the metrics of its resampled pool computed directly, ties and precision@n's shared cut too."""
    rng = np.random.default_rng(3)
    inside = balanced_membership(90, 8, seed=2)
    scores = np.round(rng.normal(size=inside.shape) + 0.5 * inside, decimals)
    counts = np.stack([np.bincount(rng.integers(0, 8, 8), minlength=8) for _ in range(40)])
    counts[0] = [8, 0, 0, 0, 0, 0, 0, 0]  # one target only: still both classes (each record IN or OUT)
    fast = replicate_summaries(scores, inside, counts, (0.01, 0.1), max_cells=2000)  # several chunks
    for b, c in enumerate(counts):
        pick = np.repeat(np.arange(8), c)
        s, y = scores[pick].ravel(), inside[pick].ravel()
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        assert fast[b, 0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert fast[b, 1] == pytest.approx(tpr[fpr <= 0.01].max(), abs=1e-12)
        assert fast[b, 2] == pytest.approx(tpr[fpr <= 0.1].max(), abs=1e-12)
        assert fast[b, 3] == pytest.approx(precision_at_n(s, y), abs=1e-12)
        assert fast[b, 4] == pytest.approx(np.max(1 - (fpr + 1 - tpr) / 2), abs=1e-12)
    one_class = replicate_summaries(scores[:, :1], np.ones((8, 1), bool), counts[:3], (0.01,))
    assert one_class.shape == (0, 4)  # a pool without non-members has no ROC: the replicate is left out

def test_the_bootstrap_resamples_targets_not_records():
    """A target-level effect (one target leaks, the others do not) widens the interval; a record-level
    bootstrap would not see it."""
    inside = balanced_membership(400, 8, seed=2)
    rng = np.random.default_rng(1)
    calm = rng.normal(size=inside.shape)
    leaky = calm.copy()
    leaky[0] += 3.0 * inside[0]
    w = lambda r: r["auc"]["ci"][1] - r["auc"]["ci"][0]  # noqa: E731
    assert w(pooled_report(leaky, inside, n_boot=200)) > 2 * w(pooled_report(calm, inside, n_boot=200))


def test_exposure_is_the_in_minus_out_gap_per_record():
    inside = balanced_membership(50, 8, seed=0)
    scores = np.zeros(inside.shape)
    scores[:, 7] = np.where(inside[:, 7], 2.0, 0.0)
    scores += np.random.default_rng(0).normal(scale=0.1, size=scores.shape)
    mean_in, mean_out, gap = exposure(scores, inside)
    assert np.argmax(gap) == 7 and mean_in[7] - mean_out[7] == pytest.approx(2.0, abs=0.15)


# ---- leave-one-out LiRA ---------------------------------------------------------------------------------

def _lira_world(t=16, p=2000, seed=0):
    """Per-record difficulty (some records are hard for every model) plus an IN effect that varies by record."""
    rng = np.random.default_rng(seed)
    inside = balanced_membership(p, t, seed=seed)
    difficulty = rng.normal(scale=2.0, size=p)
    effect = rng.gamma(1.0, 0.6, size=p)
    stats = difficulty + rng.normal(scale=0.3, size=(t, p)) - effect * inside  # a loss: lower when IN
    return stats, inside


def test_leave_one_out_online_and_offline_differ_and_online_wins_when_records_differ():
    stats, inside = _lira_world()
    on = lira.loo_scores(stats, stats, inside, mode="online")
    off = lira.loo_scores(stats, stats, inside, mode="offline")
    assert not np.allclose(np.argsort(on.ravel()), np.argsort(off.ravel()))
    r_on, r_off = pooled_report(on, inside, n_boot=0), pooled_report(off, inside, n_boot=0)
    assert r_on["tpr@1%fpr"]["value"] > r_off["tpr@1%fpr"]["value"]
    naive = pooled_report(-stats, inside, n_boot=0)  # the raw loss, without per-record calibration
    assert r_off["auc"]["value"] > naive["auc"]["value"] + 0.1


def test_leave_one_out_never_reads_the_target_itself():
    stats, inside = _lira_world(t=8, p=300)
    base = lira.loo_scores(stats, stats, inside, mode="online")
    ref = stats.copy()
    ref[3] += 100.0  # reference model 3 changed: target 3's scores must not move
    moved = lira.loo_scores(stats, ref, inside, mode="online")
    assert np.allclose(moved[3], base[3]) and not np.allclose(moved[2], base[2])


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_leave_one_out_is_at_chance_without_signal(mode):
    """Leaving the target out leaves its own group one model short; unless the groups are evened out, the
    online test scores members below non-members when nothing leaks (AUC 0.48 on 16 models)."""
    aucs = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        inside = balanced_membership(2000, 16, seed=seed)
        stats = rng.normal(size=inside.shape) + rng.normal(scale=2.0, size=2000)  # per-record offsets, no signal
        scores = lira.loo_scores(stats, stats, inside, mode=mode)
        aucs.append(roc_auc_score(inside.ravel(), scores.ravel()))
    assert abs(np.mean(aucs) - 0.5) < 0.006


def test_online_leave_one_out_catches_a_target_that_fits_its_members_far_better_than_its_references():
    """A memorizer scored against natural references: its members' losses lie far below every reference
    model's, where the two-Gaussian ratio (sd_in < sd_out) would fall again; the monotone score catches it."""
    rng = np.random.default_rng(0)
    inside = balanced_membership(1000, 16, seed=0)
    offsets = rng.normal(scale=2.0, size=1000)
    ref = offsets + rng.normal(size=inside.shape) * np.where(inside, 0.7, 1.0) - 0.1 * inside  # natural models
    target = offsets + rng.normal(scale=0.3, size=inside.shape) - 6.0 * inside  # memorizes its members
    scores = lira.loo_scores(target, ref, inside, mode="online")
    r = pooled_report(scores, inside, n_boot=0)
    assert r["auc"]["value"] >= 0.95 and r["tpr@1%fpr"]["value"] >= 0.5
