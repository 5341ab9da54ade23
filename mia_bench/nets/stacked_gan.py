"""K copies of one MLP GAN game trained at once as one stack: the unprotected game (`none`, ALGORITHMS.md
1.1 / 1.2), MEGAN's entropy bonus on member outputs (2.2), mixup's mixed-pair WGAN-GP (2.3), RelaxLoss on
D's member loss (2.6), and the three-player games MP-GAN (2.1) and MIMGAN (2.2); a `StackGame` says which
terms a recipe plays (shadows.stack_game builds it from the defense's config).

The K generators (and K discriminators, and K third players) keep their parameters stacked along a leading
(K, ...) axis; nets/mlp.py's players run as batched matmuls (else `torch.func.vmap` over
`functional_call`), so one step is a handful of batched matmuls instead of K small ones. Model k only ever
touches its own slice, so the gradient of the summed loss with respect to slice k is the gradient of model
k's own loss; and Adam is elementwise, so one Adam over the stacked tensors is K independent Adams. Every
random draw of model k (its batches, reference batches, latents, fake labels, GP interpolation weights)
comes from its own generator, seeded by `seeds[k]`: a stack of K therefore equals K stacks of one, model
by model, up to float rounding (tests/test_attack_suite.py, tests/test_stacked_games.py).

The game is the one `none.UnprotectedGAN.training_step` writes out: per loader batch one D step on
(real batch, fresh fakes), then (every `n_critic`-th batch for WGAN-GP) one G step, reusing the same fakes
for the non-saturating loss and drawing fresh ones for WGAN-GP. MEGAN subtracts lambda_h times the mean
binary entropy of D's member outputs from D's loss (megan.MEGAN.training_step); RelaxLoss replaces D's
member loss by its phase's relaxed loss (relaxloss.RelaxLossGAN.relaxed_real_loss, the phase counted per
model from its own training-set size); mixup replaces each real batch by its mixed pairs (mixup.mix_batch:
lam ~ Beta(alpha, alpha) per record, a partner shift in 1..B-1, both drawn from model k's own generator)
and conditions its fakes on the mixed labels. MP-GAN first takes k_m steps of its membership network M
on D's frozen hidden activations of (members, reference batch), then adds lambda_m * L_M to D's loss
(mpgan.MPGAN.training_step); MIMGAN draws `mi_samples` probe samples after the fakes, steps its statistics
network T on them (detached) after D's step, and adds beta * I^ to G's loss (mimgan.MIMGAN.training_step).
Batches follow the data module's scheme: reshuffled passes over the model's own training records (and its
reference records), B at a time, a pass's remainder dropped.

`device`: where the stack's parameters, data and arithmetic live (default the CPU). Every random draw is
still made on the CPU from model k's own generator and then moved, so on any device model k sees the
draws it sees alone on the CPU; the trained weights are copied back into the (CPU) models.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from mia_bench.nets.distance import nearest_sample_distance
from mia_bench.nets.stacked import StackedLinear

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class StackGame:
    """The terms of the game a stack plays (every field's default is the unprotected game's)."""

    wgan: bool = False  # WGAN-GP critic (else the non-saturating logistic game)
    n_critic: int = 1  # D batches per G step (WGAN-GP only; the logistic game always has 1)
    gp_weight: float = 10.0
    real_label: float = 1.0  # logistic game: target of D on real records (one-sided smoothing below 1)
    entropy_weight: float = 0.0  # MEGAN's lambda_h
    mix_alpha: float = 0.0  # mixup's Beta(alpha, alpha); 0 = no mixing
    relax_alpha: float = 0.0  # RelaxLoss's target member BCE on D; 0 = the plain member loss
    relax_upper: float = 1.0  # RelaxLoss's flattening bound on sigmoid(l(x))
    relax_by_step: bool = False  # RelaxLoss alternates its phase every D step (else once per epoch-equivalent)
    # a third player trained on each model's reference batches: "membership" (MP-GAN's M on D's hidden
    # activations) or "statistics" (MIMGAN's T on nearest-sample distances); "" = none
    adversary: str = ""
    adversary_lr: float = 2e-4
    membership_weight: float = 0.0  # MP-GAN's lambda_m: weight of L_M in D's loss
    membership_gain_only: bool = False  # MP-GAN m_term "gain": only the members' term of L_M in D's loss
    membership_steps: int = 1  # MP-GAN's k_m: M steps per D step
    q_layers: tuple[int, ...] = (-2, -1)  # MP-GAN: D blocks whose activations form Q(x)
    mi_weight: float = 0.0  # MIMGAN's beta: weight of the MI estimate in G's loss
    mi_bound: str = "dv"  # MIMGAN: "dv" | "nwj"
    mi_samples: int = 256  # MIMGAN: generated samples the nearest distances are taken over
    sharded: bool = False  # privGAN / PAR-GAN: k members per model, trained by nets/stacked_shards.py
    sanitized: bool = False  # GS-WGAN: K shard critics per model, trained by nets/stacked_gswgan.py
    private: bool = False  # DP-GAN: DP-SGD on D's real term (ghost clipping), trained by nets/stacked_dp.py


class _Passes:
    """Positions 0..n-1 in reshuffled passes, `size` at a time (the data module's per-shard sampler)."""

    def __init__(self, n: int, size: int, rng: np.random.Generator, what: str = "records a model trains on") -> None:
        if size > n:
            raise ValueError(f"batch size {size} exceeds the {n} {what}; "
                             "lower trainer.batch_size or give the models more data")
        self.n, self.size, self.rng = n, size, rng
        self.order, self.cursor = rng.permutation(n), 0

    def take(self) -> np.ndarray:
        if self.cursor + self.size > self.n:
            self.order, self.cursor = self.rng.permutation(self.n), 0
        out = self.order[self.cursor:self.cursor + self.size]
        self.cursor += self.size
        return out


class Records:
    """Every model's records in one tensor, plus a zero row that pads short batches, so the batches of all
    models in a round are one gather (the stacked trainers of every game)."""

    def __init__(self, data: Sequence[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str = "cpu") -> None:
        self.offsets = np.cumsum([0] + [x.shape[0] for x, _ in data])
        self.pad = int(self.offsets[-1])  # the zero row
        self.x = torch.cat([x.float() for x, _ in data] + [torch.zeros(1, *data[0][0].shape[1:])]).to(device)
        self.y = torch.cat([y.long() for _, y in data] + [torch.zeros(1, dtype=torch.int64)]).to(device)

    def gather(self, picks: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """picks[k]: positions among model k's records. Returns x (K, b, ...), labels (K, b) and the mask
        (K, b) of real rows, each model's rows padded with the zero row to the longest pick b (at least 1)."""
        index = np.full((len(picks), max(1, max(p.size for p in picks))), self.pad, dtype=np.int64)
        for k, p in enumerate(picks):
            index[k, :p.size] = self.offsets[k] + p
        rows = torch.from_numpy(index).to(self.x.device, non_blocking=True)
        return self.x[rows], self.y[rows], (rows != self.pad).float()


def _stack(modules: Sequence[nn.Module], device: torch.device | str = "cpu") -> tuple[nn.Module, Params]:
    """A parameter-free template of the module and its K parameter sets stacked as (K, ...) leaves on
    `device`."""
    params, _ = stack_module_state(list(modules))
    template = copy.deepcopy(modules[0]).to("meta")
    return template, {k: v.detach().to(device).clone().requires_grad_(True) for k, v in params.items()}


@torch.no_grad()
def write_back(module: nn.Module, params: Params, rows: int | slice | torch.Tensor) -> None:
    """Copy the stacked parameters' rows `rows` into `module`'s own parameters (by name)."""
    for name, p in module.named_parameters():
        p.copy_(params[name][rows])


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """K linear maps at once: x (K, B, in), w (K, out, in), b (K, out) -> (K, B, out)."""
    xt = x.transpose(1, 2)
    out = torch.bmm(w, xt) if b is None else torch.baddbmm(b.unsqueeze(2), w, xt)
    return out.transpose(1, 2)


_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Identity)


def _layers(seq: Iterable[nn.Module], prefix: str, params: Params, h: torch.Tensor) -> torch.Tensor:
    """A Sequential's layers on a stack's rows h (K, B, ...), layer i's parameters read from
    params[f"{prefix}.{i}.*"] (K, ...); a StackedLinear's (k, ...) weights stacked as (K = T*k, ...) too."""
    for i, m in enumerate(seq):
        key = f"{prefix}.{i}" if prefix else str(i)
        if isinstance(m, nn.Flatten):
            h = h.flatten(2)
        elif isinstance(m, (nn.Linear, StackedLinear)):
            h = _linear(h, params[f"{key}.weight"], params.get(f"{key}.bias"))
        elif isinstance(m, nn.LayerNorm):
            h = F.layer_norm(h, m.normalized_shape, eps=m.eps)
            if m.elementwise_affine:
                h = h * params[f"{key}.weight"].unsqueeze(1) + params[f"{key}.bias"].unsqueeze(1)
        else:
            h = m(h)  # elementwise: any shape
    return h


def _plain(modules: Iterable[nn.Module]) -> bool:
    return all(isinstance(m, (nn.Linear, StackedLinear, nn.Flatten, nn.LayerNorm, *_ELEMENTWISE)) for m in modules)


def _batched(template: nn.Module) -> Callable[..., torch.Tensor] | None:
    """The stack's forward written with batched matmuls (no vmap) for nets/mlp.py's players, the same
    network as functional_call of the template, slice by slice; None for any other module (then vmap)."""
    from mia_bench.nets.mlp import MLPDiscriminator, MLPGenerator, with_labels

    if isinstance(template, MLPGenerator) and _plain(template.net):
        def gen(params: Params, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            h = _layers(template.net, "net", params, with_labels(z, y, template.n_classes))
            return h.view(z.shape[0], z.shape[1], *template.out_shape)
        return gen
    if isinstance(template, MLPDiscriminator) and all(_plain(b.children()) for b in template.blocks):
        def disc(params: Params, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            h = _disc_features(template, params, x)[-1]
            logit = _linear(h, params["head.weight"], params.get("head.bias")).squeeze(2)
            if template.embed_y is None:
                return logit
            if y is None:
                raise ValueError("conditional discriminator needs a (..., n_classes) label vector per row")
            proj = torch.bmm(y.to(h.dtype), params["embed_y.weight"].transpose(1, 2))
            return logit + (proj * h).sum(-1)  # the projection term <W y, phi(x)>
        return disc
    return None


def _disc_features(template: nn.Module, params: Params, x: torch.Tensor) -> list[torch.Tensor]:
    """The stacked MLPDiscriminator's activations after each hidden block: list of (K, B, hidden_i)
    (MLPDiscriminator.features, slice by slice)."""
    h, out = x.flatten(2), []
    for i, block in enumerate(template.blocks):
        h = _layers(block.children(), f"blocks.{i}", params, h)
        out.append(h)
    return out


def _adversary(template: nn.Module) -> Callable[[Params, torch.Tensor], torch.Tensor]:
    """The stack's third player with batched matmuls: MP-GAN's membership head (an MLP of Linear and
    LeakyReLU: (K, B, q) -> (K, B, 1)) or MIMGAN's StatisticsNetwork ((K, B, 1) -> (K, B, 2), its scores
    squashed by the same scaled tanh)."""
    from mia_bench.nets.mi import StatisticsNetwork

    if isinstance(template, StatisticsNetwork) and _plain(template.net):
        bound = template.out_bound

        def stats(params: Params, a: torch.Tensor) -> torch.Tensor:
            t = _layers(template.net, "net", params, a)
            return bound * torch.tanh(t / bound) if bound else t
        return stats
    if isinstance(template, nn.Sequential) and _plain(template):
        return lambda params, a: _layers(template, "", params, a)
    raise ValueError(f"cannot stack a {type(template).__name__} as the third player")


def _vmapped(template: nn.Module) -> Callable[..., torch.Tensor]:
    """f(params (K, ...), a (K, B, ...), b (K, B, ...) or None) -> (K, B, ...): model k on its own batch."""
    def one(p: Params, a: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return functional_call(template, p, (a, b))

    def call(params: Params, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if b is None:
            return vmap(lambda p, u: one(p, u, None))(params, a)
        return vmap(one)(params, a, b)

    return call


class StackedGANTrainer:
    """Trains `models` (UnprotectedGAN instances, one architecture) in place, each on its own data.

    train_sets[k]: (x (n_k, *shape), y (n_k,)) the records of model k. config: the recipe's Config (its
    conditional, z_dim, rates and betas). game: the terms played (default: the unprotected game as
    `config` sets it). seeds[k]: seed of model k's batch order and noise. device: where the stack trains.
    """

    def __init__(self, *, models: Sequence[Any], train_sets: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 config: Any, batch_size: int, seeds: Sequence[int], game: StackGame | None = None,
                 reference_sets: Sequence[torch.Tensor] | None = None, device: torch.device | str = "cpu") -> None:
        if not (len(models) == len(train_sets) == len(seeds)) or not models:
            raise ValueError("models, train_sets and seeds must be non-empty and of equal length")
        self.device = torch.device(device)
        self.models, self.cfg, self.B = list(models), config, batch_size
        self.K = len(self.models)
        self.conditional = bool(config.conditional)
        self.n_classes = self.models[0].info.n_classes
        self.z_dim = int(config.z_dim)
        self.game = game or StackGame(wgan=config.loss == "wgan-gp", n_critic=int(config.n_critic),
                                      gp_weight=float(config.gp_weight), real_label=float(config.real_label))
        self.wgan = self.game.wgan
        if self.game.mix_alpha and batch_size < 2:
            raise ValueError("mixup needs batches of at least 2 records; raise trainer.batch_size")
        self.G_t, self.pG = _stack([m.players["generator"] for m in self.models], self.device)
        self.D_t, self.pD = _stack([m.players["discriminator"] for m in self.models], self.device)
        self.G = _batched(self.G_t) or _vmapped(self.G_t)
        self.D = _batched(self.D_t) or _vmapped(self.D_t)
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(list(self.pG.values()), lr=config.lr_g, betas=betas, fused=True)
        self.opt_d = torch.optim.Adam(list(self.pD.values()), lr=config.lr_d, betas=betas, fused=True)
        self.data = [(x.float(), y.long()) for x, y in train_sets]
        self.records = Records(self.data, self.device)
        self.priors = [m.label_prior.detach().float().cpu() for m in self.models]
        self.torch_gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.passes = [_Passes(x.shape[0], batch_size, np.random.default_rng([int(s), 7]))
                       for s, (x, _) in zip(seeds, self.data, strict=True)]
        self.mix_rngs = [np.random.default_rng([int(s), 8]) for s in seeds]
        self.n_train = torch.tensor([int(m.n_train) for m in self.models], device=self.device)
        self.pA: Params = {}
        if self.game.adversary:
            self._init_adversary(reference_sets, seeds, betas)

    def _init_adversary(self, reference_sets: Sequence[torch.Tensor] | None, seeds: Sequence[int],
                        betas: tuple[float, float]) -> None:
        """The third player's stack and each model's reference stream (the defender's reference records,
        B per round in reshuffled passes, from model k's own generator)."""
        name = self.game.adversary
        if name not in ("membership", "statistics"):
            raise ValueError(f"StackGame.adversary must be 'membership' or 'statistics', got {name!r}")
        if reference_sets is None or len(reference_sets) != self.K:
            raise ValueError(f"the '{name}' player needs one reference set per model (reference_sets)")
        if name == "membership" and _batched(self.D_t) is None:
            raise ValueError("MP-GAN's membership player reads D's hidden blocks: D must be nets/mlp.py's")
        self.A_t, self.pA = _stack([m.players[name] for m in self.models], self.device)
        self.A = _adversary(self.A_t)
        self.opt_a = torch.optim.Adam(list(self.pA.values()), lr=self.game.adversary_lr, betas=betas, fused=True)
        self.refs = [r.float().to(self.device) for r in reference_sets]
        self.ref_passes = [_Passes(r.shape[0], self.B, np.random.default_rng([int(s), 9]), "reference records")
                           for s, r in zip(seeds, self.refs, strict=True)]

    # ---- per-model draws (each from model k's own generator, on the CPU, then moved to the device) -----
    def _on(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=True)

    def _real(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(K, B, ...) the next batch of every model (and its one-hot labels when conditional)."""
        x, y, _ = self.records.gather([p.take() for p in self.passes])  # every batch is full: no padding
        return x, F.one_hot(y, self.n_classes).float() if self.conditional else None

    def _reference(self) -> torch.Tensor:
        """(K, B, ...) the next reference batch of every model."""
        return torch.stack([r[self._on(torch.from_numpy(p.take()))]
                            for r, p in zip(self.refs, self.ref_passes, strict=True)])

    def _fake_inputs(self, n: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latents (K, n, z_dim) and label vectors (K, n, C) or None, n = B by default; per model the
        labels are drawn before the latents (Defense.draw_fakes)."""
        n = n or self.B
        yf = None
        if self.conditional:
            labels = [torch.multinomial(p, n, replacement=True, generator=g)
                      for p, g in zip(self.priors, self.torch_gens, strict=True)]
            yf = self._on(F.one_hot(torch.stack(labels), self.n_classes).float())
        z = torch.stack([torch.randn(n, self.z_dim, generator=g) for g in self.torch_gens])
        return self._on(z), yf

    def _mixed(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mixup's mixed pairs, per model: x (K, B, ...), y (K, B, C) or None (mixup.mix_batch)."""
        a = self.game.mix_alpha
        lam = self._on(torch.stack([torch.from_numpy(r.beta(a, a, self.B)).float() for r in self.mix_rngs]))  # (K, B)
        shifts = [int(r.integers(1, self.B)) for r in self.mix_rngs]
        partner = self._on(torch.stack([torch.roll(torch.arange(self.B), -sh) for sh in shifts]))  # (K, B)
        w = lam.view(self.K, self.B, *([1] * (x.dim() - 2)))
        rows = torch.arange(self.K, device=self.device)[:, None]  # model k's partners from its own batch
        x2 = x[rows, partner]
        x_mix = w * x + (1 - w) * x2
        if y is None:
            return x_mix, None
        y2 = y[rows, partner]
        return x_mix, lam[..., None] * y + (1 - lam[..., None]) * y2

    def _uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._on(torch.stack([torch.rand(shape, generator=g) for g in self.torch_gens]))

    # ---- one round ------------------------------------------------------------------------------------
    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """(K,) mean over the batch of (||grad_xhat D_k(xhat)|| - 1)^2 at per-sample interpolates."""
        eps = self._uniform((self.B, *([1] * (real.dim() - 2))))
        xhat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(self.pD, xhat, y).sum(), xhat, create_graph=True)
        return ((grad.flatten(2).norm(2, dim=2) - 1) ** 2).mean(1)

    def relax_phase(self, batch_idx: int) -> torch.Tensor:
        """(K,) RelaxLoss phase of D step `batch_idx` per model: 0 (|L - alpha|) or 1 (descent or flattening),
        as relaxloss.RelaxLossGAN.phase counts it on one process."""
        if self.game.relax_by_step:
            return torch.full((self.K,), batch_idx % 2, device=self.device)
        return (batch_idx * self.B // self.n_train) % 2

    def _d_loss(self, x: torch.Tensor, y: torch.Tensor | None, fake: torch.Tensor,
                yf: torch.Tensor | None, batch_idx: int = 0) -> torch.Tensor:
        # real and fake rows in one call: half the batched matmuls, and no gradient accumulation in D
        both = self.D(self.pD, torch.cat([x, fake.detach()], 1), None if y is None else torch.cat([y, yf], 1))
        real_s, fake_s = both[:, :x.shape[1]], both[:, x.shape[1]:]
        g = self.game
        if self.wgan:
            return fake_s.mean(1) - real_s.mean(1) + g.gp_weight * self._gradient_penalty(x, fake, y)
        if g.relax_alpha:
            from mia_bench.defenses.relaxloss import relaxed_member_loss

            real_l = relaxed_member_loss(real_s, self.relax_phase(batch_idx), g.relax_alpha, g.relax_upper)
            return real_l + F.softplus(fake_s).mean(1)
        target = torch.full_like(real_s, g.real_label)
        real_l = F.binary_cross_entropy_with_logits(real_s, target, reduction="none").mean(1)
        loss = real_l + F.softplus(fake_s).mean(1)
        if g.entropy_weight:  # MEGAN: H_b(sigmoid(l)) = softplus(l) - sigmoid(l) l, in nats
            loss = loss - g.entropy_weight * (F.softplus(real_s) - torch.sigmoid(real_s) * real_s).mean(1)
        return loss

    # ---- the third player (MP-GAN's M, MIMGAN's T) -----------------------------------------------------
    def _q(self, x: torch.Tensor) -> torch.Tensor:
        """MP-GAN's Q(x): (K, B, ...) -> (K, B, q), the chosen hidden blocks of each model's D (MPGAN.q)."""
        feats = _disc_features(self.D_t, self.pD, x)
        return torch.cat([feats[i] for i in self.game.q_layers], dim=2)

    def membership_loss(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """(K,) M's loss -L_M on (members, reference), D frozen (MPGAN.training_step's M step)."""
        with torch.no_grad():
            qx, qr = self._q(x), self._q(ref)
        return F.softplus(-self.A(self.pA, qx)).mean((1, 2)) + F.softplus(self.A(self.pA, qr)).mean((1, 2))

    def membership_log_likelihood(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """(K,) L_M differentiable in D (MPGAN.membership_log_likelihood)."""
        gain = -F.softplus(-self.A(self.pA, self._q(x))).mean((1, 2))
        if self.game.membership_gain_only:
            return gain
        return gain - F.softplus(self.A(self.pA, self._q(ref))).mean((1, 2))

    def mi_estimate(self, probe: torch.Tensor, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """(K,) MIMGAN's I^(M; d_G(X)) per model from its probe samples (K, S, ...), members and reference
        batches (K, B, ...): each record's distance to its nearest probe sample, per coordinate, read by T
        (MIMGAN.mi_estimate); differentiable in the probe samples and in T."""
        from mia_bench.nets.mi import discrete_mi_bound

        d = nearest_sample_distance(torch.cat([x, ref], dim=1).flatten(2), probe.flatten(2))  # (K, 2B)
        scores = self.A(self.pA, d.unsqueeze(2))  # (K, 2B, 2)
        m = torch.cat([torch.ones(x.shape[1]), torch.zeros(ref.shape[1])]).long().to(self.device)
        prior = torch.full((2,), 0.5, device=self.device)
        return vmap(lambda s: discrete_mi_bound(self.game.mi_bound, s, m, prior))(scores)

    @staticmethod
    def _step(opt: torch.optim.Optimizer, params: Params, loss: torch.Tensor) -> None:
        grads = torch.autograd.grad(loss.sum(), list(params.values()))
        for p, g in zip(params.values(), grads, strict=True):
            # vmap returns weight gradients transposed in memory; the fused CPU Adam kernel reads
            # gradients as laid out in memory, so a non-contiguous gradient would update the wrong entries
            p.grad = g.contiguous()
        opt.step()

    def round(self, batch_idx: int) -> None:
        g = self.game
        x, y = self._real()
        ref = self._reference() if g.adversary else None
        mixing = bool(g.mix_alpha)
        if mixing:  # the critic sees only mixed pairs; fakes are conditioned on the mixed labels
            x, y = self._mixed(x, y)
        if g.adversary == "membership":  # MP-GAN: k_m M steps first, D frozen
            for _ in range(g.membership_steps):
                self._step(self.opt_a, self.pA, self.membership_loss(x, ref))
        z, yf = self._fake_inputs()
        yf = y if mixing else yf
        fake = self.G(self.pG, z, yf)
        probe = None
        if g.adversary == "statistics":  # MIMGAN: the samples the distances are taken to
            probe = self.G(self.pG, *self._fake_inputs(g.mi_samples))
        loss_d = self._d_loss(x, y, fake, yf, batch_idx)
        if g.adversary == "membership":
            loss_d = loss_d + g.membership_weight * self.membership_log_likelihood(x, ref)
        self._step(self.opt_d, self.pD, loss_d)
        if probe is not None:  # T tightens the lower bound on detached samples
            self._step(self.opt_a, self.pA, -self.mi_estimate(probe.detach(), x, ref))
        if self.wgan and (batch_idx + 1) % g.n_critic:
            return
        if self.wgan:
            z, yf_new = self._fake_inputs()
            yf = y if mixing else yf_new
            fake = self.G(self.pG, z, yf)
            loss_g = -self.D(self.pD, fake, yf).mean(1)
        else:
            loss_g = F.softplus(-self.D(self.pD, fake, yf)).mean(1)
        if probe is not None:
            loss_g = loss_g + g.mi_weight * self.mi_estimate(probe, x, ref)
        self._step(self.opt_g, self.pG, loss_g)

    def warmup_rounds(self, num_batches: int) -> int:
        """Rounds (on_round calls) served before a budget of `num_batches`: none in these games."""
        return 0

    def fit(self, num_batches: int, on_round: Callable[[], None] | None = None) -> list[Any]:
        """Run `num_batches` rounds (calling on_round() after each), then copy each slice back into its
        model; returns the models (eval)."""
        for b in range(num_batches):
            self.round(b)
            if on_round is not None:
                on_round()
        players = [("generator", self.pG), ("discriminator", self.pD)]
        if self.game.adversary:
            players.append((self.game.adversary, self.pA))
        for k, m in enumerate(self.models):
            for player, params in players:
                write_back(m.players[player], params, k)
        return [m.eval() for m in self.models]
