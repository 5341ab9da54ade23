"""DOMIAS's Gaussian KDE: exact log densities, scikit-learn's conventions and its cross-validated choice."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KernelDensity

from mia_bench.attacks.domias import BANDWIDTHS, GaussianKDE, cv_bandwidth, fold_log_likelihoods


def brute_log_density(points: np.ndarray, q: np.ndarray, h: float) -> np.ndarray:
    d2 = ((q[:, None, :] - points[None]) ** 2).sum(-1)
    n, d = points.shape
    return logsumexp(-d2 / (2 * h * h), axis=1) - np.log(n) - 0.5 * d * np.log(2 * np.pi) - d * np.log(h)


@pytest.fixture(scope="module")
def digits_pca() -> tuple[np.ndarray, np.ndarray]:
    """Digits in whitened PCA-10 (fitted on 250 records, as DOMIAS fits it on attacker_aux) and
    pixel-shuffled canaries (data/design.py's image canaries) in the same coordinates."""
    x = load_digits().data / 8.0 - 1.0
    rng = np.random.default_rng(0)
    pca = PCA(10, whiten=True, random_state=0).fit(x[:250])
    canaries = np.stack([rng.permutation(r) for r in x[1500:1628]])
    return pca.transform(x[250:1500]), pca.transform(canaries)


def test_log_density_is_exact_far_from_the_data_too(digits_pca: tuple[np.ndarray, np.ndarray]) -> None:
    z, canaries = digits_pca
    points, held_out = z[:1000], z[1000:]
    for h in (0.1, 0.39, 1.5):
        kde = GaussianKDE(h).fit(points)
        for q in (held_out, canaries):
            np.testing.assert_allclose(kde.score_samples(q, chunk=100), brute_log_density(points, q, h),
                                       rtol=1e-10, atol=1e-8)
    # scikit-learn's tree agrees on in-distribution records, where its bounds are tight...
    sk = KernelDensity(bandwidth=0.39).fit(points)
    np.testing.assert_allclose(GaussianKDE(0.39).fit(points).score_samples(held_out), sk.score_samples(held_out),
                               rtol=0, atol=1e-5)
    # ...and not on the canaries, which is why DOMIAS does not use it (domias.py's docstring)
    err = np.abs(GaussianKDE(0.39).fit(points).score_samples(canaries) - sk.score_samples(canaries))
    assert err.max() > 1.0


def test_bandwidth_rules_follow_scikit_learn(digits_pca: tuple[np.ndarray, np.ndarray]) -> None:
    z = digits_pca[0][:700]
    for rule in ("scott", "silverman"):
        assert GaussianKDE(rule).fit(z).bandwidth_ == pytest.approx(KernelDensity(bandwidth=rule).fit(z).bandwidth_)


def test_cross_validation_picks_what_grid_search_picks(digits_pca: tuple[np.ndarray, np.ndarray]) -> None:
    rng = np.random.default_rng(1)
    for z in (digits_pca[0][:900], digits_pca[0][:600] + rng.normal(0, 0.3, (600, 10))):
        grid = GridSearchCV(KernelDensity(), {"bandwidth": BANDWIDTHS}, cv=3).fit(z)
        assert cv_bandwidth(z) == pytest.approx(grid.best_params_["bandwidth"])
        folds = fold_log_likelihoods(z)
        np.testing.assert_allclose(fold_log_likelihoods(z, chunk=70), folds, rtol=1e-12)  # blocks sum alike
        best = int(np.argmax(folds.mean(0)))
        sk = np.array([grid.cv_results_[f"split{i}_test_score"] for i in range(3)])
        # from the chosen bandwidth up, scikit-learn's tree sums are close to exact (within 1e-4); below it
        # they drift by up to tens of percent, which the choice never reaches
        np.testing.assert_allclose(folds[:, best:], sk[:, best:], rtol=1e-4)
        for f, (train, test) in enumerate(KFold(3).split(z)):  # the same folds, every bandwidth, exactly
            exact = [brute_log_density(z[train], z[test], h).sum() for h in BANDWIDTHS]
            np.testing.assert_allclose(folds[f], exact, rtol=1e-10)
