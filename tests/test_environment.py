"""The CPU environment must not hold torchvision or nvidia-* wheels (they break lightning on CPU)."""

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def test_cpu_environment_is_clean():
    if torch.cuda.is_available():
        return
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_env.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert torch.__version__.startswith("2.13.0")


def test_guard_flags_offending_names(monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import check_env
    finally:
        sys.path.pop(0)

    class Dist:
        def __init__(self, name):
            self.metadata = {"Name": name}

    monkeypatch.setattr(check_env.metadata, "distributions",
                        lambda: [Dist("torch"), Dist("torchvision"), Dist("nvidia-cublas-cu12")])
    monkeypatch.setattr(check_env, "has_cuda", lambda: False)
    assert check_env.offending_packages() == ["nvidia-cublas-cu12", "torchvision"]
    assert check_env.main() == 1


def test_a_revision_is_dirty_for_changed_code_not_for_the_leaderboard_a_run_wrote(tmp_path):
    """A second `make bench` before the first one's leaderboard update is committed runs the same code:
    its record must not say `dirty`; a changed source file must."""
    from mia_bench.results import git_revision

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "leaderboard").mkdir()
    (tmp_path / "leaderboard" / "LEADERBOARD.md").write_text("v1\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    assert git_revision(tmp_path)["dirty"] is False
    (tmp_path / "leaderboard" / "LEADERBOARD.md").write_text("v2\n")
    rev = git_revision(tmp_path)
    assert rev["dirty"] is False and len(rev["commit"]) == 40
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_revision(tmp_path)["dirty"] is True
