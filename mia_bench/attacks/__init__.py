"""Attacks, one file per family; every module here registers itself in ATTACKS on import."""

from mia_bench._discover import import_submodules
from mia_bench.attacks.base import (
    ATTACKS,
    AccessLevel,
    Attack,
    AttackerKnowledge,
    Recipe,
    TargetView,
    make_view,
)

import_submodules(__name__, __path__)

__all__ = ["ATTACKS", "AccessLevel", "Attack", "AttackerKnowledge", "Recipe", "TargetView", "make_view"]
