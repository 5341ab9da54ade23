"""The reference defenses' mechanisms: DP-SGD clipping and noise, GS-WGAN's sanitizer and EMA release, the
privacy accounting against Opacus's RDP functions, shard isolation (checked on record ids), DP-CGAN's
uniform labels, PAR-GAN's critic rounds and privGAN's privacy term."""

import lightning as L
import numpy as np
import pytest
import torch
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.accountants.rdp import RDPAccountant

from mia_bench.checkpoint import load_checkpoint, save_checkpoint
from mia_bench.config import TrainerConfig, component_config
from mia_bench.data.datamodule import MembershipDataModule
from mia_bench.data.datasets import ArrayDataset, DataInfo
from mia_bench.defenses import DEFENSES
from mia_bench.nets.losses import wgan_g_loss
from mia_bench.nets.stacked import StackedMLPDiscriminator
from mia_bench.runner import fit_defense

INFO = DataInfo(name="unique", shape=(1, 8, 8), n_classes=10)
ORDERS = RDPAccountant.DEFAULT_ALPHAS


def _unique_data(n=400, seed=0) -> ArrayDataset:
    """Records with distinct rows, so any input a network sees maps back to at most one record id."""
    g = torch.Generator().manual_seed(seed)
    return ArrayDataset(x=torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, y=torch.randint(0, 10, (n,), generator=g),
                        info=INFO)


def _model(name, **params):
    cls = DEFENSES.get(name)
    return cls(config=component_config(cls.Config, params, "defense"), info=INFO, n_train=300)


def _fit(name, data, steps, callbacks=None, **params):
    cls = DEFENSES.get(name)
    trainer = TrainerConfig(max_steps=steps, batch_size=64 if name != "gswgan" else 16, progress_bar=False)
    return fit_defense(defense=name, params=component_config(cls.Config, params, "defense"), trainer=trainer,
                       data=data, train_ids=np.arange(300), seed=0, callbacks=callbacks)


class SeenIds(L.Callback):
    """Per discriminator, the ids of the records among its inputs (fakes match no record)."""

    def __init__(self, data: ArrayDataset, stacked: bool) -> None:
        self.lookup = {data.x[i].numpy().tobytes(): i for i in range(len(data))}
        self.stacked, self.seen = stacked, {}

    def _note(self, k: int, rows: torch.Tensor) -> None:
        ids = (self.lookup.get(r.numpy().tobytes()) for r in rows.detach())
        self.seen.setdefault(k, set()).update(i for i in ids if i is not None)

    def on_train_start(self, trainer, pl_module):
        D = pl_module.players["discriminators"]
        if self.stacked:  # (k, B, ...): slot k goes to member k
            D.register_forward_pre_hook(lambda mod, args: self._note_slots(args[0]))
        else:
            for k, Dk in enumerate(D):
                Dk.register_forward_pre_hook(lambda mod, args, k=k: self._note(k, args[0]))

    def _note_slots(self, x: torch.Tensor) -> None:
        for k, rows in enumerate(x):
            self._note(k, rows)

    def check(self, data: ArrayDataset, k: int) -> None:
        dm = MembershipDataModule(data=data, train_ids=np.arange(300), batch_size=1, num_batches=1, seed=0,
                                  n_shards=k)
        assert self.seen, "no discriminator input was recorded"
        for i, ids in self.seen.items():
            assert ids <= set(dm.shard_ids(i).tolist()), f"D_{i} saw records outside shard {i}"


def _flat_grad(module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in module.parameters()])


