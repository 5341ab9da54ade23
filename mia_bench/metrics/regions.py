"""Precision at the top-scoring regions (Hu & Pang's high-precision emphasis, ALGORITHMS.md 3.4 and 4.1).

For attacks whose scores take few distinct values (one per region, e.g. the member-confidence score of a
cluster), the natural high-precision operating points are "the records in the best region", "in the two
best regions", ...: precision = members among the records scoring at or above the j-th highest distinct
score. Pure function of (scores, is_member), higher score = member.
"""

from __future__ import annotations

import numpy as np

from mia_bench.metrics.base import register_metric
from mia_bench.metrics.privacy import _check


@register_metric("precision_at_top_regions", higher_is_better=False, kind="privacy",
                 description="fraction of members among records in the j best-scoring regions (score levels)")
def precision_at_top_regions(scores: np.ndarray, is_member: np.ndarray, *, levels: int = 3) -> dict[str, dict]:
    """{"precision@top{j}_region": {"value", "n_selected", "n_members", "chance"}} for j = 1..levels
    (fewer when the scores have fewer distinct values)."""
    s, y = _check(scores, is_member)
    top = np.unique(s)[::-1][:levels]
    out = {}
    for j, cut in enumerate(top, start=1):
        sel = s >= cut
        out[f"precision@top{j}_region"] = {"value": float(y[sel].mean()), "n_selected": int(sel.sum()),
                                           "n_members": int(y[sel].sum()), "chance": float(y.mean())}
    return out
