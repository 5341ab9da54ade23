"""Attacks against the controls, and access levels enforced by the view."""

import copy
import dataclasses

import pytest
import torch

from conftest import QUICK, only_attacks, quick
from mia_bench.attacks import ATTACKS, AccessLevel, make_view
from mia_bench.audit import CONTROLS, MISSING, check_controls
from mia_bench.cli import main
from mia_bench.config import load_run
from mia_bench.data import MembershipSplit
from mia_bench.errors import AccessError
from mia_bench.results import RunRecord
from mia_bench.runner import run, train_defense

# Registered attacks the digits suite leaves out, switched on with quick budgets: every attack meets the controls.
LEFT_OUT = ["attacks.lira_wb_adaptive.n_shadows=4", "attacks.lira_gen_offline.n_shadows=4",
            "attacks.lira_gen_offline.steps=3", "attacks.lira_gen_offline.init_draws=300"]
# The latent searches meet the memorizer at the digits suite's shipped search settings (lira_gen_offline at
# lira_gen's): whether a search finds the members depends on its budget. Everything else runs at the quick
# budgets, and the independent control runs every attack at them: no budget lets an attack separate records
# a model never saw, and the searches are most of the fixture's time.
BUDGETED = {"ganleaks_pbb": "ganleaks_pbb", "ganleaks_wb": "ganleaks_wb", "ganleaks_pbb_cal": "ganleaks_pbb_cal",
            "ganleaks_wb_cal": "ganleaks_wb_cal", "lira_gen": "lira_gen", "lira_gen_offline": "lira_gen"}
BUDGET_KEYS = ("steps", "population", "init_draws", "lr")
# logan_bb runs at the quick budget: it is exempt from the memorizer's AUC/TPR check (attacks/logan.py says
# why) and must only not score the members below chance; at a training budget its local discriminator ranks a
# memorizer's released members first (tests/test_review_attacks.py).


def shipped_budgets() -> list[str]:
    """Overrides that give the BUDGETED attacks the digits suite's own budget settings (benchmarks/digits.yaml)."""
    suite = load_run(suite="digits_v1", defense="none").attack_params
    return [f"attacks.{a}.{k}={v}" for a, src in BUDGETED.items()
            for k, v in dataclasses.asdict(suite[src]).items() if k in BUDGET_KEYS and v is not None]


@pytest.fixture(scope="module")
def control_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("controls")
    extra = {"memorizer": shipped_budgets(), "independent": []}
    return {name: run(quick(name, "trainer.max_steps=400", *LEFT_OUT, *extra[name]), 0, results_dir=out)
            for name in ("memorizer", "independent")}


@pytest.mark.parametrize("attack", ATTACKS.names())
def test_memorizer_is_caught_by_every_attack(attack, control_records):
    rec = control_records["memorizer"]
    assert attack in rec.attacks
    # attacks that cannot catch it by construction, at the settings they ran with, say why
    exempt = ATTACKS.get(attack).memorizer_exemption(rec.attacks[attack].get("settings"))
    floor = 0.45 if exempt else 0.95
    assert rec.attacks[attack]["metrics"]["auc"]["value"] >= floor, exempt


@pytest.mark.parametrize("attack", ATTACKS.names())
def test_independent_model_looks_like_chance(attack, control_records):
    rec = control_records["independent"]
    assert attack in rec.attacks
    assert abs(rec.attacks[attack]["metrics"]["auc"]["value"] - 0.5) <= 0.1


def test_every_registered_attack_ran_on_both_controls(control_records):
    for rec in control_records.values():
        assert set(rec.attacks) == set(ATTACKS.names())


def test_audit_of_the_controls_passes(control_records):
    checks = check_controls(control_records["memorizer"], control_records["independent"])
    assert {(c.attack, c.control) for c in checks} == {(a, c) for a in ATTACKS.names() for c in CONTROLS}
    failed = {(c.attack, c.control) for c in checks if not c.passed}
    assert not failed, [c for c in checks if not c.passed]
    # exempt only by construction: a mixed query never asks about the record alone, LOGAN's local discriminator
    # flattens on the records its own generator learns to match, and the paper's difference of squared
    # reconstruction losses (which this v1 suite does not use) misses it (tests/test_review_attacks.py)
    rec = control_records["memorizer"]
    assert {a for a in ATTACKS.names() if ATTACKS.get(a).memorizer_exemption(rec.attacks[a].get("settings"))} == {
        "lira_wb_mixed", "logan_bb"}
    assert {a for a in ATTACKS.names() if ATTACKS.get(a).memorizer_exemption()} == {
        "lira_wb_mixed", "logan_bb", "ganleaks_pbb_cal", "ganleaks_wb_cal"}