# ---- data module sampling modes -------------------------------------------------------------------------
def test_poisson_batches_include_each_record_with_probability_b_over_n():
    dm = MembershipDataModule(data=_unique_data(), train_ids=np.arange(300), batch_size=60, num_batches=300,
                              seed=1, sampling="poisson")
    sizes, counts = [], np.zeros(400)  # 300 training records of a 400-record dataset
    for b in dm.train_dataloader():
        sizes.append(b["x"].shape[0])
        assert b["idx"].unique().numel() == b["idx"].numel() and int(b["idx"].max()) < 300
        counts[b["idx"].numpy()] += 1
    assert dm.sample_rate == 0.2 and len(set(sizes)) > 5  # variable sizes, as Poisson sampling gives
    assert abs(np.mean(sizes) - 60) < 1.5  # E = q n; sd of the mean over 300 batches ~ 0.4
    assert counts[:300].min() > 30 and counts[:300].max() < 95  # every record ~ Binomial(300, 0.2): 60 +- 7


def test_random_shard_serves_one_shard_per_generator_step():
    dm = MembershipDataModule(data=_unique_data(), train_ids=np.arange(300), batch_size=16, num_batches=300,
                              seed=1, n_shards=50, sampling="random_shard", group_size=3)
    shards = {k: set(dm.shard_ids(k).tolist()) for k in range(50)}
    batches = list(dm.train_dataloader())
    for start in range(0, 300, 3):
        group = batches[start:start + 3]
        k = int(group[0]["shard"][0])
        for b in group:
            assert b["x"].shape[0] == 6  # min(B, shard size): the whole 6-record shard
            assert (b["shard"] == k).all() and set(b["idx"].tolist()) <= shards[k]
    assert len({int(b["shard"][0]) for b in batches[::3]}) > 35  # 100 uniform draws of 50 shards


# ---- DP-SGD on the discriminator ------------------------------------------------------------------------
def _private(conditional, sigma, clip=0.05, d_norm="none"):
    torch.manual_seed(0)
    m = _model("dpgan", conditional=conditional, noise_multiplier=sigma, target_epsilon=None, max_grad_norm=clip,
               d_norm=d_norm, deterministic_noise=True)
    D = m.players["discriminator"]
    m.make_private(torch.optim.Adam(D.parameters()), sample_rate=64 / 300, steps=10)
    return m, D


@pytest.mark.parametrize("conditional,d_norm", [(False, "none"), (True, "none"), (True, "layer")])
def test_dp_sgd_clips_every_real_per_sample_gradient_to_c(conditional, d_norm):
    """Also for DP-CGAN with LayerNorm in D: ghost clipping must measure the LayerNorm parameters' share of
    every per-sample norm (a norm layer that mixed samples, BatchNorm, would break the per-sample view)."""
    m, D = _private(conditional, sigma=0.0, d_norm=d_norm)
    data = _unique_data()
    x, y = data.x[:12], m.label_vector(data.y[:12]) if conditional else None
    clipped, raw_norms = [], []
    for i in range(12):  # one record at a time: .grad * B is that record's clipped gradient
        D.zero_grad()
        torch.nn.functional.softplus(-D(x[i:i + 1], None if y is None else y[i:i + 1])).sum().backward()
        raw = _flat_grad(D).clone()
        m.private_real_term(x[i:i + 1], None if y is None else y[i:i + 1])
        g = _flat_grad(D) * m.expected_batch
        raw_norms.append(raw.norm())
        clipped.append(g)
        assert g.norm() <= 0.05 * (1 + 1e-4)
        torch.testing.assert_close(g, raw * min(1.0, 0.05 / float(raw.norm())), rtol=1e-3, atol=1e-6)
    assert min(raw_norms) > 0.05  # the bound was binding, so the check above tested clipping
    m.private_real_term(x, y)  # the batch: the sum of the per-sample clipped gradients, not a clipped sum
    torch.testing.assert_close(_flat_grad(D) * m.expected_batch, torch.stack(clipped).sum(0), rtol=1e-3, atol=1e-5)
    assert m.accountant.history == [(0.0, 64 / 300, 13)]  # one accountant step per real-term query


