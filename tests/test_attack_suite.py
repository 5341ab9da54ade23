"""The attack suite's machinery: stacked shadow training, the shadow cache, calibration by record id, the
LiRA maths, the latent search, and the attacks against an overfit `none` and the controls.

The per-attack control checks (memorizer caught, independent near chance, exact access) run in
tests/test_attacks.py, parametrized over the registry.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from conftest import quick
from mia_bench import shadows
from mia_bench.attacks import ATTACKS, AccessLevel, AttackerKnowledge, Recipe, make_view
from mia_bench.config import component_config
from mia_bench.data import MembershipSplit
from mia_bench.defenses import DEFENSES
from mia_bench.errors import AccessError, MiaBenchError
from mia_bench.metrics.regions import precision_at_top_regions
from mia_bench.nets import lira
from mia_bench.nets.latent import SearchConfig, reconstruct
from mia_bench.nets.losses import ns_d_loss, ns_g_loss, wgan_d_loss, wgan_g_loss
from mia_bench.nets.stacked_gan import StackedGANTrainer
from mia_bench.runner import queries, train_defense

# ---- stacked shadow training ---------------------------------------------------------------------------


def _fresh_models(digits, cfg, k: int, n: int = 120):
    cls = DEFENSES.get("none")
    models, sets = [], []
    for i in range(k):
        torch.manual_seed(100 + i)
        m = cls(config=cfg, info=digits.info, n_train=n)
        x, y = digits.take(np.arange(n) + 50 * i)
        m.prepare(x, y)
        models.append(m)
        sets.append((x, y))
    return models, sets


def _reference_round(tr: StackedGANTrainer, gens, discs, opts_g, opts_d, b: int) -> None:
    """The `none` game written out per model with plain modules and default Adam, fed the stack's own draws."""
    x, y = tr._real()
    z, yf = tr._fake_inputs()
    eps = tr._uniform((tr.B, 1, 1, 1)) if tr.wgan else None
    fresh = tr._fake_inputs() if tr.wgan and not (b + 1) % tr.cfg.n_critic else None
    for k, (G, D, og, od) in enumerate(zip(gens, discs, opts_g, opts_d, strict=True)):
        yk, yfk = (None, None) if y is None or yf is None else (y[k], yf[k])
        fake = G(z[k], yfk)
        if tr.wgan:
            assert eps is not None
            xhat = (eps[k] * x[k] + (1 - eps[k]) * fake.detach()).requires_grad_(True)
            (g,) = torch.autograd.grad(D(xhat, yk).sum(), xhat, create_graph=True)
            gp = ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
            loss_d = wgan_d_loss(D(x[k], yk), D(fake.detach(), yfk)) + tr.cfg.gp_weight * gp
        else:
            loss_d = ns_d_loss(D(x[k], yk), D(fake.detach(), yfk))
        od.zero_grad()
        loss_d.backward(inputs=list(D.parameters()))
        od.step()
        if tr.wgan and fresh is None:
            continue
        if tr.wgan:
            assert fresh is not None
            fresh_y = fresh[1]
            yfk2 = None if y is None or fresh_y is None else fresh_y[k]
            loss_g = wgan_g_loss(D(G(fresh[0][k], yfk2), yfk2))
        else:
            loss_g = ns_g_loss(D(fake, yfk))
        og.zero_grad()
        loss_g.backward(inputs=list(G.parameters()))
        og.step()


