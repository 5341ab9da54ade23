"""Import every module of a package so that its components register themselves."""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package_name: str, package_path: list[str]) -> None:
    for mod in pkgutil.iter_modules(package_path):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{package_name}.{mod.name}")
