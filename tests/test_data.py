import numpy as np
import pytest
import torch

from mia_bench.data import MembershipSplit, SplitConfig
from mia_bench.data.datamodule import MembershipDataModule
from mia_bench.errors import ConfigError


def test_digits_is_scaled_and_labelled(digits):
    assert digits.x.shape == (1797, 1, 8, 8) and digits.x.dtype == torch.float32
    assert digits.x.min() == -1.0 and digits.x.max() == 1.0
    assert digits.y.unique().tolist() == list(range(10))
    assert digits.info.n_classes == 10 and digits.info.dim == 64


def _dm(digits, **kw):
    split = MembershipSplit.make(n_records=len(digits), sizes=SplitConfig(), seed=3)
    args = dict(data=digits, split=split, batch_size=32, num_batches=25)
    args.update(kw)
    return MembershipDataModule.for_split(**args), split


def test_batches_come_from_members_by_indexing(digits):
    dm, split = _dm(digits)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 25
    members = set(split.members.tolist())
    for b in batches:
        assert b["x"].shape == (32, 1, 8, 8) and b["y"].shape == (32,)
        assert set(b["idx"].tolist()) <= members
        torch.testing.assert_close(b["x"], digits.x[b["idx"]])
        assert "ref_x" not in b
    # one pass covers 9 whole batches (288 of 300); within a pass no record repeats
    first_pass = torch.cat([b["idx"] for b in batches[:9]])
    assert first_pass.unique().numel() == 288


def test_reference_batches_only_when_declared(digits):
    dm, split = _dm(digits, with_reference=True)
    b = next(iter(dm.train_dataloader()))
    assert set(b["ref_idx"].tolist()) <= set(split.reference.tolist())
    torch.testing.assert_close(b["ref_x"], digits.x[b["ref_idx"]])


def test_shards_are_disjoint_and_each_batch_holds_every_shard(digits):
    dm, split = _dm(digits, n_shards=3)
    shard_sets = [set(dm.shard_ids(k).tolist()) for k in range(3)]
    assert sum(map(len, shard_sets)) == split.members.size
    assert not (shard_sets[0] & shard_sets[1]) and not (shard_sets[1] & shard_sets[2])
    for b in dm.train_dataloader():
        assert b["x"].shape[0] == 96
        for k, chunk in enumerate(b["idx"].view(3, 32)):
            assert set(chunk.tolist()) <= shard_sets[k]
            assert (b["shard"].view(3, 32)[k] == k).all()


def test_independent_role_trains_on_reference(digits):
    dm, split = _dm(digits, train_role="reference")
    assert np.array_equal(dm.train_ids, split.reference)


def test_batch_larger_than_the_shard_is_a_clear_error(digits):
    dm, _ = _dm(digits, batch_size=400)
    with pytest.raises(ConfigError, match="lower trainer.batch_size"):
        next(iter(dm.train_dataloader()))
