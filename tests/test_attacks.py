"""Attacks against the controls, and access levels enforced by the view."""

import copy

import pytest
import torch

from conftest import QUICK, only_attacks, quick
from mia_bench.attacks import ATTACKS, AccessLevel, make_view
from mia_bench.audit import CONTROLS, MISSING, check_controls
from mia_bench.cli import main
from mia_bench.data import MembershipSplit
from mia_bench.errors import AccessError
from mia_bench.runner import run, train_defense


@pytest.fixture(scope="module")
def control_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("controls")
    return {name: run(quick(name, "trainer.max_steps=400"), 0, results_dir=out) for name in ("memorizer", "independent")}


@pytest.mark.parametrize("attack", ATTACKS.names())
def test_memorizer_is_caught_by_every_attack(attack, control_records):
    rec = control_records["memorizer"]
    exempt = ATTACKS.get(attack).memorizer_exempt  # attacks that cannot catch it by construction say why
    if attack in rec.attacks:
        assert rec.attacks[attack]["metrics"]["auc"]["value"] >= (0.45 if exempt else 0.95), exempt


@pytest.mark.parametrize("attack", ATTACKS.names())
def test_independent_model_looks_like_chance(attack, control_records):
    rec = control_records["independent"]
    if attack in rec.attacks:
        assert abs(rec.attacks[attack]["metrics"]["auc"]["value"] - 0.5) <= 0.1


def test_suite_attacks_all_ran(control_records):
    assert set(control_records["memorizer"].attacks) == set(quick("none").attack_params)


def test_audit_of_the_controls_passes(control_records):
    checks = check_controls(control_records["memorizer"], control_records["independent"])
    assert {(c.attack, c.control) for c in checks} == {(a, c) for a in quick("none").attack_params for c in CONTROLS}
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert {a for a in ATTACKS.names() if ATTACKS.get(a).memorizer_exempt} == {"logan_bb", "lira_wb_mixed"}


def test_audit_fails_weak_leaky_missing_or_inverted_attacks(control_records):
    memorizer, independent = copy.deepcopy(control_records["memorizer"]), copy.deepcopy(control_records["independent"])
    memorizer.attacks["logan_wb"]["metrics"]["auc"]["value"] = 0.9  # too weak to catch released members
    memorizer.attacks["logan_bb"]["metrics"]["auc"]["value"] = 0.3  # exempt, but below chance
    independent.attacks["ganleaks_fbb"]["metrics"]["auc"]["value"] = 0.62  # separates records it never saw
    del independent.attacks["domias"]
    failed = {(c.attack, c.control) for c in check_controls(memorizer, independent) if not c.passed}
    assert failed == {("logan_wb", "memorizer"), ("logan_bb", "memorizer"), ("ganleaks_fbb", "independent"),
                      ("domias", "independent")}
    assert all(c.passed for c in check_controls(memorizer, independent, tolerance=0.15, memorizer_auc=0.9)
               if c.attack in ("logan_wb", "ganleaks_fbb"))
    assert [c.fix for c in check_controls(memorizer, independent) if c.auc is None] == [MISSING]
    with pytest.raises(ValueError, match="memorizer and an independent"):
        check_controls(independent, memorizer)


def test_cli_audit_runs_both_controls_and_exits_1_on_a_failed_check(tmp_path, capsys):
    argv = ["audit", "--results-dir", str(tmp_path), *QUICK, *only_attacks("ganleaks_fbb", "logan_wb")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 of 4 checks passed" in out
    assert {p.parent.parent.name for p in tmp_path.rglob("record.json")} == set(CONTROLS)
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
