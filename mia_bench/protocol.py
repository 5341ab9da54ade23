"""Protocol v2 (suite `version: 2`): T target models per defense and seed, leave-one-out attacks, pooled ROC.

One run = one suite x defense x seed, as in protocol v1, but the seed now fixes a membership design
(data/design.py): a population with planted canaries, every record IN for exactly T/2 of T targets.

  design    population, canaries and the (T, P) membership; its digest goes into the banks and the record
  train     the T targets, one bank (shadows.train_bank: one vectorised stack where the game allows, else
            one after another), cached under results/<suite>/_cache/targets/ by digest (never overwritten
            by another config). The natural reference (the `none` recipe with the target's game, trained
            under the same design) is a bank of its own, shared by every defense of the seed
  release   each target releases `release.n_samples` samples
  attacks   LiRA (every lira_* attack but the mixed-query one) runs leave-one-out: target t is scored
            against the other T-1 models, either the defense's own targets (`reference: defense`, the
            adaptive attack by construction) or the natural bank minus index t (`reference: natural`),
            with per-record IN and OUT Gaussians (online) or the OUT one (offline). Every other attack
            is fitted and scored once per target, on every population record, through the access-limited
            view of that target and the attacker roles outside the population
  pool      per attack, the (T, P) scores are pooled into one ROC (metrics/pooled.py), on the whole
            population and on the canaries, with intervals from a bootstrap over targets; the worst case
            over attacks is reported per access level (samples, generator, white_box; each level also
            holds the attacks of the levels below it: a released generator can be sampled)
  exposure  per record, the mean score IN and OUT under the strongest attack of each access level
  utility   on the releases of the first `design.utility_targets` targets against the hold-out
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mia_bench import progress, shadows
from mia_bench.attacks import ATTACKS, Recipe, make_view
from mia_bench.attacks.base import AccessLevel
from mia_bench.attacks.lira import _Lira, _LiraSamples
from mia_bench.config import ResolvedRun
from mia_bench.data import ArrayDataset, load_dataset
from mia_bench.data.design import MembershipDesign, canary_kind, with_canaries
from mia_bench.defenses import DEFENSES, Defense, Released
from mia_bench.errors import ConfigError, MiaBenchError
from mia_bench.io import atomic_save_npz, load_npz
from mia_bench.metrics.pooled import exposure, pooled_report
from mia_bench.metrics.privacy import fpr_key
from mia_bench.metrics.utility import evaluate_utility
from mia_bench.nets import latent
from mia_bench.nets import lira as lira_math
from mia_bench.results import RunPaths, RunRecord, environment, now_iso
from mia_bench.runner import attacker_knowledge, write_or_rescue
from mia_bench.runner import diagnose as diagnose_one

log = logging.getLogger("mia_bench.protocol")
LEVELS = tuple(a.value for a in AccessLevel)  # samples < generator < white_box
RANK_FPR = 0.01


def check_suite(resolved: ResolvedRun) -> None:
    """Refuse, before any work, what protocol v2 cannot run."""
    bad = [n for n, params in resolved.attack_params.items() if getattr(params, "query", "single") == "mixed"]
    if bad:
        raise ConfigError(f"attack(s) {bad} (mixed co-membership queries) have no leave-one-out form in protocol "
                          f"v2; remove them from the suite or set attacks.{bad[0]}=false")


def make_design(resolved: ResolvedRun, seed: int) -> tuple[ArrayDataset, MembershipDesign]:
    cfg = resolved.config
    data = load_dataset(cfg.dataset)
    kind = canary_kind(cfg.design.canary, data)
    design = MembershipDesign.make(n_records=len(data), split=cfg.split, design=cfg.design, seed=seed,
                                   dataset=cfg.dataset.name, groups=data.groups, canary_kind=kind)
    return with_canaries(data, design)


def train_targets(recipe: Recipe, data: ArrayDataset, design: MembershipDesign, seed: int,
                  cache_dir: Path) -> shadows.ShadowBank:
    """The T targets of `recipe` under the design (controls that train on reference data train there)."""
    cls = DEFENSES.get(recipe.defense)
    t = design.n_targets
    if cls.train_role == "members":
        return shadows.train_bank(recipe=recipe, data=data, ids=design.population, n_models=t, seed=seed,
                                  cache_dir=cache_dir, members=design.inside, reference_ids=design.reference)
    ids = np.asarray(getattr(design, cls.train_role))
    return shadows.train_bank(recipe=recipe, data=data, ids=ids, n_models=t, seed=seed, cache_dir=cache_dir,
                              members=np.ones((t, ids.size), bool), reference_ids=design.reference)


def releases(models: list[Defense], n: int, seed: int) -> list[Released]:
    return [m.sample(n, generator=torch.Generator().manual_seed(int(np.random.SeedSequence([seed, t, 9])
                                                                     .generate_state(1)[0])))
            for t, m in enumerate(models)]


# ---- LiRA, leave-one-out -------------------------------------------------------------------------------

STATS_VERSION = 1  # part of the cache key of LiRA statistics on disk: bump when a statistic changes


def _weights_digest(bank: shadows.ShadowBank) -> str:
    """A digest of the bank's trained weights: a bank retrained under the same digest (a DP bank draws fresh
    noise) never reads the statistics of the weights it replaced."""
    h = hashlib.sha256()
    for m in bank.models:
        for name, t in m.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class LiraStatistics:
    """Per-model LiRA statistics (M, P), computed once per (bank, statistic) and shared by every LiRA
    attack of the run that reads the same statistic with the same settings. With a `cache_dir` they are
    also kept on disk, keyed by the bank's digest, the design, the seed and the statistic's settings: the
    natural bank is the same for every defense of a seed, so its statistics are computed once per seed."""

    def __init__(self, data: ArrayDataset, design: MembershipDesign, seed: int, cache_dir: Path | None = None) -> None:
        self.data, self.design, self.seed, self.cache_dir = data, design, seed, cache_dir
        self.x, self.y = data.take(design.population)
        self.cache: dict[tuple, np.ndarray] = {}
        self.weights: dict[int, str] = {}  # _weights_digest per bank (by identity), hashed once

    def aux(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.design.attacker_aux
        pick = np.random.default_rng([self.seed, 5]).choice(ids, min(n, ids.size), replace=False)
        return self.data.take(pick)

    def get(self, attack: _Lira, bank: shadows.ShadowBank, rel: list[Released]) -> np.ndarray:
        """(M, P) standardised statistic (lower = member) of every population record under every model of
        `bank`, read through each model's view at the attack's access level; keyed by the bank's digest, so
        a bank that is both the targets and the natural reference (`none`) is read once."""
        c = attack.config
        if isinstance(attack, _LiraSamples):  # every model releases as many samples
            attack.n_samples = int(rel[0].x.shape[0])
        key = (bank.digest, type(attack).statistic, json.dumps(attack.statistic_settings(), sort_keys=True, default=str),
               c.standardise, c.standardise_records)
        if key in self.cache:
            return self.cache[key]
        path = None
        if self.cache_dir is not None:
            if id(bank) not in self.weights:
                self.weights[id(bank)] = _weights_digest(bank)
            weights = self.weights[id(bank)]
            name = hashlib.sha256(json.dumps([STATS_VERSION, self.design.digest(), self.seed, weights,
                                              *key[:3], bool(key[3]), int(key[4])]).encode()).hexdigest()[:32]
            path = Path(self.cache_dir) / f"{bank.digest[:16]}_{name}.npz"
            if path.is_file():
                stored = load_npz(path)["stats"]
                if stored.shape == (len(bank.models), self.x.shape[0]):
                    self.cache[key] = stored
                    return stored
        ax, ay = self.aux(c.standardise_records) if c.standardise else (self.x[:0], self.y[:0])
        qx, qy = torch.cat([self.x, ax]), torch.cat([self.y, ay])
        rows = []
        for m, r in zip(bank.models, rel, strict=True):
            view = make_view(m, attack.access, r)
            rows.append(attack.target_losses(view, qx, qy))
        stats = np.stack(rows).astype(np.float64)
        p = self.x.shape[0]
        if c.standardise and stats.shape[1] > p:
            aux = stats[:, p:]
            stats = (stats - np.median(aux, 1, keepdims=True)) / np.maximum(aux.std(1, keepdims=True), 1e-12)
        self.cache[key] = stats[:, :p]
        if path is not None:
            atomic_save_npz(path, stats=self.cache[key])
        return self.cache[key]


def lira_loo(name: str, params: Any, stats: LiraStatistics, targets: shadows.ShadowBank, target_rel: list[Released],
             natural: shadows.ShadowBank | None, natural_rel: list[Released] | None) -> tuple[dict, np.ndarray]:
    attack = ATTACKS.get(name)(config=params, seed=stats.seed)
    assert isinstance(attack, _Lira)  # attack_all sends only LiRA attacks here
    c = attack.config
    if c.mode not in ("online", "offline") or c.reference not in ("natural", "defense"):
        raise ConfigError(f"attacks.{name}: mode must be online|offline and reference natural|defense")
    t_stats = stats.get(attack, targets, target_rel)
    if c.reference == "defense":
        ref = t_stats
    else:
        if natural is None or natural_rel is None:
            raise MiaBenchError(f"{name}: a natural reference was asked for but no natural bank was trained")
        ref = stats.get(attack, natural, natural_rel)
    scores = lira_math.loo_scores(t_stats, ref, stats.design.inside, mode=c.mode)
    n_ref = stats.design.n_targets - 1
    attack.details.update(protocol="leave-one-out over the design's targets", reference_models=n_ref,
                          reference=("the defense's other targets (adaptive)" if c.reference == "defense"
                                     else "the natural (`none`) bank minus the target's index"),
                          global_variance=n_ref < lira_math.GLOBAL_VARIANCE_BELOW, statistic=type(attack).statistic)
    desc = attack.describe()
    desc["variant"] = (f"{c.mode}, leave-one-out, {'adaptive' if c.reference == 'defense' else 'natural'} "
                       f"reference; statistic: {type(attack).statistic}")
    return desc, scores


# ---- every other attack, once per target ----------------------------------------------------------------

def per_target(name: str, params: Any, seed: int, design: MembershipDesign, data: ArrayDataset,
               targets: shadows.ShadowBank, rel: list[Released], recipe: Recipe, cache_dir: Path,
               on_target: Callable[[], None]) -> tuple[dict, np.ndarray, dict]:
    """Fit and score attack `name` on every target, each through its own view and attacker roles; the
    targets' local models (one each, when the attack trains one) are trained first as one stack."""
    cls = ATTACKS.get(name)
    qx, qy = data.take(design.population)
    prepared = []
    for t, (model, released) in enumerate(zip(targets.models, rel, strict=True)):
        knowledge = attacker_knowledge(cls, design.target_split(t), data, recipe, cache_dir, seed)
        prepared.append((cls(config=params, seed=seed), make_view(model, cls.access, released), knowledge))
    requests = [r for r in (a.bank_request(v, k) for a, v, k in prepared) if r is not None]
    if len(requests) > 1:
        shadows.train_together(requests, label=f"'{name}' local models (one per target)")
    rows, extra, desc = [], [], {}
    for t, (attack, view, knowledge) in enumerate(prepared):
        attack.fit(view, knowledge)
        s = np.asarray(attack.score(view, qx, qy, ids=design.population), dtype=np.float64)
        if s.shape != (qx.shape[0],) or not np.isfinite(s).all():
            raise MiaBenchError(f"attack '{name}' returned scores of shape {s.shape} on target {t}; expected "
                                f"({qx.shape[0]},) finite floats")
        rows.append(s)
        extra.append(attack.extra_metrics(s, design.inside[t]))
        desc = attack.describe()
        on_target()
    return desc, np.stack(rows), _mean_extra(extra)


