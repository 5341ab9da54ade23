"""One run = one suite x defense x seed: split -> train -> checkpoint -> release -> attacks -> metrics -> record."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import torch

from mia_bench.attacks import ATTACKS, AttackerKnowledge, make_view
from mia_bench.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from mia_bench.config import ResolvedRun, TrainerConfig
from mia_bench.data import ArrayDataset, MembershipSplit, load_dataset
from mia_bench.data.datamodule import MembershipDataModule
from mia_bench.defenses import DEFENSES, Defense
from mia_bench.errors import CheckpointError, MiaBenchError
from mia_bench.io import atomic_save_npz
from mia_bench.metrics.privacy import privacy_report
from mia_bench.results import RunPaths, RunRecord, environment, now_iso


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    t = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t, 3)


def build_trainer(cfg: TrainerConfig, *, logger: object = False, callbacks: list | None = None) -> L.Trainer:
    from lightning.pytorch.callbacks import RichProgressBar

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)  # hardware banners and tips, printed per run

    return L.Trainer(
        max_epochs=1,  # the loader yields exactly the budget's batches in one epoch
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy, num_nodes=cfg.num_nodes,
        precision=cfg.precision,  # type: ignore[arg-type]
        logger=logger,  # type: ignore[arg-type]
        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        enable_progress_bar=cfg.progress_bar,
        callbacks=([RichProgressBar(refresh_rate=10)] if cfg.progress_bar else []) + list(callbacks or []),
        log_every_n_steps=cfg.log_every_n_steps,
    )


def train_defense(resolved: ResolvedRun, data: ArrayDataset, split: MembershipSplit, seed: int,
                  *, logger: object = False, callbacks: list | None = None) -> Defense:
    """Seed, build and fit the defense on its training role of the split."""
    cls = DEFENSES.get(resolved.defense_name)
    L.seed_everything(seed, workers=True, verbose=False)
    n_train = int(getattr(split, cls.train_role).size)
    model = cls(config=resolved.defense_params, info=data.info, n_train=n_train)
    cfg = resolved.config.trainer
    dm = MembershipDataModule(data=data, split=split, batch_size=cfg.batch_size, train_role=cls.train_role,
                              num_batches=cfg.max_steps * model.batches_per_generator_step,
                              n_shards=model.n_shards, with_reference=cls.needs_reference)
    model.prepare(*dm.train_tensors())
    if cls.trainable:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*You called `self.log.*no logger.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
            build_trainer(cfg, logger=logger, callbacks=callbacks).fit(model, datamodule=dm)
    return model.cpu().eval()


def obtain_defense(resolved: ResolvedRun, data: ArrayDataset, split: MembershipSplit, seed: int,
                   paths: RunPaths, *, logger: object = False) -> tuple[Defense, bool]:
    """Reuse the run's checkpoint when its config and split digests match; otherwise train and save."""
    digest = resolved.digest()
    if paths.checkpoint.is_file():
        try:
            meta = read_checkpoint(paths.checkpoint)
            if meta["config_digest"] == digest and meta["split_digest"] == split.digest():
                return load_checkpoint(paths.checkpoint)[0], True
        except CheckpointError:
            pass  # unreadable or foreign: retrain and overwrite atomically
    model = train_defense(resolved, data, split, seed, logger=logger)
    save_checkpoint(paths.checkpoint, model, split_digest=split.digest(), config_digest=digest)
    return model, False


def run(resolved: ResolvedRun, seed: int, *, results_dir: Path, logger: object = False) -> RunRecord:
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    cfg = resolved.config
    paths = RunPaths.of(results_dir, cfg.suite, resolved.defense_name, seed)
    with _stage(timings, "data"):
        data = load_dataset(cfg.dataset)
        split = MembershipSplit.make(n_records=len(data), sizes=cfg.split, seed=seed, dataset=cfg.dataset.name,
                                     groups=data.groups)
    with _stage(timings, "train"):
        defense, reused = obtain_defense(resolved, data, split, seed, paths, logger=logger)
    with _stage(timings, "release"):
        released = defense.sample(cfg.release.n_samples, generator=torch.Generator().manual_seed(seed))
        atomic_save_npz(paths.samples, x=released.x.numpy(),
                        y=released.y.numpy() if released.y is not None else np.zeros(0, np.int64))
    query_ids = np.concatenate([split.members, split.non_members])
    is_member = np.concatenate([np.ones(split.members.size, bool), np.zeros(split.non_members.size, bool)])
    qx, qy = data.take(query_ids)
    attacks: dict[str, dict] = {}
    raw: dict[str, np.ndarray] = {}
    for name, params in resolved.attack_params.items():
        t = time.perf_counter()
        scores, described = _attack_scores(name, params, seed, defense, released, data, split, qx, qy)
        metrics = privacy_report(scores, is_member, fprs=tuple(cfg.metrics.fprs), n_boot=cfg.metrics.bootstrap,
                                 seed=seed)
        attacks[name] = {**described, "metrics": metrics, "seconds": round(time.perf_counter() - t, 3)}
        raw[f"score/{name}"] = scores
    timings["attacks"] = round(sum(a["seconds"] for a in attacks.values()), 3)
    atomic_save_npz(paths.scores, record_id=query_ids, is_member=is_member, **raw)
    cls = type(defense)
    labels = [lab for lab, on in (("control", cls.is_control), ("reconstructed", cls.reconstructed)) if on]
    record = RunRecord(
        suite=cfg.suite, suite_version=cfg.version, defense=resolved.defense_name, seed=seed,
        config=resolved.to_dict(), config_digest=resolved.digest(), overrides=resolved.overrides,
        split_digest=split.digest(), split_sizes=split.sizes(), member_fraction=split.member_fraction(),
        attacks=attacks, labels=labels, privacy_guarantee=defense.privacy_report(),
        environment=environment(), timings={**timings, "checkpoint_reused": float(reused)},
        wall_time_s=round(time.perf_counter() - t_start, 3), created_at=now_iso(),
    )
    record.write(paths.record)
    return record


def _attack_scores(name: str, params: object, seed: int, defense: Defense, released, data: ArrayDataset,
                   split: MembershipSplit, qx: torch.Tensor, qy: torch.Tensor) -> tuple[np.ndarray, dict]:
    cls = ATTACKS.get(name)
    attack = cls(config=params, seed=seed)
    view = make_view(defense, cls.access, released)
    knowledge = AttackerKnowledge({role: data.take(getattr(split, role)) for role in cls.needs})
    attack.fit(view, knowledge)
    scores = np.asarray(attack.score(view, qx, qy), dtype=np.float64)
    if scores.shape != (qx.shape[0],) or not np.isfinite(scores).all():
        raise MiaBenchError(f"attack '{name}' returned scores of shape {scores.shape} "
                            f"(finite: {np.isfinite(scores).all()}); expected ({qx.shape[0]},) finite floats")
    return scores, attack.describe()
