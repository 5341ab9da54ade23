"""Every registered defense trains under a Lightning strategy (two CPU processes, forked DDP), except the
DP defenses, which refuse several processes (tests/test_review_defenses.py)."""

import pytest
import torch

from conftest import quick
from mia_bench.data import MembershipSplit
from mia_bench.defenses import DEFENSES
from mia_bench.runner import train_defense


@pytest.mark.ddp
@pytest.mark.parametrize("name", [n for n in DEFENSES.names() if not DEFENSES.get(n).single_process])
def test_defense_trains_under_ddp_on_two_processes(name, digits):
    resolved = quick(name, "trainer.max_steps=6", "trainer.batch_size=16", "trainer.devices=2",
                     "trainer.strategy=ddp_fork")
    split = MembershipSplit.make(n_records=len(digits), sizes=resolved.config.split, seed=0)
    model = train_defense(resolved, digits, split, seed=0)
    released = model.sample(32, generator=torch.Generator().manual_seed(0))
    assert released.x.shape == (32, *digits.info.shape) and torch.isfinite(released.x).all()
