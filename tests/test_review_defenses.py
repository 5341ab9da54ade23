"""Review findings of issue 15 on the seed and reference defenses, each checked on what the mechanism must do:
MIMGAN's MI estimate depends on G; DP-GAN survives empty Poisson batches with a noise-only step; DP
defenses refuse multi-process strategies; DP noise is not reproducible from the published seed; GS-WGAN's
generator only ever receives the sanitized gradient."""

import math

import lightning as L
import numpy as np
import pytest
import torch

from conftest import quick
from mia_bench.config import TrainerConfig, component_config, load_run
from mia_bench.data import MembershipSplit
from mia_bench.data.datasets import ArrayDataset, DataInfo
from mia_bench.defenses import DEFENSES
from mia_bench.defenses import gswgan as gswgan_module
from mia_bench.distributed import refuse_multiprocess
from mia_bench.errors import MiaBenchError
from mia_bench.runner import fit_defense, train_defense

INFO = DataInfo(name="unique", shape=(1, 8, 8), n_classes=10)


def _unique_data(n=400, seed=0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    return ArrayDataset(x=torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, y=torch.randint(0, 10, (n,), generator=g),
                        info=INFO)


def _fit(name, data, steps, *, batch_size=64, callbacks=None, seed=0, **params):
    cls = DEFENSES.get(name)
    trainer = TrainerConfig(max_steps=steps, batch_size=batch_size, progress_bar=False)
    return fit_defense(defense=name, params=component_config(cls.Config, params, "defense"), trainer=trainer,
                       data=data, train_ids=np.arange(300), seed=seed, callbacks=callbacks)


# ---- 1. MIMGAN: the estimate is a function of G ----------------------------------------------------------
def _trained_estimate(model, sample, members, reference, *, steps=400, batch=64, probes=20):
    """Fit the model's own T (its configured Adam) to the generator `sample(n, g)`, then average the
    estimate over `probes` fresh pool batches of members and reference records."""
    T = model.players["statistics"]
    opt = torch.optim.Adam(T.parameters(), lr=model.config.lr_t, betas=(model.config.beta1, model.config.beta2))
    g = torch.Generator().manual_seed(1)
    s = model.config.mi_samples

    def batches():
        return members[torch.randint(len(members), (batch,), generator=g)], \
            reference[torch.randint(len(reference), (batch,), generator=g)]

    for _ in range(steps):
        loss = -model.mi_estimate(sample(s, g), *batches())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(np.mean([model.mi_estimate(sample(s, g), *batches()).item() for _ in range(probes)]))


def _copier_information(n: int, s: int) -> float:
    """I(M; d) in nats for a G whose s samples are uniform draws (with replacement) from the n members, the
    pool balanced: a member is released with probability c = 1 - (1 - 1/n)^s and then has d = 0; every
    other pool record has d > 0. I = log 2 - P(d > 0) H_b(P(M = 1 | d > 0))."""
    c = 1 - (1 - 1 / n) ** s
    p_pos, p_member = 1 - c / 2, (1 - c) / (2 - c)
    return math.log(2) - p_pos * -(p_member * math.log(p_member) + (1 - p_member) * math.log(1 - p_member))


def test_mimgan_penalty_at_the_shipped_beta_is_high_for_a_copying_generator_and_zero_for_an_independent_one(digits):
    """I(M; d_G(X)) is 0 for a G independent of the members (members and reference records are then
    exchangeable) and grows as G copies them (`_copier_information`: 0.26 nats for a copier at the shipped
    mi_samples and 300 members). The old coupling (sample, nearest member) gave log n for every G."""
    resolved = load_run(suite="digits_v1", defense="mimgan")
    beta, s = resolved.defense_params.beta, resolved.defense_params.mi_samples
    assert beta > 0
    split = MembershipSplit.make(n_records=len(digits), sizes=resolved.config.split, seed=0)
    (xm, _), (xr, _), (xo, _) = (digits.take(split.members), digits.take(split.reference),
                                 digits.take(split.attacker_aux))
    independent = fit_defense(defense="none", params=quick("none").defense_params, data=digits, seed=0,
                              trainer=quick("none", "trainer.max_steps=300").config.trainer,
                              train_ids=split.attacker_aux)  # trained on records outside members and reference
    estimates = {}
    for name, sample in (("copies members", lambda n, g: xm[torch.randint(len(xm), (n,), generator=g)]),
                         ("copies other records", lambda n, g: xo[torch.randint(len(xo), (n,), generator=g)]),
                         ("GAN on other records", lambda n, g: independent.sample(n, generator=g).x)):
        torch.manual_seed(0)
        model = DEFENSES.get("mimgan")(config=resolved.defense_params, info=digits.info, n_train=len(xm))
        estimates[name] = _trained_estimate(model, sample, xm, xr)
    truth = _copier_information(len(xm), s)
    penalty = {k: beta * v for k, v in estimates.items()}
    assert estimates["copies members"] > 0.8 * truth, (estimates, truth)  # a lower bound on `truth`
    assert max(abs(estimates["copies other records"]), abs(estimates["GAN on other records"])) < 0.1 * truth, estimates
    assert penalty["copies members"] - max(penalty["copies other records"], penalty["GAN on other records"]) \
        > 0.7 * beta * truth, penalty


# ---- 2. DP-GAN: an empty Poisson batch is a noise-only step ----------------------------------------------
def _private(sigma, clip=0.05):
    torch.manual_seed(0)
    cls = DEFENSES.get("dpgan")
    m = cls(config=component_config(cls.Config, {"noise_multiplier": sigma, "target_epsilon": None,
                                                 "max_grad_norm": clip, "deterministic_noise": True}, "defense"),
            info=INFO, n_train=300)
    D = m.players["discriminator"]
    opt = torch.optim.Adam(D.parameters(), lr=1e-3)
    m.make_private(opt, sample_rate=64 / 300, steps=10)
    return m, D, opt


@pytest.mark.parametrize("sigma", [0.0, 2.0])
def test_dpgan_empty_batch_after_a_full_one_takes_a_noise_only_step(sigma):
    m, D, opt = _private(sigma)
    x = _unique_data().x
    m.private_real_term(x[:16], None)  # a non-empty step first: its gradient is marked as used by Opacus
    opt.step()
    fresh = torch.optim.Adam(D.parameters(), lr=1e-3)  # no momentum: a zero gradient moves nothing
    before = [p.detach().clone() for p in D.parameters()]
    m.private_real_term(x[:0], None)  # raised "Gradients haven't been cleared" before the fix
    grad = torch.cat([p.grad.flatten() for p in D.parameters()]) * m.expected_batch  # sum_i clip(g_i) + noise
    fresh.step()
    moved = any(not torch.equal(b, p.detach()) for b, p in zip(before, D.parameters(), strict=True))
    assert m.accountant.history == [(sigma, 64 / 300, 2)]  # the empty step is charged: it is a step
    if sigma == 0:
        assert torch.equal(grad, torch.zeros_like(grad)) and not moved  # nothing but noise, and no noise
    else:  # N(0, sigma^2 C^2) per coordinate, nothing else
        assert abs(float(grad.std()) / (sigma * 0.05) - 1) < 0.02 and abs(float(grad.mean())) < 0.01 and moved


class BatchSizes(L.Callback):
    def __init__(self):
        self.sizes = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.sizes.append(int(batch["x"].shape[0]))


def test_dpgan_training_with_empty_poisson_batches_completes_and_charges_every_step():
    """q = 1/300: each Poisson batch is empty with probability (1 - 1/300)^300 ~ 0.37."""
    sizes = BatchSizes()
    model = _fit("dpgan", _unique_data(), 30, batch_size=1, callbacks=[sizes], noise_multiplier=1.0,
                 target_epsilon=None, deterministic_noise=True)
    empty_after_full = [i for i in range(1, 30) if sizes.sizes[i] == 0 and sizes.sizes[i - 1] > 0]
    assert len(sizes.sizes) == 30 and empty_after_full, sizes.sizes
    assert model.privacy_report()["steps"] == 30


def test_dpgan_n_d_takes_n_d_private_discriminator_steps_per_generator_step():
    """Bie et al.'s knob: the budget counts generator steps, the accountant every private D step."""
    g_steps = []

    class GeneratorSteps(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            step = pl_module.optimizers()[0].optimizer.state_dict()["state"].get(0, {}).get("step", 0)
            g_steps.append(float(step))  # Adam's step count of the generator, read now (it is updated in place)

    model = _fit("dpgan", _unique_data(), 6, callbacks=[GeneratorSteps()], noise_multiplier=1.0, target_epsilon=None,
                 deterministic_noise=True, n_d=3)
    assert model.privacy_report()["steps"] == 18  # 6 generator steps x 3 charged D steps
    assert g_steps == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6]  # G steps after every 3rd D step
    with pytest.raises(MiaBenchError, match="n_d"):
        _fit("dpgan", _unique_data(), 1, noise_multiplier=1.0, target_epsilon=None, n_d=0)


# ---- 3. DP defenses refuse multi-process strategies ------------------------------------------------------
@pytest.mark.parametrize("name", ["dpgan", "gswgan"])
@pytest.mark.parametrize("overrides", [{"strategy": "ddp_fork", "devices": 2}, {"strategy": "ddp"},
                                       {"strategy": "ddp_spawn", "devices": 2}, {"devices": 2}, {"num_nodes": 2}])
def test_dp_defense_refuses_a_multi_process_trainer_config(name, overrides):
    fix = " / ".join(f"trainer.{k}={v}" for k, v in overrides.items())
    with pytest.raises(MiaBenchError, match=f"{name}: DP defenses train on one process: drop {fix} "):
        refuse_multiprocess(name, TrainerConfig(**overrides))
    refuse_multiprocess(name, TrainerConfig())  # one process: accepted
    assert DEFENSES.get(name).single_process  # the flag the runner and the strategy tests can filter on


@pytest.mark.parametrize("name", ["dpgan", "gswgan"])
def test_dp_defense_refuses_a_ddp_trainer_before_any_step(name, digits, monkeypatch):
    """In-process guard (the defense's setup hook): a one-process DDP trainer never reaches a step."""
    resolved = quick(name, "trainer.max_steps=4", "trainer.batch_size=16", "trainer.strategy=ddp")
    split = MembershipSplit.make(n_records=len(digits), sizes=resolved.config.split, seed=0)
    cls, steps = DEFENSES.get(name), []
    original = cls.training_step
    monkeypatch.setattr(cls, "training_step", lambda self, *a, **k: steps.append(1) or original(self, *a, **k))
    try:
        with pytest.raises(MiaBenchError, match="DP defenses train on one process"):
            train_defense(resolved, digits, split, seed=0)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    assert not steps


@pytest.mark.ddp
@pytest.mark.parametrize("name", ["dpgan", "gswgan"])
def test_dp_defense_refuses_two_forked_processes(name, digits):
    resolved = quick(name, "trainer.max_steps=4", "trainer.batch_size=16", "trainer.devices=2",
                     "trainer.strategy=ddp_fork")
    split = MembershipSplit.make(n_records=len(digits), sizes=resolved.config.split, seed=0)
    with pytest.raises(Exception, match="DP defenses train on one process"):
        train_defense(resolved, digits, split, seed=0)


# ---- 4. DP noise is not reproducible from the published seed ---------------------------------------------
def _weights(model, player):
    return torch.cat([p.detach().flatten() for p in model.players[player].parameters()])


class BatchIds(L.Callback):
    def __init__(self):
        self.ids = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.ids.append(batch["idx"].tolist())


@pytest.mark.parametrize("name,player,params", [
    ("dpgan", "discriminator", {"noise_multiplier": 1.0, "target_epsilon": None}),
    ("gswgan", "generator", {"n_discriminators": 10, "noise_multiplier": 1.0, "target_epsilon": None,
                             "warmup": 0.0, "critic_iters": 1}),
])
def test_dp_runs_with_one_seed_differ_unless_deterministic_noise(name, player, params):
    """Noise and batches (DP-GAN's Poisson draws, GS-WGAN's shard choices) differ between two runs with the
    published seed, unless deterministic_noise; then both runs are identical."""
    data, bs = _unique_data(), 16
    runs = {}
    for deterministic in (False, True):
        batches = [BatchIds(), BatchIds()]
        models = [_fit(name, data, 3, batch_size=bs, callbacks=[b], deterministic_noise=deterministic, **params)
                  for b in batches]
        runs[deterministic] = models, batches
    (secure, secure_batches), (seeded, seeded_batches) = runs[False], runs[True]
    assert not torch.equal(_weights(secure[0], player), _weights(secure[1], player))
    assert secure_batches[0].ids != secure_batches[1].ids
    torch.testing.assert_close(_weights(seeded[0], player), _weights(seeded[1], player), rtol=0, atol=0)
    assert seeded_batches[0].ids == seeded_batches[1].ids
    report, seeded_report = secure[0].privacy_report(), seeded[0].privacy_report()
    assert report["deterministic_noise"] is False and report["noise_source"].startswith("os.urandom")
    assert report["sampling_source"].startswith("os.urandom")
    assert seeded_report["deterministic_noise"] is True and seeded_report["noise_source"].startswith("run seed")


def test_dp_noise_differs_between_runs_with_one_seed_with_the_batch_fixed():
    """The noise alone (same records, same weights): two secure optimizers differ, two seeded ones agree."""
    x = _unique_data().x[:32]

    def grad(deterministic):
        torch.manual_seed(0)
        cls = DEFENSES.get("dpgan")
        m = cls(config=component_config(cls.Config, {"noise_multiplier": 1.0, "target_epsilon": None,
                                                     "deterministic_noise": deterministic}, "defense"),
                info=INFO, n_train=300)
        m.make_private(torch.optim.SGD(m.players["discriminator"].parameters(), lr=0.1), sample_rate=0.1, steps=1)
        m.private_real_term(x, None)
        return torch.cat([p.grad.flatten() for p in m.players["discriminator"].parameters()])

    assert not torch.equal(grad(False), grad(False))
    assert torch.equal(grad(True), grad(True))


# ---- 5. GS-WGAN: inside training_step, G's gradient is the sanitized one ----------------------------------
class GeneratorAudit(L.Callback):
    """Per sanitized generator step: the per-sample gradient reaching G's output, G's inputs, and the
    parameter gradient G's optimizer steps on."""

    def __init__(self):
        self.steps, self.handles = [], []

    def on_train_end(self, trainer, pl_module):
        for h in self.handles:
            h.remove()

    def on_train_start(self, trainer, pl_module):
        G = pl_module.players["generator"]

        def forward_hook(mod, args, out):
            if out.requires_grad:  # the generator step's batch (the D steps' fakes are drawn without grad)
                entry = {"z": args[0].detach().clone(), "y": None if args[1] is None else args[1].detach().clone(),
                         "params": [p.detach().clone() for p in mod.parameters()]}
                out.register_hook(lambda g: entry.__setitem__("out_grad", g.detach().clone()))
                self.steps.append(entry)

        opt = trainer.optimizers[pl_module.player_order.index("generator")]
        self.handles = [G.register_forward_hook(forward_hook), opt.register_step_pre_hook(
            lambda o, a, k: self.steps[-1].__setitem__("param_grad", [p.grad.detach().clone() for p in G.parameters()]))]


@pytest.mark.parametrize("sigma", [0.0, 3.0])
def test_gswgan_generator_update_inside_training_step_is_the_sanitized_gradient(sigma, monkeypatch):
    clip, bs = 1e-3, 16
    sanitized = []
    backward = gswgan_module.SanitizeGrad.backward

    def recording_backward(ctx, grad):
        out = backward(ctx, grad)
        sanitized.append((grad.detach().clone(), out[0].detach().clone()))
        return out

    monkeypatch.setattr(gswgan_module.SanitizeGrad, "backward", staticmethod(recording_backward))
    audit = GeneratorAudit()
    model = _fit("gswgan", _unique_data(), 4, batch_size=bs, callbacks=[audit], n_discriminators=10, warmup=0.5,
                 critic_iters=2, noise_multiplier=sigma, target_epsilon=None, clip_bound=clip,
                 deterministic_noise=True)
    G = model.players["generator"]
    assert len(audit.steps) == len(sanitized) == 4  # every generator step went through the sanitizer
    for step, (raw, out) in zip(audit.steps, sanitized, strict=True):
        torch.testing.assert_close(step["out_grad"], out, rtol=0, atol=0)  # what G's output receives
        raw_norm = raw.flatten(1).norm(dim=1)
        assert (raw_norm > clip / bs).all()  # the bound binds, so the clipping is being tested
        if sigma == 0:
            torch.testing.assert_close(out.flatten(1).norm(dim=1), torch.full((bs,), clip / bs), rtol=1e-4, atol=0)
        else:  # clipped gradient + N(0, (2 sigma C / B)^2): the noise dominates at this clip bound
            noise = out.flatten(1) - raw.flatten(1) * (clip / bs / raw_norm)[:, None]
            assert abs(float(noise.std()) / (2 * sigma * clip / bs) - 1) < 0.1
        # G's parameter gradient is J^T (sanitized output gradient): no other path from D_k reaches G
        with torch.no_grad():
            current = [p.detach().clone() for p in G.parameters()]
            for p, v in zip(G.parameters(), step["params"], strict=True):
                p.copy_(v)
        with torch.enable_grad():
            fake = G(step["z"], step["y"])
            expect = torch.autograd.grad(fake, list(G.parameters()), grad_outputs=step["out_grad"])
        with torch.no_grad():
            for p, v in zip(G.parameters(), current, strict=True):
                p.copy_(v)
        for got, want in zip(step["param_grad"], expect, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-10)