def test_dp_sgd_noise_std_is_sigma_times_c():
    m, D = _private(False, sigma=0.0)
    x = _unique_data().x[:32]
    m.private_real_term(x, None)
    clean = _flat_grad(D).clone()
    m, D = _private(False, sigma=2.0)
    m.private_real_term(x, None)
    noise = (_flat_grad(D) - clean) * m.expected_batch  # (P,) with P ~ 50k coordinates
    assert abs(float(noise.std()) / (2.0 * 0.05) - 1) < 0.02  # relative SE of a sd over 50k draws ~ 0.3%
    assert abs(float(noise.mean())) < 3 * 0.1 / noise.numel() ** 0.5


def test_dpgan_epsilon_equals_the_rdp_accountant_and_hits_the_target():
    data = _unique_data()
    model = _fit("dpgan", data, 12, noise_multiplier=1.3, target_epsilon=None)
    report = model.privacy_report()
    rdp = compute_rdp(q=64 / 300, noise_multiplier=1.3, steps=12, orders=ORDERS)
    assert report["steps"] == 12 and report["delta"] == 1e-5
    assert report["epsilon"] == pytest.approx(get_privacy_spent(orders=ORDERS, rdp=rdp, delta=1e-5)[0], rel=1e-9)
    target = _fit("dpgan", data, 12, target_epsilon=3.0).privacy_report()
    assert 2.9 <= target["epsilon"] <= 3.0 and target["noise_multiplier"] > 1.3


def test_no_noise_means_no_guarantee():
    m, _ = _private(False, sigma=0.0)
    m.private_real_term(_unique_data().x[:4], None)
    assert m.accountant.history and m.privacy_report() == {}  # epsilon = inf is no guarantee, not 0
    g = _model("gswgan", n_discriminators=5, noise_multiplier=0.0, target_epsilon=None)
    g.done_steps, g.g_batch = 3, 16
    assert g.privacy_report() == {}


def test_dpgan_checkpoint_keeps_plain_keys_and_the_spent_budget(tmp_path):
    model = _fit("dpgan", _unique_data(), 4, noise_multiplier=1.0, target_epsilon=None)
    plain = {k.replace("players.", "", 1) for k in model.state_dict() if k.startswith("players.discriminator.")}
    assert plain == {f"discriminator.{k}" for k in model.players["discriminator"].state_dict()}
    assert not any("_module" in k for k in model.state_dict())  # no Opacus wrapper in the keys
    save_checkpoint(tmp_path / "m.pt", model, split_digest="s", config_digest="c")
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert loaded.privacy_report() == model.privacy_report() and loaded.privacy_report()["epsilon"] > 0


# ---- GS-WGAN ---------------------------------------------------------------------------------------------
def _gswgan(sigma):
    torch.manual_seed(0)
    m = _model("gswgan", n_discriminators=5, noise_multiplier=sigma, target_epsilon=None, clip_bound=0.01)
    fake = (torch.rand(16, 1, 8, 8) * 2 - 1).requires_grad_(True)
    y = m.label_vector(torch.randint(0, 10, (16,)))
    wgan_g_loss(m.sanitized_critic(fake, y, 2)).backward()
    return fake.grad.flatten(1), m


def test_gswgan_sanitized_generator_gradients_are_bounded_and_noised():
    clean, m = _gswgan(0.0)
    norms = clean.norm(dim=1)
    assert (norms <= 0.01 / 16 * (1 + 1e-4)).all() and torch.allclose(norms, torch.full_like(norms, 0.01 / 16))
    noisy, _ = _gswgan(3.0)
    noise = noisy - clean  # (16, 64): N(0, (2 sigma C / B)^2) per coordinate
    assert abs(float(noise.std()) / (2 * 3.0 * 0.01 / 16) - 1) < 0.1  # 1024 draws: relative SE ~ 2%


def test_gswgan_epsilon_and_shard_isolation():
    data = _unique_data()
    seen = SeenIds(data, stacked=False)
    model = _fit("gswgan", data, 6, callbacks=[seen], n_discriminators=10, noise_multiplier=1.07,
                 target_epsilon=None, warmup=0.5, critic_iters=2)
    seen.check(data, 10)
    report = model.privacy_report()
    rdp = compute_rdp(q=1 / 10, noise_multiplier=1.07, steps=6 * 16, orders=ORDERS)
    assert report["steps"] == 6 and report["compositions"] == 96  # warm-up steps are not sanitized: no charge
    assert report["epsilon"] == pytest.approx(get_privacy_spent(orders=ORDERS, rdp=rdp, delta=1e-5)[0], rel=1e-9)