@pytest.mark.parametrize("loss,conditional", [("gan", False), ("wgan-gp", True)])
def test_stacked_step_equals_the_none_game_model_by_model(digits, loss, conditional):
    """One vmapped stack of K models == K plain `none` games (plain modules, default Adam) on the same draws:
    this pins the vectorised maths and the optimizer (a fused-Adam stride bug failed exactly this)."""
    cfg = DEFENSES.get("none").Config(loss=loss, conditional=conditional, n_critic=2)
    models, sets = _fresh_models(digits, cfg, 3)
    twins = [m.players for m in _fresh_models(digits, cfg, 3)[0]]
    tr = StackedGANTrainer(models=models, train_sets=sets, config=cfg, batch_size=16, seeds=[1, 2, 3])
    ref = StackedGANTrainer(models=_fresh_models(digits, cfg, 3)[0], train_sets=sets, config=cfg, batch_size=16,
                            seeds=[1, 2, 3])  # only its draws are used
    gens, discs = [t["generator"] for t in twins], [t["discriminator"] for t in twins]
    betas = (cfg.beta1, cfg.beta2)
    opts_g = [torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=betas) for g in gens]
    opts_d = [torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=betas) for d in discs]
    for b in range(12):
        tr.round(b)
        _reference_round(ref, gens, discs, opts_g, opts_d, b)
    tr.fit(0)
    for m, twin in zip(models, twins, strict=True):
        for p, q in zip(m.players.parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=2e-5, rtol=1e-4)


