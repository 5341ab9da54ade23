"""`audit_release`: audit a release mia_bench did not train (the Python API behind `mia-bench audit-release`).

Stages: check every input (inputs.py, before any model is loaded), load the models (models.py), run every
registered attack the given access allows (attack.py), pool the metrics as protocol v2 does with one
target (the user's model; intervals by a stratified bootstrap over records, since there is one model),
then write record.json (a RunRecord labelled `external_audit`: never on a leaderboard), scores.npz,
report.md and report.html into a fresh folder, renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mia_bench.errors import MiaBenchError
from mia_bench.external import arguments, inputs, shadow
from mia_bench.external import gate as gates
from mia_bench.external.attack import Release, measure, plan, run_attacks
from mia_bench.external.models import as_discriminator, as_generator, load_spec
from mia_bench.io import atomic_save_npz

EXTERNAL_LABEL = "external_audit"  # RunRecord.labels: never enters a leaderboard
INTERVALS = "95% percentile bootstrap over records (members and non-members resampled apart): one model, so no bootstrap over targets"


@dataclass
class AuditResult:
    record: object  # RunRecord
    folder: Path
    record_path: Path
    report_md: Path
    report_html: Path
    breaches: list = field(default_factory=list)  # gate.Breach
    notes: list[str] = field(default_factory=list)


def audit_release(*, train: Path, holdout: Path, synthetic: Path | None = None, generator: str | None = None,
                  discriminator: str | None = None, reference: Path | None = None, out: Path | None = None,
                  name: str = "audit", fail_above: list[str] | None = None, n_samples: int = 2000,
                  n_boot: int = 200, seed: int = 0, results_dir: Path = Path("results"), recipe: str | None = None,
                  shadows: int = 16) -> AuditResult:
    """Audit the release; returns the record and the paths of record.json, report.md and report.html.

    Scores: (M + H,) per attack, higher = member; members are the --train records, non-members the scored
    hold-out records. recipe: module:callable that trains the user's model (shadow.py), which unlocks LiRA
    with `shadows` shadow models, calibrated GAN-Leaks and LOGAN-bb. Raises MiaBenchError (exit 2) for any
    bad input (a bad recipe: at its first model), before anything is written."""
    from mia_bench import protocol
    from mia_bench.report import audit_report
    from mia_bench.results import RunRecord, environment, now_iso

    t0 = time.perf_counter()
    gate_list = arguments.check(train=train, holdout=holdout, synthetic=synthetic, generator=generator,
                                discriminator=discriminator, reference=reference, out=out, fail_above=fail_above,
                                recipe=recipe, shadows=shadows)
    user_recipe = None
    if recipe is not None:  # its signature, before any file is read
        user_recipe = shadow.UserRecipe(recipe)
    fprs = sorted({0.001, 0.01, 0.1} | {g.fpr for g in gate_list if g.fpr is not None})
    folder, fresh_note = arguments.output_folder(out, name, results_dir)
    data = inputs.load(train=train, holdout=holdout, synthetic=synthetic, reference=reference,
                       fprs=[g.fpr for g in gate_list if g.fpr is not None], seed=seed)
    gen = disc = None
    if generator is not None:
        gen = as_generator(load_spec(generator, "--generator"), shape=data.shape, encoding=data.encoding,
                           what="--generator", seed=seed)
    if discriminator is not None:
        disc = as_discriminator(load_spec(discriminator, "--discriminator"), shape=data.shape,
                                encoding=data.encoding, what="--discriminator")
    samples = data.synthetic
    if samples is None and gen is not None:
        samples = gen.sample(n_samples)
        data.notes.append(f"no --synthetic: {n_samples} samples drawn from --generator")
    release = Release(samples=samples, generator=gen, discriminator=disc)
    names, skipped = plan(release)
    bank = None
    if user_recipe is not None:
        bank = shadow.train_bank(user_recipe, data, k=shadows, seed=seed)
        shadow_names, shadow_skipped = shadow.plan(release, bank)
        how = ("in mia_bench's space, on the encoded features the attacks score" if user_recipe.native else
               "on the records in the --train file's units; its models' samples are encoded as the real records")
        data.notes.append(f"--recipe {recipe} trains {how}")
        data.notes.append(f"--recipe {recipe}: {shadows} shadow models on random halves of the "
                          f"{bank.inside.shape[1]} scored records, and a reference model on the "
                          f"{len(data.reference)} reference records ({bank.seconds:.0f} s)")
        skipped = {k: v for k, v in {**skipped, **shadow_skipped}.items() if k not in shadow_names}
    if not names:
        raise MiaBenchError("no attack can run on what was given; give --synthetic or --generator")
    attacks, raw = run_attacks(data, release, names, fprs=tuple(fprs), n_boot=n_boot, seed=seed)
    if bank is not None and user_recipe is not None:
        is_member = np.r_[np.ones(len(data.train), bool), np.zeros(len(data.holdout), bool)]
        more, more_raw = shadow.run(shadow_names, recipe=user_recipe, bank=bank, data=data, release=release, seed=seed,
                                    measure=lambda s: measure(s, is_member, fprs=tuple(fprs), n_boot=n_boot, seed=seed))
        attacks.update(more)
        raw.update(more_raw)
    worst = {lv: w for lv, w in protocol.worst_case(attacks).items() if lv in release.levels()}
    breaches = gates.check(gate_list, attacks)
    config = {"train": str(train), "holdout": str(holdout), "synthetic": None if synthetic is None else str(synthetic),
              "generator": generator, "discriminator": discriminator,
              "reference": None if reference is None else str(reference), "fail_above": [str(g) for g in gate_list],
              "n_samples": n_samples, "bootstrap": n_boot, "fprs": fprs, "recipe": recipe,
              "shadows": shadows if recipe is not None else None}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    data_digest = hashlib.sha256(data.train.tobytes() + data.holdout.tobytes()).hexdigest()
    record = RunRecord(
        suite="external", suite_version=2, defense=folder.name, seed=seed, config=config, config_digest=digest,
        overrides=[], split_digest=data_digest,
        split_sizes={"members": len(data.train), "non_members": len(data.holdout), "reference": len(data.reference),
                     "released_samples": 0 if samples is None else len(samples)},
        member_fraction=len(data.train) / (len(data.train) + len(data.holdout)), attacks=attacks,
        labels=[EXTERNAL_LABEL],
        diagnostics={"skipped_attacks": skipped, "notes": data.notes, "encoding": data.encoding_note(),
                     "intervals": INTERVALS, "reference": data.reference_source, "levels": release.levels(),
                     "recipe": None if bank is None else {"spec": recipe, **bank.describe()},
                     "gates": [{"gate": str(b.gate), "attack": b.attack, "access": b.access, "observed": b.observed}
                               for b in breaches]},
        environment=environment(), wall_time_s=round(time.perf_counter() - t0, 3), created_at=now_iso(),
        variant=folder.name, worst_case=worst)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=_parent(folder)))
    try:
        atomic_save_npz(staging / "scores.npz", is_member=np.r_[np.ones(len(data.train), bool),
                                                                 np.zeros(len(data.holdout), bool)],
                        holdout_rows=data.holdout_ids, **raw)
        if samples is not None:
            atomic_save_npz(staging / "samples.npz", x=samples)
        record.write(staging / "record.json")
        md, html = audit_report.write(staging, record=record, raw=raw, data=data, samples=samples)
        if folder.exists():  # an empty --out
            folder.rmdir()
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    notes = data.notes + ([fresh_note] if fresh_note else [])
    return AuditResult(record=record, folder=folder, record_path=folder / "record.json", report_md=folder / md.name,
                       report_html=folder / html.name, breaches=breaches, notes=notes)


def _parent(folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder.parent