# ---- privGAN and PAR-GAN: each discriminator only ever sees its own shard ---------------------------------
@pytest.mark.parametrize("name,k", [("privgan", 2), ("pargan", 4)])
def test_shard_discriminators_never_see_other_shards(name, k):
    data = _unique_data()
    seen = SeenIds(data, stacked=True)
    _fit(name, data, 5, callbacks=[seen], **({"disc_epochs": 1} if name == "privgan" else {}))
    assert sorted(seen.seen) == list(range(k))
    seen.check(data, k)


def test_stacked_members_are_independent_networks():
    torch.manual_seed(0)
    D = StackedMLPDiscriminator(k=3, in_shape=(1, 8, 8), n_classes=10)
    x, y = torch.randn(3, 5, 1, 8, 8), torch.eye(10)[torch.randint(0, 10, (3, 5))]
    D(x, y)[1].sum().backward()
    for p in D.parameters():
        assert p.grad[1].abs().sum() > 0 and p.grad[0].abs().sum() == 0 and p.grad[2].abs().sum() == 0


def test_privgan_releases_every_generator_and_scores_max_or_mean():
    m = _model("privgan")
    z = torch.randn(6, 32)
    out = m.generate(z)
    G = m.players["generators"]
    for r in range(6):
        alone = G(z[r].view(1, 1, -1).expand(2, 1, -1))[r % 2, 0]
        torch.testing.assert_close(out[r], alone)
    x = torch.rand(7, 1, 8, 8) * 2 - 1
    logits = m.players["discriminators"].every(x)
    torch.testing.assert_close(m.discriminate(x), logits.max(0).values)
    mean = _model("privgan", disc_reduce="mean")
    mean.load_state_dict(m.state_dict())
    torch.testing.assert_close(torch.sigmoid(mean.discriminate(x)), torch.sigmoid(logits).mean(0))


# ---- the variants' own behaviour ---------------------------------------------------------------------------
def test_dp_cgan_releases_uniform_labels_whatever_the_members_classes():
    """DP-CGAN's fake and released labels are uniform: the members' class counts are never released without
    noise. Members all of class 3: a prior taken from them would release class 3 only."""
    data = _unique_data()
    data = ArrayDataset(x=data.x, y=torch.full_like(data.y, 3), info=INFO)
    model = _fit("dpgan", data, 4, conditional=True, d_norm="layer", deterministic_noise=True)
    torch.testing.assert_close(model.label_prior, torch.full((10,), 0.1))
    released = model.sample(2000, generator=torch.Generator().manual_seed(0))
    share = torch.bincount(released.y, minlength=10).double() / 2000
    assert (share - 0.1).abs().max() < 0.03  # Binomial(2000, 0.1)/2000: sd 0.0067
    assert model.privacy_report()["steps"] == 4


class OptimizerSteps(L.Callback):
    """Counts each optimizer's steps and keeps a copy of the parameters after every step of `record`."""

    def __init__(self, record: int | None = None) -> None:
        self.counts, self.record, self.after = {}, record, []

    def on_train_start(self, trainer, pl_module):
        for i, opt in enumerate(trainer.optimizers):
            self.counts[i] = 0

            def post(opt, args, kwargs, i=i):
                self.counts[i] += 1
                if i == self.record:
                    self.after.append([p.detach().clone() for g in opt.param_groups for p in g["params"]])

            opt.register_step_post_hook(post)


