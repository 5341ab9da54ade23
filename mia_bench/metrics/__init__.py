"""Privacy and utility metrics: pure functions registered in METRICS with their direction."""

from mia_bench._discover import import_submodules
from mia_bench.metrics.base import METRICS, MetricSpec

import_submodules(__name__, __path__)

__all__ = ["METRICS", "MetricSpec"]
