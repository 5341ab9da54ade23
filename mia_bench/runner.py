"""One run = one suite x defense x seed: split -> train -> checkpoint -> release -> attacks -> metrics -> record.

Each stage is a function of its own (`obtain_defense`, `release`, `attack_all`, `diagnose`), so a stage
can be rerun or replaced without touching the others.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from mia_bench import progress
from mia_bench.attacks import ATTACKS, AttackerKnowledge, Recipe, make_view
from mia_bench.attacks.base import RoleData
from mia_bench.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from mia_bench.config import ResolvedRun, TrainerConfig
from mia_bench.data import ArrayDataset, MembershipSplit, load_dataset
from mia_bench.data.datamodule import MembershipDataModule
from mia_bench.defenses import DEFENSES, Defense, Released
from mia_bench.distributed import RankSetup, defense_strategy, is_global_zero, refuse_multiprocess
from mia_bench.errors import CheckpointError, MiaBenchError
from mia_bench.guards import (
    TrainingDiverged,
    TrainingGuard,
    check_writable,
    interruptible,
    move_aside,
    nonfinite_players,
    notice,
    run_lock,
)
from mia_bench.io import atomic_save_npz
from mia_bench.metrics.overfitting import discriminator_diagnostics
from mia_bench.metrics.privacy import privacy_report
from mia_bench.metrics.utility import evaluate_utility
from mia_bench.nets import latent
from mia_bench.progress import StepProgress
from mia_bench.results import RunPaths, RunRecord, environment, now_iso
from mia_bench.tracking import Tracker


@contextmanager
def _stage(timings: dict[str, float], name: str, on_stage: Callable[[str], None] | None = None) -> Iterator[None]:
    if on_stage is not None:
        on_stage(name)
    t = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t, 3)


def build_trainer(cfg: TrainerConfig, *, logger: object = False, callbacks: list | None = None) -> L.Trainer:
    """Lightning's own progress bar stays off: progress.StepProgress counts generator steps instead."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)  # hardware banners and tips, printed per run
    return L.Trainer(
        max_epochs=1,  # the loader yields exactly the budget's batches in one epoch
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy, num_nodes=cfg.num_nodes,
        precision=cfg.precision,  # type: ignore[arg-type]
        logger=logger,  # type: ignore[arg-type]
        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        enable_progress_bar=False,
        callbacks=list(callbacks or []),
        log_every_n_steps=cfg.log_every_n_steps,
        use_distributed_sampler=False,  # the data module deals each DDP rank its own slice (datamodule.py)
    )


def seeded_model(*, defense: str, params: Any, trainer: TrainerConfig, data: ArrayDataset, train_ids: np.ndarray,
                 seed: int, reference_ids: np.ndarray | None = None) -> tuple[Defense, MembershipDataModule]:
    """Seed, then the untrained `defense` and the data module that serves its batches (trainer.max_steps
    generator steps plus its warm-up), the model prepared on its training records: what fit_defense trains."""
    cls = DEFENSES.get(defense)
    L.seed_everything(seed, workers=True, verbose=False)
    model = cls(config=params, info=data.info, n_train=int(np.asarray(train_ids).size))
    per_step = model.batches_per_generator_step
    model.warmup_batches = model.warmup_steps(batch_size=trainer.batch_size, max_steps=trainer.max_steps) * per_step
    dm = MembershipDataModule(data=data, train_ids=train_ids, seed=seed, batch_size=trainer.batch_size,
                              num_batches=trainer.max_steps * per_step + model.warmup_batches,
                              n_shards=model.n_shards, reference_ids=reference_ids if cls.needs_reference else None,
                              sampling=model.batch_sampling, group_size=per_step)
    model.prepare(*dm.train_tensors())
    return model, dm


