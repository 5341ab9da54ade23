"""Audit a CTGAN (sdv-dev's `ctgan` package) trained on a table, with its own training recipe.

    pip install -c constraints.txt "mia_bench[ctgan]"
    python examples/audit_ctgan.py --epochs 300 --shadows 16 --out results/audits/ctgan

What it does: builds a table from scikit-learn's breast-cancer data (10 numeric columns and the text column
`diagnosis`, no download), trains a CTGAN on 200 rows (the members), releases 1,000 synthetic rows, and
audits them with `mia_bench.audit_release(..., recipe="audit_ctgan:recipe")`: the audit trains K shadow
CTGANs on random halves of the scored rows (LiRA), one on the reference rows (calibrated GAN-Leaks), and
scores the members against the held-out rows. The CSV columns are encoded for every attack as the report
says: numeric columns min-max scaled to [-1, 1], text columns one-hot.

For your own table, keep `recipe` (or write yours the same way) and run the command line, with this folder
on PYTHONPATH:

    PYTHONPATH=examples mia-bench audit-release --train train.csv --holdout holdout.csv \\
        --synthetic synthetic.csv --recipe audit_ctgan:recipe --shadows 16

`recipe(x, y, seed)` gets the rows as a dict of columns (numbers as floats, text as str) and returns an object
whose sample(n) gives a DataFrame with the same columns. Set MIA_CTGAN_EPOCHS to change the epochs the
recipe trains for (it must match what trained the released model: the shadows imitate it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

EPOCHS = int(os.environ.get("MIA_CTGAN_EPOCHS", "300"))


class CTGANModel:
    """A fitted CTGAN as the audit queries it: sample(n) -> DataFrame of the training columns."""

    def __init__(self, model: object) -> None:
        self.model = model

    def sample(self, n: int) -> object:
        return self.model.sample(n)  # type: ignore[attr-defined]


def recipe(x: dict, y: object = None, seed: int = 0) -> CTGANModel:
    """Train a fresh CTGAN on the rows x (a dict of columns); text columns are CTGAN's discrete columns."""
    import pandas as pd
    import torch
    from ctgan import CTGAN

    frame = pd.DataFrame({k: np.asarray(v) for k, v in x.items()})
    discrete = [c for c in frame.columns if not np.issubdtype(frame[c].dtype, np.number)]
    torch.manual_seed(seed)
    model = CTGAN(epochs=EPOCHS, batch_size=100, pac=10, verbose=False, enable_gpu=False)
    model.set_random_state(seed)
    model.fit(frame, discrete_columns=discrete)
    return CTGANModel(model)


def make_table(folder: Path, *, n_train: int = 200, n_holdout: int = 300, seed: int = 0) -> tuple[Path, Path]:
    """train.csv (members) and holdout.csv (never seen) from scikit-learn's breast-cancer data."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    frame = pd.DataFrame(np.round(data.data[:, :10], 4), columns=[c.replace(" ", "_") for c in data.feature_names[:10]])
    frame["diagnosis"] = np.asarray(data.target_names)[data.target]
    order = np.random.default_rng(seed).permutation(len(frame))
    folder.mkdir(parents=True, exist_ok=True)
    frame.iloc[order[:n_train]].to_csv(folder / "train.csv", index=False)
    frame.iloc[order[n_train:n_train + n_holdout]].to_csv(folder / "holdout.csv", index=False)
    return folder / "train.csv", folder / "holdout.csv"


def release(train: Path, folder: Path, *, n: int = 1000, seed: int = 1) -> Path:
    """The user's side: train a CTGAN on train.csv with `recipe` and write its synthetic rows."""
    import pandas as pd

    frame = pd.read_csv(train)
    columns = {c: (frame[c].to_numpy(float) if np.issubdtype(frame[c].dtype, np.number) else frame[c].astype(str)
                   .to_numpy()) for c in frame.columns}
    out = folder / "synthetic.csv"
    recipe(columns, None, seed=seed).sample(n).to_csv(out, index=False)  # type: ignore[attr-defined]
    return out


def main(argv: list[str] | None = None) -> int:
    global EPOCHS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--shadows", type=int, default=16)
    p.add_argument("--data", type=Path, default=Path("results/audits/ctgan_data"))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    EPOCHS = args.epochs
    os.environ["MIA_CTGAN_EPOCHS"] = str(args.epochs)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # so that --recipe audit_ctgan:recipe imports

    import mia_bench

    train, holdout = make_table(args.data)
    synthetic = release(train, args.data)
    res = mia_bench.audit_release(train=train, holdout=holdout, synthetic=synthetic, recipe="audit_ctgan:recipe",
                                  shadows=args.shadows, out=args.out, name="ctgan")
    for level, pick in res.record.worst_case.items():
        m = pick["metrics"]
        print(f"{level}: {pick['attack']}: AUC {m['auc']['value']:.3f}, TPR@1%FPR {m['tpr@1%fpr']['value']:.3f}")
    print(f"report: {res.report_md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
