"""LiRA's Gaussian likelihood ratio (Carlini et al. 2022; ALGORITHMS.md 3.3) over per-record losses.

Statistics are losses: lower = more member-like. Shadow statistics come as (K, N) arrays, K models.

In mia_bench the attacker's shadow models never train on a scored record (they train on the shadow pool,
never on members or non-members), so every shadow model is OUT for every query, and the query's OUT
distribution is measured per record, as in LiRA. The IN distribution of a query cannot be measured; the
online test therefore moves the query's OUT mean by the IN-minus-OUT shift measured on the pool records
(which are IN for half the shadows), and uses the IN spread measured there [rec]. Means are medians over
models (LiRA's code); spreads are per-record standard deviations, or one pooled within-record standard
deviation ("global variance") when K < 64 (LiRA's advice for few shadows; pooled within records rather
than over the whole array, which would mix in the spread of the means).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

GLOBAL_VARIANCE_BELOW = 64
_TINY = 1e-12


@dataclass(frozen=True)
class InShift:
    """IN-vs-OUT behaviour measured on records the shadows did train on."""

    shift: float  # median over records of (median IN loss - median OUT loss)
    sd_in: float  # pooled within-record standard deviation of the IN losses (nan: no record IN twice)
    sd_out: float  # the same for OUT losses
    n_records: int  # records with at least one IN and one OUT model

    @property
    def sd_pooled(self) -> float:
        """One spread for IN and OUT alike (the mean variance of the two that could be measured)."""
        return float(np.sqrt(np.nanmean([self.sd_in ** 2, self.sd_out ** 2])))


def _pooled_sd(stats: np.ndarray, mask: np.ndarray) -> float:
    """sqrt of the mean over records (columns) with >= 2 entries of the within-record variance of stats[mask]."""
    n = mask.sum(0)
    ok = n >= 2
    if not ok.any():
        return float("nan")
    mean = np.where(mask, stats, 0.0).sum(0) / np.maximum(n, 1)
    var = (np.where(mask, (stats - mean) ** 2, 0.0).sum(0) / np.maximum(n - 1, 1))[ok]
    return float(np.sqrt(var.mean()))


def in_shift(stats: np.ndarray, is_in: np.ndarray) -> InShift:
    """stats (K, R) losses of R pool records under K shadows; is_in (K, R) bool. Entries to ignore (e.g.
    mixed pairs that are half IN) are passed as NaN."""
    valid = np.isfinite(stats)
    inn, out = is_in & valid, ~is_in & valid
    ok = (inn.sum(0) >= 1) & (out.sum(0) >= 1)
    if not ok.any():
        raise ValueError("no pool record is IN for one shadow model and OUT for another: train more shadows "
                         "(n_shadows >= 4) or give them more pool records")
    cols = np.flatnonzero(ok)
    med_in = np.array([np.median(stats[inn[:, j], j]) for j in cols])
    med_out = np.array([np.median(stats[out[:, j], j]) for j in cols])
    sd_in, sd_out = _pooled_sd(stats[:, cols], inn[:, cols]), _pooled_sd(stats[:, cols], out[:, cols])
    if np.isnan(sd_in) and np.isnan(sd_out):
        raise ValueError("no pool record has two IN or two OUT shadow models: train more shadows")
    return InShift(shift=float(np.median(med_in - med_out)), sd_in=sd_in, sd_out=sd_out, n_records=int(ok.sum()))


def out_fit(stats: np.ndarray, *, global_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-record OUT median (N,) and spread (N,) from stats (K, N) of models that never saw the records."""
    mu = np.median(stats, axis=0)
    if global_variance:
        sd = np.full(stats.shape[1], _pooled_sd(stats, np.ones_like(stats, dtype=bool)))
    else:
        sd = stats.std(axis=0, ddof=1) if stats.shape[0] > 1 else np.zeros(stats.shape[1])
    return mu, np.maximum(sd, _TINY)


def offline_score(target: np.ndarray, mu_out: np.ndarray, sd_out: np.ndarray) -> np.ndarray:
    """One-sided offline test, log P[OUT loss >= observed] = log Phi((mu_out - l) / sd_out); higher = member.
    (In log space so that very small tail probabilities keep their order.)"""
    return norm.logcdf((mu_out - target) / sd_out)


