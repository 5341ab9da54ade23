"""Utility metrics: classifier FID (torchmetrics) against a direct float64/scipy computation, DWP/DWpre on
hand-made tables, the evaluator's data and cache, downstream accuracy, records and the leaderboard."""

import copy
import json
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from conftest import quick
from mia_bench.data import MembershipSplit, SplitConfig
from mia_bench.defenses.base import Released
from mia_bench.errors import ConfigError
from mia_bench.leaderboard import render, write_tradeoff_plot
from mia_bench.metrics import evaluator as evaluator_module
from mia_bench.metrics.dwp import dimension_wise_prediction, dimension_wise_probability
from mia_bench.metrics.evaluator import evaluator_ids, get_evaluator
from mia_bench.metrics.utility import classifier_fid, downstream_accuracy, sample_count
from mia_bench.nets.classifier import TrainRecipe, seeded_classifier
from mia_bench.runner import run


@pytest.fixture(scope="module")
def extractor():
    return seeded_classifier(shape=(1, 8, 8), n_classes=10, seed=0).eval()


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """ALGORITHMS 4.2 by hand: float64, scipy.linalg.sqrtm, real part."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # dead ReLU units make the product singular; the eps rule handles it
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            eps = 1e-6 * np.eye(s1.shape[0])
            covmean = scipy.linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(digits, extractor):
    x = digits.x[:600]
    assert abs(classifier_fid(x, x, extractor=extractor)) < 1e-3
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    fids = [classifier_fid(x, (x + s * noise).clamp(-1, 1), extractor=extractor) for s in (0.05, 0.3, 1.0)]
    assert 0 < fids[0] < fids[1] < fids[2]


def test_fid_matches_a_direct_scipy_computation(digits, extractor):
    real, fake = digits.x[:500], digits.x[500:900].flip(-1)
    with torch.no_grad():
        expected = reference_fid(extractor(real).numpy(), extractor(fake).numpy())
    assert classifier_fid(real, fake, extractor=extractor, batch_size=128) == pytest.approx(expected, rel=1e-4)


def test_dwp_on_a_hand_made_table():
    real = np.array([[1, 0, 1], [1, 0, 0], [1, 1, 0], [1, 0, 0]])
    syn = np.array([[1, 0, 0], [0, 0, 0]])
    out = dimension_wise_probability(real, syn)
    assert out["p_real"].tolist() == [1, 0.25, 0.25] and out["p_syn"].tolist() == [0.5, 0, 0]
    assert out["mae"] == pytest.approx(1 / 3) and out["r"] == pytest.approx(1.0)
    assert dimension_wise_probability(real, real)["mae"] == 0
    with pytest.raises(ValueError, match="0/1"):
        dimension_wise_probability(real * 2, syn)


def test_dwpre_on_a_hand_made_table():
    """Code 1 copies code 0 in the real data and negates it in the synthetic data: F1 1 vs 0 on both codes.
    Code 2 is constant in the synthetic training set and code 3 never fires in the test set: skipped."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200)
    noise = rng.integers(0, 2, 200)
    real = np.stack([a, a, noise, rng.integers(0, 2, 200)], axis=1)
    syn = np.stack([a, 1 - a, np.zeros(200, int), rng.integers(0, 2, 200)], axis=1)
    test = real.copy()
    test[:, 3] = 0
    out = dimension_wise_prediction(real, syn, test)
    assert out["dims"].tolist() == [0, 1] and out["skipped"] == 2
    assert out["f1_real"].tolist() == [1.0, 1.0] and out["f1_syn"].tolist() == [0.0, 0.0]
    assert out["mae"] == 1.0 and out["r"] is None  # Pearson r is undefined on constant vectors


