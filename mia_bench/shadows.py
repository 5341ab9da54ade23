"""Shadow and reference models: K models of one recipe trained by the attacker on its own data.

`train_bank` draws each model's training records from the ids it is given (attacker data only: the
shadow pool, the attacker's auxiliary set, or the target's released samples; never members or
non-members), trains the K models, and returns them with a boolean membership matrix (models x records).
Banks are cached on disk by digest (recipe digest + the records' ids and content + K + seed + how the
subsets were drawn), so a second attack or a rerun reuses them; the `natural` bank (the `none` recipe)
does not depend on the defense, so every defense of one seed shares it.

Banks of a stackable game (`none` and its subclasses that keep its game, MEGAN, mixup, RelaxLoss, MP-GAN, MIMGAN,
privGAN, PAR-GAN, GS-WGAN: stack_game) train as one vectorised stack (nets/stacked_gan.py and its siblings), a
bank of one model too (a stack of one is ~1.5x faster than the Lightning loop); any other recipe trains one
model after another through runner.fit_defense, and the log says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mia_bench import progress
from mia_bench.attacks.base import AccessLevel, GeneratorQuery, Recipe, make_view
from mia_bench.data.datasets import ArrayDataset
from mia_bench.defenses import DEFENSES, Defense, Released
from mia_bench.defenses.none import GANConfig, UnprotectedGAN
from mia_bench.errors import MiaBenchError
from mia_bench.guards import load_cache
from mia_bench.io import atomic_torch_save

log = logging.getLogger("mia_bench.shadows")
FORMAT = "mia_bench.shadows/1"
# the fields that define the game, the architecture and the optimizer; a natural model copies them from
# the target's recipe (a critic's game from a WGAN-GP defense that has no `loss` field, see natural_recipe)
NATURAL_FIELDS = ("loss", "conditional", "net", "z_dim", "g_hidden", "d_hidden", "g_channels", "d_channels", "d_norm",
                  "lr_g", "lr_d", "beta1", "beta2", "n_critic", "gp_weight", "real_label")
CRITIC_STEPS = ("n_g", "critic_iters")  # a critic's batches per generator step, as the defenses name it


@dataclass
class ShadowBank:
    """K trained models and who trained on what. members[k, j]: model k trained on record_ids[j]."""

    models: list[Defense]
    record_ids: np.ndarray  # (n,)
    members: np.ndarray  # (K, n) bool
    recipe: Recipe
    digest: str
    stacked: bool
    seconds: float  # training time when trained now; the stored training time when loaded
    cached: bool

    def __len__(self) -> int:
        return len(self.models)

    def membership(self, ids: np.ndarray) -> np.ndarray:
        """(K, len(ids)) bool, aligned by record id; ids the bank never drew from are OUT for every model."""
        pos = {int(r): j for j, r in enumerate(self.record_ids)}
        out = np.zeros((len(self), len(ids)), dtype=bool)
        for i, r in enumerate(np.asarray(ids)):
            j = pos.get(int(r))
            if j is not None:
                out[:, i] = self.members[:, j]
        return out

    def describe(self) -> dict[str, Any]:
        return {"recipe": self.recipe.defense, "n_models": len(self), "records": int(self.record_ids.size),
                "digest": self.digest[:16], "stacked": self.stacked, "cached": self.cached,
                "train_seconds": round(self.seconds, 2)}


def natural_recipe(recipe: Recipe) -> Recipe:
    """The `none` recipe with the target's game (loss or critic), architecture and optimizer fields and its
    trainer: the target's model "trained naturally", without the defense's own mechanism. A defense whose
    discriminator is a WGAN-GP critic without a `loss` field (mixup, GS-WGAN) gets `none`'s WGAN-GP game,
    with its critic batches per generator step where it names them (mixup's `n_g`, GS-WGAN's
    `critic_iters`; else `none`'s default 5); a single learning rate `lr` sets both players'. Defenses
    with several discriminators (privGAN, PAR-GAN) keep one: the natural model is the single-pair GAN."""
    p = recipe.params
    shared = {f.name: getattr(p, f.name) for f in fields(GANConfig) if f.name in NATURAL_FIELDS and hasattr(p, f.name)}
    if "loss" not in shared and hasattr(p, "gp_weight"):  # a critic: the WGAN-GP game
        shared["loss"] = "wgan-gp"
        critic = next((getattr(p, f) for f in CRITIC_STEPS if hasattr(p, f)), None)
        if critic is not None:
            shared["n_critic"] = int(critic)
    if hasattr(p, "lr") and "lr_g" not in shared:
        shared.update(lr_g=float(p.lr), lr_d=float(p.lr))
    return replace(recipe, defense="none", params=replace(GANConfig(), **shared))


def attacker_reference(recipe: Recipe, train: np.ndarray,
                       pool: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(training ids, reference ids or None) for a model the attacker trains on `train`: a recipe that needs
    reference data (MP-GAN, MIMGAN) takes `pool`, or, when the suite gives no pool (protocol v2's digits),
    the last quarter of `train`, as logan_bb splits the release."""
    train = np.asarray(train, dtype=np.int64)
    if not DEFENSES.get(recipe.defense).needs_reference:
        return train, None
    pool = np.asarray(pool, dtype=np.int64)
    if pool.size:
        return train, pool
    head, tail = np.array_split(train, [train.size - train.size // 4])
    if not (head.size and tail.size):
        raise MiaBenchError(f"'{recipe.defense}' needs reference data, split off the attacker's {train.size} "
                            "records, which are too few: release more samples or give the attacker more data")
    return head, tail


def fit_batch(recipe: Recipe, n_records: int, n_reference: int | None = None) -> Recipe:
    """The recipe with a batch that fits a model the attacker trains on few records: at most what one of
    the recipe's shards holds (privGAN and PAR-GAN cut their records into k shards, B per shard per batch)
    and what its reference set holds; unchanged when the recipe's batch fits already. The attacker's own
    choice, logged; a target's recipe is never changed this way."""
    cls = DEFENSES.get(recipe.defense)
    with torch.device("meta"):
        shards = cls(config=recipe.params, info=recipe.info, n_train=max(int(n_records), 1)).n_shards
    cap = int(n_records) // shards
    if n_reference is not None:
        cap = min(cap, int(n_reference))
    if cap >= recipe.trainer.batch_size or cap < 2:
        return recipe
    log.info("'%s' attacker model on %d records (%d shards%s): batch %d instead of %d", recipe.defense, n_records,
             shards, "" if n_reference is None else f", {n_reference} reference", cap, recipe.trainer.batch_size)
    return replace(recipe, trainer=replace(recipe.trainer, batch_size=cap))


def with_steps(recipe: Recipe, steps: int) -> Recipe:
    """The recipe with `steps` generator updates (0 keeps the target's budget): the attacker's own budget
    for local and substitute models."""
    return recipe if steps <= 0 else replace(recipe, trainer=replace(recipe.trainer, max_steps=int(steps)))


def stack_game(recipe: Recipe) -> Any:
    """The nets/stacked_gan.StackGame the recipe plays, or None when it cannot be stacked. Stacked: the
    unprotected game (`none` and its subclasses that keep its game), MEGAN, mixup, RelaxLoss, MP-GAN and
    MIMGAN (their third player and reference batches included), privGAN and PAR-GAN (T models of k members
    as one stack of T * k, `sharded`), GS-WGAN (T models of K shard critics, `sanitized`) and DP-GAN with an
    MLP discriminator without LayerNorm (DP-SGD by ghost clipping, `private`), in float32. DP-GAN with
    LayerNorm in D trains one model after another through Opacus."""
    from mia_bench.defenses.dpgan import DPGAN
    from mia_bench.defenses.gswgan import GSWGAN
    from mia_bench.defenses.megan import MEGAN
    from mia_bench.defenses.mimgan import MIMGAN
    from mia_bench.defenses.mixup import MixupGAN
    from mia_bench.defenses.mpgan import MPGAN
    from mia_bench.defenses.pargan import PARGAN
    from mia_bench.defenses.privgan import PrivGAN
    from mia_bench.defenses.relaxloss import RelaxLossGAN
    from mia_bench.nets.stacked_gan import StackGame

    cls = DEFENSES.get(recipe.defense)
    if recipe.trainer.precision not in ("32", "32-true") or _has_buffers(recipe):
        return None
    p = recipe.params
    if (issubclass(cls, UnprotectedGAN) and isinstance(p, GANConfig)
            and all(getattr(cls, m) is getattr(UnprotectedGAN, m)
                    for m in ("training_step", "configure_optimizers", "generate", "discriminate", "prepare"))):
        return StackGame(wgan=p.loss == "wgan-gp", n_critic=int(p.n_critic), gp_weight=float(p.gp_weight),
                         real_label=float(p.real_label))
    if cls is MEGAN:
        return StackGame(entropy_weight=float(p.lambda_h))
    if cls is RelaxLossGAN:
        return StackGame(relax_alpha=float(p.alpha), relax_upper=float(p.upper), relax_by_step=p.alternate == "step")
    if cls is MixupGAN:
        return StackGame(wgan=True, n_critic=int(p.n_g), gp_weight=float(p.gp_weight), mix_alpha=float(p.alpha))
    if cls is MPGAN:
        return StackGame(adversary="membership", adversary_lr=float(p.lr_m), membership_weight=float(p.lambda_m),
                         membership_gain_only=p.m_term == "gain", membership_steps=int(p.k_m),
                         q_layers=tuple(int(i) for i in p.q_layers))
    if cls is MIMGAN:
        return StackGame(adversary="statistics", adversary_lr=float(p.lr_t), mi_weight=float(p.beta),
                         mi_bound=str(p.bound), mi_samples=int(p.mi_samples))
    if cls in (PrivGAN, PARGAN):
        return StackGame(sharded=True)
    if cls is GSWGAN:
        return StackGame(wgan=True, sanitized=True)
    if cls is DPGAN and p.d_norm == "none":
        return StackGame(private=True)
    return None


def new_stack(recipe: Recipe, models: list[Defense], train_sets: list[tuple[torch.Tensor, torch.Tensor]],
              seeds: list[int], reference_sets: list[torch.Tensor] | None = None, device: str = "cpu") -> Any:
    """The stacked trainer of `recipe`'s game over fresh `models` (prepared on train_sets): nets/stacked_gan.py's,
    nets/stacked_shards.py's for privGAN and PAR-GAN, nets/stacked_gswgan.py's for GS-WGAN, nets/stacked_dp.py's
    for DP-GAN. `device`: where it trains; only nets/stacked_gan.py's games train off the CPU."""
    from mia_bench.nets.stacked_dp import StackedDPGANTrainer
    from mia_bench.nets.stacked_gan import StackedGANTrainer
    from mia_bench.nets.stacked_gswgan import StackedGSWGANTrainer
    from mia_bench.nets.stacked_shards import StackedShardGANTrainer

    game = stack_game(recipe)
    if game is None:
        raise MiaBenchError(f"defense '{recipe.defense}' cannot be trained as a stack (shadows.stack_game)")
    if torch.device(device).type != "cpu" and (game.private or game.sanitized or game.sharded):
        raise MiaBenchError(f"defense '{recipe.defense}' trains as a stack on the CPU only; its stacked trainer has "
                            "no device option (nets/stacked_gan.py's games have one)")
    if game.private:
        return StackedDPGANTrainer(models=models, train_sets=train_sets, batch_size=recipe.trainer.batch_size,
                                   seeds=seeds)
    if game.sanitized:
        return StackedGSWGANTrainer(models=models, train_sets=train_sets, batch_size=recipe.trainer.batch_size,
                                    seeds=seeds)
    if game.sharded:
        return StackedShardGANTrainer(models=models, train_sets=train_sets, batch_size=recipe.trainer.batch_size,
                                      seeds=seeds)
    return StackedGANTrainer(models=models, train_sets=train_sets, config=recipe.params,
                             batch_size=recipe.trainer.batch_size, seeds=seeds, game=game,
                             reference_sets=reference_sets, device=device)


def _has_buffers(recipe: Recipe) -> bool:
    """Players with buffers (batch-norm statistics of the conv nets) do not go through the functional stack."""
    if not hasattr(recipe.params, "net") or getattr(recipe.params, "net", "mlp") == "mlp":
        return False
    with torch.device("meta"):
        model = DEFENSES.get(recipe.defense)(config=recipe.params, info=recipe.info, n_train=1)
    return any(True for player in ("generator", "discriminator") for _ in model.players[player].buffers())


def can_stack(recipe: Recipe) -> bool:
    """True when nets/stacked_gan.py can train the recipe (see stack_game)."""
    return stack_game(recipe) is not None


def owned_generator(model: Defense) -> GeneratorQuery:
    """White-box generator queries of a model the attacker trained itself."""
    empty = Released(x=torch.empty(0, *model.info.shape), y=None)
    return make_view(model, AccessLevel.WHITE_BOX, empty).generator


def released_dataset(released: Released, info: Any) -> ArrayDataset:
    """The target's released samples as a dataset (record id = position), to train local models on."""
    y = released.y if released.y is not None else torch.zeros(released.x.shape[0], dtype=torch.int64)
    return ArrayDataset(x=released.x.float(), y=y.long(), info=info)


HALVES, EVERY_RECORD = 0, -1  # the two special subset sizes of draw_subsets


def draw_subsets(n: int, n_models: int, *, size: int, seed: int) -> np.ndarray:
    """(K, n) bool membership. size HALVES (0): LiRA's balanced halves (every record IN for exactly
    floor(K/2) models, as in LiRA's code); EVERY_RECORD (-1) or size >= n: every model trains on all
    records; otherwise every model draws `size` records uniformly without replacement."""
    rng = np.random.default_rng([seed, 11])
    if size == HALVES:
        order = rng.uniform(size=(n_models, n)).argsort(0)
        return order < n_models // 2 if n_models > 1 else np.ones((1, n), dtype=bool)
    if size < 0 or size >= n:
        return np.ones((n_models, n), dtype=bool)
    out = np.zeros((n_models, n), dtype=bool)
    for k in range(n_models):
        out[k, rng.choice(n, size, replace=False)] = True
    return out


def bank_digest(recipe: Recipe, data: ArrayDataset, ids: np.ndarray, n_models: int, seed: int, size: int,
                members: np.ndarray | None = None) -> str:
    x, y = data.take(ids)
    h = hashlib.sha256(json.dumps({"format": FORMAT, "recipe": recipe.digest(), "k": n_models, "seed": seed,
                                   "size": size}).encode())
    if members is not None:  # an explicit membership (protocol v2's design) instead of drawn subsets
        h.update(b"members")
        h.update(np.packbits(np.asarray(members, bool)).tobytes())
    h.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    h.update(x.contiguous().numpy().tobytes())
    h.update(y.contiguous().numpy().tobytes())
    return h.hexdigest()


def model_seed(seed: int, k: int) -> int:
    return int(np.random.SeedSequence([seed, k, 5]).generate_state(1)[0] % (2**31 - 1))


def _fresh(recipe: Recipe, n_train: int, seed: int) -> Defense:
    cls = DEFENSES.get(recipe.defense)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(config=recipe.params, info=recipe.info, n_train=n_train)


def stacked_trainer(recipe: Recipe, data: ArrayDataset, subsets: list[np.ndarray], seeds: list[int],
                    reference_ids: list[np.ndarray | None] | None = None, device: str = "cpu") -> Any:
    """The stacked trainer (new_stack) over fresh `recipe` models, model k on the records subsets[k] (and, for
    a recipe that needs reference data, reference batches from reference_ids[k]), training on `device`."""
    models, sets = [], []
    for ids, s in zip(subsets, seeds, strict=True):
        m = _fresh(recipe, ids.size, s)
        x, y = data.take(ids)
        m.prepare(x, y)
        models.append(m)
        sets.append((x, y))
    refs = None
    if DEFENSES.get(recipe.defense).needs_reference:
        if reference_ids is None or any(r is None for r in reference_ids):
            raise MiaBenchError(f"defense '{recipe.defense}' needs reference data for each stacked model")
        refs = [data.take(np.asarray(r))[0] for r in reference_ids]
    return new_stack(recipe, models, sets, seeds, refs, device)


def _train_stacked(recipe: Recipe, data: ArrayDataset, subsets: list[np.ndarray], seeds: list[int],
                   reference_ids: list[np.ndarray | None]) -> list[Defense]:
    trainer = stacked_trainer(recipe, data, subsets, seeds, reference_ids)
    return _fit_stack(trainer, recipe, f"{len(subsets)} '{recipe.defense}' models as one stack: rounds")


def _fit_stack(trainer: Any, recipe: Recipe, label: str) -> list[Defense]:
    """trainer.fit over the recipe's budget, with a progress bar over its rounds (warm-up rounds included)."""
    rounds = recipe.trainer.max_steps * trainer.models[0].batches_per_generator_step
    with progress.task(label, total=rounds + trainer.warmup_rounds(rounds)) as bar:
        return trainer.fit(rounds, on_round=bar.advance)


def _train_sequential(recipe: Recipe, data: ArrayDataset, subsets: list[np.ndarray], seeds: list[int],
                      reference_ids: list[np.ndarray | None]) -> list[Defense]:
    from mia_bench.distributed import single_process  # attacks run on rank zero: no new process group
    from mia_bench.runner import fit_defense  # the runner imports the attacks, which import this module

    trainer = replace(single_process(recipe.trainer), progress_bar=False)
    models = []
    with progress.task(f"{len(subsets)} '{recipe.defense}' models, one after another", total=len(subsets)) as bar:
        for ids, s, ref in zip(subsets, seeds, reference_ids, strict=True):
            models.append(fit_defense(defense=recipe.defense, params=recipe.params, trainer=trainer, data=data,
                                      train_ids=ids, seed=s, reference_ids=ref))
            bar.advance()
    return models


def train_bank(*, recipe: Recipe, data: ArrayDataset, ids: np.ndarray, n_models: int, seed: int,
               cache_dir: Path | None, size: int = 0, reference_ids: np.ndarray | None = None,
               stack: bool = True, members: np.ndarray | None = None) -> ShadowBank:
    """Train (or load) K models of `recipe` on subsets of the records `ids` of `data` (see draw_subsets).

    reference_ids: defender reference data for recipes that need it (MP-GAN); by default each model
    uses the bank records it did not train on. stack=False forces one model after another.
    members: (K, len(ids)) bool, who trains on what, instead of draw_subsets (protocol v2's targets).
    """
    ids = np.asarray(ids, dtype=np.int64)
    if members is not None and np.asarray(members).shape != (n_models, ids.size):
        raise MiaBenchError(f"train_bank: members must be ({n_models}, {ids.size}), got {np.asarray(members).shape}")
    digest = bank_digest(recipe, data, ids, n_models, seed, size, members)
    path = None if cache_dir is None else Path(cache_dir) / "shadows" / f"{digest[:32]}.pt"
    if path is not None and path.is_file():
        bank = _load(path, recipe, digest)
        if bank is not None:
            log.info("reusing %d cached '%s' models (%s)", len(bank), recipe.defense, path.name)
            return bank
    members = draw_subsets(ids.size, n_models, size=size, seed=seed) if members is None else np.asarray(members, bool)
    subsets = [ids[row] for row in members]
    seeds = [model_seed(seed, k) for k in range(n_models)]
    # a stack of one too: the stack's loop is ~1.5x faster than Lightning's for a single model
    # (benchmarks/perf/targets_stack.py: the plain-loop and Lightning columns)
    stacked = stack and can_stack(recipe)
    t0 = time.perf_counter()
    refs = _references(recipe, ids, members, reference_ids)
    if stacked:
        log.info("training %d '%s' models as one vectorised stack", n_models, recipe.defense)
        models = _train_stacked(recipe, data, subsets, seeds, refs)
    else:
        if n_models > 1:
            log.warning("training %d '%s' models one after another (%s)", n_models, recipe.defense,
                        "stacking was turned off" if not stack else "this recipe cannot be stacked")
        else:
            log.info("training 1 '%s' model through runner.fit_defense", recipe.defense)
        models = _train_sequential(recipe, data, subsets, seeds, refs)
    bank = ShadowBank(models=models, record_ids=ids, members=members, recipe=recipe, digest=digest,
                      stacked=stacked, seconds=time.perf_counter() - t0, cached=False)
    if path is not None:
        _save(path, bank)
    return bank


def train_together(requests: list[dict], *, label: str = "local models") -> int:
    """Train the single-model banks `requests` (train_bank keyword arguments, n_models=1, every record)
    that share one stackable recipe as one vectorised stack, and cache each under its own digest, so that
    train_bank(**request) then loads it. Protocol v2 uses it for the local and substitute models of T
    targets (one per target, each on that target's release). Requests that are cached already, cannot be
    stacked, or have no cache folder are left for train_bank to train; returns how many were trained."""
    todo: dict[str, list[tuple[dict, str, Path]]] = {}
    for req in requests:
        recipe, data, ids = req["recipe"], req["data"], np.asarray(req["ids"], dtype=np.int64)
        if (req.get("n_models") != 1 or req.get("cache_dir") is None or req.get("size", 0) != EVERY_RECORD
                or not can_stack(recipe)
                or DEFENSES.get(recipe.defense).needs_reference != (req.get("reference_ids") is not None)):
            continue
        digest = bank_digest(recipe, data, ids, 1, req["seed"], req["size"], req.get("members"))
        path = Path(req["cache_dir"]) / "shadows" / f"{digest[:32]}.pt"
        if path.is_file():  # train_bank loads it (and retrains it alone if it turns out stale)
            continue
        todo.setdefault(recipe.digest(), []).append((req, digest, path))
    trained = 0
    for group in todo.values():
        recipe = group[0][0]["recipe"]
        models, sets, seeds, refs = [], [], [], []
        for req, _, _ in group:
            ids = np.asarray(req["ids"], dtype=np.int64)
            s = model_seed(req["seed"], 0)  # the seed train_bank gives a bank's only model
            m = _fresh(recipe, ids.size, s)
            x, y = req["data"].take(ids)
            m.prepare(x, y)
            models.append(m)
            sets.append((x, y))
            seeds.append(s)
            if req.get("reference_ids") is not None:  # MP-GAN, MIMGAN: the request's own reference records
                refs.append(req["data"].take(np.asarray(req["reference_ids"], dtype=np.int64))[0])
        t0 = time.perf_counter()
        trainer = new_stack(recipe, models, sets, seeds, refs or None)
        fitted = _fit_stack(trainer, recipe, f"{len(group)} {label} as one stack: rounds")
        seconds = (time.perf_counter() - t0) / len(group)
        for (req, digest, path), m in zip(group, fitted, strict=True):
            ids = np.asarray(req["ids"], dtype=np.int64)
            _save(path, ShadowBank(models=[m], record_ids=ids, members=np.ones((1, ids.size), bool), recipe=recipe,
                                   digest=digest, stacked=True, seconds=seconds, cached=False))
        trained += len(group)
    return trained


def _references(recipe: Recipe, ids: np.ndarray, members: np.ndarray,
                reference_ids: np.ndarray | None) -> list[np.ndarray | None]:
    if not DEFENSES.get(recipe.defense).needs_reference:
        return [None] * members.shape[0]
    if reference_ids is not None:
        return [np.asarray(reference_ids)] * members.shape[0]
    refs = [ids[~row] for row in members]
    if any(r.size == 0 for r in refs):
        raise MiaBenchError(f"defense '{recipe.defense}' needs reference data for its shadow models, but every "
                            "bank record is a training record; pass reference_ids (attacker data)")
    return refs


def _save(path: Path, bank: ShadowBank) -> None:
    atomic_torch_save(path, {
        "format": FORMAT, "digest": bank.digest, "defense": bank.recipe.defense,
        "params": asdict(bank.recipe.params), "record_ids": torch.tensor(bank.record_ids),
        "members": torch.tensor(bank.members), "stacked": bank.stacked, "seconds": bank.seconds,
        "n_train": [int(m.n_train) for m in bank.models],
        "state_dicts": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in bank.models],
        "extras": [m.checkpoint_extra() for m in bank.models],  # a DP model's accountant, steps and sigma
    })


def _load(path: Path, recipe: Recipe, digest: str) -> ShadowBank | None:
    blob = load_cache(path)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("digest") != digest:
        return None  # foreign or stale: retrain and overwrite
    cls = DEFENSES.get(recipe.defense)
    extras = blob.get("extras")
    if extras is None:
        if cls.checkpoint_extra is not Defense.checkpoint_extra:
            return None  # written before banks kept the models' extras: its privacy report would be lost
        extras = [{} for _ in blob["state_dicts"]]
    models = []
    for n_train, state, extra in zip(blob["n_train"], blob["state_dicts"], extras, strict=True):
        m = cls(config=recipe.params, info=recipe.info, n_train=int(n_train))
        m.load_state_dict(state, strict=True)
        m.load_checkpoint_extra(extra)
        models.append(m.eval())
    return ShadowBank(models=models, record_ids=blob["record_ids"].numpy(), members=blob["members"].numpy(),
                      recipe=recipe, digest=digest, stacked=bool(blob["stacked"]), seconds=float(blob["seconds"]),
                      cached=True)


class RecordTable:
    """Per-record values (V floats each) keyed by dataset record id, cached on disk: statistics computed
    once for some records (a reference model's reconstruction losses, K shadow models' losses) are joined
    to others by id, never by position."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.values = path, {}
        if path is not None and path.is_file():
            blob = load_cache(path)
            if isinstance(blob, dict) and blob.get("format") == FORMAT + "/table":
                self.values = {int(i): v for i, v in zip(blob["ids"].tolist(), blob["values"].numpy(), strict=True)}

    def missing(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask over `ids` of the records without a value yet."""
        return np.array([int(i) not in self.values for i in ids], dtype=bool)

    def add(self, ids: np.ndarray, values: np.ndarray) -> None:
        """values: (len(ids),) or (len(ids), V)."""
        values = np.asarray(values, dtype=np.float64).reshape(len(ids), -1)
        self.values.update({int(i): v for i, v in zip(ids, values, strict=True)})
        if self.path is not None:
            keys = sorted(self.values)
            atomic_torch_save(self.path, {"format": FORMAT + "/table", "ids": torch.tensor(keys, dtype=torch.int64),
                                          "values": torch.from_numpy(np.stack([self.values[k] for k in keys]))})

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), V) float64 values in the order of `ids`; raises if any id is missing."""
        absent = [int(i) for i in ids if int(i) not in self.values]
        if absent:
            raise MiaBenchError(f"no value for record ids {absent[:5]} (of {len(absent)}); compute them first")
        return np.stack([self.values[int(i)] for i in ids])