def fit_defense(*, defense: str, params: Any, trainer: TrainerConfig, data: ArrayDataset, train_ids: np.ndarray,
                seed: int, reference_ids: np.ndarray | None = None, logger: object = False,
                callbacks: list | None = None) -> Defense:
    """Seed, build and fit `defense` on the records `train_ids` (the target, or a shadow/reference model)."""
    cls = DEFENSES.get(defense)
    if cls.single_process:
        refuse_multiprocess(defense, trainer)  # before any process starts: a clear error in the caller
    model, dm = seeded_model(defense=defense, params=params, trainer=trainer, data=data, train_ids=train_ids,
                             seed=seed, reference_ids=reference_ids)
    per_step = model.batches_per_generator_step
    if cls.trainable:
        ranks = RankSetup(seed)
        guard = TrainingGuard(batches_per_step=per_step, warmup_batches=model.warmup_batches)
        shown = [StepProgress(defense, max_steps=trainer.max_steps, batches_per_step=per_step,
                              warmup_batches=model.warmup_batches)] if trainer.progress_bar else []
        trainer = replace(trainer, strategy=defense_strategy(trainer.strategy, len(cls.player_order)))
        with warnings.catch_warnings(), interruptible(guard):
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*You called `self.log.*no logger.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
            # Opacus's per-sample hooks on D when its input needs no gradient (DP-GAN's real records): expected
            warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")
            build_trainer(trainer, logger=logger, callbacks=[ranks, guard, *shown, *(callbacks or [])]).fit(model, datamodule=dm)
        ranks.restore(model)
    bad = nonfinite_players(model)
    if bad:
        raise TrainingDiverged(f"defense '{defense}' finished training with non-finite weights ("
                               + "; ".join(f"player '{p}': {n:,} of {m:,}" for p, (n, m) in bad.items())
                               + "). Fix: lower the learning rates or shorten trainer.max_steps; nothing was saved")
    return model.cpu().eval()


def train_defense(resolved: ResolvedRun, data: ArrayDataset, split: MembershipSplit, seed: int,
                  *, logger: object = False, callbacks: list | None = None) -> Defense:
    """Fit the run's defense on its training role of the split (members; the reference set for controls)."""
    cls = DEFENSES.get(resolved.defense_name)
    if cls.needs_reference and split.reference.size == 0:
        raise MiaBenchError(f"defense '{cls.name}' needs reference data; set split.reference > 0 in the suite")
    return fit_defense(defense=resolved.defense_name, params=resolved.defense_params, trainer=resolved.config.trainer,
                       data=data, train_ids=getattr(split, cls.train_role), seed=seed,
                       reference_ids=split.reference, logger=logger, callbacks=callbacks)


def obtain_defense(resolved: ResolvedRun, data: ArrayDataset, split: MembershipSplit, seed: int,
                   paths: RunPaths, *, logger: object = False, callbacks: list | None = None) -> tuple[Defense, bool]:
    """Reuse the run's checkpoint (or this config's archived one) when its training config and split digests
    match and its weights are finite; otherwise train and save. A checkpoint of another training config is
    kept under its own name, an unreadable or non-finite one is moved aside to `.rejected`: none is lost."""
    digest, split_digest = resolved.training_digest(), split.digest()
    for path in (paths.checkpoint, paths.archived_checkpoint(digest)):
        model = _reusable(path, digest, split_digest)
        if model is not None:
            return model, True
    for path in _sibling_checkpoints(paths, resolved.variant, digest):  # a run that differs only in attacks
        model = _reusable(path, digest, split_digest, quarantine=False)
        if model is not None:
            return model, True
    model = train_defense(resolved, data, split, seed, logger=logger, callbacks=callbacks)
    if is_global_zero():  # DDP ranks other than 0 (ddp subprocess launcher, srun tasks) stop after training
        _make_room(paths)
        write_or_rescue(paths.checkpoint, lambda p: save_checkpoint(p, model, split_digest=split_digest,
                                                                   config_digest=digest), what="the trained model")
    return model, False


def _sibling_checkpoints(paths: RunPaths, variant: str, digest: str) -> list[Path]:
    """Checkpoints of this training config in the defense's other run folders (same seed): a run whose
    overrides change only attacks, metrics or the release reuses the trained model instead of retraining."""
    defense_dir = paths.root.parent.parent if variant else paths.root.parent
    seed = paths.root.name
    found = [*defense_dir.glob(f"{seed}/checkpoint*.pt"), *defense_dir.glob(f"*/{seed}/checkpoint*.pt")]
    return sorted(p for p in found if p.parent != paths.root and p.name in ("checkpoint.pt",
                                                                           f"checkpoint-{digest[:12]}.pt"))


def _reusable(path: Path, digest: str, split_digest: str, *, quarantine: bool = True) -> Defense | None:
    """The model in `path` when it is this config's, readable and finite; a bad file of this run's own
    folder is moved aside (`quarantine`), one of another run's folder is left where it is."""
    if not path.is_file():
        return None
    try:
        meta = read_checkpoint(path)
        if meta.get("config_digest") != digest or meta.get("split_digest") != split_digest:
            return None  # another training config's: kept, see _make_room
        model = load_checkpoint(path)[0]
    except CheckpointError as e:
        if quarantine:
            notice(f"{e}; moved it to {move_aside(path)} and training afresh")
        return None
    bad = nonfinite_players(model)
    if bad:
        if quarantine:
            notice(f"{path} holds non-finite weights (players {', '.join(bad)}): moved it to {move_aside(path)} "
                   "and training afresh")
        return None
    return model


def _make_room(paths: RunPaths) -> None:
    """Before a new checkpoint is written: keep the one already there under its own config's name."""
    path = paths.checkpoint
    if not path.is_file():
        return
    try:
        other = read_checkpoint(path)["config_digest"]
    except (CheckpointError, KeyError):
        notice(f"{path} is not a readable mia_bench checkpoint: moved it to {move_aside(path)}")
        return
    keep = paths.archived_checkpoint(str(other))
    if keep.exists():
        move_aside(keep, ".previous")  # never overwrite: an even older copy of that config's model
    os.replace(path, keep)
    notice(f"kept the checkpoint of another training config as {keep}")


def write_or_rescue(path: Path, write: Callable[[Path], None], *, what: str) -> None:
    """write(path); when that fails (disk full, folder gone read-only) write to a rescue folder under the
    system's temporary directory instead and stop, saying where the computed result is kept."""
    try:
        write(path)
        return
    except OSError as e:
        error = e
    rescue = Path(tempfile.mkdtemp(prefix="mia_bench-rescue-")) / path.name
    try:
        write(rescue)
    except OSError as e2:
        raise MiaBenchError(f"could not write {what} to {path} ({error.strerror or error}) nor to {rescue} "
                            f"({e2.strerror or e2}); free some space and rerun") from None
    raise MiaBenchError(f"could not write {what} to {path} ({error.strerror or error}); it is kept in {rescue}: "
                        f"copy it to {path} once the folder is writable again") from None


def release(defense: Defense, n: int, seed: int, paths: RunPaths) -> Released:
    released = defense.sample(n, generator=torch.Generator().manual_seed(seed))
    y = released.y.numpy() if released.y is not None else np.zeros(0, np.int64)
    write_or_rescue(paths.samples, lambda p: atomic_save_npz(p, x=released.x.numpy(), y=y), what="the released samples")
    return released


def attack_all(resolved: ResolvedRun, seed: int, defense: Defense, released: Released, data: ArrayDataset,
               split: MembershipSplit, cache_dir: Path) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Run every attack of the suite; returns (per-attack description + metrics, raw scores)."""
    query_ids, is_member = queries(split)
    recipe = Recipe.of(resolved, data.info)
    attacks: dict[str, dict] = {}
    raw: dict[str, np.ndarray] = {}
    with progress.task("attacks", total=len(resolved.attack_params)) as bar, latent.shared_searches():
        for name, params in resolved.attack_params.items():
            bar.update(description=f"attack {name}")
            attacks[name], raw[f"score/{name}"] = _attack_one(name, params, resolved, seed, defense, released, data,
                                                              split, cache_dir, recipe, query_ids, is_member)
            bar.advance()
    return attacks, raw


def _attack_one(name: str, params: Any, resolved: ResolvedRun, seed: int, defense: Defense, released: Released,
                data: ArrayDataset, split: MembershipSplit, cache_dir: Path, recipe: Recipe, query_ids: np.ndarray,
                is_member: np.ndarray) -> tuple[dict, np.ndarray]:
    """Fit and score one attack; returns (its description with metrics, its (N,) scores). The attack reads
    the dataset only through a view of its declared roles (never members or non-members)."""
    cfg = resolved.config
    t = time.perf_counter()
    cls = ATTACKS.get(name)
    attack = cls(config=params, seed=seed)
    view = make_view(defense, cls.access, released)
    attack.fit(view, attacker_knowledge(cls, split, data, recipe, cache_dir, seed))
    qx, qy = data.take(query_ids)
    scores = np.asarray(attack.score(view, qx, qy, ids=query_ids), dtype=np.float64)
    if scores.shape != (qx.shape[0],) or not np.isfinite(scores).all():
        raise MiaBenchError(f"attack '{name}' returned scores of shape {scores.shape} "
                            f"(finite: {bool(np.isfinite(scores).all())}); expected ({qx.shape[0]},) finite floats")
    metrics = privacy_report(scores, is_member, fprs=tuple(cfg.metrics.fprs), n_boot=cfg.metrics.bootstrap, seed=seed)
    metrics.update(attack.extra_metrics(scores, is_member))
    return {**attack.describe(), "metrics": metrics, "seconds": round(time.perf_counter() - t, 3)}, scores


def attacker_knowledge(cls: Any, split: MembershipSplit, data: ArrayDataset, recipe: Recipe, cache_dir: Path,
                       seed: int) -> AttackerKnowledge:
    """What attack class `cls` may hold besides its view: the split's roles it declares (never members or
    non-members), the dataset limited to them, the target's recipe and a cache folder."""
    ids = {role: np.asarray(getattr(split, role)) for role in cls.needs}
    return AttackerKnowledge(data={role: data.take(ids[role]) for role in cls.needs}, ids=ids, recipe=recipe,
                             dataset=RoleData(data, ids) if cls.needs else None, cache_dir=cache_dir, seed=seed)


def queries(split: MembershipSplit) -> tuple[np.ndarray, np.ndarray]:
    """Scored records (members then non-members) and their membership."""
    ids = np.concatenate([split.members, split.non_members])
    return ids, np.r_[np.ones(split.members.size, bool), np.zeros(split.non_members.size, bool)]


@torch.no_grad()
def diagnose(defense: Defense, data: ArrayDataset, split: MembershipSplit) -> dict[str, Any]:
    """White-box overfitting of the discriminator (O_BC, TVD), recorded for every defense."""
    out = {}
    for role in ("members", "non_members"):
        x, y = data.take(getattr(split, role))
        out[role] = defense.discriminate(x, y).double().numpy()
    return {"discriminator": discriminator_diagnostics(out["members"], out["non_members"],
                                                       is_logit=defense.discriminator_is_logit)}


def run(resolved: ResolvedRun, seed: int, *, results_dir: Path, logger: object = False, tracker: Tracker | None = None,
        callbacks: list | None = None, on_stage: Callable[[str], None] | None = None) -> RunRecord | None:
    """One run; returns its record, or None in DDP ranks other than global rank zero (which only train).

    The run's folder (RunPaths.for_run: official runs and runs with overrides apart) is checked writable
    before any work and locked for the run: a second identical run waits, then reuses the record the first
    wrote. An earlier run of another config in the same folder is kept under `superseded/`.
    tracker: a W&B run (mia_bench.tracking) that receives the training curves and, once the record is
    written, the results; on_stage(name) is called as each stage starts (the grid's progress display).
    """
    paths = RunPaths.for_run(results_dir, resolved, seed)
    kwargs = dict(results_dir=Path(results_dir), logger=logger, tracker=tracker, callbacks=callbacks, on_stage=on_stage)
    if not is_global_zero():  # DDP ranks other than 0 only train: no lock, nothing written
        return _run(resolved, seed, paths, **kwargs)  # type: ignore[arg-type]
    check_writable(paths.root, Path(results_dir) / resolved.config.suite / "_cache")
    with run_lock(paths.root, on_wait=lambda: notice(f"another run is writing {paths.root}; waiting for it")) as waited:
        if waited:
            done = finished_record(paths, resolved)
            if done is not None:
                notice(f"the run that held {paths.root} finished the same config: reusing its record")
                return done
        keep_other_config(paths, resolved.digest())
        return _run(resolved, seed, paths, **kwargs)  # type: ignore[arg-type]


def finished_record(paths: RunPaths, resolved: ResolvedRun) -> RunRecord | None:
    """The folder's record when it is complete and of exactly this config (digest and overrides)."""
    if not paths.record.is_file():
        return None
    try:
        record = RunRecord.read(paths.record)
    except MiaBenchError:
        return None
    same = record.config_digest == resolved.digest() and record.overrides == resolved.overrides
    return record if same else None


RUN_FILES = ("record.json", "scores.npz", "samples.npz", "dwp.png", "dwpre.png", "exposure.npz", "exposure.png")


def keep_other_config(paths: RunPaths, digest: str) -> None:
    """Move an earlier run of another config out of the way (to superseded/<its digest>/) before this one
    writes: a locally edited suite YAML never overwrites the official run it changes."""
    if not paths.record.is_file():
        return
    try:
        other = RunRecord.read(paths.record).config_digest
    except MiaBenchError:
        other = "unreadable"
    if other == digest:
        return  # a rerun of the same config replaces its own files
    keep = paths.superseded(other)
    if keep.exists():
        move_aside(keep, ".previous")
    keep.mkdir(parents=True)
    for name in RUN_FILES:
        if (paths.root / name).is_file():
            os.replace(paths.root / name, keep / name)
    notice(f"kept the earlier run of config {other[:12]} in {paths.root} under {keep}")


def _run(resolved: ResolvedRun, seed: int, paths: RunPaths, *, results_dir: Path, logger: object,
         tracker: Tracker | None, callbacks: list | None, on_stage: Callable[[str], None] | None) -> RunRecord | None:
    t_start = time.perf_counter()
    if tracker is not None and tracker.active:
        logger = tracker.logger
    timings: dict[str, float] = {}
    cfg = resolved.config
    if cfg.version >= 2:
        from mia_bench.protocol import run_v2

        record = run_v2(resolved, seed, paths, results_dir=results_dir, tracker=tracker, on_stage=on_stage,
                        stage=_stage)
        if tracker is not None:
            tracker.log_run(record, paths, None)
        return record
    cache_dir = results_dir / cfg.suite / "_cache"
    with _stage(timings, "data", on_stage):
        data = load_dataset(cfg.dataset)
        split = MembershipSplit.make(n_records=len(data), sizes=cfg.split, seed=seed, dataset=cfg.dataset.name,
                                     groups=data.groups)
    with _stage(timings, "train", on_stage):
        defense, reused = obtain_defense(resolved, data, split, seed, paths, logger=logger, callbacks=callbacks)
    if not is_global_zero():
        return None
    with _stage(timings, "release", on_stage):
        released = release(defense, cfg.release.n_samples, seed, paths)
    with _stage(timings, "attacks", on_stage):
        attacks, raw = attack_all(resolved, seed, defense, released, data, split, cache_dir=cache_dir)
    with _stage(timings, "utility", on_stage):
        utility = evaluate_utility(cfg.utility, released, data, split, seed=seed, out_dir=paths.root,
                                   cache_dir=cache_dir)
    with _stage(timings, "diagnostics", on_stage):
        diagnostics = diagnose(defense, data, split)
    query_ids, is_member = queries(split)
    write_or_rescue(paths.scores, lambda p: atomic_save_npz(p, record_id=query_ids, is_member=is_member, **raw),
                    what="the attack scores")
    cls = type(defense)
    labels = [lab for lab, on in (("control", cls.is_control), ("reconstructed", cls.reconstructed)) if on]
    record = RunRecord(
        suite=cfg.suite, suite_version=cfg.version, defense=resolved.defense_name, seed=seed,
        config=resolved.to_dict(), config_digest=resolved.digest(), overrides=resolved.overrides,
        split_digest=split.digest(), split_sizes=split.sizes(), member_fraction=split.member_fraction(),
        attacks=attacks, labels=labels, utility=utility, diagnostics=diagnostics, privacy_guarantee=defense.privacy_report(),
        environment=environment(), timings={**timings, "checkpoint_reused": float(reused)},
        wall_time_s=round(time.perf_counter() - t_start, 3), created_at=now_iso(),
        wandb_run_id=tracker.run_id if tracker is not None else None, variant=resolved.variant,
        operating_point=resolved.point_record(),
    )
    write_or_rescue(paths.record, record.write, what="the run's record")
    if tracker is not None:
        tracker.log_run(record, paths, data.info)
    return record
