"""The reference defenses' mechanisms: DP-SGD clipping and noise, GS-WGAN's sanitizer, the privacy
accounting against Opacus's RDP functions, and shard isolation (checked on record ids)."""

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
def _private(conditional, sigma, clip=0.05):
    torch.manual_seed(0)
    m = _model("dpgan", conditional=conditional, noise_multiplier=sigma, target_epsilon=None, max_grad_norm=clip)
    D = m.players["discriminator"]
    m.make_private(torch.optim.Adam(D.parameters()), sample_rate=64 / 300, steps=10)
    return m, D


@pytest.mark.parametrize("conditional", [False, True])
def test_dp_sgd_clips_every_real_per_sample_gradient_to_c(conditional):
    m, D = _private(conditional, sigma=0.0)
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


@pytest.mark.parametrize("name,params", [
    ("dpgan", {"conditional": True, "d_norm": "layer"}),  # DP-CGAN, LayerNorm in D
    ("pargan", {"loss": "wgan-gp", "optimizer": "rmsprop", "n_d": 2, "disc_reduce": "mean"}),
    ("gswgan", {"conditional": False, "n_discriminators": 10, "disc_reduce": "mean"}),
])
def test_variants_train_release_and_score(name, params):
    model = _fit(name, _unique_data(), 4, **params)
    released = model.sample(40, generator=torch.Generator().manual_seed(0))
    assert released.x.shape == (40, 1, 8, 8) and torch.isfinite(released.x).all()
    assert (released.y is not None) == bool(params.get("conditional", name == "gswgan"))
    scores = model.discriminate(torch.rand(9, 1, 8, 8) * 2 - 1, torch.randint(0, 10, (9,)))
    assert scores.shape == (9,) and torch.isfinite(scores).all()