def online_score(target: np.ndarray, mu_out: np.ndarray, sd_out: np.ndarray, shift: InShift) -> np.ndarray:
    """log N(l; mu_out + shift, sd_in^2) - log N(l; mu_out, sd_out^2); higher = member."""
    sd_in = max(shift.sd_in, _TINY) if np.isfinite(shift.sd_in) else sd_out
    return norm.logpdf(target, mu_out + shift.shift, sd_in) - norm.logpdf(target, mu_out, sd_out)


def pooled_online_score(target: np.ndarray, mu_out: np.ndarray, shift: InShift) -> np.ndarray:
    """The online score with one spread for IN and OUT (global variance, few shadows): a linear, monotone
    function of the loss, (l - mu_out) * shift / sd^2 - shift^2 / (2 sd^2)."""
    sd = np.full_like(mu_out, max(shift.sd_pooled, _TINY))
    return norm.logpdf(target, mu_out + shift.shift, sd) - norm.logpdf(target, mu_out, sd)


# ---- protocol v2: leave-one-out over many targets (every record IN for half of them) -----------------

def loo_scores(target_stats: np.ndarray, ref_stats: np.ndarray, inside: np.ndarray, *, mode: str,
               global_variance: bool | None = None) -> np.ndarray:
    """(T, P) LiRA scores of every record under every target, each target scored against the reference
    models of the other indices (leave-one-out, as Aerni et al. 2024 do).

    target_stats (T, P): the statistic (a loss, lower = member) of record j under target t.
    ref_stats (T, P): the same under the reference models; reference t shares target t's membership
        (adaptive: the targets themselves; natural: the `none` targets of the same design), and is left out
        when target t is scored. inside (T, P): membership of the design.
    mode: online (per-record IN and OUT Gaussians, LiRA's likelihood ratio) | offline (the OUT Gaussian's
        one-sided test). Means are per-record medians (LiRA's code); spreads are per record, or, with
        global_variance (default: fewer than 64 reference models, LiRA's advice), one within-record pooled
        spread for IN and one for OUT.
    Three departures from LiRA as published, each because the reference models are few (T - 1) and may
    differ from the target [rec]: the IN and OUT groups are evened out per record (_equal_groups); the
    per-record IN-OUT gap is shrunk towards the median gap by how much of its spread is noise
    (_shrunk_in_means); and the online score is made monotone beyond the IN mean, so a target that fits
    its members better than any reference model (a memorizer against natural references) is caught.
    """
    t_n, p_n = target_stats.shape
    if ref_stats.shape != (t_n, p_n) or inside.shape != (t_n, p_n):
        raise ValueError(f"target_stats {target_stats.shape}, ref_stats {ref_stats.shape} and inside "
                         f"{inside.shape} must all be (T, P)")
    if mode not in ("online", "offline"):
        raise ValueError(f"mode must be online or offline, got {mode!r}")
    if global_variance is None:
        global_variance = t_n - 1 < GLOBAL_VARIANCE_BELOW
    inside = np.asarray(inside, bool)
    out = np.empty((t_n, p_n))
    rng = np.random.default_rng(7)
    for t in range(t_n):
        keep = np.arange(t_n) != t
        out[t] = ratio_scores(target_stats[t], ref_stats[keep], inside[keep], mode=mode,
                              global_variance=global_variance, rng=rng)
    return out


def ratio_scores(target: np.ndarray, ref: np.ndarray, inside: np.ndarray, *, mode: str, global_variance: bool,
                 rng: np.random.Generator) -> np.ndarray:
    """(P,) LiRA scores (higher = member) of one target's statistics target (P,) (a loss, lower = member)
    against R reference models: ref (R, P) their statistics, inside (R, P) which records each trained on
    (every record IN for some and OUT for others, as LiRA's balanced halves give). The per-record IN and
    OUT Gaussians are fitted as loo_scores describes (even groups, shrunk IN gaps, monotone beyond the IN
    mean); offline uses the OUT one alone. Also the external audit's LiRA (mia_bench/external/shadow.py):
    the user's model against shadows of the user's recipe."""
    ref, m_in, m_out = _equal_groups(ref, np.asarray(inside, bool), rng)
    mu_out, sd_out = _masked_fit(ref, m_out, global_variance)
    if mode == "offline":
        return offline_score(target, mu_out, sd_out)
    mu_in, sd_in = _masked_fit(ref, m_in, global_variance)
    mu_in = _shrunk_in_means(mu_in, mu_out, sd_in, sd_out, m_in.sum(0), m_out.sum(0))
    # monotone in the loss: beyond the IN mean (more member-like than a typical IN model) a record scores
    # the ratio at the IN mean plus its distance beyond it in IN spreads. Without this, with sd_in < sd_out
    # the Gaussian ratio falls again below the IN mean, and a memorizer's members, far below every
    # reference model's losses, score as non-members.
    lower = mu_in < mu_out  # the side of the IN mean where members lie
    beyond = np.where(lower, mu_in - target, target - mu_in).clip(min=0.0) / sd_in
    s_t = np.where(lower, np.maximum(target, mu_in), np.minimum(target, mu_in))
    return norm.logpdf(s_t, mu_in, sd_in) - norm.logpdf(s_t, mu_out, sd_out) + beyond


