"""Privacy metrics over attack scores: pure functions of (scores, is_member), higher score = member.

ROC points come from sklearn.metrics.roc_curve(drop_intermediate=False). TPR at FPR x is the conservative
rule: the largest empirical TPR among ROC points with FPR <= x (no interpolation), reported with the
counts behind it, a Clopper-Pearson interval, and `underpowered` when there are fewer than 10/x
non-members (the FPR grid is then too coarse for x to mean what it says).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score, roc_curve

from mia_bench.metrics.base import register_metric


def _check(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_member).astype(bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and is_member {y.shape} must be matching 1-D arrays")
    if not np.isfinite(s).all():
        raise ValueError("attack scores contain NaN or inf")
    if y.all() or not y.any():
        raise ValueError("need both members and non-members to score an attack")
    return s, y


@register_metric("auc", higher_is_better=False, kind="privacy", description="ROC AUC (ties averaged)")
def auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    s, y = _check(scores, is_member)
    return float(roc_auc_score(y, s))


@dataclass(frozen=True)
class TprAtFpr:
    target_fpr: float
    tpr: float
    fpr: float  # realised FPR at the chosen threshold (<= target)
    true_positives: int
    false_positives: int
    n_members: int
    n_non_members: int
    underpowered: bool
    tpr_ci: tuple[float, float]  # Clopper-Pearson 95% over n_members trials

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tpr_ci"] = list(self.tpr_ci)
        return d


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


@register_metric("tpr_at_fpr", higher_is_better=False, kind="privacy",
                 description="largest TPR with FPR <= x (conservative), with counts and CI")
def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, target_fpr: float) -> TprAtFpr:
    s, y = _check(scores, is_member)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    j = int(np.flatnonzero(fpr <= target_fpr + 1e-12)[-1])  # fpr is non-decreasing; fpr[0] = 0
    n_mem, n_non = int(y.sum()), int((~y).sum())
    tp, fp = int(round(tpr[j] * n_mem)), int(round(fpr[j] * n_non))
    return TprAtFpr(target_fpr=target_fpr, tpr=float(tpr[j]), fpr=float(fpr[j]), true_positives=tp,
                    false_positives=fp, n_members=n_mem, n_non_members=n_non,
                    underpowered=n_non < 10.0 / target_fpr, tpr_ci=clopper_pearson(tp, n_mem))


@register_metric("precision_at_n", higher_is_better=False, kind="privacy",
                 description="fraction of members among the n top scores (n = #members); chance = pi")
def precision_at_n(scores: np.ndarray, is_member: np.ndarray, n: int | None = None) -> float:
    """LOGAN/privGAN top-n "accuracy". Ties at the cut are shared pro rata (expected value over random
    tie-breaking), so the result does not depend on the input order."""
    s, y = _check(scores, is_member)
    n = int(y.sum()) if n is None else int(n)
    cut = np.sort(s)[::-1][n - 1]
    above = s > cut
    tied = s == cut
    slots = n - int(above.sum())
    members = y[above].sum() + slots * y[tied].mean()
    return float(members / n)


@register_metric("balanced_accuracy", higher_is_better=False, kind="privacy",
                 description="best balanced accuracy over thresholds (optimistic: threshold chosen on test)")
def best_balanced_accuracy(scores: np.ndarray, is_member: np.ndarray) -> float:
    s, y = _check(scores, is_member)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return float(np.max(1.0 - (fpr + (1.0 - tpr)) / 2.0))


def _summary(s: np.ndarray, y: np.ndarray, fprs: tuple[float, ...]) -> np.ndarray:
    """[auc, tpr@fprs..., precision@n, balanced accuracy] in one roc_curve pass (used by the bootstrap)."""
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    out = [float(roc_auc_score(y, s))]
    out += [float(tpr[np.flatnonzero(fpr <= a + 1e-12)[-1]]) for a in fprs]
    out += [precision_at_n(s, y), float(np.max(1.0 - (fpr + 1.0 - tpr) / 2.0))]
    return np.asarray(out)


def bootstrap_intervals(scores: np.ndarray, is_member: np.ndarray, *, fprs: tuple[float, ...],
                        n_boot: int, seed: int, level: float = 0.95) -> np.ndarray:
    """Percentile intervals of the `_summary` metrics, resampling members and non-members separately
    (stratified, so every replicate keeps the member fraction). Returns (n_metrics, 2)."""
    s, y = _check(scores, is_member)
    rng = np.random.default_rng(seed)
    mem, non = np.flatnonzero(y), np.flatnonzero(~y)
    reps = np.empty((n_boot, 3 + len(fprs)))
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(mem, mem.size), rng.choice(non, non.size)])
        reps[b] = _summary(s[idx], y[idx], fprs)
    alpha = (1.0 - level) / 2.0
    return np.quantile(reps, [alpha, 1.0 - alpha], axis=0).T


def fpr_key(a: float) -> str:
    """0.001 -> 'tpr@0.1%fpr' (the key used in records and the leaderboard)."""
    return f"tpr@{a * 100:g}%fpr"


def privacy_report(scores: np.ndarray, is_member: np.ndarray, *, fprs: tuple[float, ...] = (0.001, 0.01, 0.1),
                   n_boot: int = 200, seed: int = 0) -> dict:
    """Every privacy metric of one attack, each as {value, ci (None when n_boot=0)}, plus the TPR counts
    and the sample sizes."""
    s, y = _check(scores, is_member)
    point = _summary(s, y, fprs)
    names = ["auc", *[fpr_key(a) for a in fprs], "precision@n", "balanced_accuracy"]
    report: dict = {k: {"value": float(v), "ci": None} for k, v in zip(names, point, strict=True)}
    if n_boot:
        for k, (lo, hi) in zip(names, bootstrap_intervals(s, y, fprs=fprs, n_boot=n_boot, seed=seed), strict=True):
            report[k]["ci"] = [float(lo), float(hi)]
    for a in fprs:
        report[fpr_key(a)]["detail"] = tpr_at_fpr(s, y, a).to_dict()
    n_mem, n_non = int(y.sum()), int((~y).sum())
    report["precision@n"]["chance"] = n_mem / (n_mem + n_non)
    report["n_members"], report["n_non_members"] = n_mem, n_non
    report["member_fraction"] = n_mem / (n_mem + n_non)
    return report
