"""The seed defenses' defining mechanisms, each checked against the same game without it (same data, seed).

Budgets are at most 800 generator steps on digits; each assertion fails when the mechanism is switched
off (lambda_h=0, lambda_m=0, beta=0, unmixed critic inputs, RelaxLoss replaced by the plain loss).
"""

import lightning as L
import numpy as np
import pytest
import torch

from conftest import quick
from mia_bench.data import MembershipSplit
from mia_bench.defenses import mixup as mixup_module
from mia_bench.nets.losses import binary_entropy_from_logits, real_loss
from mia_bench.nets.mi import dv_bound, nwj_bound
from mia_bench.runner import diagnose, train_defense


def _fit(digits, name, *overrides, steps=800, callbacks=None):
    resolved = quick(name, f"trainer.max_steps={steps}", *overrides)
    split = MembershipSplit.make(n_records=len(digits), sizes=resolved.config.split, seed=0)
    return train_defense(resolved, digits, split, seed=0, callbacks=callbacks), split


# ---- shared maths ----------------------------------------------------------------------------------
def test_mi_bounds_are_exact_for_the_optimal_critic_of_a_known_gaussian_pair():
    """For (a, b) jointly Gaussian with correlation rho, I = -1/2 log(1 - rho^2); the log density ratio
    T* = log p(a, b) / p(a) p(b) makes both bounds tight (NWJ at T* + 1)."""
    g = torch.Generator().manual_seed(0)
    rho, n = 0.8, 200_000
    a = torch.randn(n, generator=g, dtype=torch.float64)
    b = rho * a + (1 - rho**2) ** 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    b_marg = b[torch.randperm(n, generator=g)]

    def t_star(a, b):
        return (-0.5 * torch.log(torch.tensor(1 - rho**2, dtype=torch.float64))
                - (rho**2 * (a**2 + b**2) - 2 * rho * a * b) / (2 * (1 - rho**2)))

    true_mi = -0.5 * np.log(1 - rho**2)
    assert dv_bound(t_star(a, b), t_star(a, b_marg)).item() == pytest.approx(true_mi, abs=0.03)
    assert nwj_bound(t_star(a, b) + 1, t_star(a, b_marg) + 1).item() == pytest.approx(true_mi, abs=0.03)
    # a poor critic gives a lower value (a lower bound), and NWJ <= DV for the same critic
    weak_j, weak_m = 0.5 * t_star(a, b), 0.5 * t_star(a, b_marg)
    assert nwj_bound(weak_j, weak_m) <= dv_bound(weak_j, weak_m) < true_mi


# ---- MEGAN -----------------------------------------------------------------------------------------
def test_megan_discriminator_is_less_confident_on_members_than_none(digits):
    entropy = {}
    for name in ("none", "megan"):
        model, split = _fit(digits, name)
        x, y = digits.take(split.members)
        with torch.no_grad():
            entropy[name] = binary_entropy_from_logits(model.discriminate(x, y)).mean().item()
    assert entropy["megan"] > entropy["none"] + 0.05, entropy


# ---- MP-GAN ----------------------------------------------------------------------------------------
def _membership_accuracy(model, digits, split):
    """Balanced accuracy of the model's M on all members vs the whole reference set (chance = 0.5)."""
    (xm, _), (xr, _) = digits.take(split.members), digits.take(split.reference)
    with torch.no_grad():
        return 0.5 * ((model.membership_logits(xm) > 0).double().mean()
                      + (model.membership_logits(xr) <= 0).double().mean()).item()


def test_mpgan_membership_network_ends_closer_to_chance_than_against_an_undefended_discriminator(digits):
    """lambda_m=0 is `none`'s game for D, with an M trained against it; lambda_m=3 is the top of the sweep.

    This is the defender's own M. A freshly trained M on the final D's activations is not fooled (see the
    issue-3 report), so this checks the game works as specified, not that D's activations hold no signal."""
    gap = {}
    for lam in (3.0, 0.0):
        model, split = _fit(digits, "mpgan", f"defense.lambda_m={lam}")
        gap[lam] = abs(_membership_accuracy(model, digits, split) - 0.5)
    assert gap[3.0] < gap[0.0] - 0.08, gap


# ---- mixup -----------------------------------------------------------------------------------------
class InputRecorder(L.Callback):
    """Records every x the discriminator and every label vector the generator receives while attached
    (during training when used as a callback)."""

    def __init__(self):
        self.d_inputs, self.g_labels, self.handles = [], [], []

    def attach(self, model):
        D, G = model.players["discriminator"], model.players["generator"]
        self.handles = [D.register_forward_pre_hook(lambda m, args: self.d_inputs.append(args[0].detach().clone())),
                        G.register_forward_pre_hook(lambda m, args: self.g_labels.append(args[1].detach().clone()))]

    def detach(self):
        for h in self.handles:
            h.remove()

    def on_train_start(self, trainer, pl_module):
        self.attach(pl_module)

    def on_train_end(self, trainer, pl_module):
        self.detach()


