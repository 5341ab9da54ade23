"""Scale: DDP on two CPU processes, and the grid (submitit local executor, failures, SIGTERM and resume)."""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from rich.console import Console

from conftest import only_attacks, quick
from mia_bench.checkpoint import load_checkpoint
from mia_bench.cli import main
from mia_bench.data.datamodule import RoundSampler
from mia_bench.defenses import DEFENSES
from mia_bench.defenses.none import UnprotectedGAN
from mia_bench.distributed import defense_strategy
from mia_bench.grid import Cell, GridOptions, plan
from mia_bench.grid_driver import execute
from mia_bench.results import RunPaths, RunRecord, find_records
from mia_bench.runner import run

REPO = Path(__file__).resolve().parent.parent
TINY = ["trainer.max_steps=30", "metrics.bootstrap=10", "trainer.progress_bar=false", "release.n_samples=300",
        *only_attacks("ganleaks_fbb", "logan_wb")]  # the grid's machinery, not the attacks, is under test


def state_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RankProbe(L.Callback):
    """Each rank writes what it saw: batch record ids per step, its first latents, its final weights."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_train_start(self, trainer, pl_module):  # after RankSetup reseeded this rank
        self.seen, self.latent = [], pl_module.draw_latent(4).flatten().tolist()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(batch["idx"].tolist())

    def on_train_end(self, trainer, pl_module):
        out = {"world": trainer.world_size, "seen": self.seen, "latent": self.latent, "digest": state_digest(pl_module)}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(out))


def _extra(self):  # rank 0 computes it from its trainer; the caller gets it through the hand-off
    if getattr(self, "_handoff", None) is not None:
        return self._handoff
    if self._trainer is None:  # an attacker's shadow model (a bank saves every model's extras): no steps
        return {}
    return {"steps": int(self.trainer.global_step), "rank": self.global_rank}


def _load_extra(self, extra):
    self._handoff = extra


def _ddp_run(strategy: str, tmp_path: Path, monkeypatch) -> dict:
    """Train `none` on two CPU processes; returns the checkpoint's extra state."""
    monkeypatch.setattr(UnprotectedGAN, "checkpoint_extra", _extra)  # forked ranks inherit the patch
    monkeypatch.setattr(UnprotectedGAN, "load_checkpoint_extra", _load_extra)
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    resolved = quick("none", "trainer.max_steps=20", f"trainer.strategy={strategy}", "trainer.devices=2")
    record = run(resolved, 0, results_dir=tmp_path, callbacks=[RankProbe(probe_dir)])
    paths = RunPaths.of(tmp_path, "digits_v1", "none", 0, record.variant)
    assert RunRecord.read(paths.record) == record
    for res in record.attacks.values():
        assert 0 <= res["metrics"]["auc"]["value"] <= 1
    ranks = [json.loads((probe_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and len(r["seen"]) == 20 for r in ranks)
    for a, b in zip(ranks[0]["seen"], ranks[1]["seen"], strict=True):
        assert len(a) == len(b) == 64 and not set(a) & set(b), "ranks must see disjoint records at every step"
    assert ranks[0]["latent"] != ranks[1]["latent"], "ranks must draw their own latents"
    assert ranks[0]["digest"] == ranks[1]["digest"], "DDP keeps the ranks' weights identical"
    trained, meta = load_checkpoint(paths.checkpoint)
    assert state_digest(trained) == ranks[0]["digest"], "the caller must release and attack the trained weights"
    L.seed_everything(0, verbose=False)
    assert state_digest(trained) != state_digest(UnprotectedGAN(config=resolved.defense_params, info=trained.info,
                                                                n_train=300))
    return meta["extra"]


@pytest.mark.ddp
def test_ddp_fork_on_two_cpu_processes_gives_a_valid_record(tmp_path, monkeypatch):
    extra = _ddp_run("ddp_fork", tmp_path, monkeypatch)  # -> ddp_fork_find_unused_parameters_true (two players)
    assert extra == {"steps": 40, "rank": 0}, "rank 0's extra state (2 optimizers x 20 steps) reaches the caller"


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_spawn_moves_the_trained_weights_back(tmp_path, monkeypatch):
    _ddp_run("ddp_spawn_find_unused_parameters_true", tmp_path, monkeypatch)  # spawned ranks: unpatched extra


def test_rank_batches_are_slices_of_one_global_batch():
    shards = [np.arange(300)]
    whole = list(RoundSampler(shards=shards, n_reference=300, batch_size=32, num_batches=25, seed=3))
    parts = [list(RoundSampler(shards=shards, n_reference=300, batch_size=16, num_batches=25, seed=3, rank=r,
                               world_size=2)) for r in (0, 1)]
    for w, a, b in zip(whole, *parts, strict=True):
        np.testing.assert_array_equal(w.train, np.r_[a.train, b.train])
        np.testing.assert_array_equal(w.reference, np.r_[a.reference, b.reference])


def test_multi_player_defenses_get_a_strategy_that_tolerates_frozen_players():
    for name, cls in DEFENSES.items():
        if len(cls.player_order) > 1:
            assert defense_strategy("ddp_spawn", len(cls.player_order)) == "ddp_spawn_find_unused_parameters_true", name
    assert defense_strategy("ddp_fork_find_unused_parameters_true", 2) == "ddp_fork_find_unused_parameters_true"
    assert defense_strategy("auto", 2) == "auto" and defense_strategy("ddp", 1) == "ddp"


def _records(results: Path) -> dict[str, RunRecord]:
    """{suite/defense/seed<k>/record.json: record}, whatever variant folder (ovr-<digest>) a run lives in."""
    out = {}
    for p in find_records(results):
        parts = p.relative_to(results).parts
        out["/".join(parts[:2] + parts[-2:])] = RunRecord.read(p)
    return out


def test_submitit_local_executor_runs_a_two_cell_grid(tmp_path):
    cells = [Cell("digits_v1", d, 0, tuple(TINY)) for d in ("memorizer", "none")]
    out = io.StringIO()
    outcomes = execute(cells, GridOptions(results_dir=tmp_path, parallel=2, wandb="off"), Console(file=out))
    assert [o.status for o in outcomes] == ["done", "done"], out.getvalue()
    assert sorted(_records(tmp_path)) == ["digits_v1/memorizer/seed0/record.json", "digits_v1/none/seed0/record.json"]
    todo, done = plan(suite="digits_v1", defenses=["memorizer", "none"], seeds=[0], overrides=TINY, results_dir=tmp_path,
                      points="default")
    assert todo == [] and len(done) == 2
    todo, _ = plan(suite="digits_v1", defenses=["none"], seeds=[0], overrides=[*TINY, "trainer.max_steps=31"],
                   results_dir=tmp_path, points="default")
    assert len(todo) == 1, "a record of another config does not count as finished"


def test_a_failing_cell_is_reported_and_leaves_the_others_intact(tmp_path, capsys):
    r, lb = tmp_path / "r", tmp_path / "lb"
    code = main(["grid", "--suite", "digits_v1", "--defenses", "memorizer", "none", "--points", "default", "--seeds", "0",
                 "--parallel", "2", "--wandb", "off",
                 "--results-dir", str(r), "--leaderboard-dir", str(lb), *TINY, "trainer.batch_size=400"])
    captured = capsys.readouterr()
    out, err = captured.out.replace("\n", ""), captured.err.replace("\n", "")
    assert code == 1
    assert "none/seed0 failed: mia_bench.errors.ConfigError: batch size 400" in out
    (log,) = [p for p in (r / "digits_v1" / "_grid" / "logs").glob("*_log.err") if "lower trainer.batch_size" in p.read_text()]
    assert f"log: {log}" in out and f"failed cells: none/seed0 ({log})" in err
    assert sorted(_records(r)) == ["digits_v1/memorizer/seed0/record.json"]
    assert (lb / "LEADERBOARD.md").is_file()


def _alive_with(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def test_grid_killed_by_sigterm_then_rerun_finishes_every_cell_once(tmp_path):
    r, lb = tmp_path / "r", tmp_path / "lb"
    argv = [sys.executable, "-m", "mia_bench", "grid", "--suite", "digits_v1", "--defenses", "memorizer", "none",
            "--points", "default", "--seeds", "0",
            "--wandb", "off", "--results-dir", str(r), "--leaderboard-dir", str(lb), *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # SIGINT as in a terminal (a background shell starts its jobs with it ignored): submitit's controllers
    # are cancelled with it and print a KeyboardInterrupt traceback, which must not reach the grid's output
    grid = subprocess.Popen([*argv, "--parallel", "1"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    logs, deadline = r / "digits_v1" / "_grid" / "logs", time.time() + 120
    # kill once the first cell is finished and the second one is running
    while len(list(logs.glob("*_submitted.pkl"))) < 2 and time.time() < deadline and grid.poll() is None:
        time.sleep(0.1)
    grid.send_signal(signal.SIGTERM)
    out, _ = grid.communicate(timeout=60)
    assert grid.returncode == 143, out
    assert "grid interrupted: cancelled 1 running cell(s)" in out.replace("\n", " ")
    assert "Traceback" not in out, out
    assert "KeyboardInterrupt" in (logs / "controllers.err").read_text(), "the controller's output is kept, in its log"
    first = _records(r)
    assert sorted(first) == ["digits_v1/memorizer/seed0/record.json"], "the grid must have been killed in the middle"
    assert not _alive_with(str(r)), "no cell of the killed grid may keep running"
    again = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 already finished, 1 to run" in again.stdout.replace("\n", " ")
    final = _records(r)
    assert sorted(final) == ["digits_v1/memorizer/seed0/record.json", "digits_v1/none/seed0/record.json"]
    assert final["digits_v1/memorizer/seed0/record.json"] == first["digits_v1/memorizer/seed0/record.json"], "kept, not rerun"
    assert not list(r.rglob("*.tmp")), "no half-written file may remain"


class _Controller:
    """A stand-in for submitit's LocalJob: a controller process (job_id = its pid) that ignores SIGINT and
    SIGTERM, as a controller under nohup and mid-shutdown can, with a cell process of its own."""

    def __init__(self, marker: str) -> None:
        code = ("import signal, subprocess, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, "
                f"signal.SIG_IGN); time.sleep(120)', {marker!r}]); time.sleep(120)")
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        self.job_id = str(self.proc.pid)

    def cancel(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def done(self) -> bool:
        return self.proc.poll() is not None


def test_cancelling_a_stuck_controller_leaves_no_orphaned_cell(tmp_path):
    from mia_bench.grid import cancel_local

    marker = f"cell-of-{tmp_path.name}"
    job = _Controller(marker)
    deadline = time.time() + 20
    while len(_alive_with(marker)) < 2 and time.time() < deadline:  # the controller and its cell
        time.sleep(0.05)
    assert len(_alive_with(marker)) == 2
    try:
        cancel_local([job])  # SIGINT and SIGTERM ignored: the controller is killed, and so is its cell
        assert job.done() and not _alive_with(marker)
    finally:
        for pid in _alive_with(marker):  # a failed check must not leave a process behind
            os.kill(pid, signal.SIGKILL)


def test_slurm_cells_become_one_job_array_with_the_requested_resources(tmp_path, monkeypatch):
    from mia_bench.grid import make_executor, run_cell

    bin_dir = tmp_path / "bin"  # stand-ins for SLURM's commands: sbatch keeps the script it was given
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ncp \"$1\" {tmp_path}/job.sh\necho Submitted batch job 4242\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    options = GridOptions(results_dir=tmp_path, executor="slurm", parallel=1,
                          slurm={"partition": "gpu", "gpus_per_node": 2, "tasks_per_node": 2, "timeout_min": 30,
                                 "mem_gb": 8})
    ex = make_executor(options, tmp_path / "logs")
    with ex.batch():
        jobs = [ex.submit(run_cell, Cell("digits_v1", "none", s), str(tmp_path)) for s in (0, 1)]
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1"]
    script = (tmp_path / "job.sh").read_text()
    for line in ("--partition=gpu", "--gpus-per-node=2", "--ntasks-per-node=2", "--time=30", "--mem=8GB",
                 "--array=0-1%1"):
        assert f"#SBATCH {line}" in script, line


def test_defense_logs_are_averaged_over_ranks_under_ddp(monkeypatch, digits):
    from types import SimpleNamespace

    calls = []
    monkeypatch.setattr(L.LightningModule, "log", lambda self, name, value, *a, **kw: calls.append(kw["sync_dist"]))
    resolved = quick("none")
    model = UnprotectedGAN(config=resolved.defense_params, info=digits.info, n_train=300)
    for world, kwargs, expected in ((1, {}, False), (2, {}, True), (2, {"sync_dist": False}, False)):
        model._trainer = SimpleNamespace(world_size=world)
        calls.clear()
        model.log_dict({"loss/d": torch.tensor(1.0), "loss/g": torch.tensor(2.0)}, **kwargs)
        assert calls == [expected, expected], (world, kwargs)



def test_sigterm_stops_the_grid_where_it_checks_never_inside_other_code() -> None:
    """SIGTERM only sets the grid's Stop; GridInterrupted is raised where the grid's loop checks it. Raised by
    the handler, it surfaced wherever the signal landed: in submitit's LocalJob.__del__ it was swallowed and
    the grid ran on (measured in CI), and a second SIGTERM while the grid cancelled its cells cut that short
    and left two digits cells running, orphaned. The handler in place before is restored after."""
    from mia_bench.grid import GridInterrupted, sigterm_stops

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_stops() as stop:
        stop.check()  # nothing yet
        os.kill(os.getpid(), signal.SIGTERM)  # raises nothing here, where it lands
        time.sleep(0.2)
        with pytest.raises(GridInterrupted):
            stop.check()
        os.kill(os.getpid(), signal.SIGTERM)  # a second one while the grid cancels: still nothing raised
        time.sleep(0.2)
    assert signal.getsignal(signal.SIGTERM) is before


def test_grid_cost_reads_the_official_cells_and_schedules_them_longest_first(tmp_path: Path, capsys,
                                                                             monkeypatch) -> None:
    """benchmarks/perf/grid_cost.py: runs with overrides and the grid's own folder are not cells, and the
    grid's length on 2 workers is the longest-first schedule's (cells of 5, 4, 3, 3 s: 5+3 and 4+3 -> 8), and
    the published grid (digits: the default points and every dpgan point) and the grid of the default points
    are the same schedule over their own cells."""
    import importlib.util

    from mia_bench.config import REPO_ROOT

    spec = importlib.util.spec_from_file_location("grid_cost", REPO_ROOT / "benchmarks" / "perf" / "grid_cost.py")
    grid_cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grid_cost)
    root = tmp_path / "results" / "digits"
    cells = {"none/seed0": 5.0, "megan/seed0": 4.0, "megan/op-lh3/seed0": 3.0, "mixup/seed0": 3.0,
             "none/ovr-abc/seed0": 100.0, "_grid/logs/seed0": 100.0}
    assert grid_cost.published_sweeps("digits") == ["dpgan"]
    for rel, wall in cells.items():
        folder = root / rel
        folder.mkdir(parents=True)
        defense = rel.split("/")[0]
        point = {"name": "lh3"} if "op-" in rel else None
        (folder / "record.json").write_text(json.dumps({
            "defense": defense, "seed": 0, "operating_point": point, "wall_time_s": wall,
            "timings": {"train": wall / 2, "attacks": wall / 2, "targets_cached": 0.0},
            "attacks": {"logan_bb": {"seconds": wall / 3}, "overrep": {"seconds": wall / 6}}}))
    found = grid_cost.cells(root)
    assert sorted(c["cell"] for c in found) == ["megan", "megan@lh3", "mixup", "none"]
    assert grid_cost.makespan([c["wall"] for c in found], 2) == 8.0
    assert grid_cost.makespan([c["wall"] for c in found], 1) == 15.0
    point = {"name": "eps1", "default": False}  # a dpgan point outside its default: in the published grid
    (root / "dpgan/op-eps1/seed0").mkdir(parents=True)
    (root / "dpgan/op-eps1/seed0/record.json").write_text(json.dumps({
        "defense": "dpgan", "seed": 0, "operating_point": point, "wall_time_s": 3.0,
        "timings": {"train": 1.5, "attacks": 1.5, "targets_cached": 0.0}, "attacks": {}}))
    monkeypatch.setattr(sys, "argv", ["grid_cost.py", "--results-dir", str(tmp_path / "results"), "--goal", "0.1"])
    grid_cost.main()
    out = capsys.readouterr().out
    assert "5 cells" in out and "logan_bb" in out
    # every cell, 5, 4, 3, 3, 3 s: 5+3 | 4+3+3 -> 10 s on 2 workers
    assert "every point (5 cells, POINTS=all): 0 min, 1.67x" in out
    # published: megan@lh3 left out, dpgan@eps1 kept: 5+3 | 4+3 -> 8 s; default points: 5 | 4+3 -> 7 s
    assert "published grid (4 cells, make grid): 0 min, 1.33x" in out
    assert "default points (3 cells, POINTS=default): 0 min, 1.17x" in out
    assert max(len(line) for line in out.splitlines()) <= 80
