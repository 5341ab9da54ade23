"""`mia-bench audit-release --recipe module:callable --shadows K`: shadow-model attacks with the user's own
training recipe. A recipe that memorizes its training array must be caught (members score higher than
non-members), one that ignores its data must look like chance, and a bad recipe is refused (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mia_bench.results import RunRecord

ROOT = Path(__file__).resolve().parents[1]

RECIPES = '''
import numpy as np


class Copier:
    """Releases noisy copies of its training records: it memorizes them."""

    def __init__(self, x, seed):
        self.x, self.rng = np.asarray(x, float), np.random.default_rng(seed)

    def sample(self, n):
        pick = self.x[self.rng.integers(0, len(self.x), n)]
        return np.clip(pick + self.rng.normal(0, 8, pick.shape), 0, 255)

    def discriminate(self, x):  # higher = closer to a training record
        x = np.asarray(x, float).reshape(len(x), -1)
        d = ((x[:, None, :] - self.x.reshape(1, len(self.x), -1)) ** 2).sum(-1)
        return -np.sqrt(d.min(1))


class Ignorer:
    """Releases records that do not depend on its training data at all."""

    def __init__(self, seed):
        self.base = np.random.default_rng(123).uniform(0, 255, (50, 1, 8, 8))
        self.rng = np.random.default_rng(seed)

    def sample(self, n):
        pick = self.base[self.rng.integers(0, len(self.base), n)]
        return np.clip(pick + self.rng.normal(0, 20, pick.shape), 0, 255)


def copier(x, y=None, seed=0):
    return Copier(x, seed)


def ignorer(x, y=None, seed=0):
    return Ignorer(seed)


class LatentCopier(Copier):
    """The memorizer with a latent interface: generate(z) picks a training record from z, plus noise."""

    z_dim = 8

    def generate(self, z):
        import torch

        idx = (z[:, 0].abs() * 1e4).long() % len(self.x)
        base = torch.as_tensor(self.x, dtype=torch.float32)[idx]
        return (base + 8 * z[:, 1:2, None, None]).clamp(0, 255)


def latent_copier(x, y=None, seed=0):
    return LatentCopier(x, seed)


def released_generator():  # --generator: the user's model, trained by their recipe on train.npz
    from pathlib import Path

    return LatentCopier(np.load(Path(__file__).parent / "train.npz")["x"], 1)


def wrong_return(x, y=None, seed=0):
    return 42


def no_args():
    return Copier(np.zeros((1, 1, 8, 8)), 0)


def crashes(x, y=None):
    raise RuntimeError("out of memory")
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipe")
    (tmp / "user_recipes.py").write_text(textwrap.dedent(RECIPES))
    sys.path.insert(0, str(tmp))
    import user_recipes  # the user's module, as the audit will import it

    sys.path.remove(str(tmp))
    pixels = np.round(load_digits().images / 16 * 255).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    order = np.random.default_rng(0).permutation(len(pixels))
    train, hold = pixels[order[:300]], pixels[order[300:700]]
    np.savez(tmp / "train.npz", x=train)
    np.savez(tmp / "holdout.npz", x=hold)
    for name in ("copier", "ignorer"):  # the user's release: their recipe trained on --train
        np.savez(tmp / f"{name}.npz", x=getattr(user_recipes, name)(train.astype(float), None, seed=1).sample(1200))
    return tmp


def _cli(setup: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{setup}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mia_bench", "audit-release", "--no-progress",
                           "--train", str(setup / "train.npz"), "--holdout", str(setup / "holdout.npz"), *args],
                          env=env, capture_output=True, text=True, timeout=300)


def _auc(record: RunRecord, name: str) -> float:
    return record.attacks[name]["metrics"]["auc"]["value"]


def test_memorizing_recipe_is_caught_by_the_shadow_attacks(setup, tmp_path):
    r = _cli(setup, "--synthetic", str(setup / "copier.npz"), "--recipe", "user_recipes:copier", "--shadows", "4",
             "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr + r.stdout
    record = RunRecord.read(tmp_path / "a" / "record.json")
    for name in ("lira_fbb", "lira_fbb_offline", "ganleaks_fbb_cal", "logan_bb"):
        assert _auc(record, name) >= 0.9, (name, _auc(record, name))
    details = record.attacks["lira_fbb"]["details"]["shadows"]
    assert details["models"] == 4 and details["in_per_record"] == 2  # every record IN for half the shadows
    assert details["records_per_shadow"] == 250  # on average half of the 300 + 200 scored records
    assert "lira_gen" in record.diagnostics["skipped_attacks"]  # no --generator given
    assert record.diagnostics["recipe"]["spec"] == "user_recipes:copier"
    scores = np.load(tmp_path / "a" / "scores.npz")
    assert scores["score/lira_fbb"].shape == (500,)


def test_generator_access_unlocks_lira_on_the_reconstruction_loss(setup, tmp_path):
    r = _cli(setup, "--generator", "user_recipes:released_generator", "--recipe", "user_recipes:latent_copier",
             "--shadows", "4", "--out", str(tmp_path / "g"))
    assert r.returncode == 0, r.stderr + r.stdout
    record = RunRecord.read(tmp_path / "g" / "record.json")
    for name in ("lira_gen", "lira_gen_offline", "ganleaks_pbb_cal"):
        assert _auc(record, name) >= 0.9, (name, _auc(record, name))
    assert "--discriminator" in record.diagnostics["skipped_attacks"]["lira_wb"]


def test_recipe_that_ignores_its_data_looks_like_chance(setup, tmp_path):
    r = _cli(setup, "--synthetic", str(setup / "ignorer.npz"), "--recipe", "user_recipes:ignorer", "--shadows", "4",
             "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr + r.stdout
    record = RunRecord.read(tmp_path / "b" / "record.json")
    for name in ("lira_fbb", "lira_fbb_offline", "ganleaks_fbb_cal"):
        lo, hi = record.attacks[name]["metrics"]["auc"]["ci"]
        assert lo <= 0.5 <= hi, (name, lo, hi)  # no signal: chance inside the interval
    assert "discriminate" in record.diagnostics["skipped_attacks"]["logan_bb"]


@pytest.mark.parametrize(("spec", "shadows", "expect"), [
    ("no_such_module:copier", "4", "cannot import module 'no_such_module'"),
    ("user_recipes:nothing", "4", "has no callable 'nothing'"),
    ("user_recipes:no_args", "4", "cannot be called as recipe(x, y)"),
    ("user_recipes:wrong_return", "4", "returned int, which has no sample(n)"),
    ("user_recipes:crashes", "4", "raised RuntimeError: out of memory"),
    ("user_recipes:copier", "2", "at least 4 shadow models"),
])
def test_bad_recipe_is_refused_with_the_fix_and_nothing_written(setup, tmp_path, spec, shadows, expect, cli,
                                                                  monkeypatch):
    out = tmp_path / "out"
    monkeypatch.syspath_prepend(str(setup))  # the user's module, importable as under the subprocess's PYTHONPATH
    r = cli("audit-release", "--no-progress", "--train", str(setup / "train.npz"), "--holdout",
            str(setup / "holdout.npz"), "--synthetic", str(setup / "copier.npz"), "--recipe", spec,
            "--shadows", shadows, "--out", str(out))
    assert r.returncode == 2 and expect in " ".join(r.stderr.split()), r.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))
