"""`mia-bench run --suite <suite> --defense none` works for every shipped suite whose data is present: here
each suite's data is written in its real format (small) and the suite runs on a tiny budget through the CLI."""

import json

import pytest
from fake_data import write_adult, write_binary_npz, write_celeba, write_cifar_batches, write_mnist_like

from mia_bench.cli import main
from mia_bench.config import REPO_ROOT, load_run
from mia_bench.results import find_records

TINY = ["design.targets=4", "design.population=80", "design.canaries=8", "design.holdout=40",
        "design.utility_targets=1", "split.reference=40", "split.attacker_aux=40", "trainer.max_steps=3", "trainer.batch_size=16", "trainer.accelerator=cpu",
        "release.n_samples=60", "utility.n_samples=40", "utility.classifier_epochs=1", "utility.downstream_epochs=1",
        "utility.n_jobs=1", "metrics.bootstrap=10", "defense.g_channels=8", "defense.d_channels=8",
        # every attack family runs, on tiny searches and local models
        "attacks.ganleaks_pbb.steps=2", "attacks.ganleaks_pbb.init_draws=20", "attacks.ganleaks_pbb_cal.steps=2",
        "attacks.ganleaks_pbb_cal.init_draws=20", "attacks.ganleaks_wb.steps=2", "attacks.ganleaks_wb.init_draws=20",
        "attacks.ganleaks_wb_cal.steps=2", "attacks.ganleaks_wb_cal.init_draws=20", "attacks.logan_bb.steps=3",
        "attacks.lira_gen.steps=2", "attacks.lira_gen.init_draws=20", "attacks.ganleaks_pbb.population=4",
        "attacks.ganleaks_pbb_cal.population=4", "attacks.lira_gen.population=4", "attacks.lira_wb.standardise_records=16",
        "attacks.overrep.steps=3", "attacks.overrep.n_nonmember=40", "attacks.monte_carlo.n_components=4",
        "attacks.domias.n_components=4"]
IMAGE = {"fid_classifier", "downstream_accuracy"}
SUITES = {
    "mnist": (lambda root: write_mnist_like(root / "mnist", n_train=200, n_test=40), IMAGE),
    "fashion_mnist": (lambda root: write_mnist_like(root / "fashion_mnist", n_train=200, n_test=40), IMAGE),
    "cifar10": (lambda root: write_cifar_batches(root / "cifar10" / "cifar-10-batches-py", per_batch=40), IMAGE),
    "celeba64": (lambda root: write_celeba(root / "celeba", n=240), IMAGE),
    "medical_binary": (lambda root: write_binary_npz(root / "binary_table" / "data.npz"), {"dwp_mae", "dwpre_mae"}),
    "adult": (lambda root: write_adult(root / "adult", n_train=200, n_test=60), {"downstream_accuracy"}),
}


def test_every_shipped_suite_is_covered():
    shipped = {p.stem for p in (REPO_ROOT / "benchmarks").glob("*.yaml")}
    assert shipped - {"digits", "digits_v1"} == set(SUITES)
    for suite in shipped:
        load_run(suite=suite, defense="none")  # every suite parses against the schema


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_suite_runs_on_its_real_format(suite, tmp_path, capsys):
    write, expected = SUITES[suite]
    write(tmp_path / "data")
    results = tmp_path / "results"
    argv = ["run", "--suite", suite, "--defense", "none", "--results-dir", str(results), "--no-progress",
            f"dataset.root={tmp_path / 'data'}", *TINY]
    assert main(argv) == 0, capsys.readouterr().err
    (path,) = find_records(results)  # a run with overrides: results/<suite>/none/ovr-<digest>/seed0/
    record = json.loads(path.read_text())
    assert set(record["utility"]["metrics"]) == expected
    assert record["utility"]["main"] in expected
    assert record["suite_version"] == 2 and record["design"]["targets"] == 4
    families = {name.split("_")[0] for name in record["attacks"]}
    assert families == {"ganleaks", "logan", "lira", "overrep", "monte", "domias"}
    if "dwp_mae" in expected:
        assert (path.parent / "dwpre.png").is_file()
