from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from mia_bench.config import ResolvedRun, load_run
from mia_bench.data import DatasetConfig, load_dataset

settings.register_profile("ci", max_examples=60, deadline=None)
settings.load_profile("ci")
torch.set_num_threads(1)  # tiny networks: a second thread only adds contention

QUICK = ["trainer.max_steps=150", "metrics.bootstrap=20", "trainer.progress_bar=false", "release.n_samples=500"]
# the suite's attacks with tiny searches, shadow banks and local models (every run() in the tests runs them all)
QUICK_ATTACKS = [f"attacks.{a}.{k}={v}" for a, opts in {
    "ganleaks_pbb": {"steps": 5, "init_draws": 300}, "ganleaks_pbb_cal": {"steps": 5, "init_draws": 300},
    "ganleaks_wb": {"steps": 20, "init_draws": 300}, "ganleaks_wb_cal": {"steps": 20, "init_draws": 300},
    "logan_bb": {"steps": 100}, "overrep": {"steps": 100, "n_nonmember": 500},
    "lira_wb": {"n_shadows": 4}, "lira_wb_offline": {"n_shadows": 4}, "lira_wb_mixed": {"n_shadows": 4},
    "lira_fbb": {"n_shadows": 4}, "lira_fbb_offline": {"n_shadows": 4},
    "lira_gen": {"n_shadows": 4, "steps": 3, "init_draws": 300, "calibration_records": 64},
}.items() for k, v in opts.items()]


def only_attacks(*names: str, suite: str = "digits_v1") -> list[str]:
    """Overrides that switch off every attack of `suite` except `names`."""
    listed = load_run(suite=suite, defense="none").attack_params
    return [f"attacks.{a}=false" for a in listed if a not in names]


def quick(defense: str, *overrides: str, suite: str = "digits_v1") -> ResolvedRun:
    """The digits suite with a tiny budget (plus `overrides`)."""
    return load_run(suite=suite, defense=defense, overrides=[*QUICK, *QUICK_ATTACKS, *overrides])


@pytest.fixture(scope="session")
def digits():
    return load_dataset(DatasetConfig(name="digits"))


def cli_without_torch(argv: list[str]) -> subprocess.CompletedProcess:
    """`mia-bench ARGV` in a new interpreter that fails (exit 1) if the command imported torch: the checks
    that must stop bad input before the heavy imports."""
    code = ("import sys; from mia_bench.cli import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.fixture()
def cli(capsys):
    """`mia-bench ARGS` run in this process: returncode, stdout and stderr as a subprocess gives them (exit
    codes from cli.main and from argparse's SystemExit), without a new interpreter's torch + Lightning import
    (about 7 s a call). For checks of what a command says and writes; a test of the process itself (its
    exit status as a shell sees it, what it imports) still runs a subprocess."""
    from types import SimpleNamespace

    from mia_bench.cli import main

    def run(*argv: str) -> SimpleNamespace:
        capsys.readouterr()
        try:
            rc = main(list(argv))
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out, stderr=err)

    return run


@pytest.fixture()
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


def quick_config_dir(folder: Path, keep: tuple[str, ...] = ()) -> Path:
    """A copy of benchmarks/ whose digits suite has the quick budget built in: runs of it carry no
    overrides (official, so they reach the leaderboard) and still finish in seconds. keep: only these
    attacks stay in the suite (default: all of them)."""
    import shutil

    from omegaconf import OmegaConf

    from mia_bench.config import REPO_ROOT

    out = folder / "benchmarks"
    shutil.copytree(REPO_ROOT / "benchmarks" / "defenses", out / "defenses")
    suite = OmegaConf.merge(OmegaConf.load(REPO_ROOT / "benchmarks" / "digits_v1.yaml"),
                            OmegaConf.from_dotlist([*QUICK, *QUICK_ATTACKS, *(only_attacks(*keep) if keep else [])]))
    OmegaConf.save(suite, out / "digits_v1.yaml")
    return out
