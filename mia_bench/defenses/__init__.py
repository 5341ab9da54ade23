"""Defenses, one file each; every module here registers itself in DEFENSES on import."""

from mia_bench._discover import import_submodules
from mia_bench.defenses.base import DEFENSES, Defense, Released

import_submodules(__name__, __path__)

__all__ = ["DEFENSES", "Defense", "Released"]
