"""Nothing a user already has is lost: entries merge, runs with overrides live apart, bad files are moved aside."""

from __future__ import annotations

import json
from pathlib import Path

from mia_bench.leaderboard import load_entries, render, update_entries
from mia_bench.results import RunRecord


def _record(seed: int, *, digest: str = "d" * 64, tpr: float = 0.1, overrides: list[str] | None = None,
            created: str = "2026-01-01T00:00:00+00:00") -> RunRecord:
    metrics = {"auc": {"value": 0.6}, "tpr@1%fpr": {"value": tpr}, "tpr@0.1%fpr": {"value": tpr / 2}}
    return RunRecord(suite="digits", suite_version=1, defense="mixup", seed=seed, config={}, config_digest=digest,
                     overrides=list(overrides or []), split_digest=f"s{seed}",
                     split_sizes={"members": 10, "non_members": 10}, member_fraction=0.5,
                     attacks={"a": {"access": "samples", "variant": "v", "metrics": metrics}},
                     environment={"python": "3.11", "device": "cpu", "cpu_count": 2, "packages": {}},
                     created_at=created)


def test_local_run_of_one_seed_keeps_the_committed_seeds(tmp_path: Path) -> None:
    entries = tmp_path / "entries"
    update_entries([_record(s, tpr=0.2) for s in (0, 1, 2)], entries)  # the committed entry
    committed = json.loads((entries / "digits" / "mixup.json").read_text())
    update_entries([_record(0, tpr=0.4, created="2026-02-01T00:00:00+00:00")], entries)  # a local rerun of seed 0
    entry = json.loads((entries / "digits" / "mixup.json").read_text())
    assert sorted(entry["seeds"]) == ["0", "1", "2"]
    assert entry["seeds"]["0"]["attacks"]["a"]["tpr@1%fpr"] == 0.4  # its own cell is replaced
    assert entry["seeds"]["1"] == committed["seeds"]["1"] and entry["seeds"]["2"] == committed["seeds"]["2"]


def test_other_config_digest_is_kept_beside_and_named(tmp_path: Path) -> None:
    entries = tmp_path / "entries"
    update_entries([_record(s) for s in (0, 1, 2)], entries)
    update_entries([_record(0, digest="e" * 64, tpr=0.9, created="2026-03-01T00:00:00+00:00")], entries)
    files = sorted(p.name for p in (entries / "digits").iterdir())
    assert files == ["mixup.json", f"mixup@{'e' * 12}.json"]
    assert sorted(json.loads((entries / "digits" / "mixup.json").read_text())["seeds"]) == ["0", "1", "2"]
    text = render(load_entries(entries))
    assert f"ranked `{'d' * 12}` (3 seeds); kept `{'e' * 12}` (1 seed)" in text
    assert "0.900" not in text  # the one-seed config is not what the table ranks


def test_records_with_overrides_never_touch_entries(tmp_path: Path) -> None:
    assert update_entries([_record(0, overrides=["trainer.max_steps=5"])], tmp_path / "entries") == []
    assert not (tmp_path / "entries").exists()


# ---- runs: where they go, what they keep ---------------------------------------------------------------

import os  # noqa: E402
import pickle  # noqa: E402
import threading  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402

from conftest import cli_without_torch, only_attacks, quick  # noqa: E402
from mia_bench import guards, runner  # noqa: E402
from mia_bench.cli import main  # noqa: E402
from mia_bench.config import load_run  # noqa: E402
from mia_bench.errors import MiaBenchError  # noqa: E402
from mia_bench.guards import TrainingDiverged, run_lock  # noqa: E402
from mia_bench.io import atomic_write_json  # noqa: E402
from mia_bench.results import RunPaths, find_records  # noqa: E402
from mia_bench.runner import run  # noqa: E402
from mia_bench.tables import entries_table, level_tables, run_tables  # noqa: E402

FAST = ["utility.enabled=false", *only_attacks("ganleaks_fbb")]


def fast(defense: str, *overrides: str):  # noqa: ANN201 - ResolvedRun
    return quick(defense, "trainer.max_steps=20", *FAST, *overrides)


