"""The stacked trainer's MEGAN, mixup, RelaxLoss, MP-GAN and MIMGAN games (nets/stacked_gan.py): a stack of
K equals K trainings of one model by model, and each stacked term is the defense's own loss
(defenses/megan.py, mixup.py, relaxloss.py, mpgan.py, mimgan.py)."""

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
from mia_bench.errors import MiaBenchError
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


def _refs(digits, k: int, n: int = 48) -> list[torch.Tensor]:
    """Model k's reference records (MP-GAN, MIMGAN): records no model of _models trains on."""
    return [digits.take(np.arange(n) + 1000 + 50 * i)[0] for i in range(k)]


def _trainer(recipe, models, sets, seeds, refs=None, device="cpu"):
    return StackedGANTrainer(models=models, train_sets=sets, config=recipe.params, batch_size=16, seeds=seeds,
                             game=shadows.stack_game(recipe), reference_sets=refs, device=device)


@pytest.mark.parametrize("defense", ["megan", "mixup", "relaxloss", "mpgan", "mimgan"])
def test_a_stack_of_k_equals_k_trainings_of_one(digits, defense):
    recipe, models, sets = _models(digits, defense, 3)
    refs = _refs(digits, 3) if DEFENSES.get(defense).needs_reference else None
    assert shadows.can_stack(recipe)
    _trainer(recipe, models, sets, [5, 6, 7], refs).fit(12)
    for k in range(3):
        _, single, _ = _models(digits, defense, 3)
        _trainer(recipe, [single[k]], [sets[k]], [5 + k], None if refs is None else [refs[k]]).fit(12)
        assert set(single[k].players) == set(models[k].players)
        for p, q in zip(models[k].parameters(), single[k].parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("defense", ["none", "megan", "mixup", "relaxloss", "mpgan", "mimgan"])
def test_a_stack_on_the_gpu_trains_what_it_trains_on_the_cpu(digits, defense):
    """Every draw is made on the CPU from model k's own generator, so a CUDA stack follows the CPU stack's
    trajectory up to float rounding (TF32 off: torch's default for matmuls)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    refs = _refs(digits, 3) if DEFENSES.get(defense).needs_reference else None
    recipe, on_cpu, sets = _models(digits, defense, 3)
    _trainer(recipe, on_cpu, sets, [5, 6, 7], refs).fit(12)
    _, on_gpu, _ = _models(digits, defense, 3)
    trainer = _trainer(recipe, on_gpu, sets, [5, 6, 7], refs, device="cuda")
    assert all(p.is_cuda for p in trainer.pG.values())
    trainer.fit(12)
    for k in range(3):
        for p, q in zip(on_cpu[k].parameters(), on_gpu[k].parameters(), strict=True):
            assert q.device.type == "cpu"  # copied back into the model
            torch.testing.assert_close(p, q, atol=1e-4, rtol=1e-3)


def test_only_the_mlp_games_stack_off_the_cpu(digits):
    """privGAN / PAR-GAN / GS-WGAN / DP-GAN stacks have no device option: asking for one is an error that
    says so, before any model is trained."""
    resolved = quick("privgan")
    with pytest.raises(MiaBenchError, match="on the CPU only"):
        shadows.stacked_trainer(Recipe.of(resolved, digits.info), digits, [np.arange(96)], [0], device="cuda")


def _moved(before: dict, model) -> set[str]:
    return {name for name, p in model.players.items()
            if any(not torch.equal(a, b) for a, b in zip(before[name], p.parameters(), strict=True))}


@pytest.mark.parametrize("defense", ["mpgan", "mimgan"])
def test_the_third_player_trains_and_is_copied_back(digits, defense):
    """Every player of a three-player game moves in the stack (M or T included) and lands in its model."""
    recipe, models, sets = _models(digits, defense, 2)
    before = [{n: [p.detach().clone() for p in pl.parameters()] for n, pl in m.players.items()} for m in models]
    _trainer(recipe, models, sets, [1, 2], _refs(digits, 2)).fit(3)
    third = "membership" if defense == "mpgan" else "statistics"
    for b, m in zip(before, models, strict=True):
        assert _moved(b, m) == {"generator", "discriminator", third}


def test_stacked_mpgan_plays_mpgans_losses(digits):
    """M's loss (D frozen) and D's loss with lambda_m * L_M, model by model, equal MPGAN's own, for both
    m_term settings."""
    import dataclasses

    for term in ("both", "gain"):
        recipe, models, sets = _models(digits, "mpgan", 2)
        for m in models:
            m.config = dataclasses.replace(m.config, m_term=term, lambda_m=2.0)
        recipe = dataclasses.replace(recipe, params=models[0].config)
        refs = _refs(digits, 2)
        tr = _trainer(recipe, models, sets, [1, 2], refs)
        x, _ = tr._real()
        ref = tr._reference()
        z, yf = tr._fake_inputs()
        fake = tr.G(tr.pG, z, yf)
        loss_m = tr.membership_loss(x, ref)
        loss_d = tr._d_loss(x, None, fake, yf) + tr.game.membership_weight * tr.membership_log_likelihood(x, ref)
        for k, m in enumerate(models):
            D = m.players["discriminator"]
            own_m = F.softplus(-m.membership_logits(x[k])).mean() + F.softplus(m.membership_logits(ref[k])).mean()
            own_d = ns_d_loss(D(x[k]), D(fake[k].detach())) + 2.0 * m.membership_log_likelihood(x[k], ref[k])
            torch.testing.assert_close(loss_m[k], own_m, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(loss_d[k], own_d, atol=1e-5, rtol=1e-5)
        for k, r in enumerate(refs):  # model k's reference batch is drawn from its own reference records
            assert (ref[k].flatten(1)[:, None] == r.flatten(1)[None]).all(2).any(1).all()


@pytest.mark.parametrize("bound", ["dv", "nwj"])
def test_stacked_mimgan_estimates_mimgans_information(digits, bound):
    """The stacked I^(M; d_G(X)) per model equals MIMGAN.mi_estimate on the same probe, members and
    reference batch, and its gradient reaches the generator."""
    import dataclasses

    recipe, models, sets = _models(digits, "mimgan", 2)
    for m in models:
        m.config = dataclasses.replace(m.config, bound=bound)
    recipe = dataclasses.replace(recipe, params=models[0].config)
    tr = _trainer(recipe, models, sets, [1, 2], _refs(digits, 2))
    x, _ = tr._real()
    ref = tr._reference()
    probe = tr.G(tr.pG, *tr._fake_inputs(tr.game.mi_samples))
    assert probe.shape[1] == recipe.params.mi_samples
    stacked = tr.mi_estimate(probe, x, ref)
    for k, m in enumerate(models):
        torch.testing.assert_close(stacked[k], m.mi_estimate(probe[k].detach(), x[k], ref[k]), atol=1e-5, rtol=1e-5)
    (grad,) = torch.autograd.grad(stacked.sum(), tr.pG["net.0.weight"])
    assert grad.abs().sum(dim=(1, 2)).gt(0).all()


def test_a_three_player_stack_needs_its_reference_sets(digits):
    recipe, models, sets = _models(digits, "mpgan", 2)
    with pytest.raises(ValueError, match="reference set per model"):
        _trainer(recipe, models, sets, [1, 2])


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


# ---- privGAN and PAR-GAN: T models of k members as one stack of T * k (nets/stacked_shards.py) -----------
def _shard_models(digits, defense: str, sizes: list[int], **overrides):
    import dataclasses

    from mia_bench.nets.stacked_shards import StackedShardGANTrainer  # noqa: F401 (the class under test)

    resolved = quick(defense)
    cfg = dataclasses.replace(resolved.defense_params, **overrides)
    models, sets = [], []
    for i, n in enumerate(sizes):
        torch.manual_seed(500 + i)
        m = DEFENSES.get(defense)(config=cfg, info=digits.info, n_train=n)
        x, y = digits.take(np.arange(n) + 60 * i)
        models.append(m)
        sets.append((x, y))
    return models, sets


def _shard_trainer(models, sets, seeds):
    from mia_bench.nets.stacked_shards import StackedShardGANTrainer

    return StackedShardGANTrainer(models=models, train_sets=sets, batch_size=16, seeds=seeds)


SHARD_CASES = [("privgan", {"disc_epochs": 2}), ("privgan", {"disc_epochs": 2, "n_generators": 3}),
               ("pargan", {}), ("pargan", {"loss": "wgan-gp", "optimizer": "rmsprop", "n_d": 2})]


@pytest.mark.parametrize(("defense", "overrides"), SHARD_CASES)
def test_a_sharded_stack_of_t_equals_t_trainings_of_one(digits, defense, overrides):
    """Models of different sizes (so privGAN's D_p pre-trains for different numbers of batches) trained as
    one stack end with the parameters each gets trained alone; every player moves."""
    sizes = [96, 112, 128]
    models, sets = _shard_models(digits, defense, sizes, **overrides)
    before = [{n: [p.detach().clone() for p in pl.parameters()] for n, pl in m.players.items()} for m in models]
    tr = _shard_trainer(models, sets, [5, 6, 7])
    if defense == "privgan":
        assert len(set(tr.warmup.tolist())) == 3  # each model pre-trains D_p for its own count
    tr.fit(10)  # privGAN: past dp_delay (0.5), so D_p also trains on fakes
    for t in range(3):
        single, _ = _shard_models(digits, defense, sizes, **overrides)
        _shard_trainer([single[t]], [sets[t]], [5 + t]).fit(10)
        for p, q in zip(models[t].parameters(), single[t].parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
        assert _moved(before[t], models[t]) == set(models[t].players)


def test_stacked_privgan_plays_privgans_losses(digits):
    """D's, D_p's and G's losses of a round, model by model, equal PrivGAN.training_step's on the same draws."""
    from mia_bench.nets.stacked import stacked_bce

    models, sets = _shard_models(digits, "privgan", [96, 96], privacy_ratio=0.7)
    tr = _shard_trainer(models, sets, [1, 2])
    x = tr._real()
    z = tr._randn(16, tr.cfg.z_dim)
    k = tr.k
    source = torch.arange(k).repeat_interleave(16)
    wrong = torch.stack([(source + torch.randint(1, k, source.shape)) % k for _ in range(2)])
    fake_s = tr._privgan_generators(z)
    loss_d, ce_p, loss_g = tr.privgan_d_loss(x, fake_s), tr.privgan_p_loss(fake_s), tr.privgan_g_loss(fake_s, wrong)
    for t, m in enumerate(models):
        G, D, Dp = m.players["generators"], m.players["discriminators"], m.players["privacy_discriminator"]
        xt = x[t * k:(t + 1) * k]
        fake = G(z[t].unsqueeze(0).expand(k, -1, -1))
        logits = D(torch.cat([xt, fake.detach()], dim=1))
        own_d = stacked_bce(logits[:, :16], m.config.real_label) + stacked_bce(logits[:, 16:], 0.0)
        own_p = F.cross_entropy(Dp(fake.detach().flatten(0, 1)), source)
        ce = F.cross_entropy(Dp(fake.flatten(0, 1)), wrong[t], reduction="none").view(k, 16).mean(1).sum()
        own_g = stacked_bce(D(fake), 1.0) + 0.7 * ce
        for stacked, own in ((loss_d[t], own_d), (ce_p[t], own_p), (loss_g[t], own_g)):
            torch.testing.assert_close(stacked, own, atol=1e-5, rtol=1e-5)


def test_stacked_pargan_plays_pargans_critic_loss(digits):
    models, sets = _shard_models(digits, "pargan", [96, 96])
    tr = _shard_trainer(models, sets, [1, 2])
    x, fake = tr._real(), tr._pargan_fakes().detach()
    stacked = tr.pargan_critic_loss(x, fake)
    k = tr.k
    for t, m in enumerate(models):
        torch.testing.assert_close(stacked[t], m.critic_loss(x[t * k:(t + 1) * k], fake[t * k:(t + 1) * k]),
                                   atol=1e-5, rtol=1e-5)


def _adams(*shape: int):
    """Initial weights w (shape), one torch.optim.Adam per row of w with its reference copy, and the
    PerModelAdam over a stacked copy (lr 0.01, betas (0.5, 0.9))."""
    from mia_bench.nets.stacked_shards import PerModelAdam

    torch.manual_seed(0)
    w = torch.randn(*shape)
    ref = [w[i].clone().requires_grad_(True) for i in range(shape[0])]
    opts = [torch.optim.Adam([r], lr=0.01, betas=(0.5, 0.9)) for r in ref]
    stacked = w.clone()
    return w, ref, opts, stacked, PerModelAdam([stacked], lr=0.01, betas=(0.5, 0.9))


def test_per_model_adam_is_adam_for_the_active_models_only():
    _, ref, opts, stacked, adam = _adams(3, 4, 5)
    for step in range(6):
        active = torch.tensor([True, step % 2 == 0, step < 2])
        g = torch.randn(3, 4, 5)
        adam.step([g], active)
        for i in range(3):
            if active[i]:
                ref[i].grad = g[i].clone()
                opts[i].step()
    for i in range(3):
        torch.testing.assert_close(stacked[i], ref[i].detach(), atol=1e-6, rtol=1e-5)
    assert adam.t.tolist() == [6, 3, 2]


# ---- GS-WGAN: T models of K shard critics, one gathered critic per model and round (nets/stacked_gswgan.py) --
GSW = {"n_discriminators": 4, "noise_multiplier": 0.5, "target_epsilon": None, "warmup": 0.25, "critic_iters": 2,
       "deterministic_noise": True}


def _gsw_trainer(models, sets, seeds, batch_size=16):
    from mia_bench.nets.stacked_gswgan import StackedGSWGANTrainer

    return StackedGSWGANTrainer(models=models, train_sets=sets, batch_size=batch_size, seeds=seeds)


@pytest.mark.parametrize(("batch_size", "overrides"), [(16, {}), (4, {"conditional": False, "critic_iters": 1})])
def test_a_gswgan_stack_of_t_equals_t_trainings_of_one(digits, batch_size, overrides):
    """Models of different sizes (their shards differ by a record, so batches are padded) trained as one stack
    end with the parameters each gets alone, released EMA included; the warm-up moves the throw-away
    generator and is not charged; every player moves."""
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
    from opacus.accountants.rdp import RDPAccountant

    cfg = {**GSW, **overrides}
    sizes = [30, 33, 37]  # 4 shards of 7-10 records: the batch is the whole shard at B = 16, a part at B = 4
    models, sets = _shard_models(digits, "gswgan", sizes, **cfg)
    before = [{n: [p.detach().clone() for p in pl.parameters()] for n, pl in m.players.items()} for m in models]
    ema0 = [p.detach().clone() for p in models[0].released.parameters()]
    tr = _gsw_trainer(models, sets, [5, 6, 7], batch_size)
    steps = 4
    tr.fit(steps * cfg["critic_iters"])
    assert tr.warmup_rounds(steps * cfg["critic_iters"]) == 1 * cfg["critic_iters"]  # round(0.25 * 4) steps
    for t in range(3):
        single, _ = _shard_models(digits, "gswgan", sizes, **cfg)
        _gsw_trainer([single[t]], [sets[t]], [5 + t], batch_size).fit(steps * cfg["critic_iters"])
        for p, q in zip(models[t].parameters(), single[t].parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
        assert _moved(before[t], models[t]) == set(models[t].players)
    assert not all(torch.equal(a, b) for a, b in zip(ema0, models[0].released.parameters(), strict=True))
    report = models[0].privacy_report()
    rdp = compute_rdp(q=1 / 4, noise_multiplier=0.5, steps=steps * batch_size, orders=RDPAccountant.DEFAULT_ALPHAS)
    assert report["steps"] == steps and report["compositions"] == steps * batch_size
    assert report["epsilon"] == pytest.approx(get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=1e-5)[0],
                                              rel=1e-9)


def test_stacked_gswgan_plays_gswgans_critic_loss_on_padded_shards(digits):
    """D_k's loss per model, D(fake) - D(x) + 10 GP + 0.001 D(x)^2 over the model's own (unpadded) batch,
    equals the loss GSWGAN.training_step writes with the model's own critic, on the same draws."""
    from mia_bench.nets.losses import gradient_penalty

    models, sets = _shard_models(digits, "gswgan", [30, 37], **GSW)
    tr = _gsw_trainer(models, sets, [1, 2])
    tr._pick_shards()
    x, y, mask = tr._real()
    assert mask[0].sum() < mask.shape[1] == mask[1].sum()  # model 0's shards (7-8) are shorter: padded
    fake = torch.rand(x.shape) * 2 - 1
    states = [g.get_state() for g in tr.gens]
    loss = tr.critic_loss(tr._critics(), x, y, fake, mask)
    for t, m in enumerate(models):
        n, k = int(mask[t].sum()), int(tr.rows[t]) - t * tr.K
        D, yt = m.critics[k], y[t, :n]
        with torch.random.fork_rng():
            torch.manual_seed(0)
            torch.default_generator.set_state(states[t])  # gradient_penalty draws its weights from here
            gp = gradient_penalty(D, x[t, :n], fake[t, :n], yt)
        real = D(x[t, :n], yt)
        own = D(fake[t, :n], yt).mean() - real.mean() + 10.0 * gp + 0.001 * (real**2).mean()
        torch.testing.assert_close(loss[t], own, atol=1e-5, rtol=1e-5)
        part, _ = tr.shards[t][k]  # the batch is the model's shard k
        assert {int(i) for i in part} == {int(i) for i in range(sets[t][0].shape[0])
                                          if (sets[t][0][i] == x[t, :n]).flatten(1).all(1).any()}


def test_stacked_sanitizer_is_the_single_models_sanitizer_row_by_row():
    from mia_bench.defenses.gswgan import SanitizeGrad, sanitize

    torch.manual_seed(0)
    grad = torch.randn(3, 16, 1, 8, 8)
    stacked = sanitize(grad, 0.5, 2.0, [torch.Generator().manual_seed(s) for s in (1, 2, 3)])
    for r, s in enumerate((1, 2, 3)):
        x = torch.zeros(16, 1, 8, 8, requires_grad=True)
        SanitizeGrad.apply(x, 0.5, 2.0, torch.Generator().manual_seed(s)).backward(grad[r])
        torch.testing.assert_close(stacked[r], x.grad)
    flat = (sanitize(grad, 0.5, 0.0, [None] * 3)).flatten(2).norm(dim=2)
    assert (flat <= 0.5 / 16 * (1 + 1e-5)).all()


def test_a_cached_gswgan_bank_keeps_its_privacy_report(digits, tmp_path):
    """A bank trains one GS-WGAN as a stack of one (faster than Lightning's K critics) and its cache keeps
    each model's extras: the reloaded model reports the epsilon it was trained to."""
    import dataclasses

    resolved = quick("gswgan", "trainer.max_steps=4", "trainer.batch_size=8")
    recipe = Recipe.of(resolved, digits.info)
    recipe = dataclasses.replace(recipe, params=dataclasses.replace(recipe.params, n_discriminators=4,
                                                                     target_epsilon=5.0, deterministic_noise=True))
    kw = {"recipe": recipe, "data": digits, "ids": np.arange(40), "n_models": 1, "seed": 0,
          "cache_dir": tmp_path, "size": shadows.EVERY_RECORD}
    first = shadows.train_bank(**kw)
    assert first.stacked and not first.cached
    again = shadows.train_bank(**kw)
    assert again.cached
    report = again.models[0].privacy_report()
    assert report == first.models[0].privacy_report() and report["epsilon"] == pytest.approx(5.0, rel=0.05)


def test_per_model_adam_steps_rows_like_one_adam_per_row():
    """step_rows moves only the rows it is given, each by torch.optim.Adam's update with its own step count."""
    w, ref, opts, stacked, adam = _adams(5, 3, 4)
    for rows in ([0, 2], [2, 4], [1, 2], [2, 0]):
        g = torch.randn(len(rows), 3, 4)
        adam.step_rows([g], torch.tensor(rows))
        for r, gr in zip(rows, g, strict=True):
            ref[r].grad = gr.clone()
            opts[r].step()
    for i in range(5):
        torch.testing.assert_close(stacked[i], ref[i].detach(), atol=1e-6, rtol=1e-5)
    assert adam.t.tolist() == [2, 1, 4, 0, 1] and torch.equal(stacked[3], w[3])


# ---- DP-GAN: DP-SGD on D's real term by ghost clipping (nets/stacked_dp.py) -------------------------------
DPG = {"noise_multiplier": 0.0, "target_epsilon": None, "max_grad_norm": 0.05, "deterministic_noise": True}


def _dp_trainer(models, sets, seeds, batch_size=16):
    from mia_bench.nets.stacked_dp import StackedDPGANTrainer

    return StackedDPGANTrainer(models=models, train_sets=sets, batch_size=batch_size, seeds=seeds)


@pytest.mark.parametrize("conditional", [False, True])
def test_stacked_dp_sgd_gives_opacus_gradient_model_by_model(digits, conditional):
    """Each model's D gradient from the stack equals DPGAN's own Opacus step on the same records and fakes:
    (sum of per-sample clipped real-term gradients) / B, plus the fake term's plain gradient. C is small, so
    every per-sample gradient is clipped and the check is one of clipping, not of a plain gradient."""
    models, sets = _shard_models(digits, "dpgan", [40, 44], conditional=conditional, **DPG)
    tr = _dp_trainer(models, sets, [1, 2])
    x, y, mask = tr._poisson()
    z, yf = tr._fake_inputs()
    with torch.no_grad():
        fake = tr.G(tr.pG, z, yf)
    grads = dict(zip(tr.pD, tr.d_gradients(x, y, mask, fake, yf), strict=True))
    for t, m in enumerate(models):
        D = m.players["discriminator"]
        m.make_private(torch.optim.Adam(D.parameters()), sample_rate=tr.q[t], steps=1)
        rows = mask[t].bool()
        xt, yt = x[t, rows], None if y is None else y[t, rows]
        assert rows.sum() > 2  # a real Poisson draw, padded below the other model's
        raw = torch.autograd.grad(F.binary_cross_entropy_with_logits(D(xt[:1], None if yt is None else yt[:1]),
                                                                     torch.ones(1)), list(D.parameters()))
        assert float(torch.cat([g.flatten() for g in raw]).norm()) > 0.05  # the bound binds
        m.private_real_term(xt, yt)
        F.softplus(D(fake[t], None if yf is None else yf[t])).mean().backward()
        for name, p in D.named_parameters():
            torch.testing.assert_close(grads[name][t], p.grad, atol=1e-7, rtol=1e-4)


def test_a_dpgan_stack_of_t_equals_t_trainings_of_one_and_reports_its_epsilon(digits):
    """Noisy DP-SGD (sigma solved from a target epsilon), models of different sizes: the stack ends with the
    weights each model gets alone, and each reports the epsilon Opacus's accountant gives its (sigma, q, steps)."""
    from opacus.accountants import RDPAccountant

    cfg = {**DPG, "noise_multiplier": None, "target_epsilon": 8.0, "n_d": 2}
    sizes = [40, 44, 50]
    models, sets = _shard_models(digits, "dpgan", sizes, **cfg)
    before = [{n: [p.detach().clone() for p in pl.parameters()] for n, pl in m.players.items()} for m in models]
    _dp_trainer(models, sets, [5, 6, 7]).fit(6)
    for t in range(3):
        single, _ = _shard_models(digits, "dpgan", sizes, **cfg)
        _dp_trainer([single[t]], [sets[t]], [5 + t]).fit(6)
        for p, q in zip(models[t].parameters(), single[t].parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-4)
        assert _moved(before[t], models[t]) == {"generator", "discriminator"}
        report = models[t].privacy_report()
        acc = RDPAccountant()
        acc.history = [(report["noise_multiplier"], 16 / sizes[t], 6)]
        assert report["sample_rate"] == 16 / sizes[t] and report["steps"] == 6
        assert report["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-9)
        assert report["epsilon"] == pytest.approx(8.0, rel=0.02)  # sigma was solved for the target
    assert models[0].privacy_report()["noise_multiplier"] > models[2].privacy_report()["noise_multiplier"]


def test_stacked_dp_noise_is_sigma_c_over_b_per_coordinate(digits):
    """With sigma > 0 the gradient is the noiseless one plus N(0, (sigma C / B)^2) per coordinate."""
    models, sets = _shard_models(digits, "dpgan", [60], **{**DPG, "noise_multiplier": 2.0})
    tr = _dp_trainer(models, sets, [3], batch_size=16)
    tr.set_budget(1)
    x, y, mask = tr._poisson()
    z, yf = tr._fake_inputs()
    fake = tr.G(tr.pG, z, yf).detach()
    noisy = torch.cat([g.flatten() for g in tr.d_gradients(x, y, mask, fake, yf)])
    tr.sigma = [0.0]
    clean = torch.cat([g.flatten() for g in tr.d_gradients(x, y, mask, fake, yf)])
    noise = noisy - clean
    assert noise.numel() > 40000 and abs(float(noise.std()) / (2.0 * 0.05 / 16) - 1) < 0.02
    assert abs(float(noise.mean())) < 0.02 * 2.0 * 0.05 / 16 * 10


def test_dpgan_banks_train_as_a_stack_unless_d_has_layernorm(digits):
    resolved = quick("dpgan")
    recipe = Recipe.of(resolved, digits.info)
    assert shadows.can_stack(recipe)
    import dataclasses

    assert not shadows.can_stack(dataclasses.replace(recipe, params=dataclasses.replace(recipe.params, d_norm="layer")))


@pytest.mark.parametrize("defense", ["none", "megan", "mixup"])
def test_the_perf_scripts_plain_pytorch_loop_is_the_lightning_training_exactly(defense: str) -> None:
    """benchmarks/perf/targets_stack.py's `PyTorch` column (the ratio's goal is stated against it) trains the
    defense's own training_step without a Trainer: same seed and batches, so the same weights as fit_defense."""
    import importlib.util
    import sys

    import lightning as L

    from mia_bench.config import REPO_ROOT, load_run
    from mia_bench.distributed import single_process
    from mia_bench.protocol import make_design
    from mia_bench.runner import fit_defense

    perf = REPO_ROOT / "benchmarks" / "perf"
    sys.path.insert(0, str(perf))  # the script imports its sibling shadow_stack.py
    try:
        spec = importlib.util.spec_from_file_location("targets_stack", perf / "targets_stack.py")
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
    finally:
        sys.path.remove(str(perf))
    r = load_run(suite="digits", defense=defense, overrides=["trainer.max_steps=8", "trainer.progress_bar=false"])
    data, design = make_design(r, 0)
    ids, seed = design.population[design.inside[0]], shadows.model_seed(0, 0)
    plain = script.pytorch_loop(defense, r.defense_params, single_process(r.config.trainer), data, ids, seed,
                                design.reference, "cpu")
    trained = fit_defense(defense=defense, params=r.defense_params, trainer=single_process(r.config.trainer),
                          data=data, train_ids=ids, seed=seed, reference_ids=design.reference)
    L.seed_everything(seed, verbose=False)  # the weights both loops started from
    before = DEFENSES.get(defense)(config=r.defense_params, info=data.info, n_train=int(ids.size))
    for (name, a), b in zip(plain.state_dict().items(), trained.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    moved = [not torch.equal(a, c) for a, c in zip(plain.parameters(), before.parameters(), strict=True)]
    assert sum(moved) >= len(moved) - 1  # it trained (a WGAN critic's output bias gets no gradient)