def test_audit_fails_weak_leaky_missing_or_inverted_attacks(control_records):
    memorizer, independent = copy.deepcopy(control_records["memorizer"]), copy.deepcopy(control_records["independent"])
    memorizer.attacks["logan_wb"]["metrics"]["auc"]["value"] = 0.9  # too weak to catch released members
    memorizer.attacks["lira_wb_mixed"]["metrics"]["auc"]["value"] = 0.3  # exempt, but below chance
    independent.attacks["ganleaks_fbb"]["metrics"]["auc"]["value"] = 0.62  # separates records it never saw
    memorizer.attacks["monte_carlo"]["metrics"]["tpr@1%fpr"]["value"] = 0.2  # a high AUC, few members at 1% FPR
    del independent.attacks["domias"]
    failed = {(c.attack, c.control) for c in check_controls(memorizer, independent) if not c.passed}
    assert failed == {("logan_wb", "memorizer"), ("lira_wb_mixed", "memorizer"), ("ganleaks_fbb", "independent"),
                      ("domias", "independent"), ("monte_carlo", "memorizer")}
    assert all(c.passed for c in check_controls(memorizer, independent, tolerance=0.15, memorizer_auc=0.9)
               if c.attack in ("logan_wb", "ganleaks_fbb"))
    assert [c.fix for c in check_controls(memorizer, independent) if c.auc is None] == [MISSING]
    with pytest.raises(ValueError, match="memorizer and an independent"):
        check_controls(independent, memorizer)


def test_cli_audit_runs_both_controls_and_exits_1_on_a_failed_check(tmp_path, capsys):
    argv = ["audit", "--suite", "digits_v1", "--results-dir", str(tmp_path), *QUICK, *only_attacks("ganleaks_fbb", "logan_wb")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 of 4 checks passed" in out
    assert {RunRecord.read(p).defense for p in tmp_path.rglob("record.json")} == set(CONTROLS)
    assert main([*argv, "--tolerance", "0"]) == 1  # no AUC on the independent model is exactly 0.5
    out = capsys.readouterr().out
    assert "2 of 4 checks passed" in out and "should be published" in out


@pytest.fixture(scope="module")
def tiny_model(digits):
    resolved = quick("none", "trainer.max_steps=5")
    split = MembershipSplit.make(n_records=len(digits), sizes=resolved.config.split, seed=0)
    model = train_defense(resolved, digits, split, seed=0)
    return model, model.sample(100, generator=torch.Generator().manual_seed(0))


def test_samples_view_holds_nothing_but_samples(tiny_model):
    model, released = tiny_model
    view = make_view(model, AccessLevel.SAMPLES, released)
    assert view.holds() == set()
    with pytest.raises(AccessError, match="cannot query the generator"):
        view.generator  # noqa: B018
    with pytest.raises(AccessError, match="cannot read the discriminator"):
        view.discriminator  # noqa: B018


def test_generator_view_answers_queries_without_gradients(tiny_model):
    model, released = tiny_model
    view = make_view(model, AccessLevel.GENERATOR, released)
    assert view.holds() == {"generator"}
    z = torch.randn(4, view.generator.z_dim, requires_grad=True)
    out = view.generator.query(z, None)
    assert out.shape == (4, 1, 8, 8) and not out.requires_grad
    with pytest.raises(AccessError):
        view.discriminator  # noqa: B018


def test_white_box_view_has_gradients_and_discriminator(tiny_model):
    model, released = tiny_model
    view = make_view(model, AccessLevel.WHITE_BOX, released)
    assert view.holds() == {"generator", "discriminator"}
    z = torch.randn(4, view.generator.z_dim, requires_grad=True)
    view.generator.query(z, None).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


@pytest.mark.parametrize("attack", ATTACKS.names())
def test_every_attack_gets_exactly_its_access(attack, tiny_model, digits):
    model, released = tiny_model
    cls = ATTACKS.get(attack)
    view = make_view(model, cls.access, released)
    expected = {AccessLevel.SAMPLES: set(), AccessLevel.GENERATOR: {"generator"},
                AccessLevel.WHITE_BOX: {"generator", "discriminator"}}[cls.access]
    assert view.holds() == expected
    assert set(cls.needs) <= {"reference", "attacker_aux", "shadow_pool"}
