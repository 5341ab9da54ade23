"""The attacks a user's training recipe unlocks (`--recipe module:callable`, `--shadows K`).

The recipe is `recipe(x, y=None[, seed=k]) -> model`: it trains a fresh model of the user's kind on x (the
records in the --train file's units; a dict of columns for a CSV / parquet table; y is None, the audit
reads no labels) and returns an object with `sample(n)` (optionally `generate(z)` with `z_dim`, and
`discriminate(x) -> (n,)` scores, higher = real). With it the audit trains, through the user's own code:

  shadows    K models, each on a random half of the pool = the scored records (--train and the scored
             hold-out), LiRA's balanced halves (Carlini et al. 2022): every audited record is IN for
             floor(K/2) shadows and OUT for the others, independently of its membership in the user's model
  reference  one model on the --reference records (calibrated GAN-Leaks)
  local      one model on the released samples (LOGAN-bb with the true recipe; needs `discriminate`)

and runs (names as registered, so records read alike):
  lira_fbb[_offline]   log distance to the nearest sample (each shadow releases as many as the user did)
  lira_gen[_offline]   log reconstruction loss of the gradient-free latent search (user's generate(z))
  lira_wb[_offline]    -D(x) (the user's --discriminator; each shadow's discriminate)
  ganleaks_{fbb,pbb,wb}_cal   L(x | user's model) - L(x | reference model)
  logan_bb             D_local(x) of the local model
LiRA scores each record with nets/lira.ratio_scores (per-record IN and OUT Gaussians fitted on the
shadows, as protocol v2 does leave-one-out); every model's statistic is first standardised by its median
and spread on up to 128 --reference records, which no model trained on. The shadows are the user's own
recipe, so this LiRA is the adaptive one (`reference: defense`) by construction.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from mia_bench import progress
from mia_bench.attacks.ganleaks import PbbConfig, WbConfig, search_config
from mia_bench.attacks.lira import LiraConfig, LiraGenConfig
from mia_bench.errors import MiaBenchError
from mia_bench.external.arguments import check_shadows
from mia_bench.external.attack import data_info
from mia_bench.external.encoding import Affine, TextTable
from mia_bench.external.inputs import AuditData
from mia_bench.external.models import UserGenerator, as_discriminator, as_generator, load_spec
from mia_bench.nets import lira
from mia_bench.nets.distance import nearest_distance
from mia_bench.nets.latent import reconstruct_many
from mia_bench.shadows import HALVES, draw_subsets, model_seed

RECIPE_HELP = ("def recipe(x, y=None, seed=0): train your generator on x (records in the --train file's units; "
               "a dict of columns for a CSV table) and return an object with sample(n)")
IDENTITY = Affine(lo=np.float64(-1.0), hi=np.float64(1.0), label="mia_bench's space")  # native recipes' outputs
_FLOOR = 1e-12  # losses are logged: a perfect copy must stay finite
# attack -> (statistic, what of the user's release it needs, what of the recipe's models it needs)
SHADOW_ATTACKS = {
    "lira_fbb": ("samples", "samples", "sample"), "lira_fbb_offline": ("samples", "samples", "sample"),
    "lira_gen": ("generator", "generator", "generate"), "lira_gen_offline": ("generator", "generator", "generate"),
    "lira_wb": ("white_box", "white_box", "discriminate"), "lira_wb_offline": ("white_box", "white_box", "discriminate"),
    "ganleaks_fbb_cal": ("samples", "samples", "sample"), "ganleaks_pbb_cal": ("generator", "generator", "generate"),
    "ganleaks_wb_cal": ("generator", "white_box", "generate"), "logan_bb": ("local", "samples", "discriminate"),
}
GIVE = {"samples": "--synthetic or --generator", "generator": "--generator with generate(z) and z_dim",
        "white_box": "--discriminator"}
NOT_EXTERNAL = {"lira_wb_adaptive": "the shadows already follow your recipe: lira_wb is the adaptive attack here",
                "lira_wb_mixed": "mixed co-membership queries probe mixup-trained models with labels; not run on "
                                 "external audits",
                "overrep": "its substitute GAN is a mia_bench recipe; not run on external audits"}


@dataclass
class Model:
    """One model trained by the user's recipe, as the attacks query it (mia_bench's space)."""

    gen: UserGenerator
    disc: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None

    def has(self, need: str) -> bool:
        return {"sample": True, "generate": self.gen.query is not None, "discriminate": self.disc is not None}[need]


class UserRecipe:
    """The --recipe callable, checked for its signature before anything trains."""

    def __init__(self, spec: str) -> None:
        self.spec, self.fn = spec, load_spec(spec, "--recipe")
        self.native = bool(getattr(self.fn, "mia_bench_space", False))
        try:
            sig = inspect.signature(self.fn)
        except (TypeError, ValueError):  # a builtin without a signature: call it and see
            self.takes_seed = False
            return
        self.takes_seed = _binds(sig, seed=0)
        if not (self.takes_seed or _binds(sig)):
            raise MiaBenchError(f"--recipe '{spec}' has the signature {sig}, which cannot be called as "
                                f"recipe(x, y) or recipe(x, y, seed=k); {RECIPE_HELP}")

    def train(self, x: np.ndarray, data: AuditData, *, seed: int, role: str) -> Model:
        """Train a fresh model on records x (R, *shape) in mia_bench's space: decoded to the --train file's
        units for a user's recipe, as they are (with the DataInfo) for one that works in mia_bench's space."""
        what = f"--recipe '{self.spec}' ({role})"
        encoding: Affine | TextTable = data.encoding
        try:
            if self.native:  # recipes.DefenseRecipe: the attacks' own features in and out
                encoding = IDENTITY
                obj = self.fn(x, None, seed=seed, info=data_info(data))
            else:
                records = data.encoding.decode(x)
                obj = self.fn(records, None, seed=seed) if self.takes_seed else self.fn(records, None)
        except MiaBenchError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's code failed: say where
            raise MiaBenchError(f"{what} raised {type(e).__name__}: {e}; fix the recipe") from None
        if not (hasattr(obj, "sample") or hasattr(obj, "generate")):
            raise MiaBenchError(f"{what} returned {type(obj).__name__}, which has no sample(n); {RECIPE_HELP}")
        gen = as_generator(obj, shape=data.shape, encoding=encoding, what=what, seed=seed)
        disc = None
        if callable(getattr(obj, "discriminate", None)) and not isinstance(encoding, TextTable):
            disc = as_discriminator(obj.discriminate, shape=data.shape, encoding=encoding,
                                    what=f"{what}.discriminate")
        return Model(gen=gen, disc=disc)


def _binds(sig: inspect.Signature, **kw: Any) -> bool:
    try:
        sig.bind(None, None, **kw)
    except TypeError:
        return False
    return True


@dataclass
class Bank:
    """The shadows (K models, membership inside (K, P) over the pool = scored records) and the reference
    model; `local` (LOGAN-bb) is trained when an attack asks for it."""

    shadows: list[Model]
    inside: np.ndarray
    reference: Model
    seconds: float

    def has(self, need: str) -> bool:
        return all(m.has(need) for m in [*self.shadows, self.reference])

    def describe(self) -> dict:
        return {"models": len(self.shadows), "pool": f"{self.inside.shape[1]} scored records (train + scored "
                "hold-out)", "subsets": "LiRA's balanced halves: every record IN for floor(K/2) shadows",
                "records_per_shadow": float(self.inside.sum(1).mean()), "in_per_record": int(self.inside.sum(0).min()),
                "trained_in_s": round(self.seconds, 1)}


def train_bank(recipe: UserRecipe, data: AuditData, *, k: int, seed: int) -> Bank:
    """The reference model first (it checks the recipe's output on the least work), then the K shadows."""
    check_shadows(k)
    pool = np.concatenate([data.train, data.holdout])
    inside = draw_subsets(len(pool), k, size=HALVES, seed=seed)
    t0 = time.perf_counter()
    with progress.task("recipe models", total=k + 1) as bar:
        bar.update(description="recipe: reference model")
        reference = recipe.train(data.reference, data, seed=model_seed(seed, 10_000), role="reference model")
        bar.advance()
        models = []
        for j in range(k):
            bar.update(description=f"recipe: shadow {j + 1}/{k}")
            models.append(recipe.train(pool[inside[j]], data, seed=model_seed(seed, j), role=f"shadow {j + 1}"))
            bar.advance()
    return Bank(shadows=models, inside=inside, reference=reference, seconds=time.perf_counter() - t0)


def plan(release: Any, bank: Bank) -> tuple[list[str], dict[str, str]]:
    """(recipe attacks to run, {attack: why skipped}) from what the user released and what the recipe's
    models offer."""
    run, skipped = [], dict(NOT_EXTERNAL)
    for name, (_, level, model_need) in SHADOW_ATTACKS.items():
        if level not in release.levels() or (name.endswith("wb_cal") and not release.has("generator")):
            skipped[name] = f"needs {level} access: give " + GIVE[level] + (
                " and --generator with generate(z)" if name.endswith("wb_cal") else "")
        elif not bank.has(model_need):
            skipped[name] = f"your recipe's models have no {model_need}" + \
                ("(z) with an int z_dim" if model_need == "generate" else "(x)")
        else:
            run.append(name)
    return run, skipped


class Statistics:
    """Per-model losses (lower = member) of the scored records, standardised on reference records."""

    def __init__(self, data: AuditData, release: Any, bank: Bank, seed: int) -> None:
        self.release, self.bank, self.seed = release, bank, seed
        pool = np.concatenate([data.train, data.holdout])
        n_std = min(LiraConfig.standardise_records, len(data.reference))
        pick = np.random.default_rng([seed, 5]).choice(len(data.reference), n_std, replace=False)
        self.p = len(pool)
        self.x = torch.from_numpy(np.concatenate([pool, data.reference[pick]])).float()
        self.cache: dict[str, np.ndarray] = {}

    def losses(self, stat: str) -> np.ndarray:
        """(1 + K, P): row 0 the user's model, then the shadows."""
        if stat not in self.cache:
            rows = raw_losses(stat, self.release, self.bank.shadows, self.x, self.seed)
            aux = rows[:, self.p:]
            if aux.shape[1] >= 2:
                rows = (rows - np.median(aux, 1, keepdims=True)) / np.maximum(aux.std(1, keepdims=True), 1e-12)
            self.cache[stat] = rows[:, :self.p]
        return self.cache[stat]


def raw_losses(stat: str, release: Any, models: list[Model], x: torch.Tensor, seed: int) -> np.ndarray:
    """(1 + len(models), N) losses of records x: row 0 under the user's release, then under each model."""
    if stat == "samples":
        n = len(release.samples)
        sets = [torch.from_numpy(release.samples)] + [torch.from_numpy(m.gen.sample(n)) for m in models]
        return np.stack([np.log(np.maximum(nearest_distance(x, s)[0].double().numpy(), _FLOOR)) for s in sets])
    if stat == "generator":
        gens = [release.generator.query] + [m.gen.query for m in models]
        cfg = search_config(LiraGenConfig())
        return np.log(np.maximum(reconstruct_many(gens, x, None, cfg, seed=seed).numpy(), _FLOOR))
    with torch.no_grad():
        return np.stack([-d(x, None).double().numpy() for d in [release.discriminator] + [m.disc for m in models]])


def _lira(name: str, stats: Statistics, mode: str) -> tuple[np.ndarray, dict]:
    stat = SHADOW_ATTACKS[name][0]
    rows = stats.losses(stat)
    k = rows.shape[0] - 1
    gv = k < lira.GLOBAL_VARIANCE_BELOW
    scores = lira.ratio_scores(rows[0], rows[1:], stats.bank.inside, mode=mode, global_variance=gv,
                               rng=np.random.default_rng([stats.seed, 7]))
    variant = (f"{mode}, {k} shadows of your recipe on halves of the scored records (adaptive); statistic: "
               + {"samples": "log distance to the nearest sample", "generator": "log reconstruction loss "
                  "(gradient-free latent search)", "white_box": "discriminator loss (-D)"}[stat])
    settings = {"mode": mode, "n_shadows": k, "reference": "defense", "standardise": True,
                "standardise_records": int(stats.x.shape[0] - stats.p)}
    if stat == "generator":
        settings.update(asdict(LiraGenConfig()))
    return scores, {"variant": variant, "settings": settings, "details": {"global_variance": gv}}


def _calibrated(name: str, data: AuditData, release: Any, bank: Bank, seed: int) -> tuple[np.ndarray, dict]:
    x = torch.from_numpy(np.concatenate([data.train, data.holdout])).float()
    if name == "ganleaks_fbb_cal":
        n = len(release.samples)
        raw = np.stack([nearest_distance(x, torch.from_numpy(s))[0].double().numpy()
                        for s in (release.samples, bank.reference.gen.sample(n))])
        variant = "fbb calibrated: nearest released sample minus nearest sample of your recipe's reference model"
        settings: dict = {}
    else:
        cfg = PbbConfig() if name == "ganleaks_pbb_cal" else WbConfig()
        ref_query = bank.reference.gen.query
        if ref_query is None:  # plan() runs this only when every recipe model has generate(z)
            raise MiaBenchError(f"{name}: the reference model has no generate(z)")
        raw = reconstruct_many([release.generator.query, ref_query], x, None, search_config(cfg), seed=seed).numpy()
        variant = (f"{'pbb' if isinstance(cfg, PbbConfig) else 'wb'} calibrated: reconstruction loss minus your "
                   "recipe's reference model's")
        settings = asdict(cfg)
    settings.update(reference="defense", calibration="difference")
    return -(raw[0] - raw[1]), {"variant": variant, "settings": settings,
                                "details": {"reference_model": f"your recipe on {len(data.reference)} reference "
                                                               "records"}}


def _logan(recipe: UserRecipe, data: AuditData, release: Any, seed: int) -> tuple[np.ndarray, dict]:
    local = recipe.train(release.samples, data, seed=model_seed(seed, 20_000), role="LOGAN local model")
    if local.disc is None:
        raise MiaBenchError(f"--recipe '{recipe.spec}': the local model has no discriminate(x), the shadows had")
    x = torch.from_numpy(np.concatenate([data.train, data.holdout])).float()
    with torch.no_grad():
        scores = local.disc(x, None).double().numpy()
    return scores, {"variant": "bb: discriminator of your recipe trained on the released samples",
                    "settings": {"recipe": "defense"},
                    "details": {"local_gan": f"your recipe on {len(release.samples)} released samples"}}


def run(names: list[str], *, recipe: UserRecipe, bank: Bank, data: AuditData, release: Any,
        measure: Callable[[np.ndarray], dict], seed: int) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Per attack the record entry (as attack.run_attacks writes it) and the raw scores (M + H,)."""
    from mia_bench.attacks import ATTACKS

    stats = Statistics(data, release, bank, seed)
    attacks, raw = {}, {}
    with progress.task("recipe attacks", total=len(names)) as bar:
        for name in names:
            bar.update(description=f"recipe attacks: {name}")
            t0 = time.perf_counter()
            if name.startswith("lira_"):
                scores, desc = _lira(name, stats, "offline" if name.endswith("_offline") else "online")
                desc["details"]["shadows"] = bank.describe()
            elif name == "logan_bb":
                scores, desc = _logan(recipe, data, release, seed)
            else:
                scores, desc = _calibrated(name, data, release, bank, seed)
            attacks[name] = {"access": ATTACKS.get(name).access.value, **desc, "metrics": measure(scores),
                             "canaries": {}, "seconds": round(time.perf_counter() - t0, 3)}
            raw[f"score/{name}"] = np.asarray(scores, np.float32)
            bar.advance()
    return attacks, raw
