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