def _shrunk_in_means(mu_in: np.ndarray, mu_out: np.ndarray, sd_in: np.ndarray, sd_out: np.ndarray,
                     n_in: np.ndarray, n_out: np.ndarray) -> np.ndarray:
    """Per-record IN means with their IN-OUT gap shrunk towards the median gap (empirical Bayes): with
    T/2 - 1 reference models per group, a record's estimated gap is mostly noise when the models barely
    leak, and its sign is then a coin flip. The weight is the share of the gaps' spread that is not noise
    (the variance of a median of n Gaussians is about pi/2 sd^2 / n); with strong per-record effects
    (overfit models, canaries) it is close to 1 and each record keeps its own gap."""
    gap = mu_in - mu_out
    noise = float(np.mean(np.pi / 2 * (sd_in ** 2 / np.maximum(n_in, 1) + sd_out ** 2 / np.maximum(n_out, 1))))
    signal = max(float(np.var(gap)) - noise, 0.0)
    w = signal / (signal + noise) if signal + noise > 0 else 0.0
    return mu_out + w * gap + (1 - w) * float(np.median(gap))


def _equal_groups(ref: np.ndarray, inside: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray,
                                                                                          np.ndarray]:
    """(ref, IN mask, OUT mask) with, per record, as many IN as OUT reference models. Leaving the target out
    of a balanced design leaves its own group one model short (T/2 - 1 against T/2); a median of fewer
    models is noisier, and the likelihood ratio then scores the target's own group lower: with no signal at
    all, online LOO LiRA reaches AUC 0.48 on 16 models. Dropping one random model of the larger group, per
    record, makes the two groups the same size and the test symmetric (AUC 0.5 without signal)."""
    n_in = inside.sum(0)
    n_out = inside.shape[0] - n_in
    keys = rng.uniform(size=inside.shape)
    m_in, m_out = inside.copy(), ~inside
    cols = np.arange(inside.shape[1])
    more_in = n_in > n_out
    drop = np.argmax(np.where(inside, keys, -1.0), axis=0)  # a random IN model per record
    m_in[drop[more_in], cols[more_in]] = False
    more_out = n_out > n_in
    drop = np.argmax(np.where(~inside, keys, -1.0), axis=0)  # a random OUT model per record
    m_out[drop[more_out], cols[more_out]] = False
    return ref, m_in, m_out


def _masked_fit(stats: np.ndarray, mask: np.ndarray, global_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-record median and spread of stats[mask] (columns); a record without any entry gets the median of
    the others, one with fewer than two the pooled spread."""
    vals = np.where(mask, stats, np.nan)
    counts = mask.sum(0)
    with np.errstate(all="ignore"):
        mu = np.nanmedian(vals, axis=0) if counts.all() else _nanmedian_filled(vals, counts)
    pooled = _pooled_sd(stats, mask)
    pooled = pooled if np.isfinite(pooled) else 1.0
    if global_variance:
        sd = np.full(stats.shape[1], pooled)
    else:
        with np.errstate(all="ignore"):
            sd = np.nanstd(vals, axis=0, ddof=1)
        sd = np.where(counts >= 2, sd, pooled)
    return mu, np.maximum(sd, _TINY)


def _nanmedian_filled(vals: np.ndarray, counts: np.ndarray) -> np.ndarray:
    mu = np.full(vals.shape[1], np.nan)
    ok = counts > 0
    mu[ok] = np.nanmedian(vals[:, ok], axis=0)
    mu[~ok] = np.median(mu[ok]) if ok.any() else 0.0
    return mu
