"""`mia-bench audit-release` end to end on a GAN trained outside mia_bench (plain PyTorch, sklearn digits)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from mia_bench.leaderboard import update_entries
from mia_bench.results import RunRecord

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _gan(x: np.ndarray, steps: int = 300, seed: int = 0) -> torch.jit.ScriptModule:
    """A small MLP GAN (64-d digits in [-1, 1]) trained with plain PyTorch; TorchScript with z_dim."""
    torch.manual_seed(seed)

    class G(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.z_dim = 16
            self.net = torch.nn.Sequential(torch.nn.Linear(16, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                           torch.nn.Tanh())

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.net(z).reshape(-1, 1, 8, 8)

    g, d = G(), torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.LeakyReLU(0.2),
                                    torch.nn.Linear(128, 1))
    og, od = torch.optim.Adam(g.parameters(), 2e-3, betas=(0.5, 0.99)), torch.optim.Adam(d.parameters(), 2e-3, betas=(0.5, 0.99))
    real = torch.from_numpy(x).float()
    bce = torch.nn.BCEWithLogitsLoss()
    for _ in range(steps):
        b = real[torch.randint(0, len(real), (64,))]
        fake = g(torch.randn(64, 16))
        od.zero_grad()
        (bce(d(b), torch.ones(64, 1)) + bce(d(fake.detach()), torch.zeros(64, 1))).backward()
        od.step()
        og.zero_grad()
        bce(d(fake), torch.ones(64, 1)).backward()
        og.step()
    return torch.jit.script(g.eval())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("release")
    digits = load_digits().images.astype(np.float64)  # (1797, 8, 8) in [0, 16]
    pixels = np.round(digits / 16 * 255).astype(np.uint8)  # what a user has: uint8 images
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pixels))
    train, hold, other = pixels[order[:300]], pixels[order[300:700]], pixels[order[700:]]
    np.savez(tmp / "train.npz", x=train)
    np.savez(tmp / "holdout.npz", x=hold)
    scaled = other.astype(np.float32) / 127.5 - 1
    _gan(scaled.reshape(-1, 1, 8, 8)).save(str(tmp / "g_other.pt"))
    with torch.no_grad():
        other_samples = torch.jit.load(str(tmp / "g_other.pt"))(torch.randn(2000, 16)).numpy()
    np.savez(tmp / "samples_other.npz", x=((other_samples + 1) * 127.5).clip(0, 255))
    copies = np.repeat(train.astype(np.float64), 4, axis=0) + rng.normal(0, 8, (1200, 8, 8))
    np.savez(tmp / "samples_copies.npz", x=copies.clip(0, 255))  # noisy copies of the train records
    return tmp


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mia_bench", "audit-release", "--no-progress", *args],
                          env=ENV, capture_output=True, text=True, timeout=300)


def test_overfit_release_fails_the_gate_and_independent_model_passes(files, tmp_path):
    base = ["--train", str(files / "train.npz"), "--holdout", str(files / "holdout.npz"),
            "--fail-above", "tpr@1%fpr=0.2"]
    bad = _cli(*base, "--synthetic", str(files / "samples_copies.npz"), "--out", str(tmp_path / "bad"))
    assert bad.returncode == 3, bad.stderr + bad.stdout
    assert "GATE FAILED" in bad.stdout and "ganleaks_fbb" in bad.stdout
    good = _cli(*base, "--synthetic", str(files / "samples_other.npz"), "--generator", str(files / "g_other.pt"),
                "--out", str(tmp_path / "good"))
    assert good.returncode == 0, good.stderr + good.stdout
    for run in ("bad", "good"):
        for f in ("record.json", "scores.npz", "report.md", "report.html"):
            assert (tmp_path / run / f).is_file()
    record = RunRecord.read(tmp_path / "good" / "record.json")
    assert "ganleaks_pbb" in record.attacks and "external_audit" in record.labels
    assert not update_entries([record], tmp_path / "entries")  # never enters a leaderboard
    _screenshot(tmp_path / "bad" / "report.html", tmp_path)


def _screenshot(page: Path, tmp: Path) -> None:
    browser = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if browser is None:
        pytest.skip("no chromium binary on this machine: the HTML render check needs `apt-get install chromium`")
    shot = tmp / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp / 'chrome'}", f"--screenshot={shot}", "--window-size=1200,2000",
                    page.resolve().as_uri()], capture_output=True, timeout=120)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.std() > 5 and (img < 128).mean() > 0.01  # text and figures, not a blank page


@pytest.mark.parametrize("case", ["shared", "nan", "shape", "few", "badgate", "badscript", "nocallable", "exists"])
def test_bad_inputs_are_refused_and_nothing_is_written(files, tmp_path, case, cli):
    train, hold = np.load(files / "train.npz")["x"], np.load(files / "holdout.npz")["x"]
    args = {"train": files / "train.npz", "holdout": files / "holdout.npz", "synthetic": files / "samples_other.npz"}
    extra, expect = [], ""
    if case == "shared":
        np.savez(tmp_path / "h.npz", x=np.concatenate([hold, train[:3]]))
        args["holdout"], expect = tmp_path / "h.npz", "both --train and --holdout"
    elif case == "nan":
        bad = train.astype(float)
        bad[5, 0, 0] = np.nan
        np.savez(tmp_path / "t.npz", x=bad)
        args["train"], expect = tmp_path / "t.npz", "NaN or inf"
    elif case == "shape":
        np.savez(tmp_path / "s.npz", x=np.zeros((10, 64)))
        args["synthetic"], expect = tmp_path / "s.npz", "same record shape"
    elif case == "few":
        extra, expect = ["--fail-above", "tpr@0.1%fpr=0.01"], "needs at least 2000"
    elif case == "badgate":
        extra, expect = ["--fail-above", "tpr@1%=0.05"], "is not [LEVEL:]METRIC=VALUE"
    elif case == "badscript":
        (tmp_path / "g.pt").write_bytes(b"not a model")
        extra, expect = ["--generator", str(tmp_path / "g.pt")], "torch.jit.script(model).save"
    elif case == "nocallable":
        extra, expect = ["--generator", "json:no_such_function"], "has no callable"
    out = tmp_path / "out"
    if case == "exists":
        out.mkdir()
        (out / "record.json").write_text("earlier")
        expect = "never written over"
    flat = [a for k, v in args.items() for a in (f"--{k}", str(v))]
    # one case as a real process (its exit status as a shell sees it), the others in this process
    run = _cli if case == "shared" else (lambda *a: cli("audit-release", "--no-progress", *a))
    r = run(*flat, *extra, "--out", str(out))
    assert r.returncode == 2 and expect in " ".join(r.stderr.split()), r.stderr
    if case == "exists":
        assert (out / "record.json").read_text() == "earlier"
    else:
        assert not out.exists()
    assert not list(tmp_path.glob(".out.partial-*"))
