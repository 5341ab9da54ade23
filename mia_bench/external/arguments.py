"""`mia-bench audit-release`'s arguments, checked before any record is read and before torch is imported.

A wrong path, a malformed gate or model spec, too few shadows or an --out that already holds an audit
stops within a second with the fix, as `mia-bench run`'s config check does (cli.precheck), instead of
after the seconds that importing torch and Lightning takes. audit.audit_release runs the same checks
first, so the Python API refuses the same inputs with the same messages. What needs the records or the
user's code (NaN, shared records, shapes, a module that does not import, a recipe's signature) is
checked after, still before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from mia_bench.errors import DataError, MiaBenchError
from mia_bench.external import gate as gates

FORMATS = ".npz (array x, optional y), .npy, .csv, .parquet or a folder of PNG/JPEG images"
RECORD_SUFFIXES = (".npz", ".npy", ".csv", ".parquet")
SPEC_HELP = "a TorchScript file (torch.jit.script(model).save(path)) or module:callable"
MIN_SHADOWS = 4  # online LiRA needs IN and OUT models for every record: two of each


def record_path(path: Path | str, what: str) -> Path:
    """`path` as a record file or image folder the readers take; a DataError naming the fix otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} {path} does not exist; give a path to {FORMATS}")
    if not path.is_dir() and path.suffix.lower() not in RECORD_SUFFIXES:
        raise DataError(f"{what} {path}: unknown format '{path.suffix.lower()}'; give {FORMATS}")
    return path


def spec_parts(spec: str, what: str) -> tuple[str, str] | None:
    """None for a spec naming an existing file (a TorchScript model), else its (module, callable)."""
    if Path(spec).is_file():
        return None
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise MiaBenchError(f"{what} '{spec}' is neither an existing file nor module:callable; give {SPEC_HELP}")
    return module_name, attr


def check_shadows(k: int) -> None:
    if k < MIN_SHADOWS:
        raise MiaBenchError(f"--shadows {k}: LiRA needs at least {MIN_SHADOWS} shadow models (IN and OUT ones for "
                            "every record); give --shadows 16 or more for stable numbers")


def check_out(out: Path | None) -> None:
    """An explicit --out that holds files is refused: audits are never written over."""
    if out is not None and Path(out).exists() and any(Path(out).iterdir()):
        raise MiaBenchError(f"--out {out} already holds an audit (or other files); audits are never written "
                            "over: give a new --out, or leave it out for results/audits/<name>/")


def output_folder(out: Path | None, name: str, results_dir: Path = Path("results")) -> tuple[Path, str | None]:
    """(folder to write, a note when a fresh name was picked). An explicit --out that holds files is refused."""
    if out is not None:
        check_out(out)
        return Path(out), None
    base = Path(results_dir) / "audits"
    folder, k = base / name, 2
    while folder.exists():
        folder, k = base / f"{name}-{k}", k + 1
    note = None if folder.name == name else f"results/audits/{name}/ holds an earlier audit: this one goes to {folder}/"
    return folder, note


def check(*, train: Path, holdout: Path, synthetic: Path | None = None, generator: str | None = None,
          discriminator: str | None = None, reference: Path | None = None, out: Path | None = None,
          fail_above: list[str] | None = None, recipe: str | None = None, shadows: int = 16) -> list[gates.Gate]:
    """Every check of the audit's arguments that reads no record and imports nothing; returns the gates."""
    gate_list = [gates.parse(g) for g in fail_above or []]
    if synthetic is None and generator is None and discriminator is None:
        raise MiaBenchError("nothing to audit: give --synthetic FILE, --generator SPEC and/or --discriminator SPEC")
    if recipe is not None:
        if spec_parts(recipe, "--recipe") is None:
            raise MiaBenchError(f"--recipe '{recipe}' names a file; give module:callable, the function that "
                                "trains your model")
        check_shadows(shadows)
    for spec, what in ((generator, "--generator"), (discriminator, "--discriminator")):
        if spec is not None:
            spec_parts(spec, what)
    for path, what in ((train, "--train"), (holdout, "--holdout"), (synthetic, "--synthetic"),
                       (reference, "--reference")):
        if path is not None:
            record_path(path, what)
    check_out(out)
    return gate_list
