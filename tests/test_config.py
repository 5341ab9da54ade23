import pytest

from mia_bench.config import load_run
from mia_bench.errors import ConfigError, UnknownNameError


def test_suite_defense_and_overrides_merge():
    r = load_run(suite="digits_v1", defense="none", overrides=["trainer.max_steps=123", "defense.lr_d=0.001"])
    assert r.config.trainer.max_steps == 123
    assert r.defense_params.lr_d == 0.001
    assert r.config.split.members == 300 and r.config.dataset.name == "digits"
    assert set(r.attack_params) >= {"ganleaks_fbb", "logan_wb"}
    assert r.overrides == ["trainer.max_steps=123", "defense.lr_d=0.001"]


def test_digest_tracks_results_relevant_config_only():
    a = load_run(suite="digits_v1", defense="none")
    assert a.digest() == load_run(suite="digits_v1", defense="none").digest()
    assert a.digest() != load_run(suite="digits_v1", defense="none", overrides=["trainer.max_steps=7"]).digest()
    assert a.digest() == load_run(suite="digits_v1", defense="none", overrides=["trainer.progress_bar=false"]).digest()


@pytest.mark.parametrize("override, match", [
    ("trainer.max_stepz=5", r"unknown config key 'trainer.max_stepz'. Did you mean: trainer.max_steps"),
    ("defense.lamda=1", r"unknown config key 'defense.lamda'"),
    ("attacks.ganleaks_fbb.chunkk=3", r"Did you mean: attacks.ganleaks_fbb.chunk"),
    ("trainer.max_steps=lots", r"config key 'trainer.max_steps'.*could not be converted to Integer"),
    ("split.members=1.5", r"config key 'split.members'"),
    ("nonsense", r"must look like key=value"),
    ("defense.name=megan", r"--defense"),
])
def test_bad_overrides_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_run(suite="digits_v1", defense="none", overrides=[override])


def test_unknown_suite_and_defense():
    with pytest.raises(ConfigError, match="Unknown suite 'digitz'. Did you mean: digits"):
        load_run(suite="digitz", defense="none")
    with pytest.raises(UnknownNameError, match="Unknown defense 'nne'. Did you mean: none"):
        load_run(suite="digits_v1", defense="nne")


def test_unknown_attack_in_suite_is_an_error():
    with pytest.raises(UnknownNameError, match="Unknown attack 'gan_leaks'"):
        load_run(suite="digits_v1", defense="none", overrides=["attacks.gan_leaks={}"])


def test_suite_file_with_unknown_key(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("suite: mine\ntrainer:\n  max_steps: 10\n  batchsize: 4\n")
    with pytest.raises(ConfigError, match="trainer.batchsize"):
        load_run(suite=str(p), defense="none")
    p.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_run(suite=str(p), defense="none")


def test_an_attack_of_the_suite_can_be_switched_off():
    full = load_run(suite="digits_v1", defense="none")
    less = load_run(suite="digits_v1", defense="none", overrides=["attacks.lira_gen=false"])
    assert set(full.attack_params) - set(less.attack_params) == {"lira_gen"}
    assert less.digest() != full.digest()