def test_pargan_wgan_gp_variant_keeps_shards_apart_and_takes_n_d_critic_rounds():
    data = _unique_data()
    seen, steps = SeenIds(data, stacked=True), OptimizerSteps()
    model = _fit("pargan", data, 4, callbacks=[seen, steps], loss="wgan-gp", optimizer="rmsprop", n_d=2,
                 disc_reduce="mean")
    seen.check(data, 4)  # every D_i saw only its own shard, in the WGAN-GP variant too
    assert sorted(seen.seen) == list(range(4))
    assert steps.counts == {0: 4, 1: 8}  # n_d = 2 critic rounds per generator step
    assert all(isinstance(o, torch.optim.RMSprop) for o in model.configure_optimizers())
    x = torch.rand(9, 1, 8, 8) * 2 - 1
    assert not model.discriminator_is_logit  # critic scores: averaged as they are, not as probabilities
    torch.testing.assert_close(model.discriminate(x), model.players["discriminators"].every(x).mean(0))


def test_gswgan_releases_the_ema_of_the_sanitized_generator_and_averages_its_critics():
    """Unconditional, K = 10, mean: the released generator is the EMA of the generator's iterates with decay
    min(n / (n + 1), 0.999) (the code's warm-up), over the sanitized steps only (warm-up trains a throw-away
    generator); `discriminate` is the mean over the K critics; released samples carry no labels."""
    steps = OptimizerSteps(record=0)  # optimizer 0: the released generator's
    model = _fit("gswgan", _unique_data(), 6, callbacks=[steps], conditional=False,
                 n_discriminators=10, disc_reduce="mean", warmup=0.5, critic_iters=2, deterministic_noise=True)
    assert steps.counts[0] == 6 and steps.counts[2] == 3  # 6 sanitized steps; warm-up: round(0.5 * 6) = 3
    avg = steps.after[0]
    for n, cur in enumerate(steps.after[1:], start=1):
        decay = min(n / (n + 1), model.config.ema)
        avg = [decay * a + (1 - decay) * c for a, c in zip(avg, cur, strict=True)]
    for want, got in zip(avg, model.released.module.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert not torch.equal(avg[0], steps.after[-1][0])  # the EMA is not the last iterate
    released = model.sample(40, generator=torch.Generator().manual_seed(0))
    assert released.y is None and released.x.shape == (40, 1, 8, 8)
    x = torch.rand(9, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(model.discriminate(x), torch.stack([D(x, None) for D in model.critics]).mean(0))


@pytest.mark.parametrize("seed", [0, 1])
def test_privgan_privacy_term_moves_each_generator_towards_the_other_generators_source(seed):
    """One budgeted step at the shipped privacy_ratio against the same step without the privacy term
    (privacy_ratio = 0): every player but the generators takes the same step (D_p is identical afterwards),
    and the privacy term must lower D_p's log-probability of each sample's true generator (the loss
    targets another generator's index); a sign or target error would raise it."""
    from mia_bench.config import load_run

    shipped = load_run(suite="digits_v1", defense="privgan").defense_params.privacy_ratio
    assert shipped > 0
    z = torch.randn(2000, 32, generator=torch.Generator().manual_seed(9))
    log_p, d_p = {}, {}
    for ratio in (shipped, 0.0):
        cls = DEFENSES.get("privgan")
        params = component_config(cls.Config, {"disc_epochs": 1, "dp_delay": 0.0, "privacy_ratio": ratio}, "defense")
        model = fit_defense(defense="privgan", params=params, data=_unique_data(), train_ids=np.arange(300),
                            seed=seed, trainer=TrainerConfig(max_steps=1, batch_size=64, progress_bar=False))
        G, Dp = model.players["generators"], model.players["privacy_discriminator"]
        with torch.no_grad():
            x = G(z.unsqueeze(0).expand(2, -1, -1))  # (2, 2000, ...): the same latents through each G_j
            log_p[ratio] = torch.stack([torch.log_softmax(Dp(x[j]), 1)[:, j] for j in range(2)]).mean().item()
        d_p[ratio] = torch.cat([p.detach().flatten() for p in Dp.parameters()])
    torch.testing.assert_close(d_p[shipped], d_p[0.0], rtol=0, atol=0)
    assert log_p[shipped] < log_p[0.0], log_p
