"""Weights & Biases tracking: what an offline run writes on disk, and that W&B never fails a run."""

import json
import struct
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import QUICK, only_attacks, quick, quick_config_dir
from mia_bench import tracking
from mia_bench.cli import main
from mia_bench.results import RunPaths, RunRecord
from mia_bench.runner import run


def read_wandb_log(path: Path) -> dict[str, list]:
    """Records of an offline run's transaction log (run-<id>.wandb), by type.

    The file is a LevelDB-style log (7-byte ':W&B' header, 32 KiB blocks, records chunked as FULL /
    FIRST / MIDDLE / LAST) of wandb_internal_pb2.Record messages; `wandb sync` replays exactly these."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, buf, out = 32768, 7, b"", defaultdict(list)
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            rec.ParseFromString(buf)
            out[rec.WhichOneof("record_type")].append(rec)
            buf = b""
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracked")
    resolved = quick("none", "trainer.max_steps=40", "trainer.log_every_n_steps=5")
    with tracking.for_run("offline", resolved, 0, results_dir=out) as tracker:
        record = run(resolved, 0, results_dir=out, tracker=tracker)
    return out, record


def test_offline_run_writes_its_folder_under_the_results_dir(offline_run):
    out, record = offline_run
    assert record.wandb_run_id and RunRecord.read(RunPaths.of(out, "digits_v1", "none", 0, record.variant).record) == record
    (run_dir,) = (out / "wandb").glob(f"offline-run-*-{record.wandb_run_id}")
    assert (run_dir / f"run-{record.wandb_run_id}.wandb").stat().st_size > 0
    media = {p.relative_to(run_dir / "files" / "media").parts[:2] for p in (run_dir / "files" / "media").rglob("*.*")}
    assert {("images", "roc"), ("images", "samples"), ("table", "metrics"), ("table", "roc_table")} <= media
    table = json.loads(next((run_dir / "files" / "media" / "table" / "metrics").glob("*.table.json")).read_text())
    assert table["columns"][:3] == ["attack", "access", "variant"] and "auc" in table["columns"]
    assert sorted(row[0] for row in table["data"]) == sorted(record.attacks)
    kept = run_dir / "artifact"
    assert json.loads((kept / "record.json").read_text())["wandb_run_id"] == record.wandb_run_id
    assert (kept / "scores.npz").is_file()


def test_offline_log_holds_config_curves_results_and_the_record_artifact(offline_run):
    out, record = offline_run
    (path,) = (out / "wandb").glob(f"offline-run-*-{record.wandb_run_id}/run-*.wandb")
    log = read_wandb_log(path)
    config = {_key(i): json.loads(i.value_json) for i in log["run"][0].run.config.update}  # given at init
    assert config["trainer"]["max_steps"] == 40 and config["seed"] == 0
    assert config["defense"]["name"] == "none" and config["config_digest"] == record.config_digest
    curves = [{_key(i) for i in r.history.item} for r in log["history"]]
    training = [c for c in curves if "loss/d" in c]
    assert len(training) == 40 // 5 and all({"loss/g", "trainer/global_step"} <= c for c in training)
    summary = {_key(i) for r in log["summary"] for i in r.summary.update}
    for name in record.attacks:
        assert {f"attack/{name}/auc", f"attack/{name}/tpr@1%fpr", f"roc/{name}_table/path"} <= summary
    assert {"samples/released/path", "roc/curves/path", "metrics/table/path"} <= summary
    artifacts = {r.artifact.name: r.artifact for r in log["artifact"]}
    art = artifacts["record-digits_v1-none-seed0"]
    assert art.type == "mia-bench-record" and {e.path for e in art.manifest.contents} == {"record.json", "scores.npz"}
    assert log["exit"] and log["exit"][0].exit.exit_code == 0


def test_online_without_network_falls_back_to_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    with tracking.Tracker.start("online", results_dir=tmp_path, name="t") as tracker:
        assert tracker.mode is tracking.WandbMode.OFFLINE and tracker.active
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_wandb_failures_never_fail_the_run(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("wandb is broken")

    monkeypatch.setattr(tracking, "_init", broken)  # init fails in every mode: tracking turns off
    resolved = quick("memorizer")
    with tracking.for_run("offline", resolved, 0, results_dir=tmp_path) as tracker:
        assert not tracker.active
        record = run(resolved, 0, results_dir=tmp_path, tracker=tracker)
    assert record.wandb_run_id is None and record.attacks
    monkeypatch.undo()

    from mia_bench.report import media as tracking_media

    monkeypatch.setattr(tracking_media, "log_results", broken)  # logging fails mid-run: the record stays
    with tracking.for_run("offline", resolved, 1, results_dir=tmp_path) as tracker:
        record = run(resolved, 1, results_dir=tmp_path, tracker=tracker)
        assert not tracker.active
    assert RunRecord.read(RunPaths.of(tmp_path, "digits_v1", "memorizer", 1, record.variant).record).wandb_run_id == record.wandb_run_id


def test_cli_modes_and_the_leaderboard_table(tmp_path):
    r, lb = tmp_path / "r", tmp_path / "lb"
    keep = ("ganleaks_fbb", "logan_wb")  # W&B modes and the leaderboard table are under test, not the attacks
    assert main(["run", "--suite", "digits_v1", "--defense", "memorizer", "--results-dir", str(r), "--wandb", "off", *QUICK,
                 *only_attacks(*keep)]) == 0
    assert not (r / "wandb").exists()
    assert main(["run", "--suite", "digits_v1", "--defense", "memorizer", "--seed", "1", "--results-dir", str(r), "--no-progress",
                 "--config-dir", str(quick_config_dir(tmp_path, keep))]) == 0  # the quick budget, without overrides
    assert len(list((r / "wandb").glob("offline-run-*"))) == 1  # offline is the default
    assert main(["leaderboard", "--results-dir", str(r), "--leaderboard-dir", str(lb), "--wandb", "offline"]) == 0
    (table,) = (r / "wandb").glob("offline-run-*/files/media/table/leaderboard_*.table.json")
    t = json.loads(table.read_text())
    assert t["data"][0][t["columns"].index("defense")] == "memorizer"
    assert t["data"][0][t["columns"].index("seeds")] == 1  # the --wandb off run had overrides: not official
    figures = list((r / "wandb").glob("offline-run-*/files/media/images/figures/*.png"))
    assert figures and all(f.name.startswith("privacy_utility_digits_v1") for f in figures)  # the page's figure


def test_mode_names_are_checked():
    with pytest.raises(Exception, match="not one of online, offline, off"):
        tracking.WandbMode.of("onlin")
