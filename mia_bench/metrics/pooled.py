"""Protocol v2's pooled privacy metrics: one ROC over the scores of every record under every target model.

LiRA (Carlini et al. 2022) and Aerni et al. (CCS 2024) pool the scores of all (target, record) pairs into
one ROC; the models are the independent units, so intervals come from a bootstrap that resamples targets
(all of a resampled target's scores enter together) and are clipped to [0, 1]. The same metrics as
protocol v1 (metrics/privacy.py: AUC, TPR at each FPR with the conservative rule, precision@n, best
balanced accuracy), on the whole population and on the canaries alone. An AUC whose interval lies below
0.5 is flagged (`below_chance`): an attack that ranks non-members first is a broken attack or a
mis-signed score, never evidence of privacy.
"""

from __future__ import annotations

import numpy as np

from mia_bench.metrics.privacy import _summary, fpr_key, tpr_at_fpr

_CLIP = (0.0, 1.0)


def _names(fprs: tuple[float, ...]) -> list[str]:
    return ["auc", *[fpr_key(a) for a in fprs], "precision@n", "balanced_accuracy"]


def pooled_report(scores: np.ndarray, inside: np.ndarray, *, fprs: tuple[float, ...] = (0.001, 0.01, 0.1),
                  n_boot: int = 200, seed: int = 0, level: float = 0.95, columns: np.ndarray | None = None) -> dict:
    """scores, inside: (T, P) (higher score = member; inside[t, j]: record j trained target t). columns: a
    (P,) bool mask of the records to score (e.g. the canaries); default every record.

    Returns {metric: {"value", "ci"}} as privacy_report does, plus counts, `underpowered` (the FPRs with
    fewer than 10/x non-member scores behind them) and `below_chance`."""
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(inside, dtype=bool)
    if s.shape != m.shape or s.ndim != 2:
        raise ValueError(f"scores {s.shape} and inside {m.shape} must be matching (T, P) arrays")
    if columns is not None:
        s, m = s[:, np.asarray(columns, bool)], m[:, np.asarray(columns, bool)]
    if not np.isfinite(s).all():
        raise ValueError("attack scores contain NaN or inf")
    flat_s, flat_m = s.ravel(), m.ravel()
    names = _names(fprs)
    point = _summary(flat_s, flat_m, fprs)
    report: dict = {k: {"value": float(v), "ci": None} for k, v in zip(names, point, strict=True)}
    if n_boot:
        rng = np.random.default_rng(seed)
        t = s.shape[0]
        reps = []
        for _ in range(n_boot):
            pick = rng.integers(0, t, t)
            ms = m[pick].ravel()
            if ms.all() or not ms.any():
                continue
            reps.append(_summary(s[pick].ravel(), ms, fprs))
        if reps:
            alpha = (1.0 - level) / 2.0
            lo, hi = np.quantile(np.asarray(reps), [alpha, 1.0 - alpha], axis=0)
            for k, a, b in zip(names, lo, hi, strict=True):
                report[k]["ci"] = [float(np.clip(a, *_CLIP)), float(np.clip(b, *_CLIP))]
    for a in fprs:
        report[fpr_key(a)]["detail"] = tpr_at_fpr(flat_s, flat_m, a).to_dict()
    n_mem, n_non = int(flat_m.sum()), int((~flat_m).sum())
    report["precision@n"]["chance"] = n_mem / (n_mem + n_non)
    report.update(n_members=n_mem, n_non_members=n_non, member_fraction=n_mem / (n_mem + n_non),
                  n_targets=int(s.shape[0]), n_records=int(s.shape[1]),
                  underpowered=[fpr_key(a) for a in fprs if n_non < 10.0 / a])
    ci = report["auc"]["ci"]
    report["below_chance"] = bool(ci is not None and ci[1] < 0.5)
    return report


def exposure(scores: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record: (mean score when IN, mean score when OUT, their gap in units of the attack's pooled
    within-group spread). Every record of a balanced design is IN for T/2 targets and OUT for T/2."""
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(inside, dtype=bool)
    n_in, n_out = m.sum(0), (~m).sum(0)
    mean_in = np.where(m, s, 0).sum(0) / np.maximum(n_in, 1)
    mean_out = np.where(~m, s, 0).sum(0) / np.maximum(n_out, 1)
    resid = np.where(m, s - mean_in, s - mean_out)
    spread = max(float(np.sqrt((resid ** 2).sum() / max(s.size - 2 * s.shape[1], 1))), 1e-12)
    return mean_in, mean_out, (mean_in - mean_out) / spread
