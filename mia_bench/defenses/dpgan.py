"""`dpgan`: DP-SGD on the discriminator (DP-GAN; DP-CGAN with `conditional: true`), ALGORITHMS.md 2.7.

Per discriminator step, with Opacus doing the per-sample work:
  1. real records arrive by Poisson sampling with rate q = B/n (the data module's "poisson" mode);
  2. per-sample gradients g_i of the real term BCE(l(x_i, y_i), 1), clipped to norm C and summed, plus
     N(0, sigma^2 C^2), divided by B. Opacus's ghost clipping does the clipping without materialising
     the g_i (B copies of D, 13x the cost of a plain step here against 3x): a first backward, with the
     GradSampleModuleFastGradientClipping hooks on, measures every ||g_i||; a second backward of
     sum_i min(1, C/||g_i||) * loss_i leaves sum_i clip(g_i) in .grad; DPOptimizerFastGradientClipping
     adds the noise, divides by B and its step hook charges the RDP accountant once;
  3. plus the plain gradient of the fake term mean softplus(l(G(z))): it depends on the data only through
     earlier private discriminators, so it is post-processing and is neither clipped, noised nor charged.
     Opacus's own examples/dcgan.py clips real + fake per sample together, which charges the fake term
     (the double charge of Opacus issue #418); this file does not.
  4. the generator step is post-processing of the private discriminator and costs nothing.
epsilon at `delta` comes from Opacus's RDP accountant; `privacy_report()` returns it with the accountant's
history. Set `noise_multiplier` directly, or leave it null and give `target_epsilon`: sigma is then solved
by Opacus for the run's (q, steps, delta). Fake and released labels (DP-CGAN) are uniform, not the
members' class prior, so no statistic of the members escapes the guarantee. The discriminator has no
BatchNorm (per-sample gradients need independent samples); `d_norm: layer` adds LayerNorm.

Budget (digits, 8000 generator steps = 8000 private D steps, q = 64/300): the defaults ask for
epsilon = 10 at delta = 1e-5 (DP-CGAN reports 9.6 on MNIST), which Opacus meets with sigma ~ 10 here:
300 members give little subsampling amplification, so the noise is large.

Randomness the guarantee rests on: the noise and the Poisson draws must be unknown to the attacker, and
the run's seed is published with its record. By default (`deterministic_noise: false`) the noise comes
from a torch.Generator seeded with 64 bits from os.urandom, drawn with Opacus's secure_mode (the sum of
four Gaussians, against floating-point attacks on the sampler), and the data module's Poisson stream is
re-seeded from os.urandom before its loader is built; two runs with one seed then differ.
Opacus's fully secure mode (torchcsprng) cannot be installed for this torch, so the generator itself
is not a CSPRNG, only seeded from one. `deterministic_noise: true` (tests, debugging) seeds both from the
run seed: reproducible, and no privacy against anyone who knows the seed. `privacy_report()` says which.
Training runs on one process only (multi-process strategies are refused before training starts): split
Poisson draws with a per-rank denominator would misweight or overcharge the mechanism.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizerFastGradientClipping

from mia_bench.data.datamodule import MembershipDataModule
from mia_bench.data.datasets import DataInfo
from mia_bench.defenses.base import Defense, register
from mia_bench.errors import ConfigError
from mia_bench.nets.losses import ns_g_loss
from mia_bench.nets.mlp import MLPDiscriminator, MLPGenerator


@dataclass
class DPGANConfig:
    conditional: bool = False  # true: DP-CGAN (label-conditional G and projection D)
    noise_multiplier: float | None = None  # sigma; null: solved from target_epsilon
    target_epsilon: float | None = 10.0  # used when noise_multiplier is null
    delta: float = 1e-5  # < 1/n
    max_grad_norm: float = 1.0  # C, per-sample clipping bound of the real term
    z_dim: int = 32
    g_hidden: list[int] = field(default_factory=lambda: [128, 256])
    d_hidden: list[int] = field(default_factory=lambda: [256, 128])
    d_norm: str = "none"  # "none" | "layer"; never BatchNorm
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # private D steps per generator step (Bie, Kamath & Zhang, TMLR 2023: noise only on D's updates
    # slows D, and more D steps per G step restore the balance; their MNIST setting uses 50). The budget
    # `trainer.max_steps` counts generator steps, so the accountant charges max_steps * n_d D steps.
    n_d: int = 1
    deterministic_noise: bool = False  # true: noise and Poisson draws from the run seed (tests only: not private)


SEEDED = "run seed (deterministic_noise=true): reproducible, no privacy against whoever knows the seed"
NOISE_SOURCE = "os.urandom (64-bit seed of a torch.Generator; Opacus secure_mode sampling; not torchcsprng)"
SAMPLING_SOURCE = "os.urandom (re-seeds the data module's Poisson stream, whose sampler seed keeps 31 bits)"


@register("dpgan")
class DPGAN(Defense):
    """GAN whose discriminator is trained with DP-SGD (Opacus) on the real-data term only."""

    Config = DPGANConfig
    single_process: ClassVar[bool] = True  # refused under multi-process strategies (setup)
    _gsm: GradSampleModuleFastGradientClipping

    def __init__(self, *, config: DPGANConfig, info: DataInfo, n_train: int) -> None:
        super().__init__(config=config, info=info, n_train=n_train)
        if (config.noise_multiplier is None) == (config.target_epsilon is None):
            raise ConfigError("dpgan: set exactly one of defense.noise_multiplier and defense.target_epsilon "
                              "(the other one null)")
        if not 0 < config.delta < 1 / n_train:
            raise ConfigError(f"dpgan: defense.delta={config.delta} must be in (0, 1/n) = (0, {1 / n_train:.2g})")
        if config.n_d < 1:
            raise ConfigError(f"dpgan: defense.n_d={config.n_d} must be an integer >= 1 (D steps per G step)")
        self.conditional = config.conditional
        c = info.n_classes if config.conditional else 0
        self.players["generator"] = MLPGenerator(z_dim=config.z_dim, out_shape=info.shape, n_classes=c,
                                                 hidden=config.g_hidden)
        D = MLPDiscriminator(in_shape=info.shape, n_classes=c, hidden=config.d_hidden, norm=config.d_norm)
        self.players["discriminator"] = D
        # Opacus hooks live on D's layers; the wrapper itself stays out of the module tree, so the
        # checkpoint keys are those of the plain discriminator. Hooks are on only for the real term.
        gsm = GradSampleModuleFastGradientClipping(D, batch_first=True, loss_reduction="mean", strict=True,
                                                   max_grad_norm=config.max_grad_norm, use_ghost_clipping=True)
        gsm.disable_hooks()
        object.__setattr__(self, "_gsm", gsm)
        self.dp: DPOptimizerFastGradientClipping | None = None
        self.accountant = RDPAccountant()
        self.sigma = config.noise_multiplier
        self.sample_rate = 0.0

    @property
    def batch_sampling(self) -> str:
        return "poisson"

    @property
    def batches_per_generator_step(self) -> int:
        return self.config.n_d

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Keep the uniform label prior: the members' class counts are not released without noise."""

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        c = self.config
        dm = getattr(self.trainer, "datamodule", None)
        if not isinstance(dm, MembershipDataModule):
            raise ConfigError("dpgan needs a MembershipDataModule (its sample_rate and num_batches set q and T)")
        betas = (c.beta1, c.beta2)
        opt_g = torch.optim.Adam(self.players["generator"].parameters(), lr=c.lr_g, betas=betas)
        opt_d = torch.optim.Adam(self.players["discriminator"].parameters(), lr=c.lr_d, betas=betas)
        self.make_private(opt_d, sample_rate=float(dm.sample_rate), steps=int(dm.num_batches))
        return [opt_g, opt_d]

    def make_private(self, opt_d: torch.optim.Optimizer, *, sample_rate: float, steps: int) -> None:
        """Wrap D's optimizer for DP-SGD at Poisson rate `sample_rate` over `steps` D steps; sigma is solved
        here when the config gives a target epsilon. Noise: module docstring (`deterministic_noise`)."""
        c = self.config
        self.sample_rate = sample_rate
        if c.noise_multiplier is None:
            self.sigma = float(get_noise_multiplier(target_epsilon=c.target_epsilon, target_delta=c.delta,
                                                    sample_rate=sample_rate, steps=steps, accountant="rdp"))
        seed = torch.initial_seed() if c.deterministic_noise else secrets.randbits(64)
        noise = torch.Generator(device=self.device).manual_seed(seed)
        self.dp = DPOptimizerFastGradientClipping(opt_d, noise_multiplier=float(self.sigma or 0.0),
                                                  max_grad_norm=c.max_grad_norm, expected_batch_size=self.expected_batch,
                                                  generator=noise, secure_mode=not c.deterministic_noise)
        self.accountant = RDPAccountant()
        self.dp.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=sample_rate))

    @property
    def expected_batch(self) -> int:
        """B = q * n, the Poisson batch's expected size: the DP-SGD denominator and the fake batch size."""
        return max(1, round(self.sample_rate * self.n_train))

    def run_backward(self, loss: torch.Tensor, **kw: Any) -> None:
        """Lightning's manual_backward inside a fit; plain backward when no trainer is attached (unit use)."""
        if self._trainer is not None:
            self.manual_backward(loss, **kw)
        else:
            loss.backward(**kw)

    def private_real_term(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """Set D's .grad to (sum_i clip_C(grad BCE(l(x_i, y_i), 1)) + N(0, sigma^2 C^2 I)) / B and charge
        the accountant one step. x: (n, *shape), n may be 0 (an empty Poisson draw: noise only)."""
        assert self.dp is not None, "configure_optimizers has not run"
        D = self.players["discriminator"]
        self.dp.zero_grad(set_to_none=True)  # every step, the empty one too: Opacus refuses a used gradient
        if x.shape[0] == 0:
            for p in self.dp.params:
                p.grad = torch.zeros_like(p)
        else:
            self._gsm.enable_hooks()
            try:  # pass 1: the hooks measure every per-sample gradient norm
                losses = F.binary_cross_entropy_with_logits(D(x, y), torch.ones(x.shape[0], device=x.device),
                                                            reduction="none")
                # autograd.grad, not backward: the pass only feeds the hooks; nothing lands in .grad, so a
                # multi-process strategy's gradient hooks see one backward (pass 2) per step
                torch.autograd.grad(losses.mean(), [p for p in D.parameters() if p.requires_grad], retain_graph=True)
                coef = self._gsm.get_clipping_coef()  # (n,) min(1, C / ||g_i||)
            finally:
                self._gsm.disable_hooks()  # off for everything else, or Opacus sees grad accumulation
            self.run_backward((coef * losses).sum())  # pass 2: .grad = sum_i clip(g_i)
        self.dp.pre_step()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        D = self.players["discriminator"]
        b, y = self.expected_batch, self.batch_labels(batch)
        fake, yf = self.draw_fakes(b)
        opt_d = self.optimizers()[1]  # type: ignore[index]
        with self.playing("discriminator"):
            self.private_real_term(batch["x"], y)
            loss_fake = F.softplus(D(fake.detach(), yf)).mean()
            self.manual_backward(loss_fake)  # accumulates onto the sanitized real term, uncharged
            opt_d.step()
        if (batch_idx + 1) % self.config.n_d:
            return
        with self.playing("generator") as step:
            fake, yf = self.draw_fakes(b) if self.config.n_d > 1 else (fake, yf)
            loss_g = ns_g_loss(D(fake, yf))
            step(loss_g)
        if self.should_log(batch_idx // self.config.n_d):
            self.log_dict({"loss/d_fake": loss_fake.detach(), "loss/g": loss_g.detach()})

    def privacy_history(self) -> list[tuple[float, float, int]]:
        """(sigma, q, steps) compositions."""
        return [(float(s), float(q), int(n)) for s, q, n in self.accountant.history]

    def privacy_report(self) -> dict[str, Any]:
        """epsilon at delta from Opacus's RDP accountant, with its inputs; empty when there is no finite
        guarantee (sigma = 0 gives epsilon = inf: clipping alone is not differential privacy)."""
        acc = RDPAccountant()
        acc.history = self.privacy_history()
        eps, order = acc.get_privacy_spent(delta=self.config.delta) if acc.history else (0.0, 0.0)
        if not math.isfinite(eps):
            return {}
        steps = sum(n for _, _, n in acc.history)
        return {"epsilon": float(eps), "delta": self.config.delta, "accountant": "opacus.rdp",
                "rdp_order": float(order), "noise_multiplier": float(self.sigma or 0.0),
                "sample_rate": self.sample_rate, "steps": int(steps), "max_grad_norm": self.config.max_grad_norm,
                "unit": "one member record (add/remove), discriminator and generator",
                "deterministic_noise": self.config.deterministic_noise,
                "noise_source": SEEDED if self.config.deterministic_noise else NOISE_SOURCE,
                "sampling_source": SEEDED if self.config.deterministic_noise else SAMPLING_SOURCE}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"history": [list(h) for h in self.privacy_history()], "sigma": self.sigma,
                "sample_rate": self.sample_rate}

    def load_checkpoint_extra(self, extra: dict[str, Any]) -> None:
        self.accountant.history = [(float(s), float(q), int(n)) for s, q, n in extra.get("history", [])]
        self.sigma, self.sample_rate = extra.get("sigma"), float(extra.get("sample_rate", 0.0))
