"""Dimension-wise probability (DWP) and dimension-wise prediction (DWpre) for binary tables (medGAN,
Choi et al. 2017; ALGORITHMS.md section 4.4). Inputs are 0/1 arrays (N, D); generated values are
thresholded before (x > 0 on the [-1, 1] scale, i.e. p > 0.5).

DWP:   p_k = mean_i x_ik for real and synthetic data; summaries mean |p_real - p_syn| and Pearson r.
DWpre: for each k, logistic regression (L2, C = 1, max_iter = 1000, class_weight None) predicts x_k from
       x_{-k}; trained once on real training data and once on synthetic data, both scored by F1 on the
       same real test set. Dimension k is skipped when its target is constant in either training set or
       has no positive in the test set; summaries mean |F1_real - F1_syn| and Pearson r over the rest.
Pearson r is None when either side is constant (undefined).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from mia_bench.metrics.base import register_metric


def _binary(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must be a 2-D 0/1 array, got shape {a.shape}")
    return a.astype(np.int8)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


@register_metric("dwp_mae", higher_is_better=False, kind="utility",
                 description="DWP: mean |p_real - p_syn| of per-dimension probabilities (binary tables)")
def dimension_wise_probability(real: np.ndarray, synthetic: np.ndarray) -> dict:
    """{'p_real': (D,), 'p_syn': (D,), 'mae': float, 'r': float | None} for 0/1 tables (N, D), (M, D)."""
    r, s = _binary(real, "real"), _binary(synthetic, "synthetic")
    if r.shape[1] != s.shape[1]:
        raise ValueError(f"real has {r.shape[1]} dimensions, synthetic {s.shape[1]}")
    p_real, p_syn = r.mean(0), s.mean(0)
    return {"p_real": p_real, "p_syn": p_syn, "mae": float(np.abs(p_real - p_syn).mean()), "r": pearson(p_real, p_syn)}


def _f1_for(train: np.ndarray, test: np.ndarray, k: int) -> float:
    model = LogisticRegression(C=1.0, max_iter=1000)  # L2 penalty (the default), class_weight None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        model.fit(np.delete(train, k, axis=1), train[:, k])
    return float(f1_score(test[:, k], model.predict(np.delete(test, k, axis=1)), zero_division=0))


@register_metric("dwpre_mae", higher_is_better=False, kind="utility",
                 description="DWpre: mean |F1_real - F1_syn| of per-dimension logistic regressions (binary tables)")
def dimension_wise_prediction(real_train: np.ndarray, synthetic: np.ndarray, real_test: np.ndarray, *,
                              n_jobs: int = 1) -> dict:
    """{'dims': valid k, 'f1_real', 'f1_syn' (per valid k), 'mae', 'r', 'skipped': count} on 0/1 tables.

    n_jobs: parallel regressions (joblib; -1 = every core), for tables with ~1,000 codes."""
    from joblib import Parallel, delayed

    rt, sy, te = _binary(real_train, "real_train"), _binary(synthetic, "synthetic"), _binary(real_test, "real_test")
    if not rt.shape[1] == sy.shape[1] == te.shape[1]:
        raise ValueError("real_train, synthetic and real_test must have the same dimensions")
    dims = [k for k in range(rt.shape[1]) if np.ptp(rt[:, k]) > 0 and np.ptp(sy[:, k]) > 0 and te[:, k].sum() > 0]
    f1 = Parallel(n_jobs=n_jobs)(delayed(_f1_for)(train, te, k) for k in dims for train in (rt, sy))
    a, b = np.array(f1[0::2], dtype=float), np.array(f1[1::2], dtype=float)
    return {"dims": np.array(dims, np.int64), "f1_real": a, "f1_syn": b,
            "mae": float(np.abs(a - b).mean()) if a.size else None, "r": pearson(a, b),
            "skipped": int(rt.shape[1] - len(dims))}
