import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, precision_score, roc_auc_score

from mia_bench.metrics.privacy import (
    auc,
    best_balanced_accuracy,
    bootstrap_intervals,
    clopper_pearson,
    precision_at_n,
    privacy_report,
    tpr_at_fpr,
)


@st.composite
def scored(draw, tied: bool):
    n_mem = draw(st.integers(1, 40))
    n_non = draw(st.integers(1, 40))
    values = st.integers(0, 4).map(float) if tied else st.floats(-1e3, 1e3, allow_nan=False)
    s = np.asarray(draw(st.lists(values, min_size=n_mem + n_non, max_size=n_mem + n_non)))
    y = np.r_[np.ones(n_mem, bool), np.zeros(n_non, bool)]
    return s, y


def _brute_rates(s, y):
    """(tpr, fpr) for every threshold 'score >= t', t over the scores and +inf, via sklearn's confusion matrix."""
    out = []
    for t in np.r_[np.unique(s), np.inf]:
        tn, fp, fn, tp = confusion_matrix(y, s >= t, labels=[False, True]).ravel()
        out.append((tp / (tp + fn), fp / (fp + tn), t))
    return out


@given(data=st.one_of(scored(tied=False), scored(tied=True)))
def test_auc_matches_sklearn(data):
    s, y = data
    assert auc(s, y) == pytest.approx(roc_auc_score(y, s))


@given(data=st.one_of(scored(tied=False), scored(tied=True)), target=st.sampled_from([0.001, 0.01, 0.1, 0.25, 0.5]))
def test_tpr_at_fpr_is_best_tpr_with_fpr_at_most_target(data, target):
    s, y = data
    r = tpr_at_fpr(s, y, target)
    expected = max(tpr for tpr, fpr, _ in _brute_rates(s, y) if fpr <= target + 1e-12)
    assert r.tpr == pytest.approx(expected)
    assert r.fpr <= target + 1e-12
    assert r.true_positives == round(r.tpr * y.sum()) and r.n_non_members == (~y).sum()
    assert r.underpowered == ((~y).sum() < 10 / target)
    lo, hi = r.tpr_ci
    assert lo <= r.tpr <= hi


@given(data=st.one_of(scored(tied=False), scored(tied=True)))
def test_best_balanced_accuracy_matches_sklearn_over_thresholds(data):
    s, y = data
    expected = max(balanced_accuracy_score(y, s >= t) for *_, t in _brute_rates(s, y))
    assert best_balanced_accuracy(s, y) == pytest.approx(expected)


@given(data=scored(tied=False))
def test_precision_at_n_matches_sklearn_without_ties(data):
    s, y = data
    if np.unique(s).size < s.size:
        return
    n = int(y.sum())
    pred = np.zeros_like(y)
    pred[np.argsort(-s)[:n]] = True
    assert precision_at_n(s, y) == pytest.approx(precision_score(y, pred))


@given(data=scored(tied=True), seed=st.integers(0, 1000))
def test_precision_at_n_with_ties_is_order_free_and_the_tie_break_average(data, seed):
    s, y = data
    perm = np.random.default_rng(seed).permutation(s.size)
    value = precision_at_n(s, y)
    assert value == pytest.approx(precision_at_n(s[perm], y[perm]))
    # expectation over random tie-breaking, estimated by Monte Carlo over jittered copies (5 sigma bound)
    rng = np.random.default_rng(seed)
    n = int(y.sum())
    jittered = s[None, :] + rng.uniform(0, 1e-3, (4000, s.size))
    top = np.argsort(-jittered, axis=1)[:, :n]
    draws = y[top].mean(axis=1)
    assert value == pytest.approx(draws.mean(), abs=5 * 0.5 / np.sqrt(4000) + 1e-9)


def test_perfect_and_inverted_attacks():
    y = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    s = np.r_[np.linspace(1, 2, 50), np.linspace(-2, -1, 50)]
    assert auc(s, y) == 1.0 and tpr_at_fpr(s, y, 0.001).tpr == 1.0 and precision_at_n(s, y) == 1.0
    assert auc(-s, y) == 0.0 and tpr_at_fpr(-s, y, 0.01).tpr == 0.0


def test_underpowered_flag_follows_the_non_member_count():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(100, bool), np.zeros(1000, bool)]
    s = rng.normal(size=y.size)
    assert tpr_at_fpr(s, y, 0.01).underpowered is False
    assert tpr_at_fpr(s, y, 0.001).underpowered is True


def test_clopper_pearson_edges():
    lo, hi = clopper_pearson(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = clopper_pearson(20, 20)
    assert hi == 1.0 and 0.8 < lo < 0.9


def test_bootstrap_intervals_bracket_the_estimate_and_are_seeded():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    s = rng.normal(size=400) + y * 0.8
    ci = bootstrap_intervals(s, y, fprs=(0.01,), n_boot=200, seed=3)
    assert ci[0, 0] < auc(s, y) < ci[0, 1]
    assert 0.05 < ci[0, 1] - ci[0, 0] < 0.2
    np.testing.assert_array_equal(ci, bootstrap_intervals(s, y, fprs=(0.01,), n_boot=200, seed=3))


def test_privacy_report_keys_and_chance():
    rng = np.random.default_rng(2)
    y = np.r_[np.ones(30, bool), np.zeros(90, bool)]
    rep = privacy_report(rng.normal(size=120), y, fprs=(0.01, 0.1), n_boot=10, seed=0)
    assert set(rep) >= {"auc", "tpr@1%fpr", "tpr@10%fpr", "precision@n", "balanced_accuracy"}
    assert rep["precision@n"]["chance"] == pytest.approx(0.25)
    assert rep["tpr@1%fpr"]["detail"]["underpowered"] is True
    assert rep["member_fraction"] == pytest.approx(0.25)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        auc(np.array([np.nan, 1.0]), np.array([True, False]))
    with pytest.raises(ValueError, match="both members and non-members"):
        auc(np.array([0.0, 1.0]), np.array([True, True]))


@given(m=st.lists(st.floats(0, 1), min_size=5, max_size=200), n=st.lists(st.floats(0, 1), min_size=5, max_size=200))
def test_bc_and_tvd_satisfy_their_bounds(m, n):
    from mia_bench.metrics.overfitting import bc_overfitting, tvd

    o_bc, t = bc_overfitting(np.array(m), np.array(n)), tvd(np.array(m), np.array(n))
    bc = 1 - o_bc
    assert -1e-9 <= o_bc <= 1 and 1 - bc <= t + 1e-9 and t <= np.sqrt(max(1 - bc**2, 0)) + 1e-9


def test_bc_is_zero_for_identical_and_one_for_disjoint_outputs():
    from mia_bench.metrics.overfitting import bc_overfitting

    x = np.linspace(0, 1, 100)
    assert bc_overfitting(x, x) == pytest.approx(0.0, abs=1e-12)
    assert bc_overfitting(np.full(10, 0.95), np.full(10, 0.05)) == pytest.approx(1.0)


def test_report_without_bootstrap_has_no_intervals_and_is_json_safe():
    import json

    y = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    rep = privacy_report(np.arange(40.0), y, n_boot=0)
    assert rep["auc"]["ci"] is None
    json.dumps(rep, allow_nan=False)