def _mean_extra(per_target_metrics: list[dict]) -> dict:
    """Attack-specific metrics averaged over targets (each {"value": float, ...})."""
    out = {}
    for key in per_target_metrics[0] if per_target_metrics else []:
        vals = [m[key]["value"] for m in per_target_metrics if key in m]
        out[key] = {**per_target_metrics[0][key], "value": float(np.mean(vals)), "sd_over_targets": float(np.std(vals)),
                    "pooled": "mean over targets"}
    return out


def attack_all(resolved: ResolvedRun, seed: int, data: ArrayDataset, design: MembershipDesign,
               targets: shadows.ShadowBank, target_rel: list[Released], natural: shadows.ShadowBank | None,
               natural_rel: list[Released] | None, cache_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    cfg = resolved.config
    recipe = Recipe.of(resolved, data.info)
    stats = LiraStatistics(data, design, seed, cache_dir / "lira")
    fprs, n_boot = tuple(cfg.metrics.fprs), cfg.metrics.bootstrap
    attacks, raw = {}, {}
    loo = [n for n in resolved.attack_params if issubclass(ATTACKS.get(n), _Lira)]
    rest = [n for n in resolved.attack_params if n not in loo]
    total = len(loo) + len(rest) * design.n_targets
    with progress.task("attacks", total=total) as bar, latent.shared_searches():
        for name in [*loo, *rest]:
            t0 = time.perf_counter()
            params = resolved.attack_params[name]
            bar.update(description=f"attack {name}")
            extra: dict = {}
            if name in loo:
                desc, scores = lira_loo(name, params, stats, targets, target_rel, natural, natural_rel)
                bar.advance()
            else:
                desc, scores, extra = per_target(name, params, seed, design, data, targets, target_rel, recipe,
                                                 cache_dir / "attacks", bar.advance)
            metrics = pooled_report(scores, design.inside, fprs=fprs, n_boot=n_boot, seed=seed)
            metrics.update(extra)
            canaries = (pooled_report(scores, design.inside, fprs=fprs, n_boot=n_boot, seed=seed,
                                      columns=design.canary) if design.canary.any() else {})
            attacks[name] = {**desc, "metrics": metrics, "canaries": canaries,
                             "seconds": round(time.perf_counter() - t0, 3)}
            raw[f"score/{name}"] = scores.astype(np.float32)
    return attacks, raw


def _rank_key(metrics: dict) -> tuple[float, float, float]:
    return (metrics[fpr_key(RANK_FPR)]["value"], metrics.get(fpr_key(0.001), {}).get("value", 0.0),
            metrics["auc"]["value"])


def worst_case(attacks: dict) -> dict[str, dict]:
    """Per access level, the strongest attack among those the level allows (it and every level below):
    highest pooled TPR@1%FPR, then TPR@0.1%FPR, then AUC."""
    out = {}
    for i, level in enumerate(LEVELS):
        allowed = [n for n, a in attacks.items() if a["access"] in LEVELS[:i + 1]]
        if not allowed:
            continue
        best = max(allowed, key=lambda n: _rank_key(attacks[n]["metrics"]))
        pick = {"attack": best, "access": attacks[best]["access"]}
        for part in ("metrics", "canaries"):
            m = attacks[best][part]
            if m:
                pick[part] = {k: m[k] for k in m if k == "auc" or k.startswith("tpr@") or k == "balanced_accuracy"}
        out[level] = pick
    return out


def exposure_table(raw: dict[str, np.ndarray], worst: dict[str, dict], design: MembershipDesign) -> dict[str, np.ndarray]:
    """Per access level: per population record, mean score IN and OUT under that level's strongest attack
    and their gap (in the attack's within-group spread), with the record ids and the canary mask."""
    out = {"record_id": design.population, "canary": design.canary}
    for level, pick in worst.items():
        mean_in, mean_out, gap = exposure(raw[f"score/{pick['attack']}"], design.inside)
        out.update({f"{level}/mean_in": mean_in, f"{level}/mean_out": mean_out, f"{level}/gap": gap})
    return out


def exposure_figure(path: Path, table: dict[str, np.ndarray], worst: dict[str, dict], data: ArrayDataset,
                    design: MembershipDesign, rel: list[Released], *, n: int = 16) -> Path | None:
    """The `n` most exposed records under the strongest attack of the widest access level, each beside its
    nearest released sample of a target that trained on it (plots.exposure_png)."""
    from mia_bench.nets.distance import nearest_distance
    from mia_bench.report.plots import ExposedRecord, exposure_png

    if not worst:
        return None
    level = LEVELS[max(LEVELS.index(lv) for lv in worst)]
    gap = table[f"{level}/gap"]
    rows = []
    for j in np.argsort(-gap, kind="stable")[:n]:
        x = data.take(design.population[j:j + 1])[0]
        t = int(np.flatnonzero(design.inside[:, j])[0])
        _, idx = nearest_distance(x, rel[t].x)
        rows.append(ExposedRecord(record=x[0].numpy(), nearest=rel[t].x[int(idx[0])].numpy(), gap=float(gap[j]),
                                  record_id=int(design.population[j]), canary=bool(design.canary[j])))
    title = (f"the {len(rows)} most exposed records under {worst[level]['attack']} ({level} access), each beside "
             "its nearest sample from a target that trained on it\ngap: mean score when IN minus when OUT, in units of "
             "the attack's within-group spread")
    return exposure_png(path, rows, title=title)


def utility(resolved: ResolvedRun, rel: list[Released], data: ArrayDataset, design: MembershipDesign, seed: int,
            out_dir: Path, cache_dir: Path) -> dict[str, Any]:
    """The utility metrics on the first `design.utility_targets` targets' releases (against the hold-out):
    their mean, with the spread over targets."""
    cfg = resolved.config
    n = min(cfg.design.utility_targets, len(rel))
    split = design.utility_split()
    runs = [evaluate_utility(cfg.utility, rel[t], data, split, seed=seed, cache_dir=cache_dir,
                             out_dir=out_dir if t == 0 else None) for t in range(n)]
    if not runs or not runs[0]:
        return {}
    out = dict(runs[0])
    out["metrics"] = {k: float(np.mean([r["metrics"][k] for r in runs])) for k in runs[0]["metrics"]}
    out["sd_over_targets"] = {k: float(np.std([r["metrics"][k] for r in runs])) for k in runs[0]["metrics"]}
    out["details"] = {**runs[0]["details"], "targets": n, "real_set": "holdout"}
    out["seconds"] = round(sum(r["seconds"] for r in runs), 3)
    return out


def diagnose(targets: shadows.ShadowBank, data: ArrayDataset, design: MembershipDesign) -> dict[str, Any]:
    return diagnose_one(targets.models[0], data, design.target_split(0)) | {"on": "target 0"}


def run_v2(resolved: ResolvedRun, seed: int, paths: RunPaths, *, results_dir: Path, tracker: Any,
           on_stage: Callable[[str], None] | None, stage: Callable) -> RunRecord:
    """The stages of one protocol-v2 run; `stage(timings, name, on_stage)` is runner._stage."""
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    cfg = resolved.config
    cache_dir = Path(results_dir) / cfg.suite / "_cache"
    check_suite(resolved)
    with stage(timings, "data", on_stage):
        data, design = make_design(resolved, seed)
    recipe = Recipe.of(resolved, data.info)
    natural_recipe = shadows.natural_recipe(recipe)
    with stage(timings, "train", on_stage):
        targets = train_targets(recipe, data, design, seed, cache_dir / "targets")
        same = natural_recipe.digest() == recipe.digest() and DEFENSES.get(recipe.defense).train_role == "members"
        needs_natural = any(getattr(resolved.attack_params[n], "reference", "") == "natural"
                            for n in resolved.attack_params if issubclass(ATTACKS.get(n), _Lira))
        natural = targets if same else (train_targets(natural_recipe, data, design, seed, cache_dir / "targets")
                                        if needs_natural else None)
    with stage(timings, "release", on_stage):
        target_rel = releases(targets.models, cfg.release.n_samples, seed)
        natural_rel = None if natural is None else (target_rel if natural is targets else
                                                    releases(natural.models, cfg.release.n_samples, seed))
        first = target_rel[0]  # x, y: target 0's release (what reports show); targets_*: every target's
        none_y = np.zeros(0, np.int64)
        samples = dict(x=first.x.numpy(), y=none_y if first.y is None else first.y.numpy(),
                       targets_x=torch.stack([r.x for r in target_rel]).numpy(),
                       targets_y=none_y if first.y is None else torch.stack([r.y for r in target_rel
                                                                              if r.y is not None]).numpy())
        write_or_rescue(paths.samples, lambda p: atomic_save_npz(p, **samples), what="the released samples")
    with stage(timings, "attacks", on_stage):
        attacks, raw = attack_all(resolved, seed, data, design, targets, target_rel, natural, natural_rel, cache_dir)
    worst = worst_case(attacks)
    with stage(timings, "utility", on_stage):
        util = utility(resolved, target_rel, data, design, seed, paths.root, cache_dir)
    with stage(timings, "diagnostics", on_stage):
        diagnostics = diagnose(targets, data, design)
    write_or_rescue(paths.scores, lambda p: atomic_save_npz(p, record_id=design.population, inside=design.inside,
                                                             canary=design.canary, **raw), what="the attack scores")
    table = exposure_table(raw, worst, design)
    write_or_rescue(paths.root / "exposure.npz", lambda p: atomic_save_npz(p, **table), what="the per-record exposure")
    exposure_figure(paths.root / "exposure.png", table, worst, data, design, target_rel)
    cls = DEFENSES.get(resolved.defense_name)
    labels = [lab for lab, on in (("control", cls.is_control), ("reconstructed", cls.reconstructed)) if on]
    banks = {"targets": targets.describe(), "natural": None if natural is None else natural.describe()}
    record = RunRecord(
        suite=cfg.suite, suite_version=cfg.version, defense=resolved.defense_name, seed=seed,
        config=resolved.to_dict(), config_digest=resolved.digest(), overrides=resolved.overrides,
        split_digest=design.digest(), split_sizes=design.sizes(), member_fraction=float(design.inside.mean()),
        attacks=attacks, labels=labels, utility=util, diagnostics={**diagnostics, "banks": banks},
        privacy_guarantee=targets.models[0].privacy_report(), environment=environment(),
        timings={**timings, "targets_cached": float(targets.cached)},
        wall_time_s=round(time.perf_counter() - t_start, 3), created_at=now_iso(),
        wandb_run_id=tracker.run_id if tracker is not None else None, variant=resolved.variant,
        operating_point=resolved.point_record(),
        design=design.describe(), worst_case=worst,
    )
    write_or_rescue(paths.record, record.write, what="the run's record")
    return record

