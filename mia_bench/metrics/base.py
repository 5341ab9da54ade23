"""Metric registry: pure functions registered with their direction (from the defense's point of view)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mia_bench.registry import Registry


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[..., Any]
    higher_is_better: bool  # for the defense: privacy metrics measure leakage, so False
    kind: str  # "privacy" (scores, is_member) | "utility" (real, synthetic) | "diagnostic" (white-box)
    description: str


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(name: str, *, higher_is_better: bool, kind: str, description: str):  # noqa: ANN201
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        METRICS.register(name)(MetricSpec(name, fn, higher_is_better, kind, description))
        return fn

    return deco
