"""The stacked trainer's MEGAN, mixup and RelaxLoss games (nets/stacked_gan.py): a stack of K equals K
trainings of one model by model, and each stacked term is the defense's own loss (defenses/megan.py,
defenses/mixup.py, defenses/relaxloss.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import quick
from mia_bench import shadows
from mia_bench.attacks import Recipe
from mia_bench.defenses import DEFENSES
from mia_bench.defenses.mixup import mix_batch
from mia_bench.nets.losses import binary_entropy_from_logits, ns_d_loss
from mia_bench.nets.stacked_gan import StackedGANTrainer


def _models(digits, defense: str, k: int, n: int = 96):
    resolved = quick(defense)
    recipe = Recipe.of(resolved, digits.info)
    cls = DEFENSES.get(defense)
    models, sets = [], []
    for i in range(k):
        torch.manual_seed(300 + i)
        m = cls(config=resolved.defense_params, info=digits.info, n_train=n)
        x, y = digits.take(np.arange(n) + 40 * i)
        m.prepare(x, y)
        models.append(m)
        sets.append((x, y))
    return recipe, models, sets


def _trainer(recipe, models, sets, seeds):
    return StackedGANTrainer(models=models, train_sets=sets, config=recipe.params, batch_size=16, seeds=seeds,
                             game=shadows.stack_game(recipe))


@pytest.mark.parametrize("defense", ["megan", "mixup", "relaxloss"])
def test_a_stack_of_k_equals_k_trainings_of_one(digits, defense):
    recipe, models, sets = _models(digits, defense, 3)
    assert shadows.can_stack(recipe)
    _trainer(recipe, models, sets, [5, 6, 7]).fit(12)
    for k in range(3):
        _, single, _ = _models(digits, defense, 3)
        _trainer(recipe, [single[k]], [sets[k]], [5 + k]).fit(12)
        for p, q in zip(models[k].parameters(), single[k].parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


def test_stacked_megan_pays_the_entropy_bonus_megan_pays(digits):
    recipe, models, sets = _models(digits, "megan", 2)
    tr = _trainer(recipe, models, sets, [1, 2])
    x, y = tr._real()
    z, yf = tr._fake_inputs()
    fake = tr.G(tr.pG, z, yf)
    stacked = tr._d_loss(x, y, fake, yf)
    lam = recipe.params.lambda_h
    assert lam > 0
    for k, m in enumerate(models):
        D = m.players["discriminator"]
        real = D(x[k], None)
        own = ns_d_loss(real, D(fake[k].detach(), None)) - lam * binary_entropy_from_logits(real).mean()
        torch.testing.assert_close(stacked[k], own, atol=1e-5, rtol=1e-5)


def test_stacked_mixup_mixes_as_mix_batch_does(digits):
    recipe, models, sets = _models(digits, "mixup", 2)
    tr = _trainer(recipe, models, sets, [3, 4])
    x, y = tr._real()
    probe = [np.random.default_rng([3 + k, 8]) for k in range(2)]  # the stack's own mixing draws
    xm, ym = tr._mixed(x, y)
    a = recipe.params.alpha
    for k in range(2):
        lam = torch.from_numpy(probe[k].beta(a, a, 16)).float()
        shift = int(probe[k].integers(1, 16))
        ex, ey = mix_batch(x[k], y[k], lam, shift)
        torch.testing.assert_close(xm[k], ex)
        torch.testing.assert_close(ym[k], ey)
    assert tr.wgan and tr.game.n_critic == recipe.params.n_g


@pytest.mark.parametrize("alpha", [0.05, 5.0])  # the member loss above alpha (descent), then below (flattening)
@pytest.mark.parametrize("alternate", ["epoch", "step"])
def test_stacked_relaxloss_plays_relaxloss_phase_by_phase(digits, alpha, alternate):
    import dataclasses

    recipe, models, sets = _models(digits, "relaxloss", 2, n=48)
    for m in models:
        m.config = dataclasses.replace(m.config, alpha=alpha, alternate=alternate)
    recipe = dataclasses.replace(recipe, params=models[0].config)
    tr = _trainer(recipe, models, sets, [1, 2])
    x, y = tr._real()
    z, yf = tr._fake_inputs()
    fake = tr.G(tr.pG, z, yf)
    phases = set()
    for batch_idx in (0, 1, 2, 3):  # B=16 of 48 records: epoch phases 0, 0, 0, 1; step phases 0, 1, 0, 1
        stacked = tr._d_loss(x, y, fake, yf, batch_idx)
        for k, m in enumerate(models):
            D = m.players["discriminator"]
            phase = m.phase(batch_idx, 16)
            phases.add(phase)
            yk, yfk = (None, None) if y is None else (y[k], yf[k])
            own = m.relaxed_real_loss(D(x[k], yk), phase) + F.softplus(D(fake[k].detach(), yfk)).mean()
            torch.testing.assert_close(stacked[k], own, atol=1e-5, rtol=1e-5)
    assert phases == {0, 1}
    bce = F.softplus(-models[0].players["discriminator"](x[0], None if y is None else y[0])).mean()
    assert (bce > alpha) == (alpha < 1)  # each alpha reaches the branch it is here for
