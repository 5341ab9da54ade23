"""Every registered defense, automatically: a short fit, a checkpoint round-trip, optimizer isolation."""

import lightning as L
import pytest
import torch

from conftest import quick
from mia_bench.checkpoint import load_checkpoint, save_checkpoint
from mia_bench.data import MembershipSplit
from mia_bench.defenses import DEFENSES
from mia_bench.runner import train_defense


def _split(digits, resolved, seed=0):
    return MembershipSplit.make(n_records=len(digits), sizes=resolved.config.split, seed=seed)


@pytest.mark.parametrize("name", DEFENSES.names())
def test_fit_then_checkpoint_round_trip_gives_identical_samples(name, digits, tmp_path):
    resolved = quick(name, "trainer.max_steps=20")
    split = _split(digits, resolved)
    model = train_defense(resolved, digits, split, seed=0)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, split_digest=split.digest(), config_digest=resolved.digest())
    loaded, meta = load_checkpoint(path)
    assert meta["split_digest"] == split.digest() and meta["defense"] == name
    a = model.sample(128, generator=torch.Generator().manual_seed(5))
    b = loaded.sample(128, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
    assert a.x.shape == (128, *digits.info.shape) and torch.isfinite(a.x).all()
    assert a.x.min() >= -1 and a.x.max() <= 1
    assert not torch.equal(a.x, model.sample(128, generator=torch.Generator().manual_seed(6)).x)
    probe = digits.x[:50]
    torch.testing.assert_close(model.discriminate(probe, digits.y[:50]), loaded.discriminate(probe, digits.y[:50]))
    assert model.discriminate(probe, digits.y[:50]).shape == (50,)


class StepAudit(L.Callback):
    """Snapshot every parameter around each optimizer step; record which parameters each step changed."""

    def __init__(self):
        self.changed: dict[int, set[str]] = {}
        self.owned: dict[int, set[str]] = {}

    def on_train_start(self, trainer, pl_module):
        names = {id(p): n for n, p in pl_module.named_parameters()}
        for i, opt in enumerate(trainer.optimizers):
            self.owned[i] = {names[id(p)] for g in opt.param_groups for p in g["params"]}
            self.changed[i] = set()
            state = {}

            def pre(opt, args, kwargs, state=state):
                state["before"] = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

            def post(opt, args, kwargs, i=i, state=state):
                for n, p in pl_module.named_parameters():
                    if not torch.equal(state["before"][n], p.detach()):
                        self.changed[i].add(n)

            opt.register_step_pre_hook(pre)
            opt.register_step_post_hook(post)


@pytest.mark.parametrize("name", [n for n, c in DEFENSES.items() if c.trainable])
def test_each_optimizer_changes_only_its_own_player(name, digits):
    resolved = quick(name, "trainer.max_steps=6")
    audit = StepAudit()
    model = train_defense(resolved, digits, _split(digits, resolved), seed=0, callbacks=[audit])
    assert len(audit.owned) == len(model.player_order)
    for i, player in enumerate(model.player_order):
        own = {f"players.{player}.{n}" for n, _ in model.players[player].named_parameters()}
        assert audit.owned[i] == own, f"optimizer {i} must hold exactly the '{player}' parameters"
        assert audit.changed[i], f"player '{player}' never changed"
        assert audit.changed[i] <= own, f"stepping '{player}' changed {sorted(audit.changed[i] - own)[:3]}"