def test_a_run_with_overrides_never_touches_the_official_run(tmp_path: Path) -> None:
    official = RunPaths.of(tmp_path, "digits_v1", "none", 0)
    official.root.mkdir(parents=True)
    for p, content in ((official.record, b'{"official": true}'), (official.checkpoint, b"weights")):
        p.write_bytes(content)
    resolved = fast("none")
    record = run(resolved, 0, results_dir=tmp_path)
    assert official.record.read_bytes() == b'{"official": true}' and official.checkpoint.read_bytes() == b"weights"
    assert resolved.variant == f"ovr-{resolved.digest()[:12]}" == record.variant
    assert RunPaths.for_run(tmp_path, resolved, 0).record.is_file()
    assert load_run(suite="digits_v1", defense="none").variant == ""  # official runs stay where they are


def test_checkpoint_of_another_training_config_is_kept_and_reused(tmp_path: Path) -> None:
    first, second = fast("none"), fast("none", "trainer.max_steps=21")
    first.name = second.name = "same-folder"  # --name: both runs share one folder
    run(first, 0, results_dir=tmp_path)
    paths = RunPaths.for_run(tmp_path, first, 0)
    assert run(second, 0, results_dir=tmp_path).timings["checkpoint_reused"] == 0.0
    kept = paths.archived_checkpoint(first.training_digest())
    assert kept.is_file(), "the first config's checkpoint must be kept, not overwritten"
    assert (paths.superseded(first.digest()) / "record.json").is_file(), "and its record"
    assert run(first, 0, results_dir=tmp_path).timings["checkpoint_reused"] == 1.0


