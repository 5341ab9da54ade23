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
        counts = np.stack([np.bincount(rng.integers(0, t, t), minlength=t) for _ in range(n_boot)])
        reps = replicate_summaries(s, m, counts, fprs)
        if len(reps):
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


def replicate_summaries(s: np.ndarray, m: np.ndarray, counts: np.ndarray, fprs: tuple[float, ...],
                        max_cells: int = 4_000_000) -> np.ndarray:
    """metrics/privacy._summary of every bootstrap replicate at once: replicate b pools each score of target t
    counts[b, t] times. s, m: (T, P); counts: (B, T). Returns (B', n_metrics), B' the replicates that hold
    both members and non-members.

    One sort of the pooled scores serves every replicate: a replicate is the same ranking with weights, so its
    ROC is the weighted cumulative sums at the ends of the groups of tied scores (scikit-learn's roc_curve
    without dropped points); AUC by the trapezoid over them, TPR at FPR <= x by the conservative rule, the
    best balanced accuracy over the points, and precision@n with ties at the cut shared pro rata."""
    t, p = s.shape
    flat, mem = s.ravel(), m.ravel()
    order = np.argsort(-flat, kind="stable")
    owner, pos = np.repeat(np.arange(t), p)[order], mem[order]
    ranked = flat[order]
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # the last position of each tied group
    out = []
    for chunk in np.array_split(counts, max(1, -(-counts.shape[0] * flat.size // max_cells))):
        w = chunk[:, owner].astype(np.float64)  # (b, N): each score's weight in each replicate
        zero = np.zeros((w.shape[0], 1))
        tp = np.concatenate([zero, np.cumsum(w * pos, 1)[:, ends]], 1)
        fp = np.concatenate([zero, np.cumsum(w * ~pos, 1)[:, ends]], 1)
        n_pos, n_neg = tp[:, -1:], fp[:, -1:]
        keep = (n_pos[:, 0] > 0) & (n_neg[:, 0] > 0)
        tp, fp, n_pos, n_neg = tp[keep], fp[keep], n_pos[keep], n_neg[keep]
        tpr, fpr = tp / n_pos, fp / n_neg
        rows = np.arange(tp.shape[0])
        cols = [np.trapezoid(tpr, fpr, axis=1)]
        cols += [tpr[rows, (fpr <= a + 1e-12).sum(1) - 1] for a in fprs]
        total = tp + fp
        g = np.argmax(total >= n_pos, axis=1)  # the group holding the n-th score, n = the members' weight
        above, tp_above = total[rows, g - 1], tp[rows, g - 1]
        share = (tp[rows, g] - tp_above) / (total[rows, g] - above)
        cols += [(tp_above + (n_pos[:, 0] - above) * share) / n_pos[:, 0]]
        cols += [np.max(1.0 - (fpr + 1.0 - tpr) / 2.0, axis=1)]
        out.append(np.stack(cols, 1))
    return np.concatenate(out) if out else np.zeros((0, 3 + len(fprs)))


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
