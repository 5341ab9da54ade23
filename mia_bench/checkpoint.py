"""Defense checkpoints: hyperparameters, data info, split digest and weights; loadable without pickle code."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from mia_bench.config import component_config
from mia_bench.data.datasets import DataInfo
from mia_bench.defenses import DEFENSES, Defense
from mia_bench.errors import CheckpointError
from mia_bench.io import atomic_torch_save, safe_torch_load

FORMAT = "mia_bench.checkpoint/1"


def save_checkpoint(path: Path, defense: Defense, *, split_digest: str, config_digest: str) -> None:
    atomic_torch_save(path, {
        "format": FORMAT,
        "defense": defense.name,
        "params": asdict(defense.config),
        "info": defense.info.to_dict(),
        "n_train": defense.n_train,
        "split_digest": split_digest,
        "config_digest": config_digest,
        "state_dict": {k: v.detach().cpu() for k, v in defense.state_dict().items()},
        "extra": defense.checkpoint_extra(),
    })


def read_checkpoint(path: Path) -> dict[str, Any]:
    blob = safe_torch_load(path)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint")
    return blob


def load_checkpoint(path: Path) -> tuple[Defense, dict[str, Any]]:
    """Rebuild the defense from the checkpoint alone; returns (model in eval mode, metadata)."""
    blob = read_checkpoint(path)
    cls = DEFENSES.get(blob["defense"])
    model = cls(config=component_config(cls.Config, blob["params"], "defense"),
                info=DataInfo.from_dict(blob["info"]), n_train=int(blob["n_train"]))
    try:
        model.load_state_dict(blob["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit defense '{blob['defense']}': {e}") from None
    model.load_checkpoint_extra(blob.get("extra", {}))
    model.eval()
    meta = {k: v for k, v in blob.items() if k != "state_dict"}
    return model, meta