def test_stack_of_k_equals_k_separate_trainings(digits):
    cfg = DEFENSES.get("none").Config()
    models, sets = _fresh_models(digits, cfg, 3)
    StackedGANTrainer(models=models, train_sets=sets, config=cfg, batch_size=16, seeds=[7, 8, 9]).fit(10)
    for k in range(3):
        single, _ = _fresh_models(digits, cfg, 3)
        StackedGANTrainer(models=[single[k]], train_sets=[sets[k]], config=cfg, batch_size=16, seeds=[7 + k]).fit(10)
        for p, q in zip(models[k].parameters(), single[k].parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def pool_setup(digits):
    resolved = quick("none", "trainer.max_steps=150", "trainer.batch_size=32")
    split = MembershipSplit.make(n_records=len(digits), sizes=resolved.config.split, seed=0)
    return Recipe.of(resolved, digits.info), split


def _summary(models, digits, split) -> np.ndarray:
    """Per model: mean D logit on its training data minus on held-out data, and the samples' mean pixel."""
    xh, _ = digits.take(split.non_members[:200])
    out = []
    for m, ids in models:
        with torch.no_grad():
            gap = m.discriminate(digits.take(ids)[0]).mean() - m.discriminate(xh).mean()
            pix = m.sample(500, generator=torch.Generator().manual_seed(0)).x.mean()
        out.append([float(gap), float(pix)])
    return np.array(out)


def test_stacked_bank_matches_lightning_training_in_distribution(digits, pool_setup):
    """Stacked shadows vs the same recipe through runner.fit_defense (Lightning), 3 models each on the same
    subsets: the per-model summaries agree within their spread."""
    recipe, split = pool_setup
    kw = dict(recipe=recipe, data=digits, ids=split.shadow_pool[:240], n_models=3, seed=3, cache_dir=None, size=120)
    a, b = shadows.train_bank(**kw), shadows.train_bank(**kw, stack=False)
    assert a.stacked and not b.stacked
    sa = _summary([(m, a.record_ids[a.members[k]]) for k, m in enumerate(a.models)], digits, split)
    sb = _summary([(m, b.record_ids[b.members[k]]) for k, m in enumerate(b.models)], digits, split)
    spread = np.sqrt((sa.var(0, ddof=1) + sb.var(0, ddof=1)) / 2) + np.array([0.1, 0.02])
    assert (np.abs(sa.mean(0) - sb.mean(0)) < 2.5 * spread).all(), (sa, sb)


def test_shadow_cache_is_reused_and_keyed(digits, pool_setup, tmp_path):
    recipe, split = pool_setup
    small = shadows.with_steps(recipe, 20)
    kw = dict(recipe=small, data=digits, ids=split.shadow_pool[:100], n_models=2, cache_dir=tmp_path)
    first = shadows.train_bank(**kw, seed=0)
    again = shadows.train_bank(**kw, seed=0)
    assert not first.cached and again.cached and again.digest == first.digest
    np.testing.assert_array_equal(again.members, first.members)
    for m, n in zip(first.models, again.models, strict=True):
        for (k, p), q in zip(m.state_dict().items(), n.state_dict().values(), strict=True):
            assert torch.equal(p, q), k
    other = shadows.train_bank(**kw, seed=1)
    assert not other.cached and other.digest != first.digest
    assert len(list((tmp_path / "shadows").glob("*.pt"))) == 2


def test_membership_matrix_is_balanced_and_aligned_by_id():
    members = shadows.draw_subsets(50, 8, size=shadows.HALVES, seed=0)
    assert (members.sum(0) == 4).all()
    bank = shadows.ShadowBank(models=[None] * 8, record_ids=np.arange(100, 150), members=members,  # type: ignore[list-item]
                              recipe=None, digest="", stacked=True, seconds=0.0, cached=False)  # type: ignore[arg-type]
    ids = np.array([149, 7, 100])
    got = bank.membership(ids)
    np.testing.assert_array_equal(got[:, 0], members[:, 49])
    assert not got[:, 1].any()
    np.testing.assert_array_equal(got[:, 2], members[:, 0])


def test_natural_recipe_keeps_the_game_and_optimizer_but_not_the_mechanism(pool_setup):
    recipe, _ = pool_setup
    tweaked = Recipe(defense="independent", params=DEFENSES.get("independent").Config(lr_d=1e-3),
                     trainer=recipe.trainer, info=recipe.info)
    assert shadows.natural_recipe(tweaked).params.lr_d == 1e-3  # the target's optimizer, not a fixed recipe
    megan = Recipe(defense="megan", params=DEFENSES.get("megan").Config(lambda_h=0.3), trainer=recipe.trainer,
                   info=recipe.info)
    assert shadows.natural_recipe(megan).digest() == shadows.natural_recipe(recipe).digest()  # no entropy bonus
    mixup = shadows.natural_recipe(Recipe(defense="mixup", params=DEFENSES.get("mixup").Config(n_g=3),
                                          trainer=recipe.trainer, info=recipe.info))
    assert (mixup.defense, mixup.params.loss, mixup.params.n_critic, mixup.params.lr_g) == ("none", "wgan-gp", 3, 1e-4)
    # GS-WGAN names its critic steps critic_iters: its natural model plays 3 critic batches per G step, not
    # none's default 5 (which made its natural bank and LOGAN's local GANs 2.5x the target's game at 2)
    gswgan = shadows.natural_recipe(Recipe(defense="gswgan", params=DEFENSES.get("gswgan").Config(critic_iters=3, lr=3e-4),
                                           trainer=recipe.trainer, info=recipe.info))
    assert (gswgan.params.loss, gswgan.params.n_critic, gswgan.params.lr_d) == ("wgan-gp", 3, 3e-4)
    assert DEFENSES.get("none").Config(loss="wgan-gp").n_critic != 3
    wgan = Recipe(defense="none", params=DEFENSES.get("none").Config(loss="wgan-gp"), trainer=recipe.trainer,
                  info=recipe.info)
    assert shadows.natural_recipe(wgan).params.loss == "wgan-gp"  # the game and architecture are kept


# ---- LiRA maths, latent search, metrics ---------------------------------------------------------------


def test_lira_recovers_a_known_shift_and_ranks_members_first():
    rng = np.random.default_rng(0)
    k, r = 16, 400
    base = rng.normal(0, 2, r)  # per-record difficulty
    is_in = shadows.draw_subsets(r, k, size=shadows.HALVES, seed=1)
    stats = base + rng.normal(0, 0.5, (k, r)) - 1.0 * is_in
    shift = lira.in_shift(stats, is_in)
    assert abs(shift.shift + 1.0) < 0.1 and abs(shift.sd_in - 0.5) < 0.05 and abs(shift.sd_out - 0.5) < 0.05
    queries_out = base[:200] + rng.normal(0, 0.5, (k, 200))  # every shadow is OUT for the queries
    member = np.arange(200) < 100
    target = base[:200] + rng.normal(0, 0.5, 200) - 1.0 * member
    mu, sd = lira.out_fit(queries_out, global_variance=True)
    assert np.allclose(sd, sd[0]) and abs(sd[0] - 0.5) < 0.05
    for s in (lira.offline_score(target, mu, sd), lira.online_score(target, mu, sd, shift)):
        assert roc_auc_score(member, s) > 0.85
    global_threshold = roc_auc_score(member, -target)  # per-record calibration must beat a global threshold
    assert roc_auc_score(member, lira.offline_score(target, mu, sd)) > global_threshold + 0.2


def test_batched_latent_search_equals_one_query_at_a_time(digits):
    cls = DEFENSES.get("none")
    torch.manual_seed(0)
    model = cls(config=cls.Config(), info=digits.info, n_train=10).eval()
    gen = shadows.owned_generator(model)
    x, y = digits.take(np.arange(6))
    for method in ("adam", "es"):
        cfg = SearchConfig(method=method, steps=15, init_draws=64, norm_weight=0.0)
        batched = reconstruct(gen, x, y, cfg, seed=3)
        if method == "adam":  # the ES draws its candidates for the whole batch; Adam's maths is per query
            single = torch.cat([reconstruct(gen, x[i:i + 1], y[i:i + 1], cfg, seed=3) for i in range(6)])
            torch.testing.assert_close(batched, single, atol=1e-6, rtol=1e-5)
        start = reconstruct(gen, x, y, SearchConfig(method=method, steps=0, init_draws=64), seed=3)
        assert (batched <= start + 1e-7).all() if method == "es" else batched.mean() < start.mean()


def test_precision_at_top_regions_counts_score_levels():
    s = np.array([0.9, 0.9, 0.7, 0.7, 0.7, 0.2, 0.2, 0.2])
    m = np.array([1, 1, 1, 0, 0, 0, 1, 0], bool)
    out = precision_at_top_regions(s, m, levels=3)
    assert out["precision@top1_region"]["value"] == 1.0 and out["precision@top1_region"]["n_selected"] == 2
    assert out["precision@top2_region"]["value"] == pytest.approx(3 / 5)
    assert out["precision@top3_region"]["value"] == pytest.approx(4 / 8)


# ---- attacks on trained targets ------------------------------------------------------------------------


def _attack(name: str, model, released, data, split, target_recipe, cache, **options):
    cls = ATTACKS.get(name)
    attack = cls(config=component_config(cls.Config, options, name), seed=0)
    view = make_view(model, cls.access, released)
    knowledge = AttackerKnowledge(data={r: data.take(getattr(split, r)) for r in cls.needs},
                                  ids={r: np.asarray(getattr(split, r)) for r in cls.needs},
                                  recipe=target_recipe, dataset=data, cache_dir=cache, seed=0)
    attack.fit(view, knowledge)
    return attack, view


@pytest.fixture(scope="module")
def memorizer_target(digits):
    resolved = quick("memorizer")
    split = MembershipSplit.make(n_records=len(digits), sizes=resolved.config.split, seed=0)
    model = train_defense(resolved, digits, split, seed=0)
    released = model.sample(500, generator=torch.Generator().manual_seed(0))
    return model, released, split, Recipe.of(resolved, digits.info)


def test_calibration_aligns_by_record_id(digits, memorizer_target, tmp_path):
    model, released, split, recipe = memorizer_target
    attack, view = _attack("ganleaks_fbb_cal", model, released, digits, split, recipe, tmp_path)
    ids, _ = queries(split)
    x, y = digits.take(ids)
    scores = attack.score(view, x, y, ids=ids)
    perm = np.random.default_rng(0).permutation(ids.size)
    again = attack.score(view, x[torch.from_numpy(perm)], y[torch.from_numpy(perm)], ids=ids[perm])  # cached table
    np.testing.assert_allclose(again, scores[perm])
    with pytest.raises(MiaBenchError, match="record id"):
        attack.score(view, x, y)
    table = shadows.RecordTable(attack.table_path)
    np.testing.assert_array_equal(table.lookup(ids[::-1])[:, 0], table.lookup(ids)[::-1, 0])
    with pytest.raises(MiaBenchError, match="no value"):
        table.lookup(np.array([10**6]))


def test_samples_level_attacks_never_see_the_models(memorizer_target, digits):
    model, released, split, recipe = memorizer_target
    for name in ATTACKS.names():
        cls = ATTACKS.get(name)
        view = make_view(model, cls.access, released)
        if cls.access is AccessLevel.SAMPLES:
            with pytest.raises(AccessError):
                view.generator  # noqa: B018
        if cls.access is not AccessLevel.WHITE_BOX:
            with pytest.raises(AccessError):
                view.discriminator  # noqa: B018


DISCRIMINATOR_ATTACKS = {"logan_wb": {}, "lira_wb": {"n_shadows": 4, "shadow_size": 16},
                         "lira_wb_offline": {"n_shadows": 4, "shadow_size": 16},
                         "lira_wb_mixed": {"n_shadows": 4, "shadow_size": 16, "partners": 2}}


@pytest.fixture(scope="module")
def overfit_none(digits, tmp_path_factory):
    """`none` (WGAN-GP, whose critic memorises small sets fastest) on 16 members, 600 generator steps of
    5 critic steps each on batches of 16: every member is seen 3,000 times."""
    resolved = quick("none", "split.members=16", "trainer.max_steps=600", "trainer.batch_size=16",
                     "defense.loss=wgan-gp")
    split = MembershipSplit.make(n_records=len(digits), sizes=resolved.config.split, seed=0)
    model = train_defense(resolved, digits, split, seed=0)
    released = model.sample(500, generator=torch.Generator().manual_seed(0))
    return model, released, split, Recipe.of(resolved, digits.info), tmp_path_factory.mktemp("overfit")


@pytest.mark.slow  # long training is the point: a few minutes on 2 cores (`make test-slow`)
@pytest.mark.parametrize("name", sorted(DISCRIMINATOR_ATTACKS))
def test_discriminator_attacks_catch_an_overfit_gan(name, overfit_none, digits):
    model, released, split, recipe, cache = overfit_none
    attack, view = _attack(name, model, released, digits, split, recipe, cache, **DISCRIMINATOR_ATTACKS[name])
    ids, is_member = queries(split)
    x, y = digits.take(ids)
    scores = attack.score(view, x, y, ids=ids)
    assert scores.shape == (ids.size,) and np.isfinite(scores).all()
    # mixed queries blend two candidates and so score co-membership: averaged per record they dilute the
    # signal of an unprotected GAN (AUC ~0.65 here); they are the adaptive attack on mixup-trained models
    assert roc_auc_score(is_member, scores) >= (0.6 if name == "lira_wb_mixed" else 0.95)


def _order_check(attack, view, x, y, ids) -> np.ndarray:
    """The attack's scores, checked to follow the records when the queries are shuffled (a record's score
    must not depend on its position in the batch: ES draws, id joins, region assignment)."""
    scores = attack.score(view, x, y, ids=ids)
    perm = np.random.default_rng(1).permutation(ids.size)
    again = attack.score(view, x[torch.from_numpy(perm)], y[torch.from_numpy(perm)], ids=ids[perm])
    np.testing.assert_allclose(again, scores[perm], rtol=1e-5, atol=1e-7)
    return scores


ORDER_FREE = {"ganleaks_fbb": {}, "ganleaks_pbb": {"steps": 3, "init_draws": 300},
              "ganleaks_wb": {"steps": 5, "init_draws": 300}, "logan_wb": {}, "monte_carlo": {}, "domias": {}}


@pytest.mark.parametrize("name", sorted(ORDER_FREE))
def test_scores_follow_the_records_not_their_order(name, memorizer_target, digits, tmp_path):
    """Every family's score of a record is the same wherever the record sits among the queries, and on the
    memorizing model its members score higher than its non-members (here at tiny budgets)."""
    model, released, split, recipe = memorizer_target
    attack, view = _attack(name, model, released, digits, split, recipe, tmp_path, **ORDER_FREE[name])
    ids, is_member = queries(split)
    x, y = digits.take(ids)
    scores = _order_check(attack, view, x, y, ids)
    assert np.median(scores[is_member]) > np.median(scores[~is_member])


@pytest.mark.parametrize("name, options", [("ganleaks_fbb_cal", {}), ("overrep", {"steps": 20, "n_nonmember": 200}),
                                           ("logan_bb", {"steps": 20, "recipe": "defense"})])
def test_attack_models_of_a_defense_that_needs_reference_data(digits, tmp_path, name, options):
    """MP-GAN's M needs a reference set: the calibrated attack's reference model gets the attacker's shadow
    pool, the over-representation substitute its fresh target samples, LOGAN's local GAN a held-out quarter
    of the released samples (never the target's data); scores follow the records, not their order."""
    resolved = quick("mpgan", "trainer.max_steps=20")
    split = MembershipSplit.make(n_records=len(digits), sizes=resolved.config.split, seed=0)
    model = train_defense(resolved, digits, split, seed=0)
    released = model.sample(300, generator=torch.Generator().manual_seed(0))
    attack, view = _attack(name, model, released, digits, split, Recipe.of(resolved, digits.info), tmp_path,
                           **options)
    ids, _ = queries(split)
    x, y = digits.take(ids)
    _order_check(attack, view, x, y, ids)
    if name == "logan_bb":
        assert attack.details["local_gan"]["reference"] == 75 and attack.details["local_gan"]["trained_on"].startswith("225")
    else:
        model_info = attack.details["reference_model" if name == "ganleaks_fbb_cal" else "substitute"]
        assert model_info["recipe"] == "mpgan"


# ---- models the attacker trains on its own few records (protocol v2's digits: 247, no shadow pool) -------
def test_a_reference_needing_recipe_gets_a_quarter_of_the_attackers_records_when_there_is_no_pool(digits):
    mp = Recipe.of(quick("mpgan"), digits.info)
    aux = np.arange(247) + 1000
    train, ref = shadows.attacker_reference(mp, aux, np.array([], dtype=np.int64))
    assert ref is not None and ref.size == 61 and train.size == 186
    assert not set(train) & set(ref) and set(train) | set(ref) == set(aux)
    train, ref = shadows.attacker_reference(mp, aux, np.arange(50))  # a pool: used as is
    assert train.size == 247 and ref.size == 50
    none = Recipe.of(quick("none"), digits.info)
    assert shadows.attacker_reference(none, aux, np.array([], dtype=np.int64))[1] is None


@pytest.mark.parametrize(("defense", "overrides", "n", "n_ref", "batch"),
                         [("pargan", ["defense.n_discriminators=4"], 247, None, 61),
                          ("mpgan", [], 186, 61, 61), ("none", [], 247, None, 64), ("pargan", [], 1000, None, 64)])
def test_an_attacker_model_batch_fits_its_shards_and_reference(digits, defense, overrides, n, n_ref, batch):
    recipe = Recipe.of(quick(defense, "trainer.batch_size=64", *overrides), digits.info)
    fitted = shadows.fit_batch(recipe, n, n_ref)
    assert fitted.trainer.batch_size == batch
    assert (fitted is recipe) == (batch == 64)  # a recipe that fits keeps its digest (and its cache)


def test_a_four_shard_pargan_trains_on_the_attackers_247_records(digits):
    recipe = shadows.with_steps(Recipe.of(quick("pargan", "trainer.batch_size=64", "defense.n_discriminators=4"),
                                          digits.info), 3)
    ids = np.arange(247) + 1000
    bank = shadows.train_bank(recipe=shadows.fit_batch(recipe, ids.size), data=digits, ids=ids, n_models=1,
                              size=shadows.EVERY_RECORD, seed=0, cache_dir=None)
    assert bank.models[0].n_train == 247
