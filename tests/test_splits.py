import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mia_bench.data.splits import ROLES, MembershipSplit, SplitConfig
from mia_bench.errors import SplitError

sizes = st.builds(SplitConfig, members=st.integers(1, 60), non_members=st.integers(1, 60),
                  reference=st.integers(0, 60), attacker_aux=st.integers(0, 60), shadow_pool=st.integers(0, 60))


@given(sizes=sizes, seed=st.integers(0, 2**32 - 1), extra=st.integers(0, 50))
def test_roles_never_overlap_and_have_their_sizes(sizes, seed, extra):
    n = sum(vars(sizes).values()) + extra
    split = MembershipSplit.make(n_records=n, sizes=sizes, seed=seed)
    for a, b in itertools.combinations(ROLES, 2):
        assert np.intersect1d(getattr(split, a), getattr(split, b)).size == 0
    assert split.sizes() == vars(sizes)
    every = np.concatenate([getattr(split, r) for r in ROLES])
    assert every.min(initial=0) >= 0 and every.max(initial=0) < n


@given(sizes=sizes, seed=st.integers(0, 2**32 - 1))
def test_same_seed_same_split_and_digest(sizes, seed):
    n = sum(vars(sizes).values()) + 10
    a = MembershipSplit.make(n_records=n, sizes=sizes, seed=seed)
    b = MembershipSplit.make(n_records=n, sizes=sizes, seed=seed)
    assert a.digest() == b.digest()
    for r in ROLES:
        np.testing.assert_array_equal(getattr(a, r), getattr(b, r))


def test_digest_changes_with_seed_and_indices():
    cfg = SplitConfig(members=50, non_members=50, reference=10, attacker_aux=10, shadow_pool=10)
    a = MembershipSplit.make(n_records=500, sizes=cfg, seed=0)
    b = MembershipSplit.make(n_records=500, sizes=cfg, seed=1)
    assert a.digest() != b.digest()
    assert len(a.digest()) == 64


@given(groups=st.lists(st.integers(0, 25), min_size=200, max_size=300), seed=st.integers(0, 1000))
def test_groups_never_span_two_roles(groups, seed):
    groups = np.asarray(groups)
    cfg = SplitConfig(members=20, non_members=20, reference=10, attacker_aux=5, shadow_pool=5)
    try:
        split = MembershipSplit.make(n_records=groups.size, sizes=cfg, seed=seed, groups=groups)
    except SplitError:
        return  # too few whole groups for these sizes: refused, never mixed
    seen = {}
    for role in ROLES:
        for g in np.unique(groups[getattr(split, role)]):
            assert seen.setdefault(int(g), role) == role


def test_overlap_is_refused_with_the_roles_named():
    with pytest.raises(SplitError, match="'members' and 'reference' share 1 record"):
        MembershipSplit(members=np.array([1, 2]), non_members=np.array([3]), reference=np.array([2]),
                        attacker_aux=np.array([], dtype=int), shadow_pool=np.array([], dtype=int), seed=0)


def test_impossible_sizes_name_the_dataset_and_fix():
    with pytest.raises(SplitError, match=r"holds 1797.*reduce the split sizes"):
        MembershipSplit.make(n_records=1797, sizes=SplitConfig(members=1500, non_members=500), seed=0,
                             dataset="digits")


def test_split_arrays_are_read_only():
    split = MembershipSplit.make(n_records=100, sizes=SplitConfig(10, 10, 10, 10, 10), seed=0)
    with pytest.raises(ValueError):
        split.members[0] = 99