def _rows(x):
    """The exact bytes of each row of a (N, d) tensor, as a set (exact matching, no distance tolerance)."""
    return {row.numpy().tobytes() for row in x.detach().float().contiguous()}


def test_mixup_critic_only_ever_sees_mixed_members(digits, monkeypatch):
    mixed, weights = [], []
    mix = mixup_module.mix_batch

    def recording_mix(x, y, lam, shift):
        weights.append(lam.detach().clone())
        out = mix(x, y, lam, shift)
        mixed.append(out[0].detach().flatten(1).clone())
        return out

    monkeypatch.setattr(mixup_module, "mix_batch", recording_mix)
    rec = InputRecorder()
    model, split = _fit(digits, "mixup", steps=30, callbacks=[rec])
    seen = _rows(torch.cat([x.flatten(1) for x in rec.d_inputs]))
    members, _ = digits.take(split.members)
    # no raw member ever reaches the critic ...
    n_raw = len(seen & _rows(members.flatten(1)))
    assert n_raw == 0, f"the critic received {n_raw} unmixed members"
    # ... the real inputs it gets are the mixes, with weights strictly inside (0, 1)
    lam = torch.cat(weights)
    assert lam.numel() == 30 * model.config.n_g * 64
    assert ((lam > 0.02) & (lam < 0.98)).double().mean() > 0.9 and lam.std() > 0.2
    assert _rows(torch.cat(mixed)) <= seen, "the mixed batches are what the critic is fed"
    # the generator is conditioned on soft (mixed) labels in training, on one-hot labels at release
    soft = torch.cat(rec.g_labels)
    assert torch.allclose(soft.sum(1), torch.ones(soft.shape[0])) and (soft.max(1).values < 0.98).double().mean() > 0.5
    at_release = InputRecorder()
    at_release.attach(model)
    model.sample(64, generator=torch.Generator().manual_seed(0))
    at_release.detach()
    released = torch.cat(at_release.g_labels)
    assert torch.equal(released.max(1).values, torch.ones(64)) and torch.equal(released.sum(1), torch.ones(64))
    # the runner's O_BC diagnostic reads a critic on the min-max scale
    assert diagnose(model, digits, split)["discriminator"]["scale"] == "min-max"


# ---- RelaxLoss -------------------------------------------------------------------------------------
class RealLossRecorder(L.Callback):
    """D's mean BCE(l(x), 1) on each training batch of members, measured just before the step."""

    def __init__(self):
        self.losses = []

    @torch.no_grad()
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.losses.append(real_loss(pl_module.players["discriminator"](batch["x"])).item())


def test_relaxloss_keeps_the_members_loss_near_alpha(digits):
    level = {}
    for alpha in (0.5, 1.0, None):  # None: the same game without RelaxLoss (`none`)
        rec = RealLossRecorder()
        _fit(digits, "relaxloss" if alpha else "none", *([f"defense.alpha={alpha}"] if alpha else []), callbacks=[rec])
        level[alpha] = float(np.mean(rec.losses[len(rec.losses) // 2:]))  # second half of training
    assert abs(level[0.5] - 0.5) < 0.15 and abs(level[1.0] - 1.0) < 0.15, level
    assert abs(level[None] - 1.0) > 0.3, level  # without the schedule the loss goes elsewhere


# ---- MIMGAN ----------------------------------------------------------------------------------------
class MIRecorder(L.Callback):
    """The model's own MI estimate on 2048 fresh samples every `every` steps (its own generator, so the
    probe leaves the training's random stream alone)."""

    def __init__(self, every=100):
        self.every, self.values, self.rng = every, [], torch.Generator().manual_seed(0)

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (batch_idx + 1) % self.every == 0:
            fake = pl_module.players["generator"](pl_module.draw_latent(2048, self.rng))
            self.values.append(pl_module.mi_estimate(fake, self.rng).item())


def test_mimgan_mi_estimate_falls_relative_to_an_unpenalised_run(digits):
    """beta=3 (thirty times the default) so that 800 steps show the effect clearly; beta=0 trains the same
    statistics network passively against a plain GAN. Compared over the second half of training, where
    the probes (every 50 steps) average out the min-max game's oscillation. Measured over split seeds
    0-2: the penalised estimate is 0.48-0.67 of the unpenalised one."""
    late = {}
    for beta in (3.0, 0.0):
        rec = MIRecorder(every=50)
        _fit(digits, "mimgan", f"defense.beta={beta}", callbacks=[rec])
        values = np.array(rec.values)
        late[beta] = values[len(values) // 2:]
    assert late[3.0].mean() < 0.8 * late[0.0].mean(), late
    assert (late[3.0] < late[0.0]).mean() >= 0.75, late  # lower at most probes, not through one outlier