def test_an_unwritable_results_folder_stops_before_any_work(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    monkeypatch.setattr(runner, "load_dataset", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(MiaBenchError, match="cannot write to .*--results-dir"):
        run(fast("none"), 0, results_dir=blocker)


def test_a_failed_write_keeps_the_result_and_says_where(tmp_path: Path, monkeypatch) -> None:
    def full(path: Path, obj) -> None:  # noqa: ANN001
        if Path(path).parent.name.startswith("mia_bench-rescue-"):
            return real(path, obj)
        raise OSError(28, "No space left on device")

    real = atomic_write_json
    monkeypatch.setattr("mia_bench.results.atomic_write_json", full)
    with pytest.raises(MiaBenchError, match="No space left on device.*kept in") as e:
        run(fast("memorizer"), 0, results_dir=tmp_path)
    rescued = Path(str(e.value).split("kept in ")[1].split(":")[0])
    assert json.loads(rescued.read_text())["defense"] == "memorizer"


def test_diverged_training_stops_with_the_player_and_saves_nothing(tmp_path: Path) -> None:
    resolved = quick("none", "defense.lr_g=1e30", "defense.lr_d=1e30", "trainer.max_steps=200", *FAST)
    with pytest.raises(TrainingDiverged, match=r"generator step \d+.*player '(generator|discriminator)'.*lr_d=1e\+30"):
        run(resolved, 0, results_dir=tmp_path)
    assert not list(tmp_path.rglob("checkpoint*.pt"))


def test_a_non_finite_checkpoint_is_moved_aside_and_retrained(tmp_path: Path, capsys) -> None:
    resolved = fast("none")
    run(resolved, 0, results_dir=tmp_path)
    ckpt = RunPaths.for_run(tmp_path, resolved, 0).checkpoint
    blob = torch.load(ckpt, weights_only=True)
    name = next(k for k in blob["state_dict"] if k.endswith("weight"))
    blob["state_dict"][name].fill_(float("nan"))
    torch.save(blob, ckpt)
    assert run(resolved, 0, results_dir=tmp_path).timings["checkpoint_reused"] == 0.0
    assert ckpt.with_name("checkpoint.pt.rejected").is_file()
    assert "non-finite weights" in capsys.readouterr().err


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["truncated", "malicious"])
def test_a_bad_checkpoint_is_moved_aside_with_a_note(kind: str, tmp_path: Path, capsys) -> None:
    resolved = fast("none")
    run(resolved, 0, results_dir=tmp_path)
    ckpt = RunPaths.for_run(tmp_path, resolved, 0).checkpoint
    marker = tmp_path / "pwned"
    bad = ckpt.read_bytes()[:200] if kind == "truncated" else pickle.dumps(_Exploit(marker))
    ckpt.write_bytes(bad)
    assert run(resolved, 0, results_dir=tmp_path).timings["checkpoint_reused"] == 0.0
    assert ckpt.with_name("checkpoint.pt.rejected").read_bytes() == bad and not marker.exists()
    err = capsys.readouterr().err
    assert "moved it to" in err and "weights_only" not in err


def test_a_bad_cache_file_is_moved_aside_and_rebuilt(tmp_path: Path, capsys) -> None:
    resolved = quick("none", "trainer.max_steps=20", *only_attacks("lira_fbb"), "utility.enabled=false")
    run(resolved, 0, results_dir=tmp_path)
    (cache,) = (tmp_path / "digits_v1" / "_cache" / "shadows").glob("*.pt")
    cache.write_bytes(b"not a torch file")
    run(resolved, 0, results_dir=tmp_path)
    err = capsys.readouterr().err
    assert cache.with_name(cache.name + ".rejected").is_file() and cache.is_file()
    assert "rebuilding this cache" in err and "weights_only" not in err


def test_a_second_identical_run_waits_then_reuses_the_first_record(tmp_path: Path, monkeypatch) -> None:
    resolved = fast("memorizer")
    first = run(resolved, 0, results_dir=tmp_path)
    paths = RunPaths.for_run(tmp_path, resolved, 0)
    result = {}
    with run_lock(paths.root):  # another process holds the folder
        t = threading.Thread(target=lambda: result.setdefault("r", run(resolved, 0, results_dir=tmp_path)))
        monkeypatch.setattr(runner, "_run", lambda *a, **k: pytest.fail("the waiting run must not redo the work"))
        t.start()
        t.join(timeout=2)
        assert t.is_alive(), "the second run must wait for the lock"
    t.join(timeout=30)
    assert result["r"] == first


# ---- values checked before any work ----------------------------------------------------------------

@pytest.mark.parametrize("bad, key", [
    (["--seed", "-1"], "seed"),
    (["trainer.max_steps=-3"], "trainer.max_steps"),
    (["trainer.batch_size=0"], "trainer.batch_size"),
    (["defense.alpha=-1"], "defense.alpha"),
    (["release.n_samples=-1"], "release.n_samples"),
    (["defense.lr_d=0"], "defense.lr_d"),
    (["metrics.fprs=[0.01,2]"], "metrics.fprs"),
    (["attacks.lira_wbb=false"], "Unknown attack 'lira_wbb'. Did you mean: lira_wb"),
    (["attacks.ganleaks_fbb=3"], "attacks.ganleaks_fbb"),
    (["--defense", "relaxlos"], "Did you mean: relaxloss"),
])
def test_bad_values_stop_with_the_key_and_fix_before_torch_is_imported(bad: list[str], key: str,
                                                                       tmp_path: Path) -> None:
    argv = ["run", "--suite", "digits_v1", "--defense", "relaxloss", "--results-dir", str(tmp_path / "r"), *bad]
    proc = cli_without_torch(argv)
    assert proc.returncode == 2, proc.stderr
    assert key in proc.stderr and ("fix" in proc.stderr or "Did you mean" in proc.stderr or "e.g." in proc.stderr)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("case, expect", [
    ("missing", "--train {tmp}/nope.npz does not exist; give a path to .npz"),
    ("format", "--synthetic {tmp}/samples.txt: unknown format '.txt'"),
    ("nothing", "nothing to audit: give --synthetic FILE"),
    ("gate", "is not [LEVEL:]METRIC=VALUE"),
    ("spec", "--generator 'my_generator' is neither an existing file nor module:callable"),
    ("shadows", "--shadows 2: LiRA needs at least 4 shadow models"),
    ("out", "already holds an audit (or other files); audits are never written over"),
])
def test_bad_audit_arguments_stop_with_the_fix_before_torch_is_imported(case: str, expect: str,
                                                                       tmp_path: Path) -> None:
    for name in ("train.npz", "holdout.npz", "samples.npz"):  # never read: every fault here is in the arguments
        np.savez(tmp_path / name, x=np.zeros((10, 64)))
    (tmp_path / "samples.txt").write_text("0 1 2")
    out = tmp_path / "out"
    args = {"--train": tmp_path / "train.npz", "--holdout": tmp_path / "holdout.npz",
            "--synthetic": tmp_path / "samples.npz", "--out": out}
    extra: list[str] = []
    if case == "missing":
        args["--train"] = tmp_path / "nope.npz"
    elif case == "format":
        args["--synthetic"] = tmp_path / "samples.txt"
    elif case == "nothing":
        del args["--synthetic"]
    elif case == "gate":
        extra = ["--fail-above", "tpr@1%=0.05"]
    elif case == "spec":
        extra = ["--generator", "my_generator"]
    elif case == "shadows":
        extra = ["--recipe", "user_recipes:copier", "--shadows", "2"]
    elif case == "out":
        out.mkdir()
        (out / "record.json").write_text("earlier")
    proc = cli_without_torch(["audit-release", *(a for k, v in args.items() for a in (k, str(v))), *extra])
    assert proc.returncode == 2, proc.stderr
    assert expect.format(tmp=tmp_path) in " ".join(proc.stderr.split()), proc.stderr
    if case == "out":
        assert (out / "record.json").read_text() == "earlier"
    else:
        assert not out.exists()


def test_true_switches_an_attack_on_with_its_defaults() -> None:
    resolved = quick("none", "attacks.ganleaks_fbb=true")
    assert resolved.attack_params["ganleaks_fbb"] == type(resolved.attack_params["ganleaks_fbb"])()


def test_ctrl_c_during_training_prints_one_line_and_exits_130(tmp_path: Path, monkeypatch, capsys) -> None:
    def interrupt(self, trainer, module, outputs, batch, batch_idx):  # noqa: ANN001, ANN202
        if batch_idx == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(guards.TrainingGuard, "on_train_batch_end", interrupt)
    code = main(["run", "--suite", "digits_v1", "--defense", "none", "--results-dir", str(tmp_path), "--wandb", "offline",
                 "trainer.max_steps=20", *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and len(err) == 1 and err[0].startswith("interrupted")
    assert not list((tmp_path / "wandb").glob("offline-run-*")), "no orphaned tracking folder"
    signal_handler = __import__("signal").getsignal(__import__("signal").SIGINT)
    assert signal_handler is __import__("signal").default_int_handler


def test_ctrl_c_during_the_attacks_exits_130(tmp_path: Path, monkeypatch, capsys) -> None:
    def interrupt(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_attack_one", interrupt)
    assert main(["run", "--suite", "digits_v1", "--defense", "memorizer", "--results-dir", str(tmp_path), "--wandb", "off", *FAST]) == 130
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ---- what a person sees -----------------------------------------------------------------------------

def _rendered(*tables) -> list[str]:  # noqa: ANN002
    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    for t in tables:
        console.print(t)
    return console.export_text().splitlines()


def test_run_tables_fit_80_columns_without_truncation() -> None:
    rec = _record(0)
    m = {"auc": {"value": 0.61, "ci": [0.55, 0.66]}, "tpr@1%fpr": {"value": 0.04, "detail": {"underpowered": False}},
         "tpr@0.1%fpr": {"value": 0.0, "detail": {"underpowered": True}},
         "precision@n": {"value": 0.52, "chance": 0.5}}
    rec.attacks = {name: {"access": access, "variant": "v", "metrics": m, "seconds": 74.2}
                   for name, access in (("lira_gen_offline", "generator"), ("ganleaks_fbb_cal", "samples"),
                                        ("lira_wb_adaptive", "white_box"), ("monte_carlo", "samples"))}
    lines = _rendered(*run_tables(rec))
    assert max(len(line) for line in lines) <= 80 and not any("…" in line for line in lines)
    text = "\n".join(lines)
    assert all(name in text for name in rec.attacks) and "TPR@0.1%" in text and "access: white_box" in text


def test_leaderboard_table_fits_80_columns_and_the_command_prints_it(tmp_path: Path, capsys) -> None:
    root = Path(__file__).resolve().parent.parent / "leaderboard"
    entries = load_entries(root / "entries")
    v1, v2 = ([e for e in entries if e["suite_version"] == v] for v in (1, 2))
    lines = _rendered(entries_table(v1, "digits"), *level_tables(v2))
    assert max(len(line) for line in lines) <= 80 and not any("…" in line for line in lines)
    assert sum("threat model" in line for line in lines) == 3  # v2: one ranked table per threat model
    results = tmp_path / "results"
    results.mkdir()
    lb_dir = tmp_path / "lb"
    assert main(["leaderboard", "--results-dir", str(results), "--leaderboard-dir", str(lb_dir)]) == 0
    assert str(lb_dir / "LEADERBOARD.md") in capsys.readouterr().out.replace("\n", "")
    update_entries([_record(s) for s in (0, 1)], lb_dir / "entries")
    assert main(["leaderboard", "--results-dir", str(results), "--leaderboard-dir", str(lb_dir)]) == 0
    out = capsys.readouterr().out
    assert "mixup" in out and "TPR@1%" in out


def test_leaderboard_without_its_results_folder_fails(tmp_path: Path, capsys) -> None:
    assert main(["leaderboard", "--results-dir", str(tmp_path / "missing")]) == 2
    assert "does not exist" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_result_files_honour_the_umask(umask: int, tmp_path: Path) -> None:
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "record.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "record.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_find_records_sees_official_runs_and_variants_not_caches(tmp_path: Path) -> None:
    for rel in ("digits/none/seed0", "digits/none/ovr-abc/seed0", "digits/_cache/x/seed0"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "record.json").write_text("{}")
    assert [str(p.relative_to(tmp_path)) for p in find_records(tmp_path)] == [
        "digits/none/ovr-abc/seed0/record.json", "digits/none/seed0/record.json"]


def test_the_manifest_matches_the_registries() -> None:
    from mia_bench import manifest

    assert manifest.load() == manifest.build(), "components.json is stale: run `python -m mia_bench.manifest`"


def test_every_numeric_config_field_has_a_range() -> None:
    from mia_bench import manifest

    m = manifest.load()
    for kind in ("defenses", "attacks"):
        for name, spec in m[kind].items():
            for key, f in spec["config"].items():
                if f["type"] in ("int", "float", "float | None", "int | None"):
                    assert f["range"] is not None, f"{kind} {name}.{key} has no range"


def test_attacks_read_only_their_declared_roles(digits) -> None:
    from mia_bench.attacks.base import RoleData
    from mia_bench.data import MembershipSplit
    from mia_bench.errors import AccessError

    split = MembershipSplit.make(n_records=len(digits), sizes=load_run(suite="digits_v1", defense="none").config.split,
                                 seed=0)
    view = RoleData(digits, {"shadow_pool": split.shadow_pool})
    x, _ = view.take(split.shadow_pool[:5])
    assert torch.equal(x, digits.take(split.shadow_pool[:5])[0])
    for role in ("members", "non_members", "reference"):
        with pytest.raises(AccessError, match="outside its declared roles"):
            view.take(getattr(split, role)[:1])
    with pytest.raises(AccessError):
        _ = view.x


@pytest.mark.parametrize("argv", [
    ["grid", "--seeds", "-2"], ["grid", "--parallel", "0"], ["grid", "--threads", "-1"],
    ["audit", "--tolerance", "0.7"], ["audit", "--seed", "x"], ["run", "--suite", "digits_v1", "--defense", "none", "--name", "seed3"],
])
def test_every_cli_value_is_validated(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "e.g." in capsys.readouterr().err


def test_progress_counts_generator_steps_and_every_attack(tmp_path: Path, monkeypatch) -> None:
    from mia_bench import progress

    seen: dict[str, list[float]] = {}

    class Recorder(progress.Task):
        def __init__(self, description: str, total: float | None) -> None:
            super().__init__(None, None)
            self.key = description
            seen[description] = [total or 0, 0]

        def advance(self, n: float = 1) -> None:
            seen[self.key][1] += n

    import contextlib

    @contextlib.contextmanager
    def task(description: str, total: float | None):  # noqa: ANN202
        yield Recorder(description, total)

    monkeypatch.setattr(progress, "task", task)
    resolved = quick("none", "defense.loss=wgan-gp", "trainer.max_steps=12", "trainer.progress_bar=true",
                     "utility.enabled=false", *only_attacks("ganleaks_fbb", "lira_fbb"), "attacks.lira_fbb.n_shadows=4")
    run(resolved, 0, results_dir=tmp_path)
    train = seen["train none: generator steps"]
    assert train == [12, 12], "12 generator steps of the budget, not 12 x n_critic loader batches"
    assert seen["attacks"] == [2, 2]
    (shadows,) = [v for k, v in seen.items() if "'none' models" in k]
    assert shadows[0] == shadows[1] > 0
