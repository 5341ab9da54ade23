"""Utility: what a defense costs (ALGORITHMS.md section 4), and the runner's utility stage.

Which real data (the honest choices, documented in every record's `details`):
  - real set: the scored non-members. They are held out from the target, its reference set, the attacker
    and the evaluator, and come from the members' distribution, so they are the fair stand-in for "real
    data" in FID/DWP and the real test set of downstream accuracy and DWpre.
  - evaluator: a FeatureClassifier trained on records outside members and non-members
    (metrics/evaluator.py); it supplies classifier-FID features, labels for unconditional releases, and a
    real-data reference accuracy.
  - sizes: FID and DWP compare the first `n` non-members with the first `n` released records, `n` fixed by
    the suite (utility.n_samples, default min of both counts), so every defense of a suite is scored on
    equal-size sets.

Metrics (`record.utility["metrics"]`, flat floats; directions in `higher_is_better`):
  fid_classifier       FID (torchmetrics FrechetInceptionDistance) on the evaluator's penultimate features
  fid_inception        FID on Inception-v3 pool3 through torch-fidelity (GPU machines, metrics/fidelity.py)
  downstream_accuracy  the fixed classifier recipe trained on all released samples, accuracy on the
                       non-members; labels are the released ones, or the evaluator's ("classifier"-
                       labelled, flagged in details) for unconditional releases
  dwp_mae, dwpre_mae   binary tables (metrics/dwp.py), with scatter PNGs next to the record
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from mia_bench.data import ArrayDataset, MembershipSplit
from mia_bench.data.datasets import DataKind
from mia_bench.errors import ConfigError, MiaBenchError
from mia_bench.metrics.base import METRICS, register_metric
from mia_bench.metrics.dwp import dimension_wise_prediction, dimension_wise_probability
from mia_bench.metrics.evaluator import Evaluator, evaluator_ids, get_evaluator
from mia_bench.metrics.fidelity import fidelity_missing, inception_fid
from mia_bench.nets.classifier import TrainRecipe, accuracy, fit_classifier, predict, seeded_classifier
from mia_bench.report.plots import scatter_png

if TYPE_CHECKING:
    from mia_bench.config import UtilityConfig
    from mia_bench.defenses.base import Released

INCEPTION_MIN_SIDE = 28  # "auto" never upsamples 8x8 digits to 299 px (meaningless, ALGORITHMS 4.2)


@register_metric("fid_classifier", higher_is_better=False, kind="utility",
                 description="FID on the features of a classifier trained on real data (cFID; never 'FID')")
@torch.no_grad()
def classifier_fid(real: torch.Tensor, fake: torch.Tensor, *, extractor: nn.Module, batch_size: int = 512) -> float:
    """FID between real (N, *shape) and fake (M, *shape) records on `extractor` features (B, F); lower is better.

    torchmetrics accumulates feature sums in float64 and takes the matrix square root through the
    eigenvalues of Sigma_r Sigma_g."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    device = next(extractor.parameters()).device
    metric = FrechetInceptionDistance(feature=extractor, normalize=True).to(device)  # normalize: float inputs
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, images.shape[0], batch_size):
            metric.update(images[i:i + batch_size].to(device), real=is_real)
    return float(metric.compute())


@register_metric("downstream_accuracy", higher_is_better=True, kind="utility",
                 description="train-on-released, test-on-real accuracy of a fixed classifier recipe")
def downstream_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
                        n_classes: int, recipe: TrainRecipe, seed: int, device: str = "cpu") -> float:
    """Accuracy on (test_x, test_y) of a FeatureClassifier trained on (train_x, train_y) with `recipe`."""
    net = seeded_classifier(shape=train_x.shape[1:], n_classes=n_classes, seed=seed)
    fit_classifier(net, train_x, train_y, recipe=recipe, seed=seed, device=device)
    return accuracy(net.cpu(), test_x, test_y)


def sample_count(requested: int, split: MembershipSplit, released: Released) -> int:
    available = min(split.non_members.size, released.x.shape[0])
    if requested > available:
        raise ConfigError(f"utility.n_samples={requested} exceeds the {split.non_members.size} non-members or the "
                          f"{released.x.shape[0]} released samples; lower it or raise split.non_members / release.n_samples")
    return requested or available


def _device(choice: str) -> str:
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice not in ("cpu", "cuda"):
        raise ConfigError(f"utility.device must be auto, cpu or cuda, got {choice!r}")
    return choice


def _inception(u: UtilityConfig, real: torch.Tensor, fake: torch.Tensor, device: str) -> tuple[float | None, dict]:
    mode = u.fid_inception
    if mode not in ("auto", "on", "off"):
        raise ConfigError(f"utility.fid_inception must be auto, on or off, got {mode!r}")
    if mode == "off":
        return None, {"skipped": "utility.fid_inception=off"}
    if mode == "auto" and min(real.shape[2:]) < INCEPTION_MIN_SIDE:
        return None, {"skipped": f"images smaller than {INCEPTION_MIN_SIDE} px"}
    missing = fidelity_missing()
    if mode == "auto" and missing:
        return None, {"skipped": missing}
    try:
        value = inception_fid(real, fake, weights=u.inception_weights, device=device)
    except MiaBenchError as e:
        if mode == "on":
            raise
        return None, {"skipped": str(e)}
    return value, {"features": "Inception-v3 pool3 (2048-d), torch-fidelity TF-FID weights",
                   "implementation": "torchmetrics FrechetInceptionDistance"}


