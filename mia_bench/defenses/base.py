"""Defense: a LightningModule with manual optimization whose `training_step` spells out its game.

Each defense owns its players in `self.players` (an nn.ModuleDict: "generator", "discriminator", ...),
returns one optimizer per player from `configure_optimizers` (in `player_order`), and exposes
`sample(n, generator=...)` (the released data) and `discriminate(x, y)` (white-box score, higher = judged
more real / more member-like). Hyperparameters live in the class's `Config` dataclass; a checkpoint holds
them with the defense name and split digest, so a checkpoint alone rebuilds the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from mia_bench.data.datasets import DataInfo
from mia_bench.registry import Registry


@dataclass
class Released:
    """Samples a defense releases. x: (n, *shape) in [-1, 1]; y: (n,) int64 class labels, or None."""

    x: torch.Tensor
    y: torch.Tensor | None


class Defense(L.LightningModule):
    name: ClassVar[str] = ""
    Config: ClassVar[type]
    player_order: ClassVar[tuple[str, ...]] = ("generator", "discriminator")
    needs_reference: ClassVar[bool] = False  # the data module serves reference batches (ref_x, ref_y)
    train_role: ClassVar[str] = "members"  # split role the model trains on (controls change it)
    trainable: ClassVar[bool] = True  # False: nothing to optimise (the memorizer control)
    is_control: ClassVar[bool] = False
    reconstructed: ClassVar[bool] = False  # loss reconstructed from an abstract/poster, not the paper
    single_process: ClassVar[bool] = False  # True: refused under multi-process strategies (DP accounting)
    conditional: bool = False
    warmup_batches: int = 0  # loader batches before the budgeted game (set by the runner, see warmup_steps)
    label_prior: torch.Tensor  # buffer (C,)

    def __init__(self, *, config: Any, info: DataInfo, n_train: int) -> None:
        super().__init__()
        self.config, self.info, self.n_train = config, info, n_train
        self.automatic_optimization = False
        self.players = nn.ModuleDict()
        # empirical class prior of the training set; conditional models sample fake labels from it
        self.register_buffer("label_prior", torch.full((max(info.n_classes, 1),), 1.0 / max(info.n_classes, 1)))

    # ---- what a defense declares -------------------------------------------------------------------
    @property
    def n_shards(self) -> int:
        """Disjoint shards of the training set the data module cuts each batch into (privGAN, PAR-GAN)."""
        return 1

    @property
    def batches_per_generator_step(self) -> int:
        """Loader batches (discriminator rounds) consumed per generator update; converts the budget."""
        return 1

    @property
    def batch_sampling(self) -> str:
        """How the data module draws batches: "rounds" (B per shard), "poisson", "random_shard"."""
        return "rounds"

    def warmup_steps(self, *, batch_size: int, max_steps: int) -> int:
        """Generator-step-sized groups of loader batches served *before* the budgeted game, for
        pre-training (privGAN's privacy discriminator, GS-WGAN's discriminators). Added to the budget:
        the loader yields (max_steps + warmup_steps) * batches_per_generator_step batches, and the runner
        stores the count of warm-up loader batches in `warmup_batches` before fitting."""
        return 0

    @property
    def discriminator_is_logit(self) -> bool:
        """True when `discriminate` returns a pre-sigmoid probability logit (not a critic or a distance)."""
        return True

    @property
    def z_dim(self) -> int:
        return int(self.players["generator"].z_dim)  # type: ignore[arg-type]

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z, y): (B, z_dim) latents [+ (B, C) label vectors] -> (B, *shape) records."""
        return self.players["generator"](z, y)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) float, higher = more real / member-like. y: (N,) int labels, used by conditional models."""
        return self.players["discriminator"](x, self.label_vector(y) if self.conditional else None)

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Called once with the whole training set before fitting (and before sampling a fresh model)."""
        counts = torch.bincount(y, minlength=self.info.n_classes).float()
        self.label_prior.copy_(counts / counts.sum())

    # ---- shared helpers -----------------------------------------------------------------------------
    def label_vector(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """(B,) int labels -> (B, C) one-hot floats; float (B, C) soft labels pass through."""
        if y is None or y.dim() == 2:
            return y
        return F.one_hot(y, self.info.n_classes).to(self.dtype)

    def draw_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=generator).to(self.device)

    def draw_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.multinomial(self.label_prior.cpu(), n, replacement=True, generator=generator).to(self.device)

    def batch_labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The batch's label vectors for a conditional model, None otherwise."""
        return self.label_vector(batch["y"]) if self.conditional else None

    def draw_fakes(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """n generated records and their label vectors (None when unconditional); labels are drawn before latents."""
        yf = self.label_vector(self.draw_labels(n)) if self.conditional else None
        return self.players["generator"](self.draw_latent(n), yf), yf

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator, labels: torch.Tensor | None = None) -> Released:
        """Release n records; every draw comes from `generator`, so a fixed seed gives identical samples."""
        was_training = self.training
        self.eval()
        try:
            z = self.draw_latent(n, generator)
            y = None
            if self.conditional:
                y = labels.to(self.device) if labels is not None else self.draw_labels(n, generator)
            x = self.generate(z, self.label_vector(y))
        finally:
            self.train(was_training)
        return Released(x=x.detach().cpu(), y=None if y is None else y.cpu())

    @contextmanager
    def playing(self, player: str) -> Iterator[Callable[[torch.Tensor], None]]:
        """Freeze every other player, compute the loss inside the block, then `step(loss)` once.

            with self.playing("discriminator") as step:
                step(ns_d_loss(D(x), D(fake.detach())))

        toggle_optimizer sets requires_grad=False on every parameter outside this player's optimizer, so no
        gradient is computed for the other players at all.
        """
        opts = self.optimizers()
        opt = (opts if isinstance(opts, list) else [opts])[self.player_order.index(player)]
        self.toggle_optimizer(opt)

        def step(loss: torch.Tensor) -> None:
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()

        try:
            yield step
        finally:
            self.untoggle_optimizer(opt)

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        """LightningModule.log; under DDP a value is averaged over ranks unless `sync_dist=False` is given
        (otherwise the logger, which lives on rank 0, would only ever see rank 0's batches)."""
        if kwargs.get("sync_dist") is None:
            kwargs["sync_dist"] = self._distributed()
        super().log(name, value, *args, **kwargs)

    def log_dict(self, dictionary: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("sync_dist") is None:
            kwargs["sync_dist"] = self._distributed()
        super().log_dict(dictionary, *args, **kwargs)

    def _distributed(self) -> bool:
        return self._trainer is not None and self._trainer.world_size > 1

    def should_log(self, batch_idx: int) -> bool:
        every = getattr(self._trainer, "log_every_n_steps", 0)
        return bool(every) and batch_idx % every == 0

    def setup(self, stage: str) -> None:
        """Before any step, for `single_process` (DP) defenses: refuse a multi-process strategy, and unless
        `config.deterministic_noise` re-seed the data module's sampling stream (Poisson draws, shard
        choice) from os.urandom, so the published run seed does not reveal which records were sampled."""
        if not self.single_process:
            return
        import secrets

        from mia_bench.data.datamodule import MembershipDataModule
        from mia_bench.distributed import refuse_multiprocess

        refuse_multiprocess(self.name, self.trainer)
        dm = getattr(self.trainer, "datamodule", None)
        if isinstance(dm, MembershipDataModule) and not getattr(self.config, "deterministic_noise", False):
            dm.seed = secrets.randbits(63)

    def checkpoint_extra(self) -> dict[str, Any]:
        """Plain values (numbers, strings, lists) to keep in the checkpoint besides the weights."""
        return {}

    def load_checkpoint_extra(self, extra: dict[str, Any]) -> None:
        """Inverse of `checkpoint_extra`."""

    def privacy_report(self) -> dict[str, float]:
        """Formal guarantees (epsilon, delta) for DP defenses; empty otherwise."""
        return {}


DEFENSES: Registry[type[Defense]] = Registry("defense")


def register(name: str):  # noqa: ANN201 - decorator
    def deco(cls: type[Defense]) -> type[Defense]:
        cls.name = name
        return DEFENSES.register(name)(cls)

    return deco
