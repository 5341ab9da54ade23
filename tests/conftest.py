from __future__ import annotations

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


def quick(defense: str, *overrides: str, suite: str = "digits") -> ResolvedRun:
    """The digits suite with a tiny budget (plus `overrides`)."""
    return load_run(suite=suite, defense=defense, overrides=[*QUICK, *overrides])


@pytest.fixture(scope="session")
def digits():
    return load_dataset(DatasetConfig(name="digits"))


@pytest.fixture()
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"