def _image_metrics(u: UtilityConfig, ev: Evaluator, real: torch.Tensor, fake: torch.Tensor, device: str,
                   metrics: dict, details: dict) -> None:
    metrics["fid_classifier"] = classifier_fid(real, fake, extractor=ev.net.to(device))
    ev.net.cpu()
    details["fid_classifier"] = {"features": f"evaluator {ev.net.arch} penultimate ReLU ({ev.net.num_features}-d)",
                                 "implementation": "torchmetrics FrechetInceptionDistance",
                                 "underpowered": bool(real.shape[0] < 2 * ev.net.num_features)}
    value, info = _inception(u, real, fake, device)
    if value is not None:
        metrics["fid_inception"] = value
    details["fid_inception"] = info


def _binary_metrics(data: ArrayDataset, split: MembershipSplit, real: torch.Tensor, fake: torch.Tensor, n: int,
                    n_jobs: int, out_dir: Path | None, metrics: dict, details: dict) -> None:
    to01 = lambda t: (t.flatten(1) > 0).numpy().astype(np.int8)  # noqa: E731 - [-1, 1] -> 0/1 at p = 0.5
    dwp = dimension_wise_probability(to01(real), to01(fake))
    metrics["dwp_mae"] = dwp["mae"]
    details["dwp"] = {"r": dwp["r"], "real": "non_members", "dims": int(dwp["p_real"].size)}
    if out_dir is not None:
        details["dwp"]["plot"] = scatter_png(out_dir / "dwp.png", dwp["p_real"], dwp["p_syn"], title="DWP",
                                             xlabel="real Pr(x_k = 1)", ylabel="released Pr(x_k = 1)").name
    pool = evaluator_ids(split, len(data), 0, split.seed)
    if pool.size == 0:
        details["dwpre"] = {"skipped": "no real records outside members and non-members to train on"}
        return
    train_ids = np.random.default_rng([split.seed, 11]).permutation(pool)[:n]
    test = data.take(split.non_members)[0]
    dwpre = dimension_wise_prediction(to01(data.take(train_ids)[0]), to01(fake), to01(test), n_jobs=n_jobs)
    if dwpre["mae"] is not None:
        metrics["dwpre_mae"] = dwpre["mae"]
    details["dwpre"] = {"r": dwpre["r"], "skipped_dims": dwpre["skipped"], "real_train": "records outside members "
                        "and non-members", "test": "non_members", "n_train": int(train_ids.size)}
    if out_dir is not None:
        details["dwpre"]["plot"] = scatter_png(out_dir / "dwpre.png", dwpre["f1_real"], dwpre["f1_syn"], title="DWpre",
                                               xlabel="F1, trained on real", ylabel="F1, trained on released").name


def _downstream(u: UtilityConfig, data: ArrayDataset, split: MembershipSplit, released: Released, ev: Evaluator | None,
                seed: int, device: str, metrics: dict, details: dict) -> None:
    labels, source = released.y, "released"
    if labels is None:
        assert ev is not None
        labels, source = predict(ev.net, released.x), "classifier"
    test_x, test_y = data.take(split.non_members)
    recipe = TrainRecipe(epochs=u.downstream_epochs)
    metrics["downstream_accuracy"] = downstream_accuracy(released.x, labels, test_x, test_y,
                                                         n_classes=data.info.n_classes, recipe=recipe,
                                                         seed=seed, device=device)
    details["downstream"] = {"labels": source, "n_train": int(released.x.shape[0]), "test": "non_members",
                             "n_test": int(test_x.shape[0]), "recipe": f"FeatureClassifier, Adam 1e-3, "
                             f"{recipe.epochs} epochs, batch {recipe.batch_size}"}


def _main(choice: str, info: Any, metrics: dict) -> str | None:
    if choice != "auto":
        if choice not in METRICS or METRICS.get(choice).kind != "utility":
            raise ConfigError(f"utility.main={choice!r} is not a utility metric")
        return choice
    order = ("fid_classifier",) if info.kind is DataKind.IMAGE else ("dwpre_mae", "dwp_mae", "downstream_accuracy")
    return next((m for m in order + ("downstream_accuracy",) if m in metrics), None)


def evaluate_utility(u: UtilityConfig, released: Released, data: ArrayDataset, split: MembershipSplit, *, seed: int,
                     cache_dir: Path | None, out_dir: Path | None = None) -> dict[str, Any]:
    """The runner's utility stage (`u` is the suite's UtilityConfig); returns the record's `utility` dict."""
    if not u.enabled:
        return {}
    t = time.perf_counter()
    n, device, info = sample_count(u.n_samples, split, released), _device(u.device), data.info
    real = data.take(split.non_members[:n])[0]
    fake = released.x[:n]
    metrics: dict[str, float] = {}
    details: dict[str, Any] = {"n_real": n, "n_released": n, "real_set": "non_members"}
    needs_evaluator = info.n_classes >= 2 and (info.kind is DataKind.IMAGE or released.y is None)
    ev = None
    if info.kind is DataKind.IMAGE and info.n_classes < 2:
        details["fid_classifier"] = {"skipped": "the dataset has no labels to train the evaluator classifier on"}
    if needs_evaluator:
        ev = get_evaluator(data, split, recipe=TrainRecipe(epochs=u.classifier_epochs), cap=u.classifier_max_train,
                           cache_dir=cache_dir, device=device)
        details["evaluator"] = ev.describe()
    if info.kind is DataKind.IMAGE and ev is not None:
        _image_metrics(u, ev, real, fake, device, metrics, details)
    if info.binary:
        _binary_metrics(data, split, real, fake, n, u.n_jobs, out_dir, metrics, details)
    if info.n_classes >= 2:
        _downstream(u, data, split, released, ev, seed, device, metrics, details)
    return {"main": _main(u.main, info, metrics), "metrics": {k: float(v) for k, v in metrics.items()},
            "higher_is_better": {k: METRICS.get(k).higher_is_better for k in metrics}, "details": details,
            "seconds": round(time.perf_counter() - t, 3)}
