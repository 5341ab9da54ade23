"""White-box overfitting diagnostics of a discriminator: how different its outputs are on members and
non-members (ALGORITHMS.md section 2.2). Histograms use B bins on [0, 1]; equal-size samples.

BC  = sum_b sqrt(P_b Q_b) in [0, 1]; 1 means no detectable overfitting. Reported as O_BC = 1 - BC.
TVD = 1/2 sum_b |P_b - Q_b| (privGAN / PAR-GAN). Always 1 - BC <= TVD <= sqrt(1 - BC^2).
"""

from __future__ import annotations

import numpy as np

from mia_bench.metrics.base import register_metric


def _histograms(p_values: np.ndarray, q_values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    p, _ = np.histogram(np.clip(p_values, 0, 1), bins=edges)
    q, _ = np.histogram(np.clip(q_values, 0, 1), bins=edges)
    return p / max(p.sum(), 1), q / max(q.sum(), 1)


@register_metric("bc_overfitting", higher_is_better=False, kind="diagnostic",
                 description="1 - Bhattacharyya coefficient of D-output histograms, members vs non-members")
def bc_overfitting(member_values: np.ndarray, non_member_values: np.ndarray, bins: int = 50) -> float:
    p, q = _histograms(np.asarray(member_values), np.asarray(non_member_values), bins)
    return float(1.0 - np.sqrt(p * q).sum())


@register_metric("tvd", higher_is_better=False, kind="diagnostic",
                 description="total variation distance of D-output histograms, members vs non-members")
def tvd(member_values: np.ndarray, non_member_values: np.ndarray, bins: int = 50) -> float:
    p, q = _histograms(np.asarray(member_values), np.asarray(non_member_values), bins)
    return float(0.5 * np.abs(p - q).sum())


def to_unit_interval(values: np.ndarray, *, is_logit: bool) -> np.ndarray:
    """sigmoid for logits; min-max over the pooled values for critics and other unbounded scores."""
    v = np.asarray(values, dtype=np.float64)
    if is_logit:
        return 1.0 / (1.0 + np.exp(-v))
    span = v.max() - v.min()
    return (v - v.min()) / span if span > 0 else np.full_like(v, 0.5)


def discriminator_diagnostics(member_out: np.ndarray, non_member_out: np.ndarray, *, is_logit: bool,
                              bins: int = 50) -> dict[str, float]:
    """O_BC, Bhattacharyya distance and TVD of D's outputs on equal-size member / non-member sets."""
    n = min(member_out.size, non_member_out.size)
    pooled = to_unit_interval(np.concatenate([member_out[:n], non_member_out[:n]]), is_logit=is_logit)
    m, nm = pooled[:n], pooled[n:]
    o_bc = bc_overfitting(m, nm, bins)
    return {"bc_overfitting": o_bc, "bhattacharyya_distance": float(-np.log(max(1.0 - o_bc, 1e-12))),
            "tvd": tvd(m, nm, bins), "bins": bins, "n_per_side": int(n),
            "scale": "sigmoid" if is_logit else "min-max"}