def test_evaluator_uses_neither_members_nor_non_members_and_is_cached(digits, tmp_path, monkeypatch):
    split = MembershipSplit.make(n_records=len(digits), sizes=SplitConfig(), seed=4)
    ids = evaluator_ids(split, len(digits), 0, split.seed)
    assert ids.size == 1197 and not np.intersect1d(ids, np.r_[split.members, split.non_members]).size
    assert evaluator_ids(split, len(digits), 100, 4).size == 100
    monkeypatch.setattr(evaluator_module, "_MEMORY", {})
    recipe = TrainRecipe(epochs=5)
    ev = get_evaluator(digits, split, recipe=recipe, cap=0, cache_dir=tmp_path)
    assert ev.test_accuracy > 0.8 and ev.path.is_file() and ev.net.num_features == 64
    assert get_evaluator(digits, split, recipe=recipe, cap=0, cache_dir=tmp_path) is ev  # memory
    monkeypatch.setattr(evaluator_module, "_MEMORY", {})
    again = get_evaluator(digits, split, recipe=recipe, cap=0, cache_dir=tmp_path)  # disk
    assert again is not ev and again.test_accuracy == ev.test_accuracy
    for (k, v), (_, w) in zip(ev.net.state_dict().items(), again.net.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


def test_downstream_accuracy_needs_the_right_labels(digits):
    x, y = digits.x[:400], digits.y[:400]
    tx, ty = digits.x[1000:1300], digits.y[1000:1300]
    recipe = TrainRecipe(epochs=15)
    good = downstream_accuracy(x, y, tx, ty, n_classes=10, recipe=recipe, seed=0)
    shuffled = downstream_accuracy(x, y[torch.randperm(400, generator=torch.Generator().manual_seed(0))], tx, ty,
                                   n_classes=10, recipe=recipe, seed=0)
    assert good > 0.85 and shuffled < 0.3


def test_sample_count_is_fixed_and_checked():
    split = MembershipSplit.make(n_records=1797, sizes=SplitConfig(), seed=0)
    released = Released(x=torch.zeros(500, 1, 8, 8), y=None)
    assert sample_count(0, split, released) == 300 and sample_count(128, split, released) == 128
    with pytest.raises(ConfigError, match="utility.n_samples"):
        sample_count(400, split, released)


@pytest.fixture(scope="module")
def digits_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("utility")
    extra = ("trainer.max_steps=20", "utility.classifier_epochs=5", "utility.downstream_epochs=5")
    return {d: run(quick(d, *extra), 0, results_dir=out) for d in ("none", "memorizer")}


def test_digits_records_carry_classifier_fid_and_downstream_accuracy(digits_records):
    for rec in digits_records.values():
        u = rec.utility
        assert u["main"] == "fid_classifier" and set(u["metrics"]) == {"fid_classifier", "downstream_accuracy"}
        assert u["higher_is_better"] == {"fid_classifier": False, "downstream_accuracy": True}
        assert u["details"]["n_real"] == u["details"]["n_released"] == 300
        assert u["details"]["evaluator"]["test_accuracy"] > 0.8
        assert "fid_inception" not in u["metrics"] and "skipped" in u["details"]["fid_inception"]
        assert "utility" in rec.timings
    none, memorizer = digits_records["none"].utility, digits_records["memorizer"].utility
    assert none["details"]["downstream"]["labels"] == "classifier"  # unconditional: evaluator-labelled
    assert memorizer["details"]["downstream"]["labels"] == "released"
    assert memorizer["metrics"]["fid_classifier"] < none["metrics"]["fid_classifier"]  # copies of real digits


def _entry(defense, fids, tprs, labels=(), labelled="released"):
    seeds = {}
    for i, (fid, tpr) in enumerate(zip(fids, tprs, strict=True)):
        utility = {"main": "fid_classifier", "metrics": {"fid_classifier": fid, "downstream_accuracy": 0.9},
                   "higher_is_better": {"fid_classifier": False, "downstream_accuracy": True},
                   "details": {"evaluator": {"test_accuracy": 0.97}, "downstream": {"labels": labelled}}}
        seeds[str(i)] = {"attacks": {"a": {"auc": 0.6, "tpr@1%fpr": tpr, "underpowered": []}}, "utility": utility,
                         "privacy_guarantee": {}, "n_members": 10, "n_non_members": 10, "split_digest": "x",
                         "git": "abc", "created_at": "t"}
    return {"schema": "mia_bench.entry/1", "suite": "s", "suite_version": 1, "defense": defense,
            "config_digest": "d", "labels": list(labels), "seeds": seeds,
            "attacks": {"a": {"access": "samples", "variant": "v"}},
            "environment": {"python": "3.11", "device": "cpu", "cpu_count": 2, "packages": {}}}


def test_leaderboard_shows_utility_and_links_a_deterministic_plot(tmp_path):
    entries = [_entry("none", [10.0, 12.0], [0.2, 0.3], labelled="classifier"),
               _entry("memorizer", [1.0, 1.0], [1.0, 1.0], labels=["control"])]
    text = render(entries)
    assert text == render(list(reversed(copy.deepcopy(entries))))
    assert "fid_classifier ↓ | downstream_accuracy ↑" in text
    assert "| 11.00 ± 12.71 | 0.900 ± 0.000 † |" in text and "| 1.00 ± 0.00 | 0.900 ± 0.000 |" in text
    assert "(privacy_utility_s_v1.png)" in text and "test accuracy: 0.970" in text
    first = write_tradeoff_plot(entries, tmp_path / "a")
    second = write_tradeoff_plot(list(reversed(entries)), tmp_path / "b")
    assert first.name == "privacy_utility_s_v1.png" and first.read_bytes() == second.read_bytes()
    assert json.dumps(entries)  # entries stay plain JSON


def test_dwp_plots_are_written_for_binary_tables(tmp_path):
    from mia_bench.report.plots import scatter_png

    path = scatter_png(tmp_path / "dwp.png", np.array([0.1, 0.5]), np.array([0.2, 0.4]), title="DWP", xlabel="r",
                       ylabel="s")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.gpu
def test_registered_extractor_works_through_torch_fidelity(digits, tmp_path, monkeypatch):
    """On a CUDA machine with the inception extra: torch-fidelity's own API, our features, the same FID."""
    torch_fidelity = pytest.importorskip("torch_fidelity")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from mia_bench.metrics.fidelity import fidelity_dataset, register_extractor, to_uint8_rgb

    monkeypatch.setattr(evaluator_module, "_MEMORY", {})
    split = MembershipSplit.make(n_records=len(digits), sizes=SplitConfig(), seed=0)
    ev = get_evaluator(digits, split, recipe=TrainRecipe(epochs=5), cap=0, cache_dir=tmp_path)
    real, fake = digits.x[:600], digits.x[600:1200].flip(-1)
    name = register_extractor()
    assert register_extractor() == name  # idempotent
    out = torch_fidelity.calculate_metrics(
        input1=fidelity_dataset(real), input2=fidelity_dataset(fake), feature_extractor=name,
        feature_extractor_weights_path=str(ev.path), fid=True, kid=True, feature_layer_fid="features",
        feature_layer_kid="features", kid_subset_size=200, cuda=True, verbose=False, cache=False, save_cpu_ram=True)
    # torchmetrics on the same uint8-quantised images and the same network
    quant = [to_uint8_rgb(t)[:, :1].float() / 127.5 - 1 for t in (real, fake)]
    expected = classifier_fid(quant[0], quant[1], extractor=ev.net)
    assert out["frechet_inception_distance"] == pytest.approx(expected, rel=1e-3)
    assert out["kernel_inception_distance_mean"] > 0
