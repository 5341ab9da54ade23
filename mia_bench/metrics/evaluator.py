"""The utility evaluator: one classifier per (dataset, split), trained on real data nobody is scored on.

Which real data: every record outside `members` and `non_members` (the reference, attacker and shadow
roles, and records no role uses), at most `utility.classifier_max_train` of them. Members are left out so
the evaluator has no more affinity for a defense's training set than for anything else (a classifier fit on
members would make memorised releases look better); the scored non-members are left out because they
are the real test set of every utility number (FID reference set, downstream test set). The evaluator
itself is part of the measurement, not of any attack, so sharing the attacker's roles leaks nothing.

The classifier is cached per dataset, split digest and recipe: in memory for the process and as a
weights-only file under `<results>/<suite>/_cache/utility/`, so each grid cell trains it at most once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mia_bench.data import ArrayDataset, MembershipSplit
from mia_bench.guards import load_cache
from mia_bench.io import atomic_torch_save, safe_torch_load
from mia_bench.nets.classifier import (
    FeatureClassifier,
    TrainRecipe,
    accuracy,
    fit_classifier,
    seeded_classifier,
)

FORMAT = "mia_bench.evaluator/1"
_MEMORY: dict[str, Evaluator] = {}


@dataclass
class Evaluator:
    net: FeatureClassifier  # frozen, eval mode
    test_accuracy: float  # on the non-members
    n_train: int
    key: str
    path: Path | None  # where the weights are cached (the file torch-fidelity's extractor loads)

    def describe(self) -> dict:
        return {"arch": self.net.arch, "num_features": self.net.num_features, "n_train": self.n_train,
                "test_accuracy": round(self.test_accuracy, 6), "trained_on": "records outside members and non-members",
                "key": self.key[:16]}


def evaluator_ids(split: MembershipSplit, n_records: int, cap: int, seed: int) -> np.ndarray:
    """Sorted ids of every record outside members and non-members, subsampled to `cap` (seeded)."""
    scored = np.union1d(split.members, split.non_members)
    ids = np.setdiff1d(np.arange(n_records), scored)
    if cap and ids.size > cap:
        ids = np.sort(np.random.default_rng([seed, 7]).choice(ids, size=cap, replace=False))
    return ids


def _key(data: ArrayDataset, ids: np.ndarray, recipe: TrainRecipe, seed: int) -> str:
    h = hashlib.sha256(json.dumps({"format": FORMAT, "info": data.info.to_dict(), "n": len(data), "seed": seed,
                                   "recipe": asdict(recipe)}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    return h.hexdigest()


def _load(path: Path, key: str) -> Evaluator | None:
    blob = load_cache(path)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("key") != key:
        return None
    net = FeatureClassifier(shape=blob["shape"], n_classes=blob["n_classes"], num_features=blob["num_features"])
    net.load_state_dict(blob["state_dict"])
    return Evaluator(net=net.eval(), test_accuracy=float(blob["test_accuracy"]), n_train=int(blob["n_train"]),
                     key=key, path=path)


def save_evaluator(path: Path, ev: Evaluator) -> None:
    net = ev.net
    atomic_torch_save(path, {"format": FORMAT, "key": ev.key, "shape": list(net.shape), "n_classes": net.n_classes,
                             "num_features": net.num_features, "test_accuracy": ev.test_accuracy,
                             "n_train": ev.n_train,
                             "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}})


def load_feature_network(path: Path) -> FeatureClassifier:
    """The FeatureClassifier stored in an evaluator file (for torch-fidelity's extractor)."""
    blob = safe_torch_load(path)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    net = FeatureClassifier(shape=blob["shape"], n_classes=blob["n_classes"], num_features=blob["num_features"])
    net.load_state_dict(blob["state_dict"])
    return net.eval()


def get_evaluator(data: ArrayDataset, split: MembershipSplit, *, recipe: TrainRecipe, cap: int,
                  cache_dir: Path | None, device: str = "cpu") -> Evaluator:
    """The evaluator classifier for this dataset and split: from memory, from disk, or trained now."""
    ids = evaluator_ids(split, len(data), cap, split.seed)
    key = _key(data, ids, recipe, split.seed)
    if key in _MEMORY:
        return _MEMORY[key]
    path = Path(cache_dir) / "utility" / f"evaluator-{data.info.name}-{key[:16]}.pt" if cache_dir else None
    ev = _load(path, key) if path else None
    if ev is None:
        x, y = data.take(ids)
        net = seeded_classifier(shape=data.info.shape, n_classes=data.info.n_classes, seed=split.seed)
        fit_classifier(net, x, y, recipe=recipe, seed=split.seed, device=device)
        net.cpu()
        xt, yt = data.take(split.non_members)
        ev = Evaluator(net=net, test_accuracy=accuracy(net, xt, yt), n_train=int(ids.size), key=key, path=path)
        if path:
            save_evaluator(path, ev)
    for p in ev.net.parameters():
        p.requires_grad_(False)
    _MEMORY[key] = ev
    return ev
